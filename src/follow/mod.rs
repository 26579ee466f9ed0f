//! What follows the shared subscriber (`pubsub`): the scraper's long poll
//! for a token, and a customer's live feed. Both subscribe first and read
//! Redis after, so nothing that lands in between is missed; both take a
//! message only as a hint to read again.

mod feed;
mod long_poll;

pub use feed::{Feed, FeedEnd, FeedItem, FeedSession};
pub use long_poll::{Answer, wait_for_token};

use crate::pubsub::SubscriberError;
use crate::store::StoreError;

/// Why a long poll or a live feed could not be served.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The subscriber is down, or this gateway holds all it may.
    #[error(transparent)]
    Subscriber(#[from] SubscriberError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The session the feed was asked for with ended meanwhile.
    #[error("this session has ended; ask for a new one")]
    SessionEnded,
}
