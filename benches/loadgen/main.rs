//! The benchmark: `cargo bench --bench loadgen`.
//!
//! It starts its own redis-server and the real `twofa-bridge` binary, drives
//! them from many loopback connections, and prints Markdown tables. It never
//! fails on a threshold: it fails only when something does not work.
//!
//! Under `cargo test` (no `--bench` argument) it runs as a smoke test with
//! ten waiters. Options:
//!
//! - `--scenario wake|polling|throughput|memory`, repeatable: only these;
//! - `--quick`: the smoke sizes, even under `cargo bench`.

mod client;
mod load;
mod processes;
mod report;
mod scenarios;

use std::process::ExitCode;

use scenarios::{Bench, Sizes};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const SCENARIOS: [&str; 4] = ["wake", "polling", "throughput", "memory"];

fn main() -> ExitCode {
    let mut bench = false;
    let mut quick = false;
    let mut chosen = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--serve-bare" => return exit(processes::serve_bare()),
            "--bench" => bench = true,
            "--quick" => quick = true,
            "--scenario" => match args.next() {
                Some(name) if SCENARIOS.contains(&name.as_str()) => chosen.push(name),
                other => {
                    eprintln!("--scenario takes one of {SCENARIOS:?}, not {other:?}");
                    return ExitCode::from(2);
                }
            },
            // The test harness's own flags (`--nocapture`, say) mean nothing here.
            flag if flag.starts_with('-') => {}
            // `cargo test <filter>` passes its filter: run only if it names us.
            filter => {
                if !"loadgen".contains(filter) {
                    return ExitCode::SUCCESS;
                }
            }
        }
    }
    if chosen.is_empty() {
        chosen = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    let sizes = if bench && !quick {
        Sizes::full()
    } else {
        Sizes::smoke()
    };
    // Every waiter is a descriptor here and in the gateway, which inherits
    // the raised limit.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise the open-file limit: {error}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return exit(Err(error.into())),
    };
    exit(runtime.block_on(run(sizes, &chosen)))
}

async fn run(sizes: Sizes, chosen: &[String]) -> Result<()> {
    describe_machine();
    let mut bench = Bench::start(sizes).await?;
    for scenario in chosen {
        eprintln!("\n{scenario}…");
        match scenario.as_str() {
            "wake" => bench.wake_latency().await?,
            "polling" => bench.polling().await?,
            "throughput" => bench.throughput().await?,
            _ => bench.memory().await?,
        }
    }
    Ok(())
}

/// The header of the record: what ran, where and when.
fn describe_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let redis = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("## twofa-bridge load benchmark\n");
    println!("- machine: {cores} cores, {cpu}, Linux {}", kernel.trim());
    println!("- {redis}");
    println!("- arguments: {args:?}");
}

fn exit(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
