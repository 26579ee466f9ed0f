//! A real Redis Cluster on loopback: `redis-server --cluster-enabled yes`
//! processes joined with `redis-cli --cluster create`, and what the cluster
//! tests do to it (stop a primary, freeze one, allow a failover, move a
//! slot).

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;
use twofa_bridge::redis_server::RedisServer;

/// How long a cluster may take to agree, or to fail over.
const CLUSTER_PATIENCE: Duration = Duration::from_secs(30);

pub struct Cluster {
    /// `None` once stopped.
    pub nodes: Vec<Option<Arc<RedisServer>>>,
    pub ports: Vec<u16>,
}

impl Cluster {
    /// `primaries` primaries with `replicas` replicas each, all agreeing
    /// that the cluster is ok.
    pub async fn start(primaries: usize, replicas: usize) -> Cluster {
        let count = primaries * (1 + replicas);
        let nodes: Vec<Arc<RedisServer>> = (0..count)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    // A node is failed within a second or two of its death.
                    "--cluster-node-timeout",
                    "1000",
                    // The other shards serve on while one has no primary,
                    // as README advises.
                    "--cluster-require-full-coverage",
                    "no",
                    // A replica takes over only once a test allows it.
                    "--cluster-replica-no-failover",
                    "yes",
                ])
                .map(Arc::new)
                .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let ports: Vec<u16> = nodes.iter().map(|node| node.port()).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed:\n{}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Cluster {
            nodes: nodes.into_iter().map(Some).collect(),
            ports,
        };
        cluster.until_ok(count, None).await;
        cluster
    }

    /// The URL the gateway is given: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Lets replicas take over failed primaries from now on.
    pub async fn allow_failover(&self) {
        for (port, node) in self.ports.iter().zip(&self.nodes) {
            if node.is_some() {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("cluster-replica-no-failover")
                    .arg("no")
                    .query_async::<()>(&mut self.connection(*port).await)
                    .await
                    .expect("CONFIG SET");
            }
        }
    }

    /// A customer whose keys are not on the primary on `port`, so that its
    /// feed and list stay up while that primary is down.
    pub async fn customer_off(&self, port: u16) -> String {
        for i in 1.. {
            let customer = format!("c{i}");
            if self.owner_of(&customer).await != port {
                return customer;
            }
        }
        unreachable!("some customer lives on another primary")
    }

    /// The process id of the node on `port`.
    pub async fn pid(&self, port: u16) -> String {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.connection(port).await)
            .await
            .expect("INFO server");
        info.lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .map(|pid| pid.trim().to_owned())
            .expect("the node's process id")
    }

    pub fn node(&self, index: usize) -> Arc<RedisServer> {
        self.nodes[index].clone().expect("a running node")
    }

    /// Kills the node on `port`.
    pub fn stop(&mut self, port: u16) {
        let index = self
            .ports
            .iter()
            .position(|p| *p == port)
            .expect("a node of this cluster");
        let node = self.nodes[index].take().expect("running");
        assert_eq!(
            Arc::strong_count(&node),
            1,
            "something else holds the node, so it would not stop"
        );
    }

    pub async fn connection(&self, port: u16) -> MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to a cluster node")
    }

    /// Waits until every running node says the cluster is ok, knows `known`
    /// nodes and, if a replica, has synced with its primary; given a port,
    /// until no node counts it as a primary any more.
    pub async fn until_ok(&self, known: usize, without_primary: Option<u16>) {
        let deadline = Instant::now() + CLUSTER_PATIENCE;
        let running: Vec<u16> = self
            .ports
            .iter()
            .zip(&self.nodes)
            .filter(|(_, node)| node.is_some())
            .map(|(port, _)| *port)
            .collect();
        loop {
            let mut agreed = true;
            let mut seen = Vec::new();
            for port in &running {
                let mut conn = self.connection(*port).await;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut conn)
                    .await
                    .expect("CLUSTER INFO");
                let ok = info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{known}\r"));
                // A replica that has not synced yet could never take over.
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut conn)
                    .await
                    .expect("INFO replication");
                let synced = replication.contains("role:master")
                    || replication.contains("master_link_status:up");
                let owners = self.owners_seen_by(*port).await;
                let moved = without_primary.is_none_or(|gone| !owners.values().any(|p| *p == gone));
                agreed &= ok && synced && moved && owners.len() == 16_384;
                seen.push((*port, ok, synced, moved, owners.len()));
            }
            if agreed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle: (node, ok, synced, moved, slots) {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every slot's primary port, as the node on `port` sees it.
    pub async fn owners_seen_by(&self, port: u16) -> BTreeMap<u16, u16> {
        let mut conn = self.connection(port).await;
        let slots: Vec<(u16, u16, u16)> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Vec<redis::Value>>(&mut conn)
            .await
            .expect("CLUSTER SLOTS")
            .into_iter()
            .map(|range| {
                let redis::Value::Array(parts) = range else {
                    panic!("a slot range is an array");
                };
                let number = |value: &redis::Value| match value {
                    redis::Value::Int(n) => u16::try_from(*n).expect("a port or slot"),
                    other => panic!("not a number: {other:?}"),
                };
                let redis::Value::Array(primary) = &parts[2] else {
                    panic!("a primary is an array");
                };
                (number(&parts[0]), number(&parts[1]), number(&primary[1]))
            })
            .collect();
        let mut owners = BTreeMap::new();
        for (first, last, owner) in slots {
            for slot in first..=last {
                owners.insert(slot, owner);
            }
        }
        owners
    }

    /// The port of the primary that owns the keys tagged `{tag}`: an
    /// access's, or a customer's.
    pub async fn owner_of(&self, tag: &str) -> u16 {
        let port = self.ports[0];
        let mut conn = self.connection(port).await;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("{{{tag}}}"))
            .query_async(&mut conn)
            .await
            .expect("CLUSTER KEYSLOT");
        self.owners_seen_by(port).await[&slot]
    }

    /// An access's hash, read from the node that owns it.
    pub async fn hash(&self, access: &str) -> HashMap<String, String> {
        let mut conn = self.connection(self.owner_of(access).await).await;
        conn.hgetall(format!("2fa:access:{{{access}}}"))
            .await
            .expect("HGETALL")
    }
}

impl Cluster {
    /// Moves `slot`, keys and all, from the node on `from` to the node on
    /// `to`, as `redis-cli --cluster reshard` does.
    pub async fn migrate(&self, slot: u16, from: u16, to: u16) {
        let mut source = self.connection(from).await;
        let mut target = self.connection(to).await;
        let id = |conn: &mut MultiplexedConnection| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("CLUSTER")
                    .arg("MYID")
                    .query_async::<String>(&mut conn)
                    .await
                    .expect("CLUSTER MYID")
            }
        };
        let (source_id, target_id) = (id(&mut source).await, id(&mut target).await);
        let set_slot = |conn: &mut MultiplexedConnection, state: &str, node: &str| {
            let mut conn = conn.clone();
            let command = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(node)
                .to_owned();
            async move {
                command
                    .query_async::<()>(&mut conn)
                    .await
                    .expect("CLUSTER SETSLOT");
            }
        };
        set_slot(&mut target, "IMPORTING", &source_id).await;
        set_slot(&mut source, "MIGRATING", &target_id).await;
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(1000)
            .query_async(&mut source)
            .await
            .expect("CLUSTER GETKEYSINSLOT");
        assert!(!keys.is_empty(), "the slot holds the access's keys");
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query_async::<()>(&mut source)
            .await
            .expect("MIGRATE");
        for port in self.ports.iter().filter(|p| **p != to && **p != from) {
            set_slot(&mut self.connection(*port).await, "NODE", &target_id).await;
        }
        set_slot(&mut target, "NODE", &target_id).await;
        set_slot(&mut source, "NODE", &target_id).await;
    }
}
