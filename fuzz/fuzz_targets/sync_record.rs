//! The Cognito Sync stream record decoder: any bytes give a record or an error, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sync_processor::record::StreamRecord::parse(data);
});
