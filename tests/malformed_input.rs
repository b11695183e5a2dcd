//! Property tests of the decoders: no decoder panics on arbitrary bytes (each answers with an error or a value),
//! and the round trips hold. Pure logic: no emulator.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use proptest::prelude::*;

/// Bytes shaped like JSON more often than random bytes are, to get past the first character.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        "[\\[\\]{}\",:0-9a-zA-Z_. -]{0,256}".prop_map(String::into_bytes),
        "\\{\"schema\":\"(cognito-auth-event/v1|app-event/v1)\"[,:\"a-z_0-9{}\\[\\] -]{0,200}\\}"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_decoder_panics_on_arbitrary_bytes(bytes in jsonish()) {
        let _ = sync_processor::record::StreamRecord::parse(&bytes);
        let _ = sync_processor::record::parse_s3_payload(bytes.as_slice());
        let _ = auth_analytics::activity_log::decode_subscription(&bytes);
        let _ = app_events::input::parse(&bytes);
        let _ = active_users::activity::read(&bytes, &["platform".to_owned()]);
        let _ = active_users::sketch::Sketch::from_bytes(&bytes);
    }

    #[test]
    fn an_auth_event_reads_back_what_it_says(
        sub in "[a-f0-9-]{1,36}",
        client in "[a-z0-9]{1,26}",
        day in 1u32..=28,
        platform in "[A-Za-z]{1,12}",
    ) {
        let doc = serde_json::json!({"schema": "cognito-auth-event/v1", "event_id": "e", "type": "_userauth.sign_in",
            "timestamp": format!("2026-11-{day:02}T12:00:00Z"), "origin": "trigger", "user_pool_id": "us-east-1_EXAMPLE",
            "client_id": client, "user_sub": sub, "context": {"platform": platform}});
        let a = active_users::activity::read(&serde_json::to_vec(&doc).unwrap(), &["platform".to_owned()]).unwrap();
        prop_assert_eq!(a.day.format("%d").to_string(), format!("{day:02}"));
        prop_assert_eq!(&a.actives[0].actor, &sub);
        prop_assert_eq!(&a.scopes[0], &format!("pool=us-east-1_EXAMPLE/client={client}"));
        prop_assert_eq!(&a.dimensions, &vec![("platform".to_owned(), platform)]);
    }

    #[test]
    fn a_sketch_survives_its_bytes(actors in proptest::collection::btree_set("[a-z0-9]{1,12}", 0..300)) {
        let mut s = active_users::sketch::Sketch::new();
        for a in &actors {
            s.insert(a);
        }
        let back = active_users::sketch::Sketch::from_bytes(&s.to_bytes()).unwrap();
        // The same content, and so the same estimate, through any number of round trips. Not the same bytes: a
        // set-mode sketch's hash table may be laid out in another order after each deserialization (seen here),
        // so bytes are compared only within one in-memory sketch, below.
        prop_assert_eq!(back.estimate(), s.estimate());
        let again = active_users::sketch::Sketch::from_bytes(&back.to_bytes()).unwrap();
        prop_assert_eq!(again.estimate(), s.estimate());
        // What the store relies on to skip a write: adding actors already in a stored sketch changes no byte.
        let mut readded = back.clone();
        for a in &actors {
            readded.insert(a);
        }
        prop_assert_eq!(readded.to_bytes(), back.to_bytes());
        // Small sets are counted exactly by DataSketches' list and set modes (within rounding).
        prop_assert!((back.estimate() - actors.len() as f64).abs() <= 1.0 + actors.len() as f64 * 0.02);
    }
}
