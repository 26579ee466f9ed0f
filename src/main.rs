use std::process::ExitCode;

use clap::Parser;
use twofa_bridge::cli::Cli;

/// jemalloc leaves the untouched pages of a buffer out of memory: hyper
/// gives every connection 8 KiB read and write buffers, and a waiting long
/// poll touches only the start of one. See BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.init_logging();
    twofa_bridge::cli::run(cli).await
}
