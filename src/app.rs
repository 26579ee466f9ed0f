//! Startup: connect to Redis, start the subscriber and the sweeper, bind the
//! listener. `Application::build` binds the port itself, so tests pass port 0
//! and ask `local_addr()`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::ApiKeys;
use crate::config::Config;
use crate::http::webhooks::WebhookLimits;
use crate::http::{self, AppState, Limits};
use crate::model::{ExpiresIn, SessionTtl};
use crate::pubsub::{Subscriber, SubscriberOptions};
use crate::redis_target::{Target, redacted_url};
use crate::store::{EvictionPolicy, Keys, Store, StoreError, StoreOptions};
use crate::webhooks::UrlPolicy;
use crate::webhooks::delivery::{self, DeliveryOptions};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reach Redis at {url}: {reason}")]
    Redis { url: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Everything that can fail at start fails here, with a message that
    /// names what to fix. `shutdown` stops the server and every task.
    pub async fn build(config: &Config, shutdown: CancellationToken) -> Result<Self, StartError> {
        let keys = load_keys(config)?;
        // Installed before anything can record.
        crate::metrics::handle();
        // For rediss:// URLs; fails only if a provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = config.redis_url();
        let unreachable = |reason: String| StartError::Redis {
            url: redacted_url(url),
            reason,
        };
        let target = Target::parse(url).map_err(|e| unreachable(e.to_string()))?;
        let options = StoreOptions {
            keys: Keys::new(config.prefix.clone()),
            retention: Duration::from_secs(config.retention),
            timeout: config.redis_timeout(),
            feed_retention: Duration::from_secs(config.feed_retention),
            feed_length: usize::try_from(config.feed_length).unwrap_or(usize::MAX),
            submissions_per_minute: config.submissions_per_minute,
            token_ttl: Duration::from_secs(config.token_ttl),
        };
        let wait = Duration::from_secs(config.redis_wait);
        let store = connect_patiently(&target, options, wait, &redacted_url(url))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let subscriber_options = SubscriberOptions {
            confirm_timeout: config.redis_timeout(),
            heartbeat: Duration::from_millis(config.heartbeat_ms),
            max_held: usize::try_from(config.max_waiters).unwrap_or(usize::MAX),
        };
        let (subscriber, subscriber_task) =
            Subscriber::start(target, subscriber_options, shutdown.clone())
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let default_expires_in = ExpiresIn::from_secs(config.default_expires_in)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let session_ttl = SessionTtl::from_secs(config.session_ttl)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let sweeper = tokio::spawn(sweep(
            store.clone(),
            Duration::from_millis(config.sweep_interval_ms),
            shutdown.clone(),
        ));
        let policy = UrlPolicy {
            allow_http: config.webhook_allow_http,
            allow_private: config.webhook_allow_private,
        };
        let eviction = tokio::spawn(watch_eviction_policy(
            store.clone(),
            subscriber.clone(),
            shutdown.clone(),
        ));
        let deliveries = tokio::spawn(delivery::run(
            store.clone(),
            DeliveryOptions {
                timeout: Duration::from_millis(config.webhook_timeout_ms),
                concurrency: usize::try_from(config.webhook_concurrency).unwrap_or(usize::MAX),
                policy,
                delay_divisor: crate::fault::webhook_delay_divisor(config),
            },
            shutdown.clone(),
        ));
        let cors = crate::http::cors::layer(config.cors_origins.as_deref(), keys.is_enabled())
            .map_err(StartError::Config)?;
        let state = AppState {
            cors,
            api_keys: Arc::new(keys),
            webhooks: WebhookLimits {
                policy,
                max: usize::try_from(config.max_webhooks).unwrap_or(usize::MAX),
                rotation_grace: Duration::from_secs(config.webhook_rotation_grace),
            },
            store,
            subscriber,
            limits: Limits {
                default_expires_in,
                max_wait: Duration::from_secs(config.max_wait),
                feed_heartbeat: Duration::from_millis(config.feed_heartbeat_ms),
                header_timeout: Duration::from_millis(config.header_timeout_ms),
                demo: !config.no_demo,
                session_ttl,
            },
            shutdown,
        };
        if !state.api_keys.is_enabled() {
            tracing::warn!(
                "AUTHENTICATION IS OFF: no API keys are configured, so anyone who can reach {} \
                 may post challenges and read tokens. Set TWOFA_API_KEYS or \
                 TWOFA_API_KEYS_FILE before exposing it.",
                config.listen
            );
        }
        Ok(Self {
            listener,
            state,
            background: vec![subscriber_task, sweeper, deliveries, eviction],
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared subscriber's in-process side, for tests and embedders.
    pub fn subscriber(&self) -> Subscriber {
        self.state.subscriber.clone()
    }

    /// Serves until shutdown, then waits for the background tasks to stop.
    pub async fn run(self) -> std::io::Result<()> {
        let shutdown = self.state.shutdown.clone();
        let served = http::serve(self.listener, self.state, shutdown).await;
        for task in self.background {
            if let Err(error) = task.await {
                tracing::error!(%error, "a background task failed");
            }
        }
        served
    }
}

/// Reads Redis's `maxmemory-policy` now and after every reconnection (a
/// Redis restarted, or failed over, may have another), and says loudly when
/// Redis may evict our keys.
async fn watch_eviction_policy(store: Store, subscriber: Subscriber, shutdown: CancellationToken) {
    let mut connection = subscriber.connection();
    let mut said_unknown = false;
    loop {
        match store.eviction_policy().await {
            Ok(EvictionPolicy::Safe) => crate::metrics::eviction_safe(true),
            Ok(EvictionPolicy::Evicting(policy)) => {
                crate::metrics::eviction_safe(false);
                tracing::error!(
                    policy,
                    "Redis's maxmemory-policy is {policy}: when Redis is full it may evict a \
                     waiting challenge or a token (every key here has a TTL), and a customer's \
                     code is then lost. Set `maxmemory-policy noeviction` (CONFIG SET, \
                     redis.conf, or your provider's parameter group); a full Redis then refuses \
                     writes, which the gateway answers with 503, and loses nothing"
                );
            }
            Ok(EvictionPolicy::Unknown(why)) if !said_unknown => {
                said_unknown = true;
                tracing::warn!(
                    %why,
                    "cannot read Redis's maxmemory-policy; make sure it is noeviction, or Redis \
                     may evict challenges and tokens when it is full"
                );
            }
            Ok(EvictionPolicy::Unknown(_)) => {}
            // Redis is away: read it again once the subscriber is back.
            Err(error) => tracing::debug!(%error, "could not read maxmemory-policy"),
        }
        let reconnected = async {
            let lost = connection.wait_for(|up| !*up).await.is_ok();
            lost && connection.wait_for(|up| *up).await.is_ok()
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            back = reconnected => if !back { return },
        }
    }
}

/// How often a gateway waiting for Redis at start says so.
const WAITING_LOG_EVERY: Duration = Duration::from_secs(5);

/// How long it pauses between two tries.
const WAITING_PAUSE: Duration = Duration::from_millis(250);

/// Connects to Redis, trying again for up to `wait` while it is not up yet:
/// in a compose file or a pod the two start together. Only then does the
/// HTTP port open, so a load balancer never sees a half-started gateway. An
/// error that waiting cannot cure (a wrong password, a Redis too old) fails
/// at once.
async fn connect_patiently(
    target: &Target,
    options: StoreOptions,
    wait: Duration,
    shown_url: &str,
) -> Result<Store, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut said: Option<tokio::time::Instant> = None;
    loop {
        let error = match Store::connect(target, options.clone()).await {
            Ok(store) => {
                if said.is_some() {
                    tracing::info!(url = shown_url, "Redis answers");
                }
                return Ok(store);
            }
            Err(error) => error,
        };
        let now = tokio::time::Instant::now();
        if !error.is_unavailable() || error.is_refused_login() || now >= deadline {
            return Err(error);
        }
        if said.is_none_or(|at| now - at >= WAITING_LOG_EVERY) {
            let left = (deadline - now).as_secs();
            tracing::warn!(url = shown_url, %error, "waiting for Redis; giving up in {left} s");
            said = Some(now);
        }
        tokio::time::sleep(WAITING_PAUSE.min(deadline - now)).await;
    }
}

/// The configured keys. Secure by default, as Redis's protected mode is:
/// without keys the gateway serves only on a loopback address.
fn load_keys(config: &Config) -> Result<ApiKeys, StartError> {
    let file = match &config.api_keys_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            StartError::Config(format!(
                "cannot read the API keys file {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    let list = config.api_keys.as_ref().map(|keys| keys.expose());
    let keys =
        ApiKeys::parse(list, file.as_deref()).map_err(|e| StartError::Config(e.to_string()))?;
    if keys.is_enabled() {
        return Ok(keys);
    }
    if !config.listen.ip().is_loopback() {
        return Err(StartError::Config(format!(
            "no API keys are configured, so the gateway serves only on a loopback address, \
             and {} is not one. Set TWOFA_API_KEYS=scraper:<key>,frontend:<key> (keys of \
             32 characters or more) or TWOFA_API_KEYS_FILE, or listen on 127.0.0.1",
            config.listen
        )));
    }
    Ok(keys)
}

/// Expires challenges past their deadline, even when nobody reads them, and
/// relays the outboxes that a dead gateway left. Every instance sweeps; the
/// scripts make that safe.
async fn sweep(store: Store, every: Duration, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let (expired, relayed) = futures_util::join!(store.expire_due(), store.relay_due());
        match expired.and_then(|expired| Ok((expired, relayed?))) {
            Ok((expired, relayed)) => {
                if relayed > 0 {
                    tracing::info!(relayed, "relayed outboxes that their gateways left");
                }
                if failing {
                    tracing::info!("the sweep works again");
                    failing = false;
                }
                if expired > 0 {
                    tracing::debug!(expired, "expired challenges past their deadline");
                }
            }
            // Logged once per outage, not every interval.
            Err(error) if !failing => {
                tracing::warn!(%error, "the sweep failed; retrying");
                failing = true;
            }
            Err(_) => {}
        }
    }
}
