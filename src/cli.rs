//! The `twofa-bridge` command line. With no subcommand it serves.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::app::Application;
use crate::commands;
use crate::config::{Config, DEFAULT_REDIS_URL, LogFormat};
use crate::redis_server::{RedisServer, RedisServerError};

#[derive(Debug, Parser)]
#[command(
    name = "twofa-bridge",
    version,
    about = "Relays bank 2FA challenges from scrapers to customers, and their tokens back, through Redis.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP gateway (the default when no subcommand is given).
    #[command(
        after_help = "Example: REDIS_URL=redis://127.0.0.1:6379 twofa-bridge serve --listen 127.0.0.1:8080"
    )]
    Serve(Config),
    /// Post a bank's question for an access, and print the access (scraper).
    Challenge(commands::ChallengeArgs),
    /// Wait for an access's token and print it alone (scraper).
    Wait(commands::WaitArgs),
    /// Submit the customer's token for an access (front end).
    Submit(commands::SubmitArgs),
    /// Report what the bank said of the token: ok or rejected (scraper).
    Report(commands::ReportArgs),
    /// List the challenges waiting for a customer (front end).
    List(commands::ListArgs),
    /// Cancel an access's challenge.
    Cancel(commands::CancelArgs),
    /// Mint a customer session for a browser, and print it with the demo
    /// page's URL carrying it (front end).
    Session(commands::SessionArgs),
    /// Print an access's Redis keys, read directly, for operators.
    Inspect(commands::InspectArgs),
    /// A simulated scraper for the demo page: post, wait, print the token,
    /// report.
    DemoScraper(commands::DemoScraperArgs),
    /// Register, list, remove and rotate webhook endpoints, and see their
    /// deliveries (admin).
    Webhook(commands::WebhookArgs),
    /// A webhook receiver on loopback that prints each verified message.
    DemoReceiver(commands::DemoReceiverArgs),
    /// Print the OpenAPI 3.1 description the gateway serves at /openapi.json.
    #[command(after_help = "Example: twofa-bridge openapi > docs/openapi.json")]
    Openapi,
}

impl Cli {
    fn config(&self) -> &Config {
        match &self.command {
            Some(Command::Serve(config)) => config,
            _ => &self.serve,
        }
    }

    /// Logs go to stderr, filtered by RUST_LOG (default `info` for the
    /// gateway, `warn` for the client commands), as text or as one JSON
    /// object a line. Colour codes only at a terminal.
    pub fn init_logging(&self) {
        let default = match self.command {
            None | Some(Command::Serve(_)) => "info",
            Some(_) => "warn",
        };
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.config().log_format {
            LogFormat::Json => logs.json().init(),
            LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        }
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Serve(config)) => serve(config).await,
        None => serve(cli.serve).await,
        Some(Command::Challenge(args)) => commands::challenge(args).await,
        Some(Command::Wait(args)) => commands::wait(args).await,
        Some(Command::Submit(args)) => commands::submit(args).await,
        Some(Command::Report(args)) => commands::report(args).await,
        Some(Command::List(args)) => commands::list(args).await,
        Some(Command::Cancel(args)) => commands::cancel(args).await,
        Some(Command::Session(args)) => commands::session(args).await,
        Some(Command::Inspect(args)) => commands::inspect(args).await,
        Some(Command::DemoScraper(args)) => commands::demo_scraper(args).await,
        Some(Command::Webhook(args)) => commands::webhook(args).await,
        Some(Command::DemoReceiver(args)) => commands::demo_receiver(args).await,
        Some(Command::Openapi) => commands::openapi(),
    }
}

async fn serve(mut config: Config) -> ExitCode {
    // Kept alive until the gateway stops; dropping it stops the process.
    let _dev_redis = match redis_for_newcomers(&mut config).await {
        Ok(server) => server,
        Err(line) => {
            eprintln!("error: {line}");
            return ExitCode::FAILURE;
        }
    };
    // Every waiting scraper and open feed holds a descriptor: take all the
    // system allows, as the soft limit (often 1,024) would cap waiters early.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    let shutdown = CancellationToken::new();
    let app = match Application::build(&config, shutdown.clone()).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The gateway keeps only the keys' digests from here on.
    drop(config.api_keys.take());
    if let Ok(addr) = app.local_addr() {
        tracing::info!(%addr, "twofa-bridge is listening");
    }
    tokio::spawn(cancel_on_signal(shutdown));
    match app.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: the server failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// With no `REDIS_URL` and nothing at the default address, starts a private
/// redis-server so a first `cargo run` just works, or says how to get one.
async fn redis_for_newcomers(config: &mut Config) -> Result<Option<RedisServer>, String> {
    if config.redis_url.is_some() || answers_ping(DEFAULT_REDIS_URL).await {
        return Ok(None);
    }
    match tokio::task::spawn_blocking(RedisServer::start).await {
        Ok(Ok(server)) => {
            tracing::warn!(
                url = %server.url(),
                "no Redis at {DEFAULT_REDIS_URL} and REDIS_URL is not set: started a private \
                 DEVELOPMENT redis-server. Its data is NOT kept and it stops with the gateway. \
                 Set REDIS_URL for real use."
            );
            config.redis_url = Some(server.url());
            Ok(Some(server))
        }
        Ok(Err(RedisServerError::NotInstalled)) => Err(format!(
            "no Redis answers at {DEFAULT_REDIS_URL} and redis-server is not installed. \
             Install it with `sudo apt-get install -y redis-server`, \
             or start one with `docker compose up -d redis`, or set REDIS_URL."
        )),
        Ok(Err(error)) => Err(format!(
            "no Redis answers at {DEFAULT_REDIS_URL}, and a private one failed: {error}"
        )),
        Err(error) => Err(format!("could not start a private redis-server: {error}")),
    }
}

async fn answers_ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(1), ping).await,
        Ok(Ok(()))
    )
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: answering waiters and finishing requests");
    shutdown.cancel();
}
