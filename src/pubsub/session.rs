//! The subscriber task: it owns the connection, resubscribes what is wanted
//! after every reconnection, pumps messages to the registry, and reconciles
//! what followers want with what the server has.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::transport::{Heard, Transport};
use crate::metrics;
use crate::redis_target::Target;

/// How many channels go in one (UN)SUBSCRIBE command.
const CHANNELS_PER_COMMAND: usize = 512;

/// How soon channels a cluster shard could not subscribe are tried again.
const RESUBSCRIBE_AFTER_FAILURE: Duration = Duration::from_millis(250);

/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The subscriber task: connects, resubscribes, pumps messages, and
/// reconnects with backoff whenever the connection fails, until shutdown.
pub(super) async fn run(shared: Arc<Shared>, target: Target, shutdown: CancellationToken) {
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
                    Heard::Changed(channel) => shared.signal(&channel),
                    Heard::Dropped(channels) => {
                        for channel in &channels {
                            self.subscribed.remove(channel);
                        }
                        shared.registry().dirty.extend(channels);
                        self.reconcile(shared).await?;
                    }
                    Heard::Retry => self.reconcile(shared).await?,
                    Heard::Closed => return Err("the connection closed".to_owned()),
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
                self.retry_at = Some(Instant::now() + RESUBSCRIBE_AFTER_FAILURE);
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
