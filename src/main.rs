use std::process::ExitCode;

use clap::Parser;
use twofa_bridge::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.init_logging();
    twofa_bridge::cli::run(cli).await
}
