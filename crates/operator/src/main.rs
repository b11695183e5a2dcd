//! `ckb`: the operator command (see the `operator` library).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    operator::main(std::env::args_os().skip(1).collect()).await
}
