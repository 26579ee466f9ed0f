//! Everything that speaks Redis, except the pub/sub subscriber (`pubsub`).
//!
//! Each lifecycle step is one Lua script on one access's keys, which share a
//! hash tag, so a step is atomic and stays in one cluster slot. The rooms:
//!
//! - here: [`Store`], the bounded Redis call, `Store::step` that runs an
//!   access script and passes on what it did, and [`StoreError`];
//! - `script` and `steps`: the typed protocol with the Lua scripts, one
//!   wrapper per script, parsed in one place;
//! - `lifecycle`: post, show, submit, report, cancel and the reads, with their
//!   retries when overtaken and the answer-rule check;
//! - `indexes`: a customer's pending index and the expiring index;
//! - `relay`: the outbox, relayed from each step to the customer's feed and
//!   the webhook queues at least once, inline or by any gateway's sweep;
//! - `webhooks`: webhook endpoints and their queues; `sessions`: customer
//!   sessions, known by their digests;
//! - `eviction`: whether Redis may evict our keys;
//! - `sweep`: expiring what is due; `trail`: the audit trail read back;
//! - `feed`: the customer's live feed read back; `keys`: every key name;
//!   `hash`: an access hash read back into the domain types.

mod eviction;
mod feed;
mod function;
mod hash;
mod indexes;
pub mod keys;
mod lifecycle;
mod relay;
mod script;
mod sessions;
mod steps;
mod sweep;
mod trail;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::RetryMethod;

use crate::metrics;
use crate::model::{Access, AccessId, Token, Transition, UnixMillis};
use crate::redis_target::{Link, Target};
pub use eviction::EvictionPolicy;
pub use keys::{Keys, Prefix};
pub use script::{CLASSIC, FeedEntry, FeedEvent, FeedRead, SHARDED, Scripts};
pub use sessions::Session;
use steps::{AccessStep, Parsed};

/// How many waiting accesses one list call returns at most. A person has a
/// handful; the bound keeps a runaway scraper from making one call huge.
pub const LIST_LIMIT: isize = 200;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("access {0} has no challenge")]
    NotFound(AccessId),
    /// The lifecycle forbids the step from the access's current status.
    #[error("access {} is {}", .0.access, .0.status)]
    Refused(Box<Access>),
    #[error("access {} has moved on to attempt {}", .0.access, .0.attempt)]
    AttemptMismatch(Box<Access>),
    #[error("other steps on access {0} kept overtaking this one; try again")]
    Contended(AccessId),
    /// Too many token submissions for this access in the last minute; the
    /// next may come after this long.
    #[error("too many token submissions for this access; retry in {0:?}")]
    Throttled(Duration),
    /// The token breaks the challenge's rule; the message says how, and
    /// never quotes the token.
    #[error("{0}")]
    InvalidAnswer(String),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// What Redis holds, or a script replied, is not what the gateway
    /// writes: a hand-edited key, or a script and its parser out of step.
    #[error("{subject} holds malformed data: {problem}")]
    Malformed { subject: String, problem: String },
}

impl StoreError {
    /// An access's hash, trail or script reply is not what the gateway
    /// writes.
    pub fn malformed(access: &AccessId, problem: impl Into<String>) -> StoreError {
        StoreError::malformed_in(format!("access {access}"), problem)
    }

    /// The same for what is not one access's: an index, a customer's feed.
    pub fn malformed_in(subject: impl Into<String>, problem: impl Into<String>) -> StoreError {
        StoreError::Malformed {
            subject: subject.into(),
            problem: problem.into(),
        }
    }

    fn is_timeout(&self) -> bool {
        match self {
            StoreError::Timeout(_) => true,
            StoreError::Redis(error) => error.is_timeout(),
            _ => false,
        }
    }

    /// Redis refused a write because it holds `maxmemory` already (`OOM`):
    /// the command, or the whole function, ran not at all.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, StoreError::Redis(e) if e.code() == Some("OOM"))
    }

    /// Redis refused the gateway's credentials: waiting will not cure it.
    pub fn is_refused_login(&self) -> bool {
        matches!(self, StoreError::Redis(e)
            if e.kind() == redis::ErrorKind::AuthenticationFailed
                || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM")))
    }

    /// What kind of failure it is, for `twofa_redis_errors_total{kind}`.
    fn kind(&self) -> &'static str {
        match self {
            _ if self.is_out_of_memory() => "oom",
            _ if self.is_timeout() => "timeout",
            StoreError::Redis(e) if e.code() == Some("LOADING") => "loading",
            StoreError::Redis(e)
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() =>
            {
                "connection"
            }
            _ => "other",
        }
    }

    /// Redis is down, unreachable, too slow or full: worth a retry later, as
    /// opposed to a bug or a refused step.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Timeout(_) | StoreError::Contended(_) => true,
            _ if self.is_out_of_memory() => true,
            StoreError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error()
                    // LOADING (a restarted Redis reading its data back),
                    // CLUSTERDOWN, TRYAGAIN, MASTERDOWN, and READONLY from a
                    // primary just demoted: all pass once Redis settles.
                    || matches!(
                        e.retry_method(),
                        RetryMethod::WaitAndRetry | RetryMethod::RefreshSlotsAndRetry
                    )
            }
            _ => false,
        }
    }
}

/// What a waiting scraper needs to know, read in one step.
#[derive(Debug)]
pub struct TokenView {
    pub status: crate::model::Status,
    pub attempt: u32,
    pub expires_at: UnixMillis,
    /// When the status last changed: for a token, when it was stored.
    pub updated_at: UnixMillis,
    /// Present exactly when the status is `token_received`.
    pub token: Option<Token>,
}

/// How the store talks to Redis; all of it is operator configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub keys: Keys,
    /// How long a hash outlives its challenge's deadline.
    pub retention: Duration,
    /// The longest any single Redis call may take before the caller gets an
    /// error (and a 503), rather than a stalled request.
    pub timeout: Duration,
    /// How long a customer's live feed keeps its entries, for clients that
    /// reconnect with `Last-Event-ID`.
    pub feed_retention: Duration,
    /// How many entries a customer's live feed keeps at most.
    pub feed_length: usize,
    /// How many token submissions an access takes a minute.
    pub submissions_per_minute: u64,
    /// How long a token waits in `token_received` before its challenge
    /// expires and the token is erased.
    pub token_ttl: Duration,
}

impl StoreOptions {
    /// How long a post may take between its first index write and its hash
    /// write: three calls, each bounded by the timeout, and a margin. An
    /// index entry younger than this whose hash does not match it yet may
    /// belong to a post in flight, so it is left alone.
    fn in_flight_grace(&self) -> Duration {
        (self.timeout * 4).max(Duration::from_secs(10))
    }
}

#[derive(Clone)]
pub struct Store {
    link: Link,
    /// The relay index's keys, and which of them failed lately.
    buckets: Arc<relay::Buckets>,
    /// The webhook endpoints the relay queues messages for.
    subscriptions: Arc<webhooks::Subscriptions>,
    /// Woken when this gateway queued a webhook message, so its delivery
    /// worker starts at once.
    deliveries_due: Arc<tokio::sync::Notify>,
    /// Classic pub/sub on one Redis, sharded on a cluster.
    scripts: &'static Scripts,
    options: StoreOptions,
}

/// What an access step did: its named outcome, and the outbox it relayed.
/// Callers take the outcome through `Stepped::observed`, so the metrics
/// count every step's own moves.
struct Stepped<O> {
    outcome: O,
    transition: Option<Transition>,
    /// Whether the feed and every webhook queue have the outbox: if not,
    /// its mark (or the expiring entry standing in for one) must stay for
    /// the sweep.
    relayed: bool,
}

impl<O> Stepped<O> {
    fn observed(self) -> O {
        if let Some(transition) = &self.transition {
            metrics::transition(transition);
        }
        self.outcome
    }
}

impl Store {
    /// Connects and checks that Redis answers, so a wrong URL fails at start.
    pub async fn connect(target: &Target, options: StoreOptions) -> Result<Self, StoreError> {
        let connect = Link::open(target, options.timeout);
        let link = match tokio::time::timeout(options.timeout, connect).await {
            Ok(link) => link?,
            Err(_) => return Err(StoreError::Timeout(options.timeout)),
        };
        let scripts = if target.is_cluster() {
            &*SHARDED
        } else {
            &*CLASSIC
        };
        let store = Self {
            link,
            buckets: Arc::new(relay::Buckets::new(target.is_cluster())),
            subscriptions: Arc::default(),
            deliveries_due: Arc::default(),
            scripts,
            options,
        };
        store.load_scripts().await?;
        Ok(store)
    }

    pub fn keys(&self) -> &Keys {
        &self.options.keys
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.link.get();
        self.bounded(redis::cmd("PING").query_async::<()>(&mut conn))
            .await
    }

    /// Loads the scripts' library, which also proves Redis answers. After
    /// a Redis restart loses it, the first call that misses it loads it again.
    async fn load_scripts(&self) -> Result<(), StoreError> {
        let mut conn = self.link.get();
        let library = self.scripts.any();
        self.bounded(library.load(&mut conn)).await?;
        tracing::debug!(
            library = library.library_name(),
            "loaded the scripts' library"
        );
        Ok(())
    }

    /// Bounds a Redis call by the configured timeout. The redis crate has its
    /// own response timeout, but a call made while the connection manager
    /// reconnects waits for the reconnection, which this also bounds. A call
    /// that times out has the connection replaced, in case it is half-open.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.options.timeout, call).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Timeout(self.options.timeout)),
        };
        if let Err(error) = &result {
            metrics::redis_error(error.kind());
            if error.is_timeout() {
                self.link.replace();
            }
            if error.is_out_of_memory() {
                warn_out_of_memory();
            }
        }
        result
    }

    /// Runs one script call, bounded.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &function::Call<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.link.get();
        self.bounded(invocation.invoke_async(&mut conn)).await
    }

    /// Runs one access script, then relays its outbox and tidies up after
    /// it, all before the outcome is named, as the step has happened
    /// whatever its reply. A step that records leaves a relay mark (on a
    /// cluster the gateway writes it first), so that if this gateway dies
    /// before the relay, another one's sweep relays it (see `relay`).
    async fn step<S: AccessStep>(
        &self,
        access: &AccessId,
        step: S,
    ) -> Result<Stepped<S::Outcome>, StoreError> {
        let names = self.keys().access(access);
        let mut invocation = S::script(self.scripts).key(&names.hash);
        invocation
            .key(&names.wake)
            .key(&names.events)
            .key(&names.submitted)
            .arg(&names.changed);
        // On a single Redis the step writes its own relay mark.
        let relay_index = self.marks_in_step().then(|| self.keys().relay(0, 1));
        if let Some(index) = &relay_index {
            invocation.key(index);
        }
        step.args(&mut invocation);
        let relays_all = step.relays_all();
        // On a cluster the gateway writes it first.
        let mark = if S::MARKS && relay_index.is_none() {
            Some(self.mark_relay(access).await?)
        } else {
            None
        };
        let reply = self.run(&invocation).await?;
        crate::fault::after_commit(S::NAME).await;
        let Parsed {
            left_waiting,
            outbox,
            own,
            relays,
            reply,
        } = Parsed::from_reply(access, reply)?;
        let after = reply.access();
        let transition = after.and_then(|after| Transition::new(after, outbox, own));
        let relay_now = own > 0 || relays_all;
        let relayed = match &transition {
            Some(transition) if relay_now => self.relay(transition, left_waiting).await,
            _ => true,
        };
        if relayed && relay_now {
            let left_waiting = after.filter(|_| left_waiting);
            let mark = match relay_index {
                Some(index) => relay::Mark::of_relays(index, access, &relays),
                None => mark,
            };
            self.settle(&names.hash, &relays, mark, left_waiting).await;
        }
        let outcome =
            S::outcome(reply).map_err(|problem| StoreError::malformed(access, problem))?;
        Ok(Stepped {
            outcome,
            transition,
            relayed,
        })
    }
}

/// The results of a batch of independent steps, without their failures,
/// which are logged: one unreadable entry (a hand-edited hash, a Redis error
/// on one access) must not sink the others. Only when every step failed is
/// the batch a failure.
fn all_but_failures<T>(
    results: Vec<Result<T, StoreError>>,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    let total = results.len();
    let mut done = Vec::with_capacity(total);
    let mut first_error = None;
    for result in results {
        match result {
            Ok(value) => done.push(value),
            Err(error) => {
                tracing::warn!(%error, "{what}");
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) if done.is_empty() => Err(error),
        _ => Ok(done),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// When the last out-of-memory warning was logged, in Unix ms.
static OOM_WARNED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// At most one warning per 10 s, however many requests Redis refuses.
const OOM_WARNING_EVERY: Duration = Duration::from_secs(10);

fn warn_out_of_memory() {
    use std::sync::atomic::Ordering;
    let now = UnixMillis::now().0;
    let last = OOM_WARNED.load(Ordering::Relaxed);
    let due = now.saturating_sub(last) >= millis(OOM_WARNING_EVERY);
    if due
        && OOM_WARNED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "Redis is out of memory: it holds its `maxmemory` and refuses writes, so posts, \
             submissions and reports get 503 until memory is freed. Raise `maxmemory`, or \
             shorten TWOFA_RETENTION and TWOFA_FEED_RETENTION; reads still work"
        );
    }
}
