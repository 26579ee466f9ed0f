//! Everything that speaks Redis, except the pub/sub subscriber (`wait`).
//!
//! Each lifecycle step is one Lua script on one access's keys, which share a
//! hash tag, so a step is atomic and stays in one cluster slot. The two
//! indexes live in other slots and are kept by separate calls, ordered so a
//! crash can leave a stale entry but never a missing one:
//!
//! - `2fa:customer:{<customer>}:pending`, the accesses waiting for a
//!   customer, scored by `started_at`, read by the list route;
//! - `2fa:expiring`, one `<access>|<started_at>` member per posted challenge,
//!   scored by its deadline, read by the sweeper.
//!
//! Entries are added before the hash write and removed after it leaves
//! waiting. A pending entry is only ever removed as the exact (member,
//! score) pair the remover saw, and each post gives its entry a new score; an
//! expiring member names its own challenge, so nothing else can remove it.
//! Readers re-check every hash, so a stale entry costs one read and is then
//! dropped, unless it may belong to a post between its two writes. A post
//! that a newer one overtook, or that took longer than the grace readers
//! allow it, writes nothing and starts over: an access's `started_at` only
//! ever grows, and an entry older than its hash's is stale for sure.

mod feed;
mod hash;
pub mod keys;
mod scripts;

use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use redis::{AsyncCommands, RetryMethod, Script};

use redis::streams::StreamRangeReply;

use crate::metrics;
use crate::model::{
    Access, AccessId, Actor, AnswerRule, CustomerId, Event, ImageUri, Instructions, NewChallenge,
    Outcome, Reason, Status, Token, UnixMillis, Validation,
};
use crate::redis_target::{Link, Target};
pub use feed::{FeedEntry, FeedEvent, FeedRead};
use hash::Fields;
pub use keys::{Keys, Prefix};
use scripts::Scripts;

/// How many waiting accesses one list call returns at most. A person has a
/// handful; the bound keeps a runaway scraper from making one call huge.
pub const LIST_LIMIT: isize = 200;

/// How many times a step overtaken by another step on the same access (a
/// newer post) starts over before it gives up with a 503.
const POST_ATTEMPTS: usize = 3;

/// The window of the rate limit on token submissions.
const SUBMISSION_WINDOW: Duration = Duration::from_secs(60);

/// How long the sweep leaves an entry whose post may still be writing before
/// it looks again.
const IN_FLIGHT_RECHECK_MS: u64 = 1_000;

/// How many due challenges one sweep takes before it looks again.
const SWEEP_BATCH: usize = 500;

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
    #[error("the hash of access {access} is malformed: {problem}")]
    Malformed { access: String, problem: String },
}

impl StoreError {
    fn is_timeout(&self) -> bool {
        match self {
            StoreError::Timeout(_) => true,
            StoreError::Redis(error) => error.is_timeout(),
            _ => false,
        }
    }

    /// Redis is down, unreachable or too slow: worth a retry later, as
    /// opposed to a bug or a refused step.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Timeout(_) | StoreError::Contended(_) => true,
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
    pub status: Status,
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

/// The reply of an access script: outcome, whether the access left waiting,
/// and the hash after the step.
struct Step {
    outcome: String,
    left_waiting: bool,
    access: Option<Access>,
    /// Only the scraper's read asks for it.
    token: Option<String>,
    /// Milliseconds until a throttled submission may come.
    retry_after: Option<String>,
}

#[derive(Clone)]
pub struct Store {
    link: Link,
    /// Classic pub/sub on one Redis, sharded on a cluster.
    scripts: &'static Scripts,
    options: StoreOptions,
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
            &scripts::SHARDED
        } else {
            &scripts::CLASSIC
        };
        let store = Self {
            link,
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

    /// Loads every script, which also proves Redis answers. After a Redis
    /// restart empties its script cache, each call reloads its own script.
    async fn load_scripts(&self) -> Result<(), StoreError> {
        let mut conn = self.link.get();
        for script in self.scripts.all() {
            self.bounded(script.load_async(&mut conn)).await?;
        }
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
            metrics::redis_error();
            if error.is_timeout() {
                self.link.replace();
            }
        }
        result
    }

    /// Starts attempt n+1 of a challenge, in status `need`.
    pub async fn post_challenge(
        &self,
        access: &AccessId,
        challenge: &NewChallenge,
    ) -> Result<Access, StoreError> {
        // Another post of the same access can overtake this one between its
        // index writes and its hash write; then it starts over, as if it had
        // come second.
        let mut after = 0;
        for _ in 0..POST_ATTEMPTS {
            let step = self.try_post_challenge(access, challenge, after).await?;
            if step.outcome != "superseded" {
                return step.into_result(access);
            }
            after = step.access.map_or(0, |newer| newer.started_at.0 + 1);
        }
        Err(StoreError::Contended(access.clone()))
    }

    /// One try, started no earlier than `after` (Unix ms).
    async fn try_post_challenge(
        &self,
        access: &AccessId,
        challenge: &NewChallenge,
        after: u64,
    ) -> Result<Step, StoreError> {
        let expires_in = challenge.expires_in.as_duration();
        let keep = expires_in + self.options.retention;
        let pending = self.keys().pending(&challenge.customer);
        let mut conn = self.link.get();
        let started_at: u64 = self
            .bounded(
                self.scripts
                    .index_add
                    .key(&pending)
                    .arg(access.as_str())
                    .arg(millis(keep))
                    .arg(after)
                    .invoke_async(&mut conn),
            )
            .await?;
        let expires_at = started_at + millis(expires_in);
        self.bounded(
            self.scripts
                .expiring_add
                .key(self.keys().expiring())
                .arg(expiring_member(access, started_at))
                .arg(expires_at)
                .invoke_async::<()>(&mut conn),
        )
        .await?;
        let choices = challenge
            .rule()
            .choices
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Malformed {
                access: access.to_string(),
                problem: format!("choices do not serialise: {e}"),
            })?;
        let (started_at, expires_at) = (started_at.to_string(), expires_at.to_string());
        let retention = millis(self.options.retention).to_string();
        let grace = millis(self.options.in_flight_grace()).to_string();
        let mut args = vec![
            challenge.customer.as_str(),
            challenge.fin_entity_name.as_str(),
            challenge.question.as_str(),
            challenge.kind().as_str(),
            &started_at,
            &expires_at,
            &retention,
            &grace,
        ];
        // The optional extras, as hash field and value pairs.
        let extras = [
            ("choices", choices.as_deref()),
            ("image", challenge.image().map(ImageUri::as_str)),
            (
                "validation",
                challenge.rule().validation.as_ref().map(Validation::as_str),
            ),
            (
                "validation_message",
                challenge.rule().validation_message.as_deref(),
            ),
            (
                "instructions",
                challenge.instructions.as_ref().map(Instructions::as_str),
            ),
        ];
        for (field, value) in extras {
            if let Some(value) = value {
                args.extend([field, value]);
            }
        }
        self.step(&self.scripts.post_challenge, access, &args).await
    }

    /// The accesses waiting for this customer, oldest first. Each one shown
    /// moves from `need` to `question_sent`, atomically per access.
    ///
    /// An entry that cannot be read (a hand-edited hash, a Redis error on
    /// that one access) is logged and left for the next call, rather than
    /// failing the whole list after others were already marked as shown.
    pub async fn pending_for_customer(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<Access>, StoreError> {
        let index = self.keys().pending(customer);
        let mut conn = self.link.get();
        let entries: Vec<(String, String)> = self
            .bounded(conn.zrange_withscores(&index, 0, LIST_LIMIT - 1))
            .await?;
        let grace = millis(self.options.in_flight_grace()).to_string();
        let shown = entries.iter().map(|(member, score)| {
            let (index, grace) = (&index, &grace);
            async move {
                let Ok(access) = AccessId::parse(member.as_str()) else {
                    self.index_remove(index, member, score).await;
                    return Ok(None);
                };
                let args = [customer.as_str(), score.as_str(), grace.as_str(), ""];
                let step = self
                    .step(&self.scripts.send_question, &access, &args)
                    .await?;
                match step.outcome.as_str() {
                    "done" => Ok(step.access),
                    "stale" => {
                        self.index_remove(index, member, score).await;
                        Ok(None)
                    }
                    _ => Ok(None),
                }
            }
        });
        let shown = all_but_failures(
            join_all(shown).await,
            "left a pending challenge out of the list",
        )?;
        let mut waiting: Vec<Access> = shown.into_iter().flatten().collect();
        waiting.sort_by(|a, b| (a.started_at, &a.access).cmp(&(b.started_at, &b.access)));
        Ok(waiting)
    }

    /// Stores the customer's token: a waiting challenge becomes
    /// `token_received`. With `attempt`, only that attempt may be answered.
    ///
    /// The token is first checked against the challenge's rule (its kind,
    /// choices and validation), so a wrong one is refused before it burns
    /// one of the bank's attempts, and the challenge keeps waiting. The store
    /// step then makes sure the rule checked is still the current attempt's.
    pub async fn submit_token(
        &self,
        access: &AccessId,
        token: &Token,
        attempt: Option<u32>,
    ) -> Result<Access, StoreError> {
        let attempt = attempt.map(|a| a.to_string()).unwrap_or_default();
        let window = millis(SUBMISSION_WINDOW).to_string();
        // The started_at of the challenge whose rule the token passed.
        let mut checked = String::new();
        for look in 0..POST_ATTEMPTS {
            // Counted once per request, on its first call.
            let limit = match look {
                0 => self.options.submissions_per_minute.to_string(),
                _ => String::new(),
            };
            let args = [token.expose(), &attempt, &checked, &limit, &window];
            let step = self.step(&self.scripts.submit_token, access, &args).await?;
            let current = match step.outcome.as_str() {
                "throttled" => {
                    let wait = step.retry_after.and_then(|ms| ms.parse().ok());
                    let wait = Duration::from_millis(wait.unwrap_or(1_000));
                    return Err(StoreError::Throttled(wait));
                }
                "check_rule" | "rule_changed" => {
                    step.access.ok_or_else(|| StoreError::Malformed {
                        access: access.to_string(),
                        problem: "a rule to check came without the hash".to_owned(),
                    })?
                }
                _ => return step.into_result(access),
            };
            // A wrong token is refused before it burns one of the bank's
            // attempts, and the challenge keeps waiting.
            let rule = AnswerRule::of(&current).map_err(|e| StoreError::Malformed {
                access: access.to_string(),
                problem: format!("field `validation`: {e}"),
            })?;
            rule.check(token)
                .map_err(|refused| StoreError::InvalidAnswer(refused.to_string()))?;
            checked = current.started_at.0.to_string();
        }
        Err(StoreError::Contended(access.clone()))
    }

    /// The scraper's verdict on the token: `ok` or `rejected`.
    pub async fn report(
        &self,
        access: &AccessId,
        outcome: Outcome,
        reason: Option<&Reason>,
    ) -> Result<Access, StoreError> {
        let args = [outcome.status().as_str(), reason.map_or("", Reason::as_str)];
        let step = self.step(&self.scripts.report, access, &args).await?;
        step.into_result(access)
    }

    /// Ends a challenge that is not final yet.
    pub async fn cancel(&self, access: &AccessId, by: Actor) -> Result<Access, StoreError> {
        let step = self
            .step(&self.scripts.cancel, access, &[by.as_str()])
            .await?;
        step.into_result(access)
    }

    /// The access as it is, with its image but without its token; `None`
    /// when it has no challenge. A challenge found past its deadline is
    /// expired first.
    pub async fn access(&self, access: &AccessId) -> Result<Option<Access>, StoreError> {
        let step = self.step(&self.scripts.read, access, &["image"]).await?;
        Ok(step.access)
    }

    /// The access's audit trail, oldest first; `None` when the access has
    /// neither a challenge nor a trail.
    pub async fn events(&self, access: &AccessId) -> Result<Option<Vec<Event>>, StoreError> {
        let names = self.keys().access(access);
        let mut conn = self.link.get();
        let (exists, trail): (bool, StreamRangeReply) = self
            .bounded(
                redis::pipe()
                    .exists(&names.hash)
                    .xrange_all(&names.events)
                    .query_async(&mut conn),
            )
            .await?;
        if !exists && trail.ids.is_empty() {
            return Ok(None);
        }
        let events = trail
            .ids
            .iter()
            .map(|entry| event_from_entry(access, entry));
        events.collect::<Result<Vec<_>, _>>().map(Some)
    }

    /// The status, attempt, deadline and token, read in one step for a
    /// waiter. A challenge found past its deadline is expired first.
    pub async fn token_view(&self, access: &AccessId) -> Result<Option<TokenView>, StoreError> {
        let step = self.step(&self.scripts.read, access, &["token"]).await?;
        let Some(found) = step.access else {
            return Ok(None);
        };
        let token = match step.token.map(Token::parse) {
            Some(Ok(token)) => Some(token),
            Some(Err(_)) => {
                return Err(StoreError::Malformed {
                    access: access.to_string(),
                    problem: "field `token` is not a valid token".to_owned(),
                });
            }
            None => None,
        };
        Ok(Some(TokenView {
            status: found.status,
            attempt: found.attempt,
            expires_at: found.expires_at,
            updated_at: found.updated_at,
            token,
        }))
    }

    /// Expires every waiting challenge whose deadline has passed, and wakes
    /// its waiters. Safe to run from every gateway at once: the expiry itself
    /// is one script that only the first caller finds to do. Returns how many
    /// this call expired.
    pub async fn expire_due(&self) -> Result<usize, StoreError> {
        let index = self.keys().expiring();
        let grace = millis(self.options.in_flight_grace());
        let mut expired = 0;
        loop {
            let mut conn = self.link.get();
            let flat: Vec<String> = self
                .bounded(
                    self.scripts
                        .due
                        .key(&index)
                        .arg(SWEEP_BATCH)
                        .invoke_async(&mut conn),
                )
                .await?;
            let due: Vec<(&str, u64)> = flat
                .chunks_exact(2)
                .map(|pair| (pair[0].as_str(), pair[1].parse().unwrap_or(0)))
                .collect();
            let swept = due
                .iter()
                .map(|(member, score)| self.sweep_one(&index, member, *score, grace));
            let swept = all_but_failures(join_all(swept).await, "could not sweep a due challenge")?;
            let settled = swept.iter().filter(|s| **s != Swept::StillWaiting).count();
            expired += swept.iter().filter(|s| **s == Swept::Expired).count();
            // A full batch means more may be due; but if none of it settled
            // (this node's clock is behind the index's), looking again now
            // would only spin.
            if due.len() < SWEEP_BATCH || settled == 0 {
                return Ok(expired);
            }
        }
    }

    async fn sweep_one(
        &self,
        index: &str,
        member: &str,
        score: u64,
        grace: u64,
    ) -> Result<Swept, StoreError> {
        let mut conn = self.link.get();
        let parsed = member.rsplit_once('|').and_then(|(access, started_at)| {
            Some((
                AccessId::parse(access).ok()?,
                started_at.parse::<u64>().ok()?,
            ))
        });
        let Some((access, started_at)) = parsed else {
            self.bounded(conn.zrem::<_, _, ()>(index, member)).await?;
            return Ok(Swept::Dropped);
        };
        let args = [started_at.to_string(), grace.to_string()];
        let args = [args[0].as_str(), args[1].as_str()];
        let step = self.step(&self.scripts.expire, &access, &args).await?;
        let postpone = |until: u64| {
            let mut conn = self.link.get();
            async move {
                let moved: u64 = self
                    .bounded(
                        self.scripts
                            .expiring_postpone
                            .key(index)
                            .arg(member)
                            .arg(until)
                            .invoke_async(&mut conn),
                    )
                    .await?;
                Ok::<_, StoreError>(if moved > 0 {
                    Swept::Postponed
                } else {
                    Swept::StillWaiting
                })
            }
        };
        match step.outcome.as_str() {
            // `step` already dropped the entry of the challenge it expired.
            "done" => Ok(Swept::Expired),
            "gone" => {
                self.bounded(conn.zrem::<_, _, ()>(index, member)).await?;
                Ok(Swept::Dropped)
            }
            "in_flight" => {
                // Look again soon, and no later than when the post that wrote
                // it must have finished (it gives up past the grace period).
                postpone((score + IN_FLIGHT_RECHECK_MS).min(started_at + grace + 1)).await
            }
            // Still waiting: never dropped. If the entry was scored earlier
            // than the hash's deadline, look again at that deadline.
            _ => match &step.access {
                Some(waiting) => postpone(waiting.expires_at.0).await,
                None => Ok(Swept::StillWaiting),
            },
        }
    }

    /// Runs one access script, then drops the access from the indexes if the
    /// step took it out of waiting.
    async fn step(
        &self,
        script: &Script,
        access: &AccessId,
        args: &[&str],
    ) -> Result<Step, StoreError> {
        let names = self.keys().access(access);
        let mut invocation = script.key(&names.hash);
        invocation
            .key(&names.wake)
            .key(&names.events)
            .key(&names.submissions)
            .arg(&names.changed);
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.link.get();
        let mut reply: Vec<String> = self.bounded(invocation.invoke_async(&mut conn)).await?;
        if reply.len() < 2 {
            return Err(StoreError::Malformed {
                access: access.to_string(),
                problem: "a script replied without an outcome".to_owned(),
            });
        }
        let mut fields = Fields::from_pairs(access, reply.split_off(2));
        let token = fields.take("token");
        let moves = fields.take("moves");
        let retry_after = fields.take("retry_after_ms");
        let step = Step {
            left_waiting: reply[1] == "1",
            outcome: std::mem::take(&mut reply[0]),
            access: if fields.is_empty() {
                None
            } else {
                Some(fields.into_access()?)
            },
            token,
            retry_after,
        };
        // The feed entry and the index cleanup touch other slots and need
        // nothing from each other: both at once, so the feed is written as
        // soon as possible and the caller waits one round trip, not two.
        if let Some(changed) = &step.access {
            let announce = async {
                if let Some(moves) = &moves {
                    self.feed_append(changed, moves).await;
                    metrics::record_moves(changed, moves);
                }
            };
            let tidy = async {
                if step.left_waiting {
                    self.forget_waiting(changed).await;
                }
            };
            futures_util::join!(announce, tidy);
        }
        Ok(step)
    }

    /// Drops an access that left waiting from both indexes. A failure here
    /// only leaves a stale entry, which readers and the sweeper drop later,
    /// so it is logged rather than failing the step that already happened.
    async fn forget_waiting(&self, access: &Access) {
        let pending = self.keys().pending(&access.customer);
        let started_at = access.started_at.0.to_string();
        let entry = expiring_member(&access.access, access.started_at.0);
        let mut conn = self.link.get();
        let expiring = self.keys().expiring();
        let (_, unexpiring) = futures_util::join!(
            self.index_remove(&pending, access.access.as_str(), &started_at),
            self.bounded(conn.zrem::<_, _, ()>(&expiring, &entry)),
        );
        if let Err(error) = unexpiring {
            tracing::warn!(%entry, %error, "could not drop an expiring entry; the sweep will");
        }
    }

    async fn index_remove(&self, index: &str, member: &str, score: &str) {
        let mut conn = self.link.get();
        let removed = self
            .bounded(
                self.scripts
                    .index_remove
                    .key(index)
                    .arg(member)
                    .arg(score)
                    .invoke_async::<i64>(&mut conn),
            )
            .await;
        if let Err(error) = removed {
            tracing::warn!(%index, %member, %error, "could not drop a stale index entry; it will be dropped on a later read");
        }
    }
}

/// What one sweep did with one due entry.
#[derive(Debug, PartialEq, Eq)]
enum Swept {
    Expired,
    /// The access had already left waiting, or the entry was garbage.
    Dropped,
    /// The post that wrote it may still be writing; looked at later.
    Postponed,
    /// Its deadline is still ahead by the access's node's clock.
    StillWaiting,
}

impl Step {
    fn into_result(self, access: &AccessId) -> Result<Access, StoreError> {
        match (self.outcome.as_str(), self.access) {
            ("done", Some(found)) => Ok(found),
            ("refused", Some(found)) => Err(StoreError::Refused(Box::new(found))),
            ("attempt_mismatch", Some(found)) => Err(StoreError::AttemptMismatch(Box::new(found))),
            ("not_found", None) => Err(StoreError::NotFound(access.clone())),
            (outcome, _) => Err(StoreError::Malformed {
                access: access.to_string(),
                problem: format!("unexpected script outcome `{outcome}`"),
            }),
        }
    }
}

/// An audit trail entry, read back; operators can edit streams too, so a
/// missing or unparsable field is an error naming it.
fn event_from_entry(
    access: &AccessId,
    entry: &redis::streams::StreamId,
) -> Result<Event, StoreError> {
    let malformed = |problem: &str| StoreError::Malformed {
        access: access.to_string(),
        problem: format!("event {}: {problem}", entry.id),
    };
    let text = |field: &str| -> Result<String, StoreError> {
        entry
            .get(field)
            .ok_or_else(|| malformed(&format!("no `{field}`")))
    };
    let by = text("by")?;
    Ok(Event {
        id: entry.id.clone(),
        kind: text("type")?,
        attempt: text("attempt")?
            .parse()
            .map_err(|_| malformed("`attempt` is not a number"))?,
        at: UnixMillis(
            text("at")?
                .parse()
                .map_err(|_| malformed("`at` is not a number"))?,
        ),
        by: Actor::parse(&by).ok_or_else(|| malformed("unknown `by`"))?,
        reason: entry.get("reason"),
    })
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

/// The expiring index's member for one posted challenge.
fn expiring_member(access: &AccessId, started_at: u64) -> String {
    format!("{access}|{started_at}")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
