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
//! Before a step that may record a move, the gateway writes a relay mark in
//! the shared relay index `2fa:relay`, due a second later, and removes it
//! once the relay is done. Every gateway's sweep takes the marks that fell
//! due, reads the access (which relays its outbox, as every step does), and
//! removes the mark once no step can still be in flight behind it.
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
use super::steps::{Found, Read};
use super::{Store, StoreError, all_but_failures, millis};
use crate::metrics;
use crate::model::{Access, AccessId, Moved, Status, Transition, UnixMillis};

/// How long a gateway has to relay a step's outbox itself before any
/// gateway's sweep does it.
const RELAY_GRACE: Duration = Duration::from_secs(1);

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

/// A relay mark, written before a step: the bucket's key, and the member
/// `<access>|<ms>-<nonce>`, where `ms` is when it was written (by the
/// gateway's clock).
pub(super) struct Mark {
    key: String,
    member: String,
}

impl Mark {
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

/// A new mark's member, and when the sweep may take it over.
fn new_mark(access: &AccessId) -> (String, u64) {
    let now = UnixMillis::now().0;
    let nonce = uuid::Uuid::new_v4().as_u64_pair().0;
    (
        format!("{access}|{now}-{nonce:016x}"),
        now + millis(RELAY_GRACE),
    )
}

impl Store {
    /// Writes a relay mark, then runs the step. On a single Redis both go
    /// in one pipeline on one connection, which Redis runs in order: one
    /// round trip, and the mark is still written first. A cluster keeps
    /// the mark in another slot, often on another node, so there the step
    /// waits for the mark.
    pub(super) async fn mark_and_run(
        &self,
        access: &AccessId,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<(Mark, Vec<String>), StoreError> {
        if self.buckets.len() > 1 {
            let mark = self.mark_relay(access).await?;
            return Ok((mark, self.run(invocation).await?));
        }
        let (member, due) = new_mark(access);
        let key = self.keys().relay(0, 1);
        let mut pipe = redis::pipe();
        pipe.zadd(&key, &member, due)
            .ignore()
            .invoke_script(invocation);
        let mut conn = self.link.get();
        let mark = Mark { key, member };
        match self
            .bounded(pipe.query_async::<(Vec<String>,)>(&mut conn))
            .await
        {
            Ok((reply,)) => Ok((mark, reply)),
            // A Redis that restarted has no scripts: the mark is written,
            // and the plain call loads the script.
            Err(StoreError::Redis(error))
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                Ok((mark, self.run(invocation).await?))
            }
            Err(error) => Err(error),
        }
    }

    /// Writes a relay mark for a step about to run on `access`. Each mark is
    /// its own member, so removing one never removes another step's.
    pub(super) async fn mark_relay(&self, access: &AccessId) -> Result<Mark, StoreError> {
        let now = UnixMillis::now().0;
        let (member, due) = new_mark(access);
        let buckets = self.buckets.len();
        let mut failure = None;
        for bucket in self.buckets.order(access, now) {
            let key = self.keys().relay(bucket, buckets);
            let mut conn = self.link.get();
            match self
                .bounded(conn.zadd::<_, _, _, ()>(&key, &member, due))
                .await
            {
                Ok(()) => return Ok(Mark { key, member }),
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
            oldest: UnixMillis::now().before(self.options.feed_retention),
            // The feed's keys outlive any access they report on, so a reader
            // behind them finds a removal recorded rather than a new stream.
            keep: self.options.feed_retention + self.options.retention,
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
    /// opened), then the step's mark goes, while the expiring entry of a
    /// step that left waiting goes too. The mark goes only once the fields
    /// have, so an open field always has a mark or a later step behind it;
    /// a failure only leaves work for the sweep, which relays again and
    /// finds that every consumer has it.
    pub(super) async fn settle(
        &self,
        hash: &str,
        relays: &[String],
        mark: Option<Mark>,
        left_waiting: Option<&Access>,
    ) {
        let close_then_unmark = async {
            let mut conn = self.link.get();
            if !relays.is_empty() {
                let closed = self.bounded(conn.hdel::<_, _, ()>(hash, relays));
                if let Err(error) = closed.await {
                    tracing::warn!(%hash, %error, "could not close an outbox's relays; the sweep will");
                    return;
                }
            }
            if let Some(Mark { key, member }) = mark {
                let removed = self.bounded(conn.zrem::<_, _, ()>(&key, &member));
                if let Err(error) = removed.await {
                    tracing::warn!(%error, "could not remove a relay mark; the sweep will");
                }
            }
        };
        let unexpire = async {
            if let Some(access) = left_waiting {
                self.forget_expiring(access).await;
            }
        };
        futures_util::join!(close_then_unmark, unexpire);
    }

    /// Relays the outboxes whose marks fell due: their gateways died, or
    /// could not reach the feed. A mark stays until no step can still be in
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
        let due: Vec<String> = self
            .bounded(conn.zrangebyscore_limit(&index, "-inf", now, 0, SWEEP_BATCH))
            .await?;
        let settle_by = millis(self.options.in_flight_grace());
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
            if gone || now >= written + settle_by {
                self.bounded(conn.zrem::<_, _, ()>(index, member)).await
            } else {
                // XX: never re-add a mark that its own gateway removed.
                let mut later = redis::cmd("ZADD");
                later
                    .arg(index)
                    .arg("XX")
                    .arg(written + settle_by)
                    .arg(member);
                self.bounded(later.query_async::<()>(&mut conn)).await
            }
        });
        let done = all_but_failures(join_all(relayed).await, "could not relay an outbox")?;
        Ok(done.len())
    }
}
