//! The one shared pub/sub subscriber of a gateway.
//!
//! A gateway holds one Redis pub/sub connection, shared by every long poll
//! and live feed (see `follow`). A follower registers a channel; the first
//! follower of a channel makes the subscriber task SUBSCRIBE to it, the last
//! one leaving makes it UNSUBSCRIBE. Messages are fanned out in-process
//! through a `watch` per channel.
//!
//! A message is only a hint: the follower re-reads Redis. Two rules make that
//! lossless, and this module keeps the second:
//!
//! - subscribe first, and read only once the subscription is confirmed, or a
//!   change landing in between is missed;
//! - when the connection drops, messages published meanwhile are gone, so
//!   after reconnecting and resubscribing, every follower is woken to re-read.
//!
//! The rooms: here, the registry of wanted channels and the handle
//! followers hold ([`Subscriber`]); `session`, the task that owns the
//! connection, reconnects it and reconciles what followers want with what
//! the server has (only it sends (UN)SUBSCRIBE, so a quick unsubscribe and
//! subscribe of one channel can never be reordered into a lost
//! subscription); `transport`, one connection's commands on a single Redis
//! or a cluster; and `shards`, the cluster's side: on a Redis Cluster the
//! channels are sharded (`SSUBSCRIBE`, `SPUBLISH`), each is subscribed on its
//! slot's primary, and one that is lost (its node failed, or its slot moved)
//! is subscribed again where it now lives, after which its followers
//! re-read. A shard that is down holds up only its own channels; `slots`
//! reads the slot map.

mod session;
mod shards;
mod slots;
mod transport;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::redis_target::Target;

/// Why a follower cannot be served now: a 503 for its client.
#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error("the Redis subscriber is not connected")]
    Down,
    #[error("this gateway already holds its maximum of {0} waiting requests")]
    Full(usize),
}

/// The in-process side of the shared subscriber: cheap to clone, one per
/// gateway.
#[derive(Clone)]
pub struct Subscriber {
    shared: Arc<Shared>,
}

struct Shared {
    registry: Mutex<Registry>,
    /// Wakes the subscriber task when the registry has dirty channels.
    dirty: Notify,
    connected: watch::Sender<bool>,
    /// How many times a lost connection was replaced.
    reconnects: AtomicU64,
    /// Long polls that have read once and are now waiting for a hint.
    parked: AtomicUsize,
    /// Long polls and live feeds held now, against `options.max_held`.
    held: AtomicUsize,
    options: SubscriberOptions,
}

#[derive(Debug, Clone, Copy)]
pub struct SubscriberOptions {
    /// How long a waiter waits for its subscription to be confirmed, and
    /// any command on the subscriber connection for its answer.
    pub confirm_timeout: Duration,
    /// How often the subscriber connection is pinged, so that a half-open
    /// connection is found and replaced. Per gateway, not per waiter.
    pub heartbeat: Duration,
    /// The most long polls and live feeds held at once: memory stays
    /// bounded, and the next one gets a 503 instead.
    pub max_held: usize,
}

#[derive(Default)]
struct Registry {
    /// The channels some waiter wants. The `watch` holds whether the server
    /// has confirmed the subscription; every message on the channel, and
    /// every resubscription, notifies it.
    wanted: HashMap<String, Channel>,
    /// Channels whose wanted state changed since the task last looked.
    dirty: HashSet<String>,
}

struct Channel {
    waiters: usize,
    confirmed: watch::Sender<bool>,
}

impl Subscriber {
    /// Starts the subscriber task, and returns once it is connected, or with
    /// an error after `confirm_timeout`.
    pub async fn start(
        target: Target,
        options: SubscriberOptions,
        shutdown: CancellationToken,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), SubscriberError> {
        let shared = Arc::new(Shared {
            registry: Mutex::default(),
            dirty: Notify::new(),
            connected: watch::Sender::new(false),
            reconnects: AtomicU64::new(0),
            parked: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            options,
        });
        let mut connected = shared.connected.subscribe();
        let task = tokio::spawn(session::run(shared.clone(), target, shutdown));
        let first =
            tokio::time::timeout(options.confirm_timeout, connected.wait_for(|up| *up)).await;
        if !matches!(first, Ok(Ok(_))) {
            task.abort();
            return Err(SubscriberError::Down);
        }
        Ok((Self { shared }, task))
    }

    pub fn is_connected(&self) -> bool {
        *self.shared.connected.borrow()
    }

    /// Follows whether the subscriber is connected: each new connection,
    /// after one was lost, is a reconnection to Redis.
    pub fn connection(&self) -> watch::Receiver<bool> {
        self.shared.connected.subscribe()
    }

    /// How many times the subscriber connection was lost and replaced.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// How many long polls are waiting for a token now.
    pub fn waiting(&self) -> usize {
        self.shared.parked.load(Ordering::Relaxed)
    }

    /// Admits one more held request (a long poll or a live feed), or refuses
    /// it at the bound. The admission lasts until it is dropped.
    pub fn admit(&self) -> Result<Admission, SubscriberError> {
        let max = self.shared.options.max_held;
        let admitted = self
            .shared
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < max).then_some(held + 1)
            });
        match admitted {
            Ok(_) => Ok(Admission(self.shared.clone())),
            Err(_) => Err(SubscriberError::Full(max)),
        }
    }

    /// Counts a long poll as waiting until the guard is dropped.
    pub(crate) fn park(&self) -> Parked {
        self.shared.parked.fetch_add(1, Ordering::Relaxed);
        metrics::waiters(1.0);
        Parked(self.shared.clone())
    }

    /// How many distinct channels have waiters now.
    pub fn channels(&self) -> usize {
        self.shared.registry().wanted.len()
    }

    /// Subscribes to `channel` and returns once Redis has confirmed it. While
    /// the subscriber reconnects, that takes until it has resubscribed, or
    /// fails after `confirm_timeout`.
    pub async fn subscribe(&self, channel: String) -> Result<Subscription, SubscriberError> {
        let receiver = {
            let mut registry = self.shared.registry();
            let entry = registry
                .wanted
                .entry(channel.clone())
                .or_insert_with(|| Channel {
                    waiters: 0,
                    confirmed: watch::Sender::new(false),
                });
            entry.waiters += 1;
            let receiver = entry.confirmed.subscribe();
            if !*receiver.borrow() {
                registry.dirty.insert(channel.clone());
            }
            receiver
        };
        // From here on, dropping the subscription gives the waiter back.
        let mut subscription = Subscription {
            shared: self.shared.clone(),
            channel,
            receiver,
        };
        self.shared.dirty.notify_one();
        let confirmed = tokio::time::timeout(
            self.shared.options.confirm_timeout,
            subscription.receiver.wait_for(|confirmed| *confirmed),
        )
        .await
        .is_ok_and(|watched| watched.is_ok());
        if !confirmed {
            return Err(SubscriberError::Down);
        }
        subscription.receiver.borrow_and_update();
        Ok(subscription)
    }
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The registry is never left half-updated by a panic (every critical
        // section is a few map operations), so a poisoned lock is still sound.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One held request, counted against the bound until dropped.
pub struct Admission(Arc<Shared>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) struct Parked(Arc<Shared>);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::Relaxed);
        metrics::waiters(-1.0);
    }
}

/// One waiter's hold on a channel. Dropping it (the request ended, or its
/// client went away) releases the channel.
pub struct Subscription {
    shared: Arc<Shared>,
    channel: String,
    receiver: watch::Receiver<bool>,
}

impl Subscription {
    /// Resolves when something may have changed: a message on the channel,
    /// or a resubscription after the connection was lost.
    pub async fn changed(&mut self) {
        if self.receiver.changed().await.is_err() {
            // The sender lives as long as any subscription to the channel,
            // this one included, so this cannot happen; never spin on it.
            std::future::pending::<()>().await;
        }
    }
}

impl Subscription {
    /// Whether something may have changed since the last look, without
    /// taking it as seen.
    pub fn has_changed(&self) -> bool {
        self.receiver.has_changed().unwrap_or(false)
    }

    /// Takes what changed as seen.
    pub fn mark_seen(&mut self) {
        self.receiver.borrow_and_update();
    }

    /// Resolves once [`has_changed`](Self::has_changed) is true, taking
    /// nothing as seen.
    pub async fn until_changed(&mut self) {
        // `wait_for` marks the value seen; a clone's does not touch this one.
        let mut look = self.receiver.clone();
        if look.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut registry = self.shared.registry();
        if let Some(channel) = registry.wanted.get_mut(&self.channel) {
            channel.waiters -= 1;
            if channel.waiters == 0 {
                registry.wanted.remove(&self.channel);
                registry.dirty.insert(self.channel.clone());
                drop(registry);
                self.shared.dirty.notify_one();
            }
        }
    }
}
