//! The operator command's surface (`target/debug/ckb`): one `--help` listing the four commands, each command's own
//! `--help`, `--version`, and command-line mistakes that exit 2 with a message naming them; and `ckb replay --queue`
//! (the on-failure queue) against moto. What the other commands do is tested where their subject is: `ckb report`
//! in active_users.rs, `ckb replay` of dead letters in sync_processor.rs, `ckb user-snapshot-export` in
//! user_export.rs, `ckb pinpoint-backfill` in pinpoint_backfill.rs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

const COMMANDS: [&str; 4] = [
    "report",
    "replay",
    "user-snapshot-export",
    "pinpoint-backfill",
];

#[tokio::test]
async fn help_lists_the_four_commands_and_the_global_options() {
    for help in ["--help", "-h"] {
        let (code, out, err) = e2e::ckb(&[help]).await;
        assert_eq!(code, 0, "{err}");
        let listed: Vec<&str> = out
            .lines()
            .skip_while(|l| *l != "commands:")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(listed, COMMANDS, "{out}");
        for option in ["--profile", "--region", "--endpoint-url"] {
            assert!(out.contains(option), "{option}: {out}");
        }
    }
}

#[tokio::test]
async fn each_command_has_its_own_help_with_todays_options() {
    for (command, options) in [
        (
            "report",
            &["--table", "--scope", "--from", "--to", "--out"][..],
        ),
        ("replay", &["--bucket", "--prefix", "--stream"]),
        ("user-snapshot-export", &["--start-token", "--max-pages"]),
        (
            "pinpoint-backfill",
            &["--bucket", "--prefix", "--until", "--state", "--dry-run"],
        ),
    ] {
        // `--help` anywhere after the command, or before it.
        for args in [[command, "--help"], ["--help", command]] {
            let (code, out, err) = e2e::ckb(&args).await;
            assert_eq!(code, 0, "{args:?}: {err}");
            assert!(
                out.starts_with("usage: ")
                    && out
                        .lines()
                        .next()
                        .unwrap()
                        .contains(&format!("ckb {command}")),
                "{args:?}: {out}"
            );
            for option in options {
                assert!(out.contains(option), "{command}: {option} is not in\n{out}");
            }
        }
    }
}

#[tokio::test]
async fn version() {
    let (code, out, _) = e2e::ckb(&["--version"]).await;
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("ckb {}", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn mistakes_exit_2_with_a_message_that_names_them() {
    for (args, says) in [
        (&["reprot"][..], "unknown command 'reprot'"),
        (
            &["reprot"],
            "report, replay, user-snapshot-export, pinpoint-backfill",
        ),
        (&[], "no command given"),
        (&["--table", "t", "report"], "unknown option '--table'"),
        (&["--region"], "--region needs a value"),
        (
            &["--endpoint-url", "127.0.0.1:5000", "report"],
            "127.0.0.1:5000",
        ),
        (&["report", "--from", "2026-11-01"], "--table is required"),
        (
            &["report", "--table", "t", "--from", "November"],
            "'November'",
        ),
        (
            &["replay", "--bucket", "b", "--prefix", "x/", "--stream", "s"],
            "--prefix must start with 'dead-letter/'",
        ),
        (&["user-snapshot-export", "extra"], "extra"),
        (
            &["pinpoint-backfill", "--prefix", "p"],
            "--bucket is required",
        ),
    ] {
        let (code, out, err) = e2e::ckb(args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: nothing on stdout: {out}");
    }
}

/// The backfill's own binary is its one-off Lambda; run from a terminal, it says where the command went.
#[tokio::test]
async fn the_backfill_lambda_binary_points_to_ckb_outside_a_lambda() {
    let out = tokio::process::Command::new(e2e::root().join("target/debug/pinpoint-backfill"))
        .args(["--bucket", "b"])
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .await
        .expect("the pinpoint-backfill binary (cargo build --workspace --bins)");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ckb pinpoint-backfill"), "{err}");
}

/// `ckb replay --queue`: the batch an on-failure message describes (Lambda's shape: only its shard and first and
/// last sequence numbers) is read back from the shard and put on the stream in order, under each record's own
/// partition key, and the message is deleted; a message that describes no batch stays on the queue, with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_puts_back_the_batch_an_on_failure_message_describes() {
    use aws_sdk_kinesis::primitives::Blob;
    use devtools::emulator::{LocalAws, unique_name};
    let aws = LocalAws::from_env().await.unwrap();
    let (source, target) = (unique_name("src"), unique_name("dst"));
    let source_arn = aws.create_stream(&source, 1).await.unwrap();
    aws.create_stream(&target, 1).await.unwrap();
    let mut seqs = Vec::new();
    for i in 0..6 {
        let put = aws
            .kinesis
            .put_record()
            .stream_name(&source)
            .partition_key(format!("user-{}", i % 2))
            .data(Blob::new(format!("record {i}")))
            .send()
            .await
            .unwrap();
        seqs.push(put.sequence_number().to_owned());
    }
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk);
    let queue = sqs
        .create_queue()
        .queue_name(unique_name("on-failure"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    // Records 1 to 4 were the batch given up.
    let message = serde_json::json!({
        "requestContext": {"requestId": "r", "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": seqs[1],
            "endSequenceNumber": seqs[4],
            "batchSize": 4,
            "streamArn": source_arn,
        },
    });
    for body in [message.to_string(), "{\"hello\": 1}".to_owned()] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let (code, out, err) = e2e::ckb(&["replay", "--queue", &queue, "--stream", &target]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("replayed 1 batches (4 records)") && out.contains("left 1 messages"),
        "{out}"
    );
    assert!(err.contains("no KinesisBatchInfo"), "{err}");
    let back: Vec<(String, String)> = aws
        .read_stream(&target)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.partition_key().unwrap_or_default().to_owned(),
                String::from_utf8_lossy(r.data().as_ref()).into_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = (1..=4)
        .map(|i| (format!("user-{}", i % 2), format!("record {i}")))
        .collect();
    assert_eq!(back, want);
    // The replayed message is gone; the stranger is still there (hidden for the run's visibility timeout).
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        1
    );
}
