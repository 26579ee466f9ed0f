//! A customer's live feed: the stream `2fa:customer:{<customer>}:events`,
//! written by the relay of each step's outbox (`relay`), and read by every
//! gateway's feed clients from their own position.

use super::script::{FeedRead, FeedSince};
use super::{Store, StoreError};
use crate::model::CustomerId;

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
}
