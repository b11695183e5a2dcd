//! `replay`: puts dead letters back onto a stream, for the function to take again (see `devtools::replay`).
//!
//! `cargo run -p devtools --bin replay -- --bucket B --prefix dead-letter/sync-processor/ --stream S`
//! Uses the standard AWS environment (region, credentials, `AWS_ENDPOINT_URL` for the local emulator).

use bridge_core::config::ProcessEnv;

const USAGE: &str = "usage: replay --bucket BUCKET --prefix dead-letter/<function>/[dt=YYYY-MM-DD/] --stream STREAM_NAME_OR_ARN";

fn parse(args: impl Iterator<Item = String>) -> Result<(String, String, String), String> {
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
    Ok((need(bucket, "--bucket")?, prefix, need(stream, "--stream")?))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let (bucket, prefix, stream) = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("replay: {e}\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    let sdk = bridge_core::aws::sdk_config().await;
    let s3 = match bridge_core::aws::s3_client(&sdk, &ProcessEnv) {
        Ok(s3) => s3,
        Err(e) => {
            eprintln!("replay: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    match devtools::replay::replay_dead_letters(&s3, &kinesis, &bucket, &prefix, &stream).await {
        Ok(summary) => {
            for (key, why) in &summary.skipped {
                eprintln!("skipped {key}: {why}");
            }
            println!(
                "replayed {} dead letters onto {stream} ({} inline with their kept payload), skipped {}",
                summary.replayed,
                summary.inlined,
                summary.skipped.len()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replay: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
