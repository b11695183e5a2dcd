//! The S3Url payload body parser: any bytes give records or an error, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sync_processor::record::parse_s3_payload(data);
});
