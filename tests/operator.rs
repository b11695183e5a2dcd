//! The operator command's surface (`target/debug/ckb`, no AWS needed): one `--help` listing the four commands,
//! each command's own `--help`, `--version`, and command-line mistakes that exit 2 with a message naming them.
//! What each command does is tested where its subject is: `ckb report` in active_users.rs, `ckb replay` in
//! sync_processor.rs, `ckb user-snapshot-export` in user_export.rs, `ckb pinpoint-backfill` in pinpoint_backfill.rs.

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
