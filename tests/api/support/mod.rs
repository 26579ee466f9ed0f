//! A real redis-server per test and the gateway in-process on port 0, with
//! helpers named after what scrapers, TesBack and operators do. Every helper
//! the test files share lives here, once:
//!
//! - `redis_servers`: a Redis of its own per test, and new connections to it.
//! - `app`: `TestApp`, the gateway in-process, with or without API keys:
//!   started, stopped, and waited on.
//! - `http`: one HTTP answer, and the requests of the scraper and of TesBack.
//! - `feed`: the customer's live feed, read event by event.
//! - `operator`: Redis as redis-cli shows it: hashes, keys, streams, trails.
//! - `binary`: the real `twofa-bridge` process, for starts, signals and logs.
//! - `cluster`: a real Redis Cluster, and the faults the cluster tests cause.
//! - `scrapers`: scrapers through the crate's own typed `Client`.
//! - `receiver`: a webhook receiver that verifies every signature.
//! - `rng`: random choices a failing run can replay from its seed.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

mod app;
mod binary;
mod cluster;
mod feed;
mod http;
mod operator;
mod receiver;
mod redis_servers;
mod rng;
mod scrapers;

pub use app::{TestApp, keyed_app, keyed_app_with, keys};
pub use binary::{Binary, refused_start};
pub use cluster::Cluster;
pub use feed::FeedClient;
pub use http::Reply;
pub use operator::{TrailStep, field, metrics_of, step, stored_hashes, trails};
pub use receiver::{Receiver, hanging_receiver};
pub use redis_servers::{redis_connection, start_redis, start_redis_with};
pub use rng::Rng;
pub use scrapers::{
    WAITING_SCRAPERS, assert_tokens_delivered, code_challenge, spawn_waiting_scrapers, token_for,
};

/// Long enough for any honest wait in these tests, short enough that a
/// broken one fails instead of hanging the suite.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long a live feed may outlive the session it was opened with, as the
/// issue allows: its revocation, or its end.
pub const SESSION_FEED_LIMIT: Duration = Duration::from_secs(5);

/// The result of a background task, which must come within `PATIENCE`.
pub async fn settled<T>(task: JoinHandle<T>) -> T {
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("settled in time")
        .expect("the task did not panic")
}

/// Waits until `condition` holds, checking every few milliseconds: for
/// states that no event announces, in tests with or without a `TestApp`.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A loopback port nobody listens on now (bound, then let go): for a
/// server that must come back on the same address after a restart, or an
/// address where nothing answers.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// README's Python code between `<!-- name -->` and `<!-- /name -->`, or
/// `None` (and a line saying the test is skipped) when python3 cannot import
/// `module`: the test that runs it for real needs it, and `scripts/test`
/// installs it where pip can.
pub fn readme_python(name: &str, module: &str) -> Option<String> {
    let importable = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        eprintln!("skipped: python3 cannot import {module} (scripts/test installs it)");
        return None;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let snippet = readme
        .split(&format!("<!-- {name} -->"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("<!-- /{name} -->")).next())
        .and_then(|block| block.split("```python").nth(1))
        .and_then(|code| code.split("```").next())
        .unwrap_or_else(|| panic!("README's {name} snippet"));
    Some(snippet.to_owned())
}
