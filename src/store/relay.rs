//! The outbox relay: every move a step records reaches the customer's feed
//! at least once, even when the gateway that made it dies the next instant.
//!
//! A move is recorded in the access's audit trail, in the same script as
//! the state change, and the step opens a relay: the hash field
//! `relay:<id>`, named after its first entry. The access's outbox is the
//! trail from its earliest open relay on. Every step's reply carries the
//! whole outbox and the open relays, so the gateway relays the outbox
//! inline, oldest first, right after the step (the fast path), then
//! deletes the relays it was given with one HDEL. A relay that a later step
//! opened meanwhile stays, so its entries go out again with the next relay.
//!
//! The slow path is for a gateway that died between the step and its relay.
//! Every step that records also leaves a relay mark in the shared relay
//! index `2fa:relay`, scored by when it was written. On a single Redis the
//! step writes it itself, `<access>|<first audit id>`, in the same script as
//! its relay field, and the gateway removes it with the field. A cluster
//! keeps the index in other slots, so there the gateway writes a mark,
//! `<access>|<ms>-<nonce>`, before a step that may record, and removes it
//! once the relay is done. Every gateway's sweep takes the marks older than
//! a second, reads the access (which relays its outbox, as every step does),
//! and removes the mark: at once for a mark its step wrote, and for a mark
//! written before its step once no step can still be in flight behind it.
//!
//! The relay also queues a message per move for every webhook endpoint that
//! wants it (`webhooks`), before the relay fields close.
//!
//! Relaying twice is harmless: the feed keeps the latest trail id it has
//! for each access and drops what is not later (`feed_add.lua`), and a
//! webhook message's id comes from its move, so an endpoint that has it
//! already skips it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use redis::AsyncCommands;

use super::script::{FeedAdd, FeedAddEntry, FeedEvent};
use super::steps::{Found, RELAY_FIELD, Read};
use super::{Store, StoreError, all_but_failures, millis};
use crate::metrics;
use crate::model::{Access, AccessId, Moved, Status, Transition, UnixMillis};

/// How long a gateway has to relay a step's outbox itself before any
/// gateway's sweep does it.
const RELAY_GRACE: Duration = Duration::from_secs(1);

/// How often a customer's feed renews its keys' lifetimes and drops the
/// entries past their retention, rather than on every append: a busy feed
/// saves three Redis calls an append, and an entry outlives its retention
/// by about this long (less when the retention itself is shorter; more
/// only when over a thousand entries come due at once).
const FEED_HOUSEKEEPING: Duration = Duration::from_secs(60);

/// How many marks one sweep takes before it looks again.
const SWEEP_BATCH: isize = 500;

/// How many times the feed is tried before the relay is left to the sweep.
const FEED_TRIES: usize = 3;

/// The pause before the second try; it doubles after.
const FEED_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How many relay-index keys a cluster spreads its marks over: enough that
/// they land on more than one shard, few enough that a sweep reads them all.
const CLUSTER_BUCKETS: usize = 8;

/// How many buckets one mark tries before its step fails with a 503.
const BUCKET_TRIES: usize = 3;

/// How long a bucket that could not be written is passed over.
const BUCKET_REST: Duration = Duration::from_secs(5);

/// Relay marks in one key of the relay index: `<access>|<ms>-<nonce>`,
/// written by the gateway before a step on a cluster, or `<access>|<audit
/// id>`, written by the step itself on a single Redis. Either way `ms` is
/// when it was written.
pub(super) struct Mark {
    key: String,
    members: Vec<String>,
}

impl Mark {
    /// The marks a single Redis's steps wrote for the outbox relays
    /// `relays` (hash fields `relay:<id>`) of `access`.
    pub(super) fn of_relays(key: String, access: &AccessId, relays: &[String]) -> Option<Mark> {
        let members: Vec<String> = relays
            .iter()
            .filter_map(|field| field.strip_prefix(RELAY_FIELD))
            .map(|id| format!("{access}|{id}"))
            .collect();
        (!members.is_empty()).then_some(Mark { key, members })
    }

    fn parse(member: &str) -> Option<(AccessId, u64)> {
        let (access, written) = member.rsplit_once('|')?;
        let (ms, _nonce) = written.split_once('-')?;
        Some((AccessId::parse(access).ok()?, ms.parse().ok()?))
    }
}

/// The relay index's keys (one on a single Redis, several on a cluster),
/// and which of them failed lately. A mark may go in any bucket: each
/// access has its own first choice, and a bucket on a shard that is down is
/// passed over for a while, so that steps on the other shards go on.
pub(super) struct Buckets {
    resting_until: Vec<AtomicU64>,
}

impl Buckets {
    pub(super) fn new(cluster: bool) -> Buckets {
        let count = if cluster { CLUSTER_BUCKETS } else { 1 };
        Buckets {
            resting_until: (0..count).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.resting_until.len()
    }

    /// The buckets to try, in order: the access's own first, then the
    /// others; those resting after all the rest.
    fn order(&self, access: &AccessId, now: u64) -> Vec<usize> {
        let count = self.len();
        let own = access.as_str().bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        }) % count;
        let mut order: Vec<usize> = (0..count).map(|i| (own + i) % count).collect();
        order.sort_by_key(|&b| self.resting_until[b].load(Ordering::Relaxed) > now);
        order.truncate(BUCKET_TRIES);
        order
    }

    fn rest(&self, bucket: usize, now: u64) {
        self.resting_until[bucket].store(now + millis(BUCKET_REST), Ordering::Relaxed);
    }
}

/// A new mark's member, and when it was written.
fn new_mark(access: &AccessId) -> (String, u64) {
    let now = UnixMillis::now().0;
    let nonce = uuid::Uuid::new_v4().as_u64_pair().0;
    (format!("{access}|{now}-{nonce:016x}"), now)
}

impl Store {
    /// Whether steps write their own relay marks: on a single Redis, where
    /// the relay index is one key any script may write.
    pub(super) fn marks_in_step(&self) -> bool {
        self.buckets.len() == 1
    }

    /// Writes a relay mark for a step about to run on `access`, on a
    /// cluster. Each mark is its own member, so removing one never removes
    /// another step's.
    pub(super) async fn mark_relay(&self, access: &AccessId) -> Result<Mark, StoreError> {
        let (member, now) = new_mark(access);
        let buckets = self.buckets.len();
        let mut failure = None;
        for bucket in self.buckets.order(access, now) {
            let key = self.keys().relay(bucket, buckets);
            let mut conn = self.link.get();
            match self
                .bounded(conn.zadd::<_, _, _, ()>(&key, &member, now))
                .await
            {
                Ok(()) => {
                    return Ok(Mark {
                        key,
                        members: vec![member],
                    });
                }
                Err(error) if error.is_unavailable() => {
                    self.buckets.rest(bucket, now);
                    failure = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(failure.unwrap_or(StoreError::Contended(access.clone())))
    }

    /// Relays an outbox to the customer's feed, dropping the access from
    /// their pending index on the way when `unpend` (the step left
    /// waiting), and to the webhook queues. Returns whether every consumer
    /// has it: if not, whoever holds the mark leaves it for the sweep.
    pub(super) async fn relay(&self, transition: &Transition, unpend: bool) -> bool {
        let after = &transition.after;
        let entries: Vec<FeedAddEntry<'_>> = transition
            .moves
            .iter()
            .map(|moved| {
                let (event, status) = match moved.to {
                    Moved::Challenge => (FeedEvent::Challenge, Status::Need),
                    Moved::To(status) => (FeedEvent::Status, status),
                };
                FeedAddEntry {
                    event,
                    access: &after.access,
                    status,
                    attempt: moved.attempt,
                    at: moved.at,
                    audit_id: &moved.audit_id,
                }
            })
            .collect();
        let add = FeedAdd {
            customer: &after.customer,
            unpend: unpend.then_some((&after.access, after.started_at)),
            length: self.options.feed_length,
            now: UnixMillis::now(),
            // The feed's keys outlive any access they report on, so a reader
            // behind them finds a removal recorded rather than a new stream.
            keep: self.options.feed_retention + self.options.retention,
            retention: self.options.feed_retention,
            housekeeping: FEED_HOUSEKEEPING.min(self.options.feed_retention),
            entries: &entries,
        };
        let mut pause = FEED_RETRY_PAUSE;
        for remaining in (0..FEED_TRIES).rev() {
            match self.feed_add(&add).await {
                Ok(_) => break,
                Err(error) if remaining == 0 => {
                    let (customer, access) = (&after.customer, &after.access);
                    tracing::warn!(%customer, %access, %error, "could not relay to the feed; the sweep will");
                    return false;
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        let now = UnixMillis::now().0;
        if !self.relay_to_webhooks(transition, now).await {
            return false;
        }
        for moved in &transition.moves {
            metrics::relayed(Duration::from_millis(now.saturating_sub(moved.at.0)));
        }
        true
    }

    /// After a relay, or a step with nothing to relay: the relayed outbox's
    /// `relay:` fields close (a plain HDEL, which leaves any a later step
    /// opened), then their marks go, while the expiring entry of a step
    /// that left waiting goes too. A failure only leaves work for the sweep,
    /// which relays again and finds that every consumer has it.
    ///
    /// On a single Redis all three go in one pipeline: one round trip, run
    /// in order on the one connection, and a Redis that cannot take the
    /// first cannot take the others. On a cluster they are on different
    /// shards, so a mark goes only once its fields have: an open field then
    /// always has a mark or a later step behind it.
    pub(super) async fn settle(
        &self,
        hash: &str,
        relays: &[String],
        mark: Option<Mark>,
        left_waiting: Option<&Access>,
    ) {
        if relays.is_empty() && mark.is_none() && left_waiting.is_none() {
            return;
        }
        if self.marks_in_step() {
            let mut pipe = redis::pipe();
            if !relays.is_empty() {
                pipe.hdel(hash, relays).ignore();
            }
            if let Some(Mark { key, members }) = &mark {
                pipe.zrem(key, members).ignore();
            }
            if let Some(access) = left_waiting {
                pipe.add_command(self.expiring_after(access)).ignore();
            }
            let mut conn = self.link.get();
            if let Err(error) = self.bounded(pipe.exec_async(&mut conn)).await {
                tracing::warn!(%hash, %error, "could not settle a relayed outbox; the sweep will");
            }
            return;
        }
        let close_then_unmark = async {
            let mut conn = self.link.get();
            if !relays.is_empty() {
                let closed = self.bounded(conn.hdel::<_, _, ()>(hash, relays));
                if let Err(error) = closed.await {
                    tracing::warn!(%hash, %error, "could not close an outbox's relays; the sweep will");
                    return;
                }
            }
            if let Some(Mark { key, members }) = mark {
                let removed = self.bounded(conn.zrem::<_, _, ()>(&key, &members));
                if let Err(error) = removed.await {
                    tracing::warn!(%error, "could not remove a relay mark; the sweep will");
                }
            }
        };
        let unexpire = async {
            if let Some(access) = left_waiting {
                self.settle_expiring(access).await;
            }
        };
        futures_util::join!(close_then_unmark, unexpire);
    }

    /// Relays the outboxes whose marks fell due: their gateways died, or
    /// could not reach the feed. A mark its step wrote goes once relayed; a
    /// mark written before its step stays until no step can still be in
    /// flight behind it (a step sent just before its gateway stalled may
    /// land late), then goes. Returns how many marks it took.
    pub async fn relay_due(&self) -> Result<usize, StoreError> {
        let buckets = self.buckets.len();
        let swept =
            (0..buckets).map(|bucket| self.relay_due_in(self.keys().relay(bucket, buckets)));
        let swept = all_but_failures(join_all(swept).await, "could not sweep a relay bucket")?;
        Ok(swept.into_iter().sum())
    }

    async fn relay_due_in(&self, index: String) -> Result<usize, StoreError> {
        let mut conn = self.link.get();
        let now = UnixMillis::now().0;
        let grace = millis(RELAY_GRACE);
        let written_by = now.saturating_sub(grace);
        let due: Vec<String> = self
            .bounded(conn.zrangebyscore_limit(&index, "-inf", written_by, 0, SWEEP_BATCH))
            .await?;
        let settle_by = millis(self.options.in_flight_grace());
        let in_step = self.marks_in_step();
        let index = &index;
        let relayed = due.iter().map(|member| async move {
            let mut conn = self.link.get();
            let Some((access, written)) = Mark::parse(member) else {
                return self.bounded(conn.zrem::<_, _, ()>(index, member)).await;
            };
            let stepped = self.step(&access, Read::Plain).await?;
            let relayed = stepped.relayed;
            let gone = matches!(stepped.observed(), Found::NotFound);
            if !relayed {
                return Ok(());
            }
            if in_step || gone || now >= written + settle_by {
                self.bounded(conn.zrem::<_, _, ()>(index, member)).await
            } else {
                // Taken again once no step can be in flight behind it. XX:
                // never re-add a mark that its own gateway removed.
                let mut later = redis::cmd("ZADD");
                later
                    .arg(index)
                    .arg("XX")
                    .arg((written + settle_by).saturating_sub(grace))
                    .arg(member);
                self.bounded(later.query_async::<()>(&mut conn)).await
            }
        });
        let done = all_but_failures(join_all(relayed).await, "could not relay an outbox")?;
        Ok(done.len())
    }
}
