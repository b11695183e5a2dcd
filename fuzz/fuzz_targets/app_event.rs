//! The app event forwarder's whole record path, from record bytes to the envelope it would put on the stream:
//! KPL deaggregation (as where aggregates are accepted), the size cap, the shape and its parse, the checks,
//! the clock correction and the id, then the envelope's JSON. The first 8 bytes are the arrival time (epoch ms,
//! any i64); the rest is the record's data. An event or a reason, never a panic.
#![no_main]
use chrono::TimeZone as _;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let Some((head, data)) = input.split_first_chunk::<8>() else {
        return;
    };
    let arrival = chrono::Utc.timestamp_millis_opt(i64::from_le_bytes(*head)).single();
    let limits = app_events::event::Limits::default();
    let source = bridge_core::envelope::SourceRef {
        stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/app-events".into(),
        shard_id: "shardId-000000000000".into(),
        sequence_number: "1".into(),
        sub_sequence: 0,
        user_record: None,
    };
    let users: Vec<(Option<u32>, Vec<u8>)> = match bridge_core::kpl::deaggregate(data) {
        Some(Ok(users)) => users
            .into_iter()
            .enumerate()
            .map(|(j, u)| (u32::try_from(j).ok(), u.data))
            .collect(),
        Some(Err(_)) => return,
        None => vec![(None, data.to_vec())],
    };
    for (user_record, data) in users {
        let record = bridge_core::kinesis_event::SourceRecord {
            source: bridge_core::envelope::SourceRef {
                user_record,
                ..source.clone()
            },
            partition_key: "pk".into(),
            arrival,
            data,
        };
        if let Ok(events) = app_events::handler::read(&record, &limits) {
            for event in events {
                let json = serde_json::to_vec(&event).expect("an app event serializes");
                assert!(json.len() < 2 * limits.max_record_bytes + 4096);
                assert_eq!(event.event_id.len(), 32);
            }
        }
    }
});
