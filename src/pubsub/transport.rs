//! One subscriber connection's commands: classic pub/sub on a single Redis,
//! sharded pub/sub on a cluster (one connection per primary, in `shards`).

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;

use super::Shared;
use super::shards::Shards;
use crate::redis_target::Target;

/// One subscriber connection: classic pub/sub on a single Redis, sharded
/// pub/sub on a cluster, one connection per primary.
pub(super) enum Transport {
    Single {
        sink: PubSubSink,
        messages: redis::aio::PubSubStream,
    },
    Cluster(Box<Shards>),
}

/// What the connection reports.
pub(super) enum Heard {
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
    pub(super) async fn connect(target: &Target, shared: &Shared) -> redis::RedisResult<Transport> {
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

    pub(super) async fn next(&mut self) -> Heard {
        match self {
            Transport::Single { messages, .. } => match messages.next().await {
                Some(message) => Heard::Changed(message.get_channel_name().to_owned()),
                None => Heard::Closed,
            },
            Transport::Cluster(shards) => shards.next().await,
        }
    }

    /// Subscribes `channels`, calling `confirm` for each one the server
    /// confirmed. On a single Redis a failure ends the connection. On a
    /// cluster a channel whose shard cannot answer now is left out, for a
    /// later try, so a shard that is down holds up only its own channels.
    pub(super) async fn subscribe(
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

    pub(super) async fn unsubscribe(
        &mut self,
        channels: &[String],
        timeout: Duration,
    ) -> Result<(), String> {
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
    pub(super) async fn ping(&mut self, timeout: Duration) -> Result<(), String> {
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
