//! Waiting for a token without polling.
//!
//! A gateway holds one Redis pub/sub connection, shared by every waiting
//! request. A waiter registers the access's `changed` channel; the first
//! waiter of a channel makes the subscriber task SUBSCRIBE to it, the last
//! one leaving makes it UNSUBSCRIBE. Messages are fanned out in-process
//! through a `watch` per channel.
//!
//! Redis is the truth and a message is only a hint: on any message the waiter
//! re-reads the hash. Two rules make that lossless:
//!
//! - subscribe first, and read the hash only once the subscription is
//!   confirmed, or a token landing in between is missed;
//! - when the connection drops, messages published meanwhile are gone, so
//!   after reconnecting and resubscribing, every waiter re-reads.
//!
//! Only the subscriber task sends (UN)SUBSCRIBE. It reconciles what waiters
//! want with what the server has, so a quick unsubscribe/subscribe of the
//! same channel can never be reordered into a lost subscription.
//!
//! On a Redis Cluster the channels are sharded (`SSUBSCRIBE`, `SPUBLISH`): a
//! message stays on the shard that owns its access. See `shards`: each
//! channel is subscribed on its slot's primary, and one that is lost (its
//! node failed, or its slot moved) is subscribed again where it now lives,
//! after which its waiters re-read. A shard that is down holds up only its
//! own channels.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::model::{AccessId, Status, Token, UnixMillis};
use crate::redis_target::Target;

mod shards;
use crate::store::{Store, StoreError};
use shards::Shards;

/// How many channels go in one (UN)SUBSCRIBE command.
const CHANNELS_PER_COMMAND: usize = 512;

/// How soon a waiter whose re-read failed reads again.
const READ_AGAIN_AFTER_FAILURE: Duration = Duration::from_millis(250);

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("the Redis subscriber is not connected")]
    SubscriberDown,
    #[error("this gateway already holds its maximum of {0} waiting requests")]
    Full(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a long poll ends with.
#[derive(Debug)]
pub enum Answer {
    Token {
        attempt: u32,
        token: Token,
        /// When the token was stored, by Redis's clock.
        stored_at: UnixMillis,
    },
    /// The timeout passed (or the gateway is shutting down) and the
    /// challenge is still waiting.
    StillWaiting,
    /// The challenge ended without a token, or the token was already used.
    Finished(Status),
    NotFound,
}

impl Answer {
    /// What a log line may say of the answer: never the token.
    fn describe(&self) -> &'static str {
        match self {
            Answer::Token { .. } => "token",
            Answer::StillWaiting => "still waiting",
            Answer::Finished(status) => status.as_str(),
            Answer::NotFound => "not found",
        }
    }
}

/// Waits up to `timeout` for the access's token. A zero timeout just looks.
pub async fn wait_for_token(
    store: &Store,
    waiters: &Waiters,
    access: &AccessId,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<Answer, WaitError> {
    let answer = wait(store, waiters, access, timeout, shutdown).await?;
    tracing::trace!(%access, answer = answer.describe(), "long poll answered");
    Ok(answer)
}

async fn wait(
    store: &Store,
    waiters: &Waiters,
    access: &AccessId,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<Answer, WaitError> {
    // Every read is boxed: the read's state machine is large, and a parked
    // waiter, which is most of them, should not carry room for it.
    if timeout.is_zero() {
        return Ok(Box::pin(look(store, access)).await?.0);
    }
    let deadline = Instant::now() + timeout;
    let _admitted = waiters.admit()?;
    // Subscribe before reading, or a token landing in between is missed.
    let mut subscription = tokio::select! {
        subscribed = waiters.subscribe(store.keys().changed(access)) => subscribed?,
        () = shutdown.cancelled() => return Ok(Answer::StillWaiting),
    };
    let (answer, mut expires_at) = Box::pin(look(store, access)).await?;
    if !matches!(answer, Answer::StillWaiting) {
        return Ok(answer);
    }
    let _parked = waiters.park();
    // The challenge's own deadline wakes the waiter too, so it learns of the
    // expiry at once rather than at the next sweep. Once per deadline: if
    // this gateway's clock runs ahead of Redis's, the sweep's message follows.
    let mut checked_deadline = None;
    // Set when a re-read failed: the hint that woke the waiter is spent, so
    // it reads again soon instead of waiting for another one.
    let mut read_again_at = None;
    loop {
        let check = expires_at.filter(|e| Some(*e) != checked_deadline);
        tokio::select! {
            () = subscription.changed() => {}
            () = tokio::time::sleep_until(check.map_or(deadline, instant_after)), if check.is_some() => {
                checked_deadline = check;
            }
            () = tokio::time::sleep_until(read_again_at.unwrap_or(deadline)), if read_again_at.is_some() => {}
            () = tokio::time::sleep_until(deadline) => return Ok(Answer::StillWaiting),
            () = shutdown.cancelled() => return Ok(Answer::StillWaiting),
        }
        // A waiter that Redis cannot answer for a moment keeps waiting: its
        // client has been told nothing yet, and the token is safe in Redis.
        match Box::pin(look(store, access)).await {
            Ok((Answer::StillWaiting, deadline_now)) => {
                expires_at = deadline_now;
                read_again_at = None;
            }
            Ok((answer, _)) => {
                if let Answer::Token { stored_at, .. } = &answer {
                    metrics::waiter_woken(*stored_at);
                }
                return Ok(answer);
            }
            Err(error) if error.is_unavailable() => {
                tracing::debug!(%access, %error, "a waiter could not re-read; trying again");
                read_again_at = Some(Instant::now() + READ_AGAIN_AFTER_FAILURE);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The instant just after a wall-clock moment.
fn instant_after(moment: UnixMillis) -> Instant {
    let ahead = moment
        .to_system_time()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now() + ahead + Duration::from_millis(5)
}

/// The answer as it stands, with the deadline of a challenge still waiting.
async fn look(
    store: &Store,
    access: &AccessId,
) -> Result<(Answer, Option<UnixMillis>), StoreError> {
    let Some(view) = store.token_view(access).await? else {
        return Ok((Answer::NotFound, None));
    };
    let expires_at = view.status.is_waiting().then_some(view.expires_at);
    let answer = match (view.status, view.token) {
        (Status::TokenReceived, Some(token)) => Answer::Token {
            attempt: view.attempt,
            token,
            stored_at: view.updated_at,
        },
        (Status::TokenReceived, None) => {
            return Err(StoreError::malformed(
                access,
                "status is token_received but there is no token",
            ));
        }
        (status, _) if status.is_waiting() => Answer::StillWaiting,
        (status, _) => Answer::Finished(status),
    };
    Ok((answer, expires_at))
}

/// The in-process side of the shared subscriber: cheap to clone, one per
/// gateway.
#[derive(Clone)]
pub struct Waiters {
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

impl Waiters {
    /// Starts the subscriber task, and returns once it is connected, or with
    /// an error after `confirm_timeout`.
    pub async fn start(
        target: Target,
        options: SubscriberOptions,
        shutdown: CancellationToken,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), WaitError> {
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
        let task = tokio::spawn(run_subscriber(shared.clone(), target, shutdown));
        let first =
            tokio::time::timeout(options.confirm_timeout, connected.wait_for(|up| *up)).await;
        if !matches!(first, Ok(Ok(_))) {
            task.abort();
            return Err(WaitError::SubscriberDown);
        }
        Ok((Self { shared }, task))
    }

    pub fn is_connected(&self) -> bool {
        *self.shared.connected.borrow()
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
    pub fn admit(&self) -> Result<Admission, WaitError> {
        let max = self.shared.options.max_held;
        let admitted = self
            .shared
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < max).then_some(held + 1)
            });
        match admitted {
            Ok(_) => Ok(Admission(self.shared.clone())),
            Err(_) => Err(WaitError::Full(max)),
        }
    }

    /// Counts a long poll as waiting until the guard is dropped.
    fn park(&self) -> Parked {
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
    pub async fn subscribe(&self, channel: String) -> Result<Subscription, WaitError> {
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
            return Err(WaitError::SubscriberDown);
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

struct Parked(Arc<Shared>);

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

/// The subscriber task: connects, resubscribes, pumps messages, and
/// reconnects with backoff whenever the connection fails, until shutdown.
async fn run_subscriber(shared: Arc<Shared>, target: Target, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    loop {
        let connect = tokio::time::timeout(
            shared.options.confirm_timeout,
            Transport::connect(&target, &shared),
        );
        let session = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = connect => match connected {
                Ok(Ok(transport)) => Session::start(&shared, transport).await,
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("connection timed out".to_owned()),
            },
        };
        match session {
            Ok(session) => {
                backoff = Duration::from_millis(50);
                if !std::mem::take(&mut first) {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    metrics::subscriber_reconnected();
                }
                let ended = session.run(&shared, &shutdown).await;
                shared.lost_connection();
                match ended {
                    Ok(()) => return,
                    Err(reason) => {
                        tracing::warn!(%reason, "Redis subscriber disconnected; reconnecting")
                    }
                }
            }
            Err(reason) => {
                shared.lost_connection();
                tracing::warn!(%reason, retry_in = ?backoff, "Redis subscriber cannot connect");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One subscriber connection: classic pub/sub on a single Redis, sharded
/// pub/sub on a cluster, one connection per primary.
enum Transport {
    Single {
        sink: PubSubSink,
        messages: redis::aio::PubSubStream,
    },
    Cluster(Box<Shards>),
}

/// What the connection reports.
enum Event {
    /// A message: the channel's waiters re-read.
    Changed(String),
    /// Channels the server no longer delivers (a cluster node failed, or a
    /// slot moved): they are subscribed again where they now live.
    Dropped(Vec<String>),
    /// A cluster node became reachable: the channels waiting for it are
    /// subscribed now.
    Retry,
    Closed,
}

impl Transport {
    async fn connect(target: &Target, shared: &Shared) -> redis::RedisResult<Transport> {
        match target {
            Target::Single(client) => {
                let (sink, messages) = client.get_async_pubsub().await?.split();
                Ok(Transport::Single { sink, messages })
            }
            Target::Cluster(seeds) => Ok(Transport::Cluster(Box::new(
                Shards::connect(seeds, shared.options.confirm_timeout).await?,
            ))),
        }
    }

    async fn next(&mut self) -> Event {
        match self {
            Transport::Single { messages, .. } => match messages.next().await {
                Some(message) => Event::Changed(message.get_channel_name().to_owned()),
                None => Event::Closed,
            },
            Transport::Cluster(shards) => shards.next().await,
        }
    }

    /// Subscribes `channels`, calling `confirm` for each one the server
    /// confirmed. On a single Redis a failure ends the connection. On a
    /// cluster a channel whose shard cannot answer now is left out, for a
    /// later try, so a shard that is down holds up only its own channels.
    async fn subscribe(
        &mut self,
        channels: &[String],
        timeout: Duration,
        confirm: &mut (dyn FnMut(&String) + Send),
    ) -> Result<(), String> {
        match self {
            Transport::Single { sink, .. } => {
                answered("SUBSCRIBE", timeout, sink.subscribe(channels)).await?;
                channels.iter().for_each(confirm);
            }
            Transport::Cluster(shards) => shards.subscribe(channels, confirm).await,
        }
        Ok(())
    }

    async fn unsubscribe(&mut self, channels: &[String], timeout: Duration) -> Result<(), String> {
        match self {
            Transport::Single { sink, .. } => {
                answered("UNSUBSCRIBE", timeout, sink.unsubscribe(channels)).await
            }
            Transport::Cluster(shards) => {
                shards.unsubscribe(channels).await;
                Ok(())
            }
        }
    }

    /// The heartbeat. A single Redis that does not answer ends the session;
    /// a cluster node that does not answer loses only its own channels.
    async fn ping(&mut self, timeout: Duration) -> Result<(), String> {
        match self {
            Transport::Single { sink, .. } => {
                answered("PING", timeout, sink.ping::<redis::Value>())
                    .await
                    .map(drop)
            }
            Transport::Cluster(shards) => {
                shards.ping();
                Ok(())
            }
        }
    }
}

/// A subscriber command, bounded in time, with its failure as a reason.
async fn answered<T>(
    command: &str,
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(format!("{command} failed: {error}")),
        Err(_) => Err(format!("{command} timed out")),
    }
}

/// One connection's life.
struct Session {
    transport: Transport,
    /// What the server has confirmed on this connection.
    subscribed: HashSet<String>,
    /// When channels a shard could not subscribe are tried again.
    retry_at: Option<Instant>,
}

impl Session {
    /// Resubscribes every wanted channel, then makes every waiter re-read:
    /// whatever was published while no connection listened is lost.
    async fn start(shared: &Shared, transport: Transport) -> Result<Session, String> {
        let mut session = Session {
            transport,
            subscribed: HashSet::new(),
            retry_at: None,
        };
        let wanted: Vec<String> = {
            let mut registry = shared.registry();
            registry.dirty.clear();
            registry.wanted.keys().cloned().collect()
        };
        session.subscribe(shared, wanted).await?;
        shared.connected.send_replace(true);
        Ok(session)
    }

    /// Returns `Ok` on shutdown, and the reason when the connection failed.
    async fn run(mut self, shared: &Shared, shutdown: &CancellationToken) -> Result<(), String> {
        let every = shared.options.heartbeat;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            let retry_at = self.retry_at;
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                event = self.transport.next() => match event {
                    Event::Changed(channel) => shared.signal(&channel),
                    Event::Dropped(channels) => {
                        for channel in &channels {
                            self.subscribed.remove(channel);
                        }
                        shared.registry().dirty.extend(channels);
                        self.reconcile(shared).await?;
                    }
                    Event::Retry => self.reconcile(shared).await?,
                    Event::Closed => return Err("the connection closed".to_owned()),
                },
                () = shared.dirty.notified() => self.reconcile(shared).await?,
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.retry_at = None;
                    self.reconcile(shared).await?;
                }
                _ = heartbeat.tick() => self.transport.ping(shared.options.confirm_timeout).await?,
            }
        }
    }

    /// Brings the server's subscriptions in line with the dirty channels.
    async fn reconcile(&mut self, shared: &Shared) -> Result<(), String> {
        let (to_subscribe, to_unsubscribe) = {
            let mut registry = shared.registry();
            let dirty: Vec<String> = registry.dirty.drain().collect();
            let mut to_subscribe = Vec::new();
            let mut to_unsubscribe = Vec::new();
            for channel in dirty {
                match (
                    registry.wanted.get(&channel),
                    self.subscribed.contains(&channel),
                ) {
                    (Some(wanted), true) => {
                        wanted.confirmed.send_replace(true);
                    }
                    (Some(_), false) => to_subscribe.push(channel),
                    (None, true) => to_unsubscribe.push(channel),
                    (None, false) => {}
                }
            }
            (to_subscribe, to_unsubscribe)
        };
        self.subscribe(shared, to_subscribe).await?;
        for batch in to_unsubscribe.chunks(CHANNELS_PER_COMMAND) {
            self.transport
                .unsubscribe(batch, shared.options.confirm_timeout)
                .await?;
            for channel in batch {
                self.subscribed.remove(channel);
            }
        }
        Ok(())
    }

    /// Subscribes in batches, then notifies the channels' waiters: a waiter
    /// that was waiting for its confirmation proceeds, and one that was
    /// already waiting re-reads. A channel a shard could not subscribe stays
    /// dirty, and is tried again shortly.
    async fn subscribe(&mut self, shared: &Shared, channels: Vec<String>) -> Result<(), String> {
        for batch in channels.chunks(CHANNELS_PER_COMMAND) {
            let mut confirmed = HashSet::with_capacity(batch.len());
            let mut confirm = |channel: &String| {
                if let Some(wanted) = shared.registry().wanted.get(channel) {
                    wanted.confirmed.send_replace(true);
                }
                confirmed.insert(channel.clone());
            };
            self.transport
                .subscribe(batch, shared.options.confirm_timeout, &mut confirm)
                .await?;
            if confirmed.len() < batch.len() {
                let left = batch.iter().filter(|c| !confirmed.contains(*c)).cloned();
                shared.registry().dirty.extend(left);
                self.retry_at = Some(Instant::now() + READ_AGAIN_AFTER_FAILURE);
            }
            self.subscribed.extend(confirmed);
        }
        Ok(())
    }
}

impl Shared {
    fn signal(&self, channel: &str) {
        if let Some(wanted) = self.registry().wanted.get(channel) {
            wanted.confirmed.send_modify(|_| {});
        }
    }

    /// Marks the connection down. Waiters keep waiting, and re-read once the
    /// next connection has resubscribed everything wanted: that new
    /// connection confirms every channel again before it reports up.
    fn lost_connection(&self) {
        self.connected.send_replace(false);
    }
}
