use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not for log shippers.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    twofa_bridge::cli::run(twofa_bridge::cli::Cli::parse()).await
}
