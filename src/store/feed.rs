//! A customer's live feed: the stream `2fa:customer:{<customer>}:events`,
//! written after each transition of one of their accesses, and read by
//! every gateway's feed clients from their own position.
//!
//! The feed lives in the customer's slot and a transition in the access's,
//! so the feed entry is a second write. A gateway that dies between the two
//! loses that one feed entry; the state, the audit trail and the indexes are
//! already right, and a client that starts over sees what is waiting.

use std::time::Duration;

use super::script::{FeedAdd, FeedAddEntry, FeedEvent, FeedRead, FeedSince};
use super::{Store, StoreError};
use crate::model::{CustomerId, Moved, Status, Transition};

/// How many times a feed entry is tried before it is given up.
const FEED_TRIES: usize = 3;

/// The pause before the second try; it doubles after.
const FEED_RETRY_PAUSE: Duration = Duration::from_millis(50);

impl Store {
    /// The feed entries after `after` (a stream id, or `0-0`), at most
    /// `count` of them; with a count of 0, only the head.
    pub async fn feed_since(
        &self,
        customer: &CustomerId,
        after: &str,
        count: usize,
    ) -> Result<FeedRead, StoreError> {
        self.feed_read(FeedSince {
            customer,
            after,
            count,
        })
        .await
    }

    /// Appends what a step did to the access's customer's feed. The step
    /// already happened, so a failure is retried a few times, then logged:
    /// only this feed entry is lost.
    pub(super) async fn feed_append(&self, transition: &Transition) {
        let entries: Vec<FeedAddEntry<'_>> = transition
            .moves
            .iter()
            .map(|moved| {
                let (event, status, at) = match moved.to {
                    Moved::Challenge => (FeedEvent::Challenge, Status::Need, transition.started_at),
                    Moved::To(status) => (FeedEvent::Status, status, transition.updated_at),
                };
                FeedAddEntry {
                    event,
                    access: &transition.access,
                    status,
                    attempt: transition.attempt,
                    at,
                    audit_id: &moved.audit_id,
                }
            })
            .collect();
        let add = FeedAdd {
            customer: &transition.customer,
            length: self.options.feed_length,
            retention: self.options.feed_retention,
            // The feed's keys outlive any access they report on, so a reader
            // behind them finds a removal recorded rather than a new stream.
            keep: self.options.feed_retention + self.options.retention,
            entries: &entries,
        };
        let mut pause = FEED_RETRY_PAUSE;
        for remaining in (0..FEED_TRIES).rev() {
            match self.feed_add(&add).await {
                Ok(_) => return,
                Err(error) if remaining == 0 => {
                    let (customer, access) = (&transition.customer, &transition.access);
                    tracing::warn!(%customer, %access, %error, "a feed entry was lost");
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }
}
