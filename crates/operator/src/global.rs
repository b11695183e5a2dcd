//! The global options and the SDK configuration: the standard chain (`AWS_PROFILE`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, credentials from the environment, the shared config and credentials files, SSO, IMDS...), with
//! `--profile`, `--region` and `--endpoint-url` over it, as the AWS CLI's options of the same names.

use std::ffi::OsString;

/// The global options' part of `--help`.
pub const HELP: &str = "
global options (before or after the command, as with the AWS CLI):
  --profile NAME       a profile of ~/.aws/config and ~/.aws/credentials (default: AWS_PROFILE, else default)
  --region REGION      the region (default: AWS_REGION, else the profile's)
  --endpoint-url URL   send every request to URL (default: AWS_ENDPOINT_URL; a local emulator, a VPC endpoint)
  --help, -h           this text (ckb <command> --help: the command's options)
  --version, -V        the version

Credentials come from the standard chain (environment, shared files, SSO, the instance's or task's role).
S3_FORCE_PATH_STYLE=true addresses buckets by path (S3-compatible endpoints on an IP address).
";

/// The options that apply to every command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Global {
    /// `--profile`.
    pub profile: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `--help` before the command.
    pub help: bool,
    /// `--version`.
    pub version: bool,
}

const FLAGS: [&str; 3] = ["--profile", "--region", "--endpoint-url"];

impl Global {
    fn set(&mut self, flag: &str, value: String) -> Result<(), String> {
        if value.is_empty() {
            return Err(format!("{flag} needs a value"));
        }
        match flag {
            "--profile" => self.profile = Some(value),
            "--region" => self.region = Some(value),
            _ => {
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    return Err(format!(
                        "--endpoint-url '{value}' is not an http:// or https:// URL"
                    ));
                }
                self.endpoint_url = Some(value);
            }
        }
        Ok(())
    }
}

/// If `arg` is a global option that takes a value: its flag, and the value when given as `--flag=value`.
fn global_flag(arg: &str) -> Option<(&'static str, Option<String>)> {
    FLAGS.iter().find_map(|flag| {
        if arg == *flag {
            Some((*flag, None))
        } else {
            arg.strip_prefix(flag)
                .and_then(|rest| rest.strip_prefix('='))
                .map(|v| (*flag, Some(v.to_owned())))
        }
    })
}

/// Splits the command line (without the program name) into the global options, the command's name (if any) and
/// the command's own arguments. Global options may come before or after the command's name; after `--`,
/// everything is the command's.
pub fn split(args: Vec<OsString>) -> Result<(Global, Option<String>, Vec<OsString>), String> {
    let mut global = Global::default();
    let mut command = None;
    let mut rest = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            if command.is_none() {
                return Err(format!("{arg:?} is not valid text"));
            }
            rest.push(arg);
            continue;
        };
        if text == "--" && command.is_some() {
            rest.push(arg);
            rest.extend(args.by_ref());
            break;
        }
        if let Some((flag, inline)) = global_flag(text) {
            let value = match inline {
                Some(v) => v,
                None => args
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value"))?
                    .into_string()
                    .map_err(|v| format!("{flag} {v:?} is not valid text"))?,
            };
            global.set(flag, value)?;
            continue;
        }
        if command.is_some() {
            rest.push(arg);
        } else if text == "--help" || text == "-h" {
            global.help = true;
        } else if text == "--version" || text == "-V" {
            global.version = true;
        } else if text.starts_with('-') {
            return Err(format!(
                "unknown option '{text}' before the command (a command's own options come after its name)"
            ));
        } else {
            command = Some(text.to_owned());
        }
    }
    Ok((global, command, rest))
}

/// The SDK configuration: the standard chain, with the global options over it.
pub async fn sdk_config(global: &Global) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(profile) = &global.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &global.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &global.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_str(args: &[&str]) -> Result<(Global, Option<String>, Vec<String>), String> {
        split(args.iter().map(OsString::from).collect()).map(|(g, c, r)| {
            (
                g,
                c,
                r.into_iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
            )
        })
    }

    #[test]
    fn global_options_come_before_or_after_the_command() {
        let (g, c, rest) = split_str(&[
            "--profile",
            "ops",
            "replay",
            "--bucket",
            "b",
            "--region=eu-west-1",
            "--endpoint-url",
            "http://127.0.0.1:5000",
            "--stream",
            "s",
        ])
        .unwrap();
        assert_eq!(c.as_deref(), Some("replay"));
        assert_eq!(rest, ["--bucket", "b", "--stream", "s"]);
        assert_eq!(
            g,
            Global {
                profile: Some("ops".into()),
                region: Some("eu-west-1".into()),
                endpoint_url: Some("http://127.0.0.1:5000".into()),
                ..Global::default()
            }
        );
    }

    #[test]
    fn after_a_double_dash_everything_is_the_commands() {
        let (g, _, rest) = split_str(&["report", "--", "--region", "x"]).unwrap();
        assert_eq!(g.region, None);
        assert_eq!(rest, ["--", "--region", "x"]);
    }

    #[test]
    fn mistakes_name_their_option() {
        assert!(split_str(&["--region"]).unwrap_err().contains("--region"));
        assert!(
            split_str(&["--endpoint-url", "localhost:5000", "report"])
                .unwrap_err()
                .contains("localhost:5000")
        );
        assert!(
            split_str(&["--table", "t", "report"])
                .unwrap_err()
                .contains("--table")
        );
        let (g, c, _) = split_str(&["--help"]).unwrap();
        assert!(g.help && c.is_none());
        let (_, c, rest) = split_str(&["report", "--help"]).unwrap();
        assert_eq!(
            (c.as_deref(), rest.as_slice()),
            (Some("report"), &["--help".to_owned()][..])
        );
    }
}
