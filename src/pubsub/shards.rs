//! The subscriber's side of a Redis Cluster: sharded pub/sub, one RESP3
//! connection per primary that owns a wanted channel.
//!
//! A channel lives on the primary that owns its slot, so each is subscribed
//! there with `SSUBSCRIBE`. This module keeps the slot map itself (from
//! `CLUSTER SLOTS`) rather than leaving it to the redis crate's cluster
//! connection, whose recovery from a dead node reconnects every node at
//! once: here a node that fails takes only its own channels with it.
//!
//! A channel is lost when its node's connection drops or stops answering the
//! heartbeat, when the server drops it (its slot migrated: `sunsubscribe`),
//! or when a fresh slot map gives its slot to another node. Lost channels are
//! reported to the session, which subscribes them again where they now live;
//! their waiters re-read once that is confirmed, so nothing published
//! meanwhile is missed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{join_all, select_ok};
use futures_util::stream::FuturesUnordered;
use redis::aio::{AsyncPushSender, MultiplexedConnection, SendError};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion,
    PushInfo, PushKind, RedisResult, Value,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::Instant;

use super::slots::{Addr, SLOTS, slot, slot_map, split_addr};
use super::transport::Heard;
use crate::metrics;

/// How long a node that failed is left alone, so that a dead primary is not
/// dialled on every retry until the cluster fails it over. Attempts run in
/// the background, so this only spares the node, and it is short, so that a
/// node that comes back is used again soon.
const NODE_COOLDOWN: Duration = Duration::from_secs(1);

/// A push, with the node and the connection generation it came from.
type Tagged = (Addr, u64, PushInfo);

pub(super) struct Shards {
    /// The seeds' connection details; nodes inherit their TLS and
    /// credentials.
    seeds: Vec<ConnectionInfo>,
    timeout: Duration,
    /// Every slot's primary, by the last slot map read.
    owners: Vec<Option<Addr>>,
    nodes: HashMap<Addr, Node>,
    /// Nodes that failed lately, and until when they are skipped.
    cooling: HashMap<Addr, Instant>,
    /// Channels lost, not yet reported.
    lost: Vec<String>,
    /// Set when the slot map may be out of date: a node failed or could not
    /// be reached, or a channel was dropped. The next subscription reads it
    /// again first.
    stale: bool,
    generation: u64,
    sender: UnboundedSender<Tagged>,
    pushes: UnboundedReceiver<Tagged>,
    /// Nodes being connected to, in the background.
    connecting: HashSet<Addr>,
    /// What background connection attempts and heartbeats found.
    report: UnboundedSender<NodeNews>,
    reports: UnboundedReceiver<NodeNews>,
}

/// Connections and heartbeats run beside the subscriber's loop, so that a
/// node that does not answer never holds up the others' messages.
enum NodeNews {
    Connected(Addr, u64, RedisResult<MultiplexedConnection>),
    /// The node's connection of that generation missed a heartbeat.
    Silent(Addr, u64),
}

struct Node {
    conn: MultiplexedConnection,
    generation: u64,
    channels: HashSet<String>,
}

/// Forwards a node's pushes, tagged with where they come from.
struct TagPushes {
    node: Addr,
    generation: u64,
    sender: UnboundedSender<Tagged>,
}

impl AsyncPushSender for TagPushes {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        self.sender
            .send((self.node.clone(), self.generation, info))
            .map_err(|_| SendError)
    }
}

impl Shards {
    /// Reads the slot map from the first seed that answers.
    pub(super) async fn connect(seeds: &[String], timeout: Duration) -> RedisResult<Shards> {
        let seeds = seeds
            .iter()
            .map(|seed| seed.as_str().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        let (sender, pushes) = unbounded_channel();
        let (report, reports) = unbounded_channel();
        let mut shards = Shards {
            seeds,
            timeout,
            owners: vec![None; SLOTS],
            nodes: HashMap::new(),
            cooling: HashMap::new(),
            lost: Vec::new(),
            stale: false,
            generation: 0,
            sender,
            pushes,
            connecting: HashSet::new(),
            report,
            reports,
        };
        shards.refresh().await?;
        Ok(shards)
    }

    pub(super) async fn next(&mut self) -> Heard {
        loop {
            if !self.lost.is_empty() {
                return Heard::Dropped(std::mem::take(&mut self.lost));
            }
            let (addr, generation, push) = tokio::select! {
                push = self.pushes.recv() => match push {
                    Some(push) => push,
                    None => return Heard::Closed,
                },
                Some(report) = self.reports.recv() => {
                    if self.take(report) {
                        return Heard::Retry;
                    }
                    continue;
                }
            };
            let current = self
                .nodes
                .get(&addr)
                .is_some_and(|node| node.generation == generation);
            if !current {
                continue;
            }
            if push.kind == PushKind::Disconnection {
                self.drop_node(&addr);
                continue;
            }
            let Some(Value::BulkString(bytes)) = push.data.first() else {
                continue;
            };
            let channel = String::from_utf8_lossy(bytes).into_owned();
            match push.kind {
                PushKind::SMessage => return Heard::Changed(channel),
                // Ours are forgotten before they are sent; any other was the
                // server's own, for a slot that moved.
                PushKind::SUnsubscribe => {
                    let ours = self
                        .nodes
                        .get_mut(&addr)
                        .is_some_and(|node| node.channels.remove(&channel));
                    if ours {
                        self.lost.push(channel);
                        self.stale = true;
                    }
                }
                _ => {}
            }
        }
    }

    /// Subscribes each channel on its slot's primary, calling `confirm` for
    /// each as soon as its primary confirms it, so that a slow node holds up
    /// only its own channels. Channels whose primary cannot be reached now
    /// are left out, for the session to try again; a `MOVED` answer re-reads
    /// the slot map and tries once more at once. A node that fails a
    /// subscription is dropped (its channels are lost, to be subscribed
    /// again) and left alone for a while.
    pub(super) async fn subscribe(
        &mut self,
        channels: &[String],
        confirm: &mut (dyn FnMut(&String) + Send),
    ) {
        let mut left: Vec<&String> = channels.iter().collect();
        for pass in 0..2 {
            if (pass > 0 || self.stale) && self.refresh().await.is_err() {
                break;
            }
            let mut replies = FuturesUnordered::new();
            for channel in left {
                if let Some((addr, mut conn)) = self.node_for(channel) {
                    replies.push(async move {
                        let reply = redis::cmd("SSUBSCRIBE")
                            .arg(channel)
                            .query_async::<Value>(&mut conn)
                            .await;
                        (channel, addr, reply)
                    });
                }
            }
            let mut again = Vec::new();
            let mut failed: HashMap<Addr, (usize, redis::RedisError)> = HashMap::new();
            while let Some((channel, addr, reply)) = replies.next().await {
                match reply {
                    Ok(_) => {
                        if let Some(node) = self.nodes.get_mut(&addr) {
                            node.channels.insert(channel.clone());
                        }
                        confirm(channel);
                    }
                    Err(error) if error.redirect_node().is_some() => again.push(channel),
                    Err(error) => failed.entry(addr).or_insert((0, error)).0 += 1,
                }
            }
            for (addr, (channels, error)) in failed {
                tracing::warn!(node = %addr, channels, %error, "a cluster node did not confirm subscriptions; dropping its connection");
                self.drop_node(&addr);
                self.cool(&addr);
            }
            if again.is_empty() {
                break;
            }
            left = again;
        }
    }

    pub(super) async fn unsubscribe(&mut self, channels: &[String]) {
        let mut tries = Vec::new();
        for channel in channels {
            // Forgotten first, so that the confirmation is known as ours.
            let owner = self
                .nodes
                .values_mut()
                .find_map(|node| node.channels.remove(channel).then_some(node));
            if let Some(node) = owner {
                let mut conn = node.conn.clone();
                tries.push(async move {
                    // A node that cannot answer has dropped it anyway, or
                    // sends a message nobody waits for.
                    let _ = redis::cmd("SUNSUBSCRIBE")
                        .arg(channel)
                        .query_async::<Value>(&mut conn)
                        .await;
                });
            }
        }
        join_all(tries).await;
    }

    /// Pings every node held, in the background. One that does not answer
    /// in time is half-open: it is dropped, and its channels are lost.
    pub(super) fn ping(&self) {
        let timeout = self.timeout;
        for (addr, node) in &self.nodes {
            let (addr, generation, mut conn) = (addr.clone(), node.generation, node.conn.clone());
            let report = self.report.clone();
            tokio::spawn(async move {
                let command = redis::cmd("PING");
                let ping = command.query_async::<Value>(&mut conn);
                if !matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(_))) {
                    let _ = report.send(NodeNews::Silent(addr, generation));
                }
            });
        }
    }

    /// Takes in what a background task found; true when a node became
    /// reachable, so that the channels waiting for it are tried now.
    fn take(&mut self, report: NodeNews) -> bool {
        match report {
            NodeNews::Connected(addr, generation, Ok(conn)) => {
                self.connecting.remove(&addr);
                self.cooling.remove(&addr);
                let node = Node {
                    conn,
                    generation,
                    channels: HashSet::new(),
                };
                self.nodes.insert(addr, node);
                true
            }
            NodeNews::Connected(addr, _, Err(error)) => {
                tracing::warn!(node = %addr, %error, "cannot connect to a cluster node");
                self.connecting.remove(&addr);
                self.cool(&addr);
                self.stale = true;
                false
            }
            NodeNews::Silent(addr, generation) => {
                let current = self
                    .nodes
                    .get(&addr)
                    .is_some_and(|node| node.generation == generation);
                if current {
                    tracing::warn!(node = %addr, "a cluster node did not answer the heartbeat");
                    self.drop_node(&addr);
                    self.cool(&addr);
                }
                false
            }
        }
    }

    /// The primary that owns `channel`, if it is connected; otherwise a
    /// connection is started in the background (unless the node is cooling
    /// off), and the channel waits for it.
    fn node_for(&mut self, channel: &str) -> Option<(Addr, MultiplexedConnection)> {
        let Some(addr) = self.owners[slot(channel)].clone() else {
            self.stale = true;
            return None;
        };
        if let Some(node) = self.nodes.get(&addr) {
            return Some((addr, node.conn.clone()));
        }
        if self
            .cooling
            .get(&addr)
            .is_some_and(|until| *until > Instant::now())
        {
            return None;
        }
        self.open(addr);
        None
    }

    /// Leaves a node that failed alone for a while.
    fn cool(&mut self, addr: &Addr) {
        self.cooling
            .insert(addr.clone(), Instant::now() + NODE_COOLDOWN);
    }

    /// Connects to a node in the background; the result comes as a report.
    fn open(&mut self, addr: Addr) {
        if !self.connecting.insert(addr.clone()) {
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        let push = TagPushes {
            node: addr.clone(),
            generation,
            sender: self.sender.clone(),
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_push_sender(push);
        let info = self.node_info(&addr);
        let report = self.report.clone();
        tokio::spawn(async move {
            let connected = async {
                redis::Client::open(info)?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            };
            let _ = report.send(NodeNews::Connected(addr, generation, connected.await));
        });
    }

    /// A node's connection details: the first seed's, at the node's address,
    /// speaking RESP3 (pushes).
    fn node_info(&self, addr: &str) -> ConnectionInfo {
        let seed = &self.seeds[0];
        let (host, port) = split_addr(addr);
        let at = match seed.addr().clone() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let settings = seed
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        seed.clone().set_addr(at).set_redis_settings(settings)
    }

    /// Forgets a node's connection, which the next subscription to one of
    /// its channels replaces.
    fn drop_node(&mut self, addr: &Addr) {
        if let Some(node) = self.nodes.remove(addr) {
            self.lost.extend(node.channels);
            metrics::subscriber_reconnected();
        }
        self.stale = true;
    }

    /// Reads the slot map from a node held, or else from a seed. Channels
    /// whose slot now belongs to another node are lost.
    async fn refresh(&mut self) -> RedisResult<()> {
        // The connections held are asked first, all at once, so that a node
        // that does not answer holds up nothing; the seeds, on connections
        // of their own, only when none of those answers.
        let held: Vec<_> = self
            .nodes
            .iter()
            .map(|(addr, node)| {
                let mut conn = node.conn.clone();
                let host = split_addr(addr).0;
                Box::pin(async move { slot_map(&mut conn, &host).await })
            })
            .collect();
        // (select_ok wants at least one future.)
        let from_held = if held.is_empty() {
            None
        } else {
            select_ok(held).await.ok()
        };
        let owners = match from_held {
            Some((owners, _)) => owners,
            None => {
                let seeds = self
                    .seeds
                    .iter()
                    .map(|seed| Box::pin(self.read_slots(seed.clone())));
                select_ok(seeds).await?.0
            }
        };
        self.owners = owners;
        self.stale = false;
        self.move_channels();
        Ok(())
    }

    /// The slot map, read from a seed on a connection of its own.
    async fn read_slots(&self, source: ConnectionInfo) -> RedisResult<Vec<Option<Addr>>> {
        let asked_host = match source.addr() {
            ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
            _ => String::new(),
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let mut conn = redis::Client::open(source)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        slot_map(&mut conn, &asked_host).await
    }

    /// Forgets every channel whose slot another node owns now.
    fn move_channels(&mut self) {
        for (addr, node) in &mut self.nodes {
            let owners = &self.owners;
            let lost = &mut self.lost;
            node.channels.retain(|channel| {
                let stays = owners[slot(channel)].as_ref() == Some(addr);
                if !stays {
                    lost.push(channel.clone());
                }
                stays
            });
        }
    }
}
