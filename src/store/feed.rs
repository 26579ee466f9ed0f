//! A customer's live feed: the stream `2fa:customer:{<customer>}:events`,
//! written after each transition of one of their accesses, and read by
//! every gateway's feed clients from their own position.
//!
//! The feed lives in the customer's slot and a transition in the access's,
//! so the feed entry is a second write. A gateway that dies between the two
//! loses that one feed entry; the state, the audit trail and the indexes are
//! already right, and a client that starts over sees what is waiting.

use std::str::FromStr;

use super::{Store, StoreError, millis};
use crate::model::{Access, AccessId, CustomerId, Status, UnixMillis};

/// How many times a feed entry is tried before it is given up.
const FEED_TRIES: usize = 3;

/// The pause before the second try; it doubles after.
const FEED_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// What a feed entry announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEvent {
    /// A challenge started waiting for the customer.
    Challenge,
    /// One of the customer's accesses moved to another status.
    Status,
}

impl FeedEvent {
    fn as_str(self) -> &'static str {
        match self {
            FeedEvent::Challenge => "challenge",
            FeedEvent::Status => "status",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// The stream id, which feed clients see as the SSE `id:`.
    pub id: String,
    pub event: FeedEvent,
    pub access: AccessId,
    pub status: Status,
    pub attempt: u32,
    pub at: UnixMillis,
}

/// What a reader finds after its position.
#[derive(Debug)]
pub enum FeedRead {
    /// The entries after it, oldest first, and the feed's head: the id a
    /// reader resumes from once it has them all.
    Entries {
        head: String,
        entries: Vec<FeedEntry>,
    },
    /// Entries after the position may have been removed (the feed keeps a
    /// bounded count, for a bounded time): the reader must start over from
    /// what is waiting now, and follow the feed from `head`.
    Gap { head: String },
}

impl Store {
    /// The feed entries after `after` (a stream id, or `0-0`), at most
    /// `count` of them; with a count of 0, only the head.
    pub async fn feed_since(
        &self,
        customer: &CustomerId,
        after: &str,
        count: usize,
    ) -> Result<FeedRead, StoreError> {
        let mut conn = self.link.get();
        let reply: Vec<String> = self
            .bounded(
                self.scripts
                    .feed_since
                    .key(self.keys().feed(customer))
                    .arg(after)
                    .arg(count)
                    .invoke_async(&mut conn),
            )
            .await?;
        let malformed = |problem: String| StoreError::Malformed {
            access: format!("(the feed of customer {customer})"),
            problem,
        };
        let [outcome, head, rest @ ..] = reply.as_slice() else {
            return Err(malformed(
                "the feed script replied without a head".to_owned(),
            ));
        };
        if outcome == "gap" {
            return Ok(FeedRead::Gap { head: head.clone() });
        }
        let entries = rest
            .chunks_exact(6)
            .map(|entry| parse_entry(entry).ok_or_else(|| malformed(format!("entry {}", entry[0]))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FeedRead::Entries {
            head: head.clone(),
            entries,
        })
    }

    /// Shows the customer one attempt of a challenge, as a list would:
    /// `need` becomes `question_sent`. `None` when that attempt is no longer
    /// waiting for this customer.
    pub async fn show_challenge(
        &self,
        customer: &CustomerId,
        access: &AccessId,
        attempt: u32,
    ) -> Result<Option<Access>, StoreError> {
        let grace = millis(self.options.in_flight_grace()).to_string();
        let attempt = attempt.to_string();
        // The score only matters to a reader that may drop an index entry;
        // this one never does.
        let args = [customer.as_str(), "0", grace.as_str(), attempt.as_str()];
        let step = self
            .step(&self.scripts.send_question, access, &args)
            .await?;
        Ok(if step.outcome == "done" {
            step.access
        } else {
            None
        })
    }

    /// Appends what a step did (`moves`: `type@audit-id`, comma-separated)
    /// to the access's customer's feed. The step already happened, so a
    /// failure is retried a few times, then logged: only this feed entry is
    /// lost.
    pub(super) async fn feed_append(&self, access: &Access, moves: &str) {
        let attempt = access.attempt.to_string();
        let started_at = access.started_at.0.to_string();
        let updated_at = access.updated_at.0.to_string();
        // The feed's keys outlive any access they report on, so a reader
        // behind them finds a removal recorded rather than a new stream.
        let keep = self.options.feed_retention + self.options.retention;
        let mut args = vec![
            self.keys().feed_channel(&access.customer),
            self.options.feed_length.to_string(),
            millis(self.options.feed_retention).to_string(),
            millis(keep).to_string(),
        ];
        for moved in moves.split(',') {
            let (kind, audit_id) = moved.split_once('@').unwrap_or((moved, "0-0"));
            let (event, status, at) = match kind {
                "challenge" => (FeedEvent::Challenge, Status::Need.as_str(), &started_at),
                status => (FeedEvent::Status, status, &updated_at),
            };
            args.extend([
                event.as_str().to_owned(),
                access.access.to_string(),
                status.to_owned(),
                attempt.clone(),
                at.clone(),
                audit_id.to_owned(),
            ]);
        }
        let customer = &access.customer;
        let mut invocation = self.scripts.feed_add.key(self.keys().feed(customer));
        invocation.key(self.keys().feed_latest(customer));
        for arg in &args {
            invocation.arg(arg);
        }
        let mut pause = FEED_RETRY_PAUSE;
        for remaining in (0..FEED_TRIES).rev() {
            let mut conn = self.link.get();
            match self
                .bounded(invocation.invoke_async::<String>(&mut conn))
                .await
            {
                Ok(_) => return,
                Err(error) if remaining == 0 => {
                    tracing::warn!(%customer, access = %access.access, %error, "a feed entry was lost");
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }
}

fn parse_entry(entry: &[String]) -> Option<FeedEntry> {
    let [id, event, access, status, attempt, at] = entry else {
        return None;
    };
    let event = match event.as_str() {
        "challenge" => FeedEvent::Challenge,
        "status" => FeedEvent::Status,
        _ => return None,
    };
    Some(FeedEntry {
        id: id.clone(),
        event,
        access: AccessId::parse(access.as_str()).ok()?,
        status: Status::parse(status)?,
        attempt: u32::from_str(attempt).ok()?,
        at: UnixMillis(u64::from_str(at).ok()?),
    })
}
