//! `ckb replay`: puts dead letters back onto a stream, for the function to take again (see [`crate::replay`]),
//! or the batches an event source mapping's on-failure queue describes (see [`crate::on_failure`]).
//!
//! `ckb replay --bucket B --prefix dead-letter/sync-processor/ --stream S`, `ckb replay --queue URL [--stream S]`

use crate::on_failure::OnFailureSummary;
use crate::progress::{ProgressLine, bar};
use crate::replay::ReplaySummary;

/// `ckb replay --help`.
pub const USAGE: &str = "\
usage: ckb replay --bucket BUCKET --prefix dead-letter/<function>/[dt=YYYY-MM-DD/] --stream STREAM_NAME_OR_ARN
       ckb replay --queue ON_FAILURE_QUEUE_URL [--stream STREAM_NAME_OR_ARN]

Dead letters: puts every dead letter under the prefix back onto the stream, in arrival order, for the function to
take again once what failed is mended. A Cognito Sync record whose changes were behind an S3Url goes back inline
with the payload the dead letter kept. What cannot be replayed is listed with why and left where it is.

On-failure queue: each message describes a batch the event source mapping gave up on (its shard and first and
last sequence numbers); while the records are within the stream's retention they are read back and put on the
stream (default: the batch's own source stream), in order, and the message is deleted. A message whose records
are gone is listed with why and left on the queue.

The functions drop what they already forwarded, so running it twice re-sends nothing a consumer cannot collapse.

  --bucket BUCKET   the dead-letter bucket (the stack's BridgeBucket)
  --prefix PREFIX   dead-letter/<function>/, optionally narrowed to a day: dead-letter/<function>/dt=YYYY-MM-DD/
  --queue URL       an on-failure queue (the stack's *OnFailureQueue), instead of --bucket and --prefix
  --stream STREAM   the stream to put them on (a name or an ARN): the function's source stream
";

/// What the command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// Dead letters under a prefix, onto a stream.
    DeadLetters {
        /// The dead-letter bucket.
        bucket: String,
        /// The prefix under `dead-letter/`.
        prefix: String,
        /// The stream, a name or an ARN.
        stream: String,
    },
    /// The batches an on-failure queue describes.
    OnFailure {
        /// The queue's URL.
        queue: String,
        /// The stream to put them on; `None`: each batch's own.
        stream: Option<String>,
    },
}

/// Reads the arguments (after `replay`).
pub fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut bucket, mut prefix, mut stream, mut queue) = (None, None, None, None);
    let mut args = args;
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--bucket" => &mut bucket,
            "--prefix" => &mut prefix,
            "--stream" => &mut stream,
            "--queue" => &mut queue,
            other => return Err(format!("unknown argument '{other}'")),
        };
        *slot = Some(args.next().ok_or(format!("{flag} needs a value"))?);
    }
    if let Some(queue) = queue {
        if bucket.is_some() || prefix.is_some() {
            return Err(
                "--queue replays an on-failure queue, --bucket and --prefix dead letters: give one or the other"
                    .into(),
            );
        }
        return Ok(Args::OnFailure { queue, stream });
    }
    let need = |v: Option<String>, flag: &str| v.ok_or(format!("{flag} is required"));
    let prefix = need(prefix, "--prefix")?;
    if !prefix.starts_with(bridge_core::dead_letter::DEAD_LETTER_PREFIX) {
        return Err(format!(
            "--prefix must start with '{}'",
            bridge_core::dead_letter::DEAD_LETTER_PREFIX
        ));
    }
    Ok(Args::DeadLetters {
        bucket: need(bucket, "--bucket")?,
        prefix,
        stream: need(stream, "--stream")?,
    })
}

fn line(done: usize, total: usize, s: &ReplaySummary) -> String {
    format!(
        "{} {done}/{total} dead letters | replayed {} | skipped {}",
        bar(done as u64, total as u64),
        s.replayed,
        s.skipped.len()
    )
}

/// Replays, with a progress line on stderr; what was left (with why) and the summary at the end.
pub async fn run(a: Args, sdk: &aws_config::SdkConfig) -> Result<(), String> {
    match a {
        Args::DeadLetters {
            bucket,
            prefix,
            stream,
        } => dead_letters(&bucket, &prefix, &stream, sdk).await,
        Args::OnFailure { queue, stream } => on_failure(&queue, stream.as_deref(), sdk).await,
    }
}

async fn dead_letters(
    bucket: &str,
    prefix: &str,
    stream: &str,
    sdk: &aws_config::SdkConfig,
) -> Result<(), String> {
    let s3 = bridge_core::aws::s3_client(sdk, &bridge_core::config::ProcessEnv)
        .map_err(|e| e.to_string())?;
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    let mut progress = ProgressLine::stderr();
    let result = crate::replay::replay_dead_letters_with_progress(
        &s3,
        &kinesis,
        bucket,
        prefix,
        stream,
        |done, total, s| {
            if done == total {
                progress.finish(&line(done, total, s));
            } else {
                progress.update(&line(done, total, s));
            }
        },
    )
    .await;
    progress.close();
    let summary = result.map_err(|e| e.to_string())?;
    for (key, why) in &summary.skipped {
        eprintln!("skipped {key}: {why}");
    }
    println!(
        "replayed {} dead letters onto {stream} ({} inline with their kept payload), skipped {}",
        summary.replayed,
        summary.inlined,
        summary.skipped.len()
    );
    Ok(())
}

fn queue_line(seen: usize, s: &OnFailureSummary) -> String {
    format!(
        "{seen} messages | {} batches, {} records put back | {} left on the queue",
        s.batches,
        s.records,
        s.left.len()
    )
}

async fn on_failure(
    queue: &str,
    stream: Option<&str>,
    sdk: &aws_config::SdkConfig,
) -> Result<(), String> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    // SQS gives no count of what is left to read: a line without a bar.
    let mut progress = ProgressLine::stderr();
    let mut last = String::new();
    let result = crate::on_failure::replay_on_failure(&sqs, &kinesis, queue, stream, |seen, s| {
        last = queue_line(seen, s);
        progress.update(&last);
    })
    .await;
    if last.is_empty() {
        progress.close();
    } else {
        progress.finish(&last);
    }
    let summary = result.map_err(|e| e.to_string())?;
    for (id, why) in &summary.left {
        eprintln!("left message {id} on the queue: {why}");
    }
    println!(
        "replayed {} batches ({} records) from {queue} onto {}, left {} messages on the queue",
        summary.batches,
        summary.records,
        stream.unwrap_or("their source streams"),
        summary.left.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args, String> {
        parse(a.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn the_options_are_todays_and_mistakes_are_named() {
        assert_eq!(
            args(&[
                "--bucket",
                "b",
                "--prefix",
                "dead-letter/x/",
                "--stream",
                "s"
            ]),
            Ok(Args::DeadLetters {
                bucket: "b".into(),
                prefix: "dead-letter/x/".into(),
                stream: "s".into()
            })
        );
        assert_eq!(
            args(&["--queue", "https://sqs.example.com/q"]),
            Ok(Args::OnFailure {
                queue: "https://sqs.example.com/q".into(),
                stream: None
            })
        );
        assert!(
            args(&["--queue", "q", "--bucket", "b"])
                .unwrap_err()
                .contains("one or the other")
        );
        assert!(
            args(&["--bucket", "b", "--prefix", "other/", "--stream", "s"])
                .unwrap_err()
                .contains("--prefix must start with")
        );
        assert!(
            args(&["--prefix", "dead-letter/x/", "--stream", "s"])
                .unwrap_err()
                .contains("--bucket")
        );
        assert!(args(&["--bucket"]).unwrap_err().contains("needs a value"));
        assert!(args(&["--buckets", "b"]).unwrap_err().contains("--buckets"));
    }
}
