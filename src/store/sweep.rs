//! Expiring what is due: the sweeper's walk over the expiring index.

use futures_util::future::join_all;
use redis::AsyncCommands;

use super::script::ExpiringPostpone;
use super::steps::{Expire, Expiry};
use super::{Store, StoreError, all_but_failures};
use crate::model::AccessId;

/// How long the sweep leaves an entry whose post may still be writing before
/// it looks again.
const IN_FLIGHT_RECHECK_MS: u64 = 1_000;

/// How many due challenges one sweep takes before it looks again.
const SWEEP_BATCH: usize = 500;

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

impl Store {
    /// Expires every waiting challenge whose deadline has passed, and wakes
    /// its waiters. Safe to run from every gateway at once: the expiry itself
    /// is one script that only the first caller finds to do. Returns how many
    /// this call expired.
    pub async fn expire_due(&self) -> Result<usize, StoreError> {
        let index = self.keys().expiring();
        let mut expired = 0;
        loop {
            let due = self.due(&index, SWEEP_BATCH).await?;
            let swept = due
                .iter()
                .map(|(member, score)| self.sweep_one(&index, member, *score));
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

    async fn sweep_one(&self, index: &str, member: &str, score: u64) -> Result<Swept, StoreError> {
        let parsed = member.rsplit_once('|').and_then(|(access, started_at)| {
            Some((
                AccessId::parse(access).ok()?,
                started_at.parse::<u64>().ok()?,
            ))
        });
        let Some((access, started_at)) = parsed else {
            return self.drop_entry(index, member).await;
        };
        let grace = self.options.in_flight_grace();
        let token_ttl = self.options.token_ttl;
        let expire = Expire {
            started_at,
            grace,
            token_ttl,
        };
        let postpone = |until: u64| async move {
            let call = ExpiringPostpone {
                index,
                member,
                until,
            };
            Ok(if self.expiring_postpone(call).await? {
                Swept::Postponed
            } else {
                Swept::StillWaiting
            })
        };
        let stepped = self.step(&access, expire).await?;
        let relayed = stepped.relayed;
        match stepped.observed() {
            // `step` already dropped the entry of the challenge it expired,
            // once its outbox was relayed.
            Expiry::Expired => Ok(Swept::Expired),
            // An outbox the feed could not take yet keeps the entry, which
            // stands in for a relay mark.
            Expiry::Gone if !relayed => Ok(Swept::StillWaiting),
            Expiry::Gone => self.drop_entry(index, member).await,
            Expiry::InFlight => {
                // Look again soon, and no later than when the post that wrote
                // it must have finished (it gives up past the grace period).
                let gave_up = started_at + super::millis(grace) + 1;
                postpone((score + IN_FLIGHT_RECHECK_MS).min(gave_up)).await
            }
            // Still waiting: never dropped. If the entry was scored earlier
            // than the hash's deadline, look again at that deadline.
            Expiry::Waiting { expires_at } => postpone(expires_at.0).await,
            Expiry::TokenWaiting { since } => postpone(since.after(token_ttl).0).await,
        }
    }

    async fn drop_entry(&self, index: &str, member: &str) -> Result<Swept, StoreError> {
        let mut conn = self.link.get();
        self.bounded(conn.zrem::<_, _, ()>(index, member)).await?;
        Ok(Swept::Dropped)
    }
}
