//! The two indexes, and the list they serve.
//!
//! - `2fa:customer:{<customer>}:pending`, the accesses waiting for a
//!   customer, scored by `started_at`, read by the list route;
//! - `2fa:expiring`, one `<access>|<started_at>` member per posted challenge,
//!   scored by its deadline, read by the sweeper (`sweep`).
//!
//! They live in other slots than the accesses they point to, so they are
//! kept by separate calls, ordered so a crash can leave a stale entry but
//! never a missing one: entries are added before the hash write and removed
//! after it leaves waiting (the pending entry by the relay to the feed, in
//! the customer's slot, and the expiring entry after it: see `relay`). A pending entry is only ever removed as the
//! exact (member, score) pair the remover saw, and each post gives its entry
//! a new score; an expiring member names its own challenge, so nothing else
//! can remove it. Readers re-check every hash, so a stale entry costs one
//! read and is then dropped, unless it may belong to a post between its two
//! writes. A post that a newer one overtook, or that took longer than the
//! grace readers allow it, writes nothing and starts over: an access's
//! `started_at` only ever grows, and an entry older than its hash's is stale
//! for sure.

use futures_util::future::join_all;
use redis::AsyncCommands;

use super::script::IndexRemove;
use super::steps::{SendQuestion, Shown};
use super::{LIST_LIMIT, Store, StoreError, all_but_failures};
use crate::model::{Access, AccessId, CustomerId, Status};

impl Store {
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
        let shown = entries.iter().map(|(member, score)| {
            let stale = IndexRemove {
                index: &index,
                member,
                score,
            };
            async move {
                let Ok(access) = AccessId::parse(member.as_str()) else {
                    self.drop_stale(stale).await;
                    return Ok(None);
                };
                let show = SendQuestion {
                    customer,
                    score,
                    grace: self.options.in_flight_grace(),
                    attempt: None,
                };
                match self.step(&access, show).await?.observed() {
                    Shown::Done(access) => Ok(Some(*access)),
                    Shown::Stale => {
                        self.drop_stale(stale).await;
                        Ok(None)
                    }
                    Shown::Skip => Ok(None),
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

    /// What becomes of the expiring entry of an access that left waiting,
    /// once its outbox is relayed: a token waiting for its scraper's report
    /// is watched until `TWOFA_TOKEN_TTL` after it came (the entry moves
    /// there, earlier or later, if it is still there); anything else is
    /// done with, and the entry goes.
    pub(super) fn expiring_after(&self, access: &Access) -> redis::Cmd {
        let entry = expiring_member(&access.access, access.started_at.0);
        let index = self.keys().expiring();
        if access.status == Status::TokenReceived {
            let until = access.updated_at.after(self.options.token_ttl);
            let mut rewatch = redis::cmd("ZADD");
            rewatch.arg(index).arg("XX").arg(until.0).arg(entry);
            rewatch
        } else {
            let mut forget = redis::cmd("ZREM");
            forget.arg(index).arg(entry);
            forget
        }
    }

    /// [`expiring_after`](Self::expiring_after), on its own. A failure
    /// here only leaves an entry due too early or too late, which the sweep
    /// sorts out, so it is logged rather than failing the step that
    /// already happened.
    pub(super) async fn settle_expiring(&self, access: &Access) {
        let mut conn = self.link.get();
        let settle = self.expiring_after(access);
        if let Err(error) = self.bounded(settle.exec_async(&mut conn)).await {
            let access = &access.access;
            tracing::warn!(%access, %error, "could not settle an expiring entry; the sweep will");
        }
    }

    /// Drops a pending entry that is still as the caller saw it; a failure
    /// is logged, as a later read drops it too.
    async fn drop_stale(&self, entry: IndexRemove<'_>) {
        let (index, member) = (entry.index, entry.member);
        if let Err(error) = self.index_remove(entry).await {
            tracing::warn!(%index, %member, %error, "could not drop a stale index entry; it will be dropped on a later read");
        }
    }
}

/// The expiring index's member for one posted challenge.
pub(super) fn expiring_member(access: &AccessId, started_at: u64) -> String {
    format!("{access}|{started_at}")
}
