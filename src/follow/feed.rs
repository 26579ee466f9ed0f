//! A customer's live feed, as one front end follows it.
//!
//! A feed subscribes to the customer's feed channel through the shared
//! subscriber (a hint, as for waiters), then reads the feed stream from its
//! own position with plain non-blocking reads on the shared connection. So a
//! thousand open feeds cost no Redis connection of their own, and no timer
//! re-reads anything: a feed reads when a hint comes.
//!
//! A feed that starts without a position, or whose position is gone from
//! the stream, starts over: it sends what is waiting now, marked with the
//! stream's head, then follows the stream from there.

use std::collections::{HashSet, VecDeque};

use tokio_util::sync::CancellationToken;

use super::FollowError;
use crate::metrics;
use crate::model::{Access, AccessId, CustomerId, SessionDigest, Status, UnixMillis};
use crate::pubsub::{Admission, Subscriber, Subscription};
use crate::store::{FeedEvent, FeedRead, Store, StoreError};

/// How many stream entries one read takes.
const READ_BATCH: usize = 100;

/// What a front end is told.
#[derive(Debug)]
pub enum FeedItem {
    /// A challenge waits for the customer: the list item, as now shown.
    /// Challenges sent on starting over carry no id but the last, so a
    /// client cut off among them resumes from before them all.
    Challenge {
        id: Option<String>,
        access: Box<Access>,
    },
    /// One of the customer's accesses changed status.
    Status {
        id: String,
        access: AccessId,
        status: Status,
        attempt: u32,
        at: UnixMillis,
    },
}

/// Why a feed stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEnd {
    /// The gateway is shutting down.
    Shutdown,
    /// The session it was opened with ended: revoked, or expired.
    SessionEnded,
}

/// The session a feed was opened with, which ends it when it ends.
pub struct FeedSession {
    pub digest: SessionDigest,
    /// Its TTL when the request was let in, by Redis's clock.
    pub left: std::time::Duration,
}

/// A feed's hold on its session: the channel that hears of its revocation,
/// and its end.
struct Watched {
    digest: SessionDigest,
    ended: Subscription,
    expires: tokio::time::Instant,
}

impl Watched {
    /// Whether the session may have ended since it was last checked: a
    /// feed with items to send looks before each one, so that a busy feed
    /// ends as soon as an idle one.
    fn may_have_ended(&self) -> bool {
        self.ended.has_changed() || self.expires <= tokio::time::Instant::now()
    }

    /// Resolves when [`may_have_ended`](Self::may_have_ended) turns true,
    /// leaving a message unseen for it.
    async fn ended_or_expired(&mut self) {
        tokio::select! {
            () = self.ended.until_changed() => {}
            () = tokio::time::sleep_until(self.expires) => {}
        }
    }

    /// Redis still holds the session: its TTL ran out by this timer but not
    /// yet in Redis, so look again a moment later rather than at once.
    fn not_yet(&mut self) {
        let now = tokio::time::Instant::now();
        if self.expires <= now {
            self.expires = now + EXPIRY_RECHECK;
        }
    }
}

/// How soon a feed whose session outlived its end by this gateway's clock
/// looks again: within the 5 s a session's feed may outlive it.
const EXPIRY_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Feed {
    store: Store,
    customer: CustomerId,
    /// The last stream id this feed has handed out, or `0-0`.
    position: String,
    queue: VecDeque<FeedItem>,
    /// Set by a start-over, cleared by the next read that finds no gap: a
    /// feed never starts over twice without waiting for a hint between.
    started_over: bool,
    /// The challenges the last start-over sent: the stream may also hold
    /// their `challenge` entries, after its head, which must not send them
    /// again.
    sent_at_start: HashSet<(AccessId, u32)>,
    subscription: Subscription,
    session: Option<Watched>,
    shutdown: CancellationToken,
    /// Counts this feed against the gateway's bound while it is open.
    _admitted: Admission,
    _open: OpenFeed,
}

/// Counts an open feed in the metrics while it lives.
struct OpenFeed;

impl OpenFeed {
    fn new() -> Self {
        metrics::feed_clients(1.0);
        OpenFeed
    }
}

impl Drop for OpenFeed {
    fn drop(&mut self) {
        metrics::feed_clients(-1.0);
    }
}

impl Feed {
    /// Opens a feed after `last_event_id`, or from what is waiting now.
    /// A feed opened with a session ends when the session does.
    pub async fn open(
        store: Store,
        subscriber: &Subscriber,
        customer: CustomerId,
        last_event_id: Option<String>,
        session: Option<FeedSession>,
        shutdown: CancellationToken,
    ) -> Result<Feed, FollowError> {
        let admitted = subscriber.admit()?;
        let session = match session {
            Some(session) => Some(watch_session(&store, subscriber, session).await?),
            None => None,
        };
        // Subscribe before reading, or an entry landing in between is missed.
        let subscription = subscriber
            .subscribe(store.keys().feed_channel(&customer))
            .await?;
        let mut feed = Feed {
            store,
            customer,
            position: last_event_id.clone().unwrap_or_else(|| "0-0".to_owned()),
            queue: VecDeque::new(),
            sent_at_start: HashSet::new(),
            started_over: false,
            subscription,
            session,
            shutdown,
            _admitted: admitted,
            _open: OpenFeed::new(),
        };
        if last_event_id.is_some() {
            feed.catch_up().await?;
        } else {
            let head = feed.head().await?;
            feed.start_over(head).await?;
        }
        Ok(feed)
    }

    /// The next item, waiting for one if need be; or why the feed ends.
    pub async fn next(&mut self) -> Result<Result<FeedItem, FeedEnd>, StoreError> {
        loop {
            if let Some(watched) = &mut self.session
                && watched.may_have_ended()
            {
                watched.ended.mark_seen();
                if self.store.session(&watched.digest).await?.is_none() {
                    return Ok(Err(FeedEnd::SessionEnded));
                }
                watched.not_yet();
            }
            if let Some(item) = self.queue.pop_front() {
                return Ok(Ok(item));
            }
            if self.catch_up().await? {
                continue;
            }
            let session = async {
                match &mut self.session {
                    Some(watched) => watched.ended_or_expired().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.subscription.changed() => {}
                // A message, a resubscription (one may have been missed) or
                // its TTL run out: the check at the loop's top asks Redis.
                () = session => {}
                () = self.shutdown.cancelled() => return Ok(Err(FeedEnd::Shutdown)),
            }
        }
    }

    async fn head(&self) -> Result<String, StoreError> {
        match self.store.feed_since(&self.customer, "0-0", 0).await? {
            FeedRead::Entries { head, .. } | FeedRead::Gap { head } => Ok(head),
        }
    }

    /// Queues what is waiting now, marked with `head`, and follows the
    /// stream from there. Showing them moves `need` to `question_sent`.
    async fn start_over(&mut self, head: String) -> Result<(), StoreError> {
        let waiting = self.store.pending_for_customer(&self.customer).await?;
        self.sent_at_start = waiting
            .iter()
            .map(|access| (access.access.clone(), access.attempt))
            .collect();
        let last = waiting.len();
        self.queue.extend(
            waiting
                .into_iter()
                .enumerate()
                .map(|(i, access)| FeedItem::Challenge {
                    id: (i + 1 == last).then(|| head.clone()),
                    access: Box::new(access),
                }),
        );
        self.started_over = true;
        self.position = head;
        Ok(())
    }

    /// Reads what the stream holds after this feed's position. Returns
    /// whether it moved on.
    async fn catch_up(&mut self) -> Result<bool, StoreError> {
        let read = self
            .store
            .feed_since(&self.customer, &self.position, READ_BATCH)
            .await?;
        let entries = match read {
            // Right after starting over, a gap again can only mean the feed
            // is being trimmed faster than it is read: wait for a hint.
            FeedRead::Gap { .. } if self.started_over => return Ok(false),
            FeedRead::Gap { head } => {
                self.start_over(head).await?;
                return Ok(true);
            }
            FeedRead::Entries { entries, .. } => entries,
        };
        self.started_over = false;
        let moved = !entries.is_empty();
        for entry in entries {
            self.position.clone_from(&entry.id);
            match entry.event {
                // Shown only if that attempt still waits; a status entry
                // follows for whatever happened to it instead.
                FeedEvent::Challenge
                    if self
                        .sent_at_start
                        .contains(&(entry.access.clone(), entry.attempt)) => {}
                FeedEvent::Challenge => {
                    let shown = self
                        .store
                        .show_challenge(&self.customer, &entry.access, entry.attempt)
                        .await?;
                    if let Some(access) = shown {
                        self.queue.push_back(FeedItem::Challenge {
                            id: Some(entry.id),
                            access: Box::new(access),
                        });
                    }
                }
                FeedEvent::Status => self.queue.push_back(FeedItem::Status {
                    id: entry.id,
                    access: entry.access,
                    status: entry.status,
                    attempt: entry.attempt,
                    at: entry.at,
                }),
            }
        }
        Ok(moved)
    }
}

/// Subscribes to the session's end, then checks it is still live: a
/// revocation between the gateway's check and the subscription is not
/// missed.
async fn watch_session(
    store: &Store,
    subscriber: &Subscriber,
    session: FeedSession,
) -> Result<Watched, FollowError> {
    let ended = subscriber
        .subscribe(store.keys().session(&session.digest).ended)
        .await?;
    if store.session(&session.digest).await?.is_none() {
        return Err(FollowError::SessionEnded);
    }
    Ok(Watched {
        digest: session.digest,
        ended,
        expires: tokio::time::Instant::now() + session.left,
    })
}
