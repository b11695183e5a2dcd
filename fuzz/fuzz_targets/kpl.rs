//! The KPL deaggregator: any bytes (the fuzzer finds the magic bytes quickly) give user records, an error or
//! "not aggregated", never a panic; what it reads re-encodes to an aggregate it reads again.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(Ok(users)) = bridge_core::kpl::deaggregate(data) {
        let again = bridge_core::kpl::deaggregate(&bridge_core::kpl::aggregate(&users));
        assert_eq!(again, Some(Ok(users)));
    }
});
