//! `TestApp`: the gateway in-process on port 0, on a Redis of its own, as
//! zero-to-production's `spawn_app` does it; and the waits for states that
//! no event announces.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use reqwest::header::HeaderMap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use twofa_bridge::app::Application;
use twofa_bridge::config::Config;
use twofa_bridge::pubsub::Subscriber;
use twofa_bridge::redis_server::RedisServer;

use super::{eventually, start_redis};

/// The API keys of a `keyed_app`, one per role.
pub mod keys {
    pub const SCRAPER: &str = "scraper-key-0123456789abcdef0123456789";
    pub const FRONTEND: &str = "frontend-key-0123456789abcdef012345678";
    pub const ADMIN: &str = "admin-key-0123456789abcdef0123456789ab";
}

/// A gateway on a Redis of its own that checks API keys: one for each role,
/// as `keys` holds them. The helpers' requests carry `authorized_as`, or no
/// key at all.
pub async fn keyed_app(authorized_as: Option<&str>) -> TestApp {
    keyed_app_with(authorized_as, |_| {}).await
}

/// The same, with the configuration tweaked.
pub async fn keyed_app_with(
    authorized_as: Option<&str>,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let keys = format!(
        "scraper:{},frontend:{},admin:{}",
        keys::SCRAPER,
        keys::FRONTEND,
        keys::ADMIN
    );
    let mut app = TestApp::spawn_with(start_redis(), |config| {
        config.api_keys = Some(keys.parse().expect("keys"));
        tweak(config);
    })
    .await;
    if let Some(key) = authorized_as {
        app.authorize(key);
    }
    app
}

/// A gateway serving on a loopback port, with an HTTP client pointed at it
/// and a connection of the test's own to its Redis. Stopped when dropped.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub redis: Arc<RedisServer>,
    pub conn: MultiplexedConnection,
    pub subscriber: Subscriber,
    shutdown: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// A gateway on a Redis of its own.
    pub async fn spawn() -> TestApp {
        Self::spawn_on(start_redis()).await
    }

    /// Another gateway on an existing Redis.
    pub async fn spawn_on(redis: Arc<RedisServer>) -> TestApp {
        Self::spawn_with(redis, |_| {}).await
    }

    pub async fn spawn_with(redis: Arc<RedisServer>, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::with_redis(redis.url());
        config.listen = "127.0.0.1:0".parse().expect("loopback address");
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let app = Application::build(&config, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("the gateway did not start: {e}\n{}", redis.log()));
        let addr = app.local_addr().expect("bound address");
        let subscriber = app.subscriber();
        let server = tokio::spawn(app.run());
        let client = redis::Client::open(redis.url()).expect("redis url");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("test connection to redis");
        TestApp {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            redis,
            conn,
            subscriber,
            shutdown,
            server: Some(server),
        }
    }

    /// Stops the gateway as SIGTERM would, and waits until it has.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server exits cleanly");
        }
    }

    /// From now on, every request of the helpers carries this API key.
    pub fn authorize(&mut self, key: &str) {
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {key}").parse().expect("header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        self.http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
    }

    /// Waits until `condition` holds, checking every few milliseconds: for
    /// states that no event announces, such as "the gateway has subscribed".
    pub async fn until<F, Fut>(&self, what: &str, condition: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        eventually(what, condition).await;
    }

    /// Until `n` long polls have subscribed, read once, and wait for a hint.
    pub async fn until_waiting(&self, n: usize) {
        self.until(&format!("{n} long polls are waiting"), || async {
            self.subscriber.waiting() == n
        })
        .await;
    }

    /// Until every waiter has left, and released its subscription.
    pub async fn until_no_waiters(&self) {
        self.until("every subscription is released", || async {
            self.subscriber.channels() == 0
        })
        .await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
