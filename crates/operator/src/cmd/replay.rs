//! `ckb replay`: puts dead letters back onto a stream, for the function to take again (see [`crate::replay`]).
//!
//! `ckb replay --bucket B --prefix dead-letter/sync-processor/ --stream S`

use crate::progress::{ProgressLine, bar};
use crate::replay::ReplaySummary;

/// `ckb replay --help`.
pub const USAGE: &str = "\
usage: ckb replay --bucket BUCKET --prefix dead-letter/<function>/[dt=YYYY-MM-DD/] --stream STREAM_NAME_OR_ARN

Puts every dead letter under the prefix back onto the stream, in arrival order, for the function to take again once
what failed is mended. A Cognito Sync record whose changes were behind an S3Url goes back inline with the payload
the dead letter kept. What cannot be replayed is listed with why and left where it is. The functions drop what
they already forwarded, so running it twice re-sends nothing a consumer cannot collapse.

  --bucket BUCKET   the dead-letter bucket (the stack's BridgeBucket)
  --prefix PREFIX   dead-letter/<function>/, optionally narrowed to a day: dead-letter/<function>/dt=YYYY-MM-DD/
  --stream STREAM   the stream to put them on (a name or an ARN): the function's source stream
";

/// What the command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The dead-letter bucket.
    pub bucket: String,
    /// The prefix under `dead-letter/`.
    pub prefix: String,
    /// The stream, a name or an ARN.
    pub stream: String,
}

/// Reads the arguments (after `replay`).
pub fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut bucket, mut prefix, mut stream) = (None, None, None);
    let mut args = args;
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--bucket" => &mut bucket,
            "--prefix" => &mut prefix,
            "--stream" => &mut stream,
            other => return Err(format!("unknown argument '{other}'")),
        };
        *slot = Some(args.next().ok_or(format!("{flag} needs a value"))?);
    }
    let need = |v: Option<String>, flag: &str| v.ok_or(format!("{flag} is required"));
    let prefix = need(prefix, "--prefix")?;
    if !prefix.starts_with(bridge_core::dead_letter::DEAD_LETTER_PREFIX) {
        return Err(format!(
            "--prefix must start with '{}'",
            bridge_core::dead_letter::DEAD_LETTER_PREFIX
        ));
    }
    Ok(Args {
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

/// Replays, with a progress line on stderr; the skipped letters (with why) and the summary at the end.
pub async fn run(a: Args, sdk: &aws_config::SdkConfig) -> Result<(), String> {
    let s3 = bridge_core::aws::s3_client(sdk, &bridge_core::config::ProcessEnv)
        .map_err(|e| e.to_string())?;
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    let mut progress = ProgressLine::stderr();
    let result = crate::replay::replay_dead_letters_with_progress(
        &s3,
        &kinesis,
        &a.bucket,
        &a.prefix,
        &a.stream,
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
        "replayed {} dead letters onto {} ({} inline with their kept payload), skipped {}",
        summary.replayed,
        a.stream,
        summary.inlined,
        summary.skipped.len()
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
            Ok(Args {
                bucket: "b".into(),
                prefix: "dead-letter/x/".into(),
                stream: "s".into()
            })
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
