//! Configuration: every setting is a flag whose default comes from an
//! environment variable, then from the documented default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::Secret;
use crate::model::ExpiresIn;
use crate::store::Prefix;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where Redis is looked for when `REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Redis to keep state in, as redis://[user:password@]host:port[/db]
    /// (rediss:// for TLS), or a Redis Cluster as
    /// redis+cluster://[user:password@]host:port,host:port,... naming any of
    /// its nodes. When unset and nothing answers at redis://127.0.0.1:6379, a private
    /// development redis-server is started (its data is not kept).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// API keys as comma-separated role:key pairs, such as
    /// scraper:<key>,frontend:<key>; roles are scraper, frontend and admin,
    /// and keys have at least 32 characters. With no keys at all, the
    /// gateway only listens on a loopback address.
    #[arg(long, env = "TWOFA_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<Secret>,

    /// A file of API keys, one role:key a line; # starts a comment.
    #[arg(long, env = "TWOFA_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Browser origins allowed to call the gateway, comma-separated and
    /// exact (`https://app.tesfront.example`); none by default. `*` only
    /// with API keys off.
    #[arg(long, env = "TWOFA_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Log lines as `text`, for people, or `json`, one object a line, for
    /// log shippers. RUST_LOG filters them either way.
    #[arg(long, env = "TWOFA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address and port to listen on.
    #[arg(long, env = "TWOFA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Do not serve the demo front end at / (it is served by default).
    #[arg(
        long,
        env = "TWOFA_NO_DEMO",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_demo: bool,

    /// Prefix of every Redis key and channel.
    #[arg(long, env = "TWOFA_PREFIX", default_value = "2fa")]
    pub prefix: Prefix,

    /// Seconds a challenge waits for its token when it does not say (1-3600).
    #[arg(long, env = "TWOFA_DEFAULT_EXPIRES_IN", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=ExpiresIn::MAX_SECS))]
    pub default_expires_in: u64,

    /// Longest long poll a scraper may ask for, in seconds (1-3600).
    #[arg(long, env = "TWOFA_MAX_WAIT", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_wait: u64,

    /// Seconds an access's keys are kept after its challenge's deadline.
    #[arg(long, env = "TWOFA_RETENTION", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub retention: u64,

    /// Seconds a token may wait in `token_received` for its scraper's report
    /// (or a new post) before the challenge expires and the token is erased.
    #[arg(long, env = "TWOFA_TOKEN_TTL", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub token_ttl: u64,

    /// Seconds the gateway waits at start for a Redis that does not answer
    /// yet (one starting beside it), before it gives up; 0 gives up at once.
    #[arg(long, env = "TWOFA_REDIS_WAIT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub redis_wait: u64,

    /// Seconds a customer session lives when its minting does not say.
    #[arg(long, env = "TWOFA_SESSION_TTL", default_value_t = 900,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub session_ttl: u64,

    /// Seconds a customer's live feed keeps its events, for front ends that
    /// reconnect with Last-Event-ID.
    #[arg(long, env = "TWOFA_FEED_RETENTION", default_value_t = 3_600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub feed_retention: u64,

    /// How many events a customer's live feed keeps at most.
    #[arg(long, env = "TWOFA_FEED_LENGTH", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
    pub feed_length: u64,

    /// Milliseconds between two heartbeat comments on an idle live feed.
    #[arg(long, env = "TWOFA_FEED_HEARTBEAT_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(10..=15_000))]
    pub feed_heartbeat_ms: u64,

    /// Milliseconds between two looks for challenges past their deadline.
    #[arg(long, env = "TWOFA_SWEEP_INTERVAL_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub sweep_interval_ms: u64,

    /// Milliseconds between two pings of the idle pub/sub connection, which
    /// find a half-open connection and replace it.
    #[arg(long, env = "TWOFA_HEARTBEAT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(50..=300_000))]
    pub heartbeat_ms: u64,

    /// Most long polls and live feeds one gateway holds at once; past it,
    /// new ones get 503 with Retry-After.
    #[arg(long, env = "TWOFA_MAX_WAITERS", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_waiters: u64,

    /// Most token submissions one access takes in a minute; past it, 429.
    #[arg(long, env = "TWOFA_SUBMISSIONS_PER_MINUTE", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub submissions_per_minute: u64,

    /// Milliseconds a client may take to send a request's headers; a slower
    /// one is disconnected.
    #[arg(long, env = "TWOFA_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=300_000))]
    pub header_timeout_ms: u64,

    /// Longest any Redis call may take before the request gets a 503, in ms.
    #[arg(long, env = "TWOFA_REDIS_TIMEOUT_MS", default_value_t = 1_500,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub redis_timeout_ms: u64,

    /// Let webhook endpoints use plain `http` URLs (for development).
    #[arg(long, env = "TWOFA_WEBHOOK_ALLOW_HTTP", default_value_t = false,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub webhook_allow_http: bool,

    /// Let webhook endpoints point at loopback, private, link-local and
    /// other internal addresses (for development and tests).
    #[arg(long, env = "TWOFA_WEBHOOK_ALLOW_PRIVATE", default_value_t = false,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub webhook_allow_private: bool,

    /// Most webhook endpoints registered at once.
    #[arg(long, env = "TWOFA_MAX_WEBHOOKS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub max_webhooks: u64,

    /// Milliseconds a receiver has to answer a delivery with a 2xx.
    #[arg(long, env = "TWOFA_WEBHOOK_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub webhook_timeout_ms: u64,

    /// Most deliveries in flight per endpoint on one gateway.
    #[arg(long, env = "TWOFA_WEBHOOK_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub webhook_concurrency: u64,

    /// Test-only (the `fault-points` feature): divides the webhook retry
    /// delays, so a test of a receiver that fails or is down does not wait
    /// the real schedule out.
    #[cfg(feature = "fault-points")]
    #[arg(long, env = "TWOFA_TEST_WEBHOOK_DELAY_DIVISOR", default_value_t = 1, hide = true,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub test_webhook_delay_divisor: u32,

    /// Seconds a rotated-out webhook secret keeps signing beside the new one.
    #[arg(long, env = "TWOFA_WEBHOOK_ROTATION_GRACE", default_value_t = 3_600,
          value_parser = clap::value_parser!(u64).range(0..=604_800))]
    pub webhook_rotation_grace: u64,
}

impl Config {
    /// The documented defaults, whatever the environment says, with this
    /// Redis: what tests and embedders start from.
    pub fn with_redis(url: impl Into<String>) -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        let command = <Defaults as clap::CommandFactory>::command()
            .mut_args(|arg| arg.env(clap::builder::Resettable::Reset));
        let matches = command.get_matches_from(["twofa-bridge"]);
        let defaults = <Defaults as clap::FromArgMatches>::from_arg_matches(&matches)
            .unwrap_or_else(|e| e.exit());
        Config {
            redis_url: Some(url.into()),
            ..defaults.config
        }
    }

    pub fn redis_url(&self) -> &str {
        self.redis_url.as_deref().unwrap_or(DEFAULT_REDIS_URL)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}
