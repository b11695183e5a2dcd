//! The CloudWatch Logs subscription decoder (gzip, then JSON): any bytes, gzip bombs included, give a value or an
//! error within the decompression bound, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = auth_analytics::activity_log::decode_subscription(data);
});
