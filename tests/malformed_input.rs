//! Property tests of the decoders: no decoder panics on arbitrary bytes (each answers with an error or a value),
//! the app event path never panics on any time a client can send, and the round trips hold. Pure logic: no
//! emulator.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// The seed of every property here: each run checks the same 512 inputs per property, so that no run passes or
/// fails by the luck of its draw (exploring is `make fuzz`'s job). `PROPTEST_RNG_SEED=<n>` checks another set.
const SEED: u64 = 20_261_205;

fn config() -> ProptestConfig {
    config_with(512)
}

/// [`config`] with `cases` inputs per property.
fn config_with(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(cases);
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config
}

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
    #![proptest_config(config())]

    #[test]
    fn no_decoder_panics_on_arbitrary_bytes(bytes in jsonish()) {
        let _ = sync_processor::record::StreamRecord::parse(&bytes);
        let _ = sync_processor::record::parse_s3_payload(bytes.as_slice());
        let _ = auth_analytics::activity_log::decode_subscription(&bytes);
        let _ = app_events::input::parse(&bytes, "pk");
        let _ = active_users::activity::read(&bytes, &["platform".to_owned()]);
        let _ = active_users::history::Days::from_bytes(&bytes);
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
    fn an_actors_days_survive_their_bytes(days in proptest::collection::btree_set(-4_000i64..4_000, 0..200)) {
        let base = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let mut d = active_users::history::Days::default();
        for n in &days {
            d.set(base + chrono::Duration::days(*n));
        }
        let back = active_users::history::Days::from_bytes(&d.to_bytes()).unwrap();
        prop_assert_eq!(&back, &d);
        for n in -4_000i64..4_000 {
            let day = base + chrono::Duration::days(n);
            prop_assert_eq!(back.has(day), days.contains(&n));
        }
    }
}

/// App event JSON with times anywhere in i64 (and in chrono's range), as ms numbers or strings, in either shape.
fn app_event_like() -> impl Strategy<Value = Vec<u8>> {
    let time = prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        (-8_300_000_000_000_000_i64..8_300_000_000_000_000).prop_map(serde_json::Value::from),
        (-8_300_000_000_000_000_i64..8_300_000_000_000_000)
            .prop_map(|t| serde_json::Value::from(t.to_string())),
        Just(serde_json::Value::from("2026-11-20T10:00:00Z")),
    ];
    (
        time.clone(),
        proptest::option::of(time.clone()),
        proptest::option::of(time),
        any::<bool>(),
    )
        .prop_map(|(at, sent, start, pinpoint)| {
            let mut doc = if pinpoint {
                serde_json::json!({"eventType": "x", "Timestamp": at, "Endpoint": {"Id": "a"}})
            } else {
                serde_json::json!({"event_type": "x", "timestamp": at, "anonymous_id": "a"})
            };
            if let Some(sent) = sent {
                doc["sent_at"] = sent;
            }
            if let Some(start) = start {
                doc["session"] = serde_json::json!({"id": "s", "start": start});
            }
            serde_json::to_vec(&doc).unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The app event forwarder's whole record path (size cap, parse, checks, clock correction, id) on any bytes
    /// and any arrival time: an event or a reason, never a panic; an event's time lies in its arrival window.
    #[test]
    fn the_app_event_path_never_panics(
        data in prop_oneof![jsonish(), app_event_like()],
        arrival_ms in prop_oneof![any::<i64>(), 1_600_000_000_000_i64..1_900_000_000_000],
        user_record in proptest::option::of(any::<u32>()),
    ) {
        use chrono::TimeZone as _;
        let limits = app_events::event::Limits::default();
        let record = bridge_core::kinesis_event::SourceRecord {
            source: bridge_core::envelope::SourceRef {
                stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/app-events".into(),
                shard_id: "shardId-000000000000".into(),
                sequence_number: "1".into(),
                sub_sequence: 0,
                user_record,
            },
            partition_key: "pk".into(),
            arrival: chrono::Utc.timestamp_millis_opt(arrival_ms).single(),
            data,
        };
        if let (Ok(events), Some(arrival)) = (app_events::handler::read(&record, &limits), record.arrival) {
            for event in events {
                let at = chrono::DateTime::parse_from_rfc3339(&event.timestamp).unwrap();
                prop_assert!(arrival.checked_add_signed(limits.max_future).is_none_or(|latest| at <= latest));
                prop_assert!(arrival.checked_sub_signed(limits.max_past).is_none_or(|earliest| at >= earliest));
                // A clock-corrected event is never dated after its arrival (clamped to it instead).
                prop_assert!(event.clock.offset_ms.is_none() || at <= arrival);
                prop_assert_eq!(event.event_id.len(), 32);
            }
        }
    }
}

/// A KPL aggregate: the magic bytes and then anything, so the deaggregator's own checks are reached; or a
/// well-formed aggregate damaged (then `true`).
fn aggregate_like() -> impl Strategy<Value = (Vec<u8>, bool)> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512)
            .prop_map(|b| [bridge_core::kpl::MAGIC.to_vec(), b].concat())
            .prop_map(|b| (b, false)),
        // A well-formed aggregate with a few bytes changed or cut off.
        (
            proptest::collection::vec(
                ("[a-z]{1,8}", proptest::collection::vec(any::<u8>(), 0..64)),
                1..6
            ),
            any::<usize>(),
            any::<u8>(),
        )
            .prop_map(|(users, at, byte)| {
                let records: Vec<bridge_core::kpl::UserRecord> = users
                    .into_iter()
                    .map(|(pk, data)| bridge_core::kpl::UserRecord {
                        partition_key: pk,
                        explicit_hash_key: None,
                        data,
                    })
                    .collect();
                let mut bytes = bridge_core::kpl::aggregate(&records);
                let at = 4 + at % (bytes.len() - 4);
                if byte % 2 == 0 {
                    bytes[at] ^= byte | 1;
                } else {
                    bytes.truncate(at);
                }
                (bytes, true)
            }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_deaggregator_never_panics_and_never_accepts_a_damaged_aggregate((bytes, damaged) in aggregate_like()) {
        let read = bridge_core::kpl::deaggregate(&bytes);
        if damaged {
            prop_assert!(matches!(read, Some(Err(_))), "a damaged aggregate was read: {:?}", read);
        }
        if let Some(Ok(users)) = read {
            // Only a checksum-valid message gets through: re-encoding what was read must give a valid aggregate.
            prop_assert!(!users.is_empty());
            prop_assert!(matches!(bridge_core::kpl::deaggregate(&bridge_core::kpl::aggregate(&users)), Some(Ok(_))));
        }
    }

    #[test]
    fn user_records_survive_aggregation(
        users in proptest::collection::vec(("[a-z0-9]{1,16}", proptest::option::of("[0-9]{1,38}"), proptest::collection::vec(any::<u8>(), 0..128)), 1..20)
    ) {
        let records: Vec<bridge_core::kpl::UserRecord> = users
            .into_iter()
            .map(|(pk, ehk, data)| bridge_core::kpl::UserRecord { partition_key: pk, explicit_hash_key: ehk, data })
            .collect();
        let back = bridge_core::kpl::deaggregate(&bridge_core::kpl::aggregate(&records));
        prop_assert_eq!(back, Some(Ok(records)));
    }
}

/// A client time as apps (and attackers) send them: epoch ms anywhere in i64 and around the ends of RFC 3339's
/// years (0000 and 9999), and RFC 3339 text near the arrival with any second up to a leap second's 60, any
/// fraction and any offset.
fn client_time() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        (-62_167_219_200_000_i64 - 1_000..-62_167_219_200_000 + 1_000)
            .prop_map(serde_json::Value::from),
        (253_402_300_800_000_i64 - 1_000..253_402_300_800_000 + 1_000)
            .prop_map(serde_json::Value::from),
        (1_795_168_800_000_i64 - 40 * 86_400_000..1_795_168_800_000 + 2 * 86_400_000)
            .prop_map(serde_json::Value::from),
        (
            0u32..24,
            0u32..60,
            0u32..=60,
            "(\\.[0-9]{1,6})?",
            "Z|[+-](0[0-9]|1[0-4]):(00|30)"
        )
            .prop_map(|(h, m, s, frac, zone)| serde_json::Value::from(format!(
                "2026-11-20T{h:02}:{m:02}:{s:02}{frac}{zone}"
            ))),
    ]
}

/// A name from characters on both sides of the name rule: letters of several scripts, digits, combining marks,
/// letters newer than the schema validator's Unicode tables, spaces, the allowed punctuation, and what is not.
fn name() -> impl Strategy<Value = String> {
    let chars = vec![
        'a',
        'Z',
        'ä',
        'ก',
        '説',
        '3',
        '٣',
        '_',
        '.',
        '-',
        ':',
        ' ',
        '\u{301}',
        '\u{e49}',
        '\u{94d}',
        '\u{10940}',
        '\u{323B0}',
        '<',
        '/',
        '\u{200b}',
        '\u{7}',
        '\u{3000}',
    ];
    proptest::collection::vec(proptest::sample::select(chars), 0..6).prop_map(String::from_iter)
}

/// App event JSON of our shape and Pinpoint's with every time field a client controls ([`client_time`]) and
/// names of any characters ([`name`]).
fn app_event_for_the_schema() -> impl Strategy<Value = Vec<u8>> {
    (
        (name(), name()),
        client_time(),
        proptest::option::of(client_time()),
        proptest::option::of(client_time()),
        proptest::option::of(client_time()),
        proptest::option::of(-1_000_i64..1_000_000_000),
        any::<bool>(),
    )
        .prop_map(|((event, property), at, sent, start, stop, duration, pinpoint)| {
            let mut doc = if pinpoint {
                serde_json::json!({"eventType": event, "Timestamp": at,
                    "Endpoint": {"Id": "a", "User": {"UserAttributes": {property.clone(): ["v", "w"]}}},
                    "Attributes": {property: "v"},
                    "Session": {"Id": "s", "StartTimestamp": start, "StopTimestamp": stop, "Duration": duration}})
            } else {
                serde_json::json!({"event_type": event, "timestamp": at, "anonymous_id": "a",
                    "metrics": {property: 1},
                    "session": {"id": "s", "start": start, "stop": stop, "duration_ms": duration}})
            };
            if let Some(sent) = sent {
                doc["sent_at"] = sent;
            }
            serde_json::to_vec(&doc).unwrap()
        })
}

/// The published schema, compiled once (formats checked).
static APP_EVENT_SCHEMA: std::sync::LazyLock<jsonschema::Validator> =
    std::sync::LazyLock::new(|| e2e::validator("app-event.v1.json"));

proptest! {
    #![proptest_config(config_with(2048))]

    /// The forwarder never forwards a record that its own published schema refuses: every event the whole record
    /// path makes of any bytes, at any arrival, satisfies `events/schema/app-event.v1.json`.
    #[test]
    fn every_forwarded_app_event_satisfies_the_schema(
        data in prop_oneof![jsonish(), app_event_like(), app_event_for_the_schema()],
        arrival_ms in prop_oneof![any::<i64>(), Just(1_795_168_800_000_i64), 1_600_000_000_000_i64..1_900_000_000_000],
    ) {
        use chrono::TimeZone as _;
        let record = bridge_core::kinesis_event::SourceRecord {
            source: bridge_core::envelope::SourceRef {
                stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/app-events".into(),
                shard_id: "shardId-000000000000".into(),
                sequence_number: "1".into(),
                sub_sequence: 0,
                user_record: None,
            },
            partition_key: "pk".into(),
            arrival: chrono::Utc.timestamp_millis_opt(arrival_ms).single(),
            data,
        };
        if let Ok(events) = app_events::handler::read(&record, &app_events::event::Limits::default()) {
            for event in events {
                let doc = serde_json::to_value(&event).unwrap();
                let errors: Vec<String> = APP_EVENT_SCHEMA
                    .iter_errors(&doc)
                    .map(|e| format!("{e} at {}", e.instance_path()))
                    .collect();
                prop_assert!(errors.is_empty(), "{:?}\n{:#}", errors, doc);
            }
        }
    }
}
