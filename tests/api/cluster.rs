//! Redis Cluster: the story on a real 3-primary cluster on loopback, with
//! waiters in every shard, and a primary's failure with a replica per
//! primary. Each test starts its own cluster of `redis-server
//! --cluster-enabled yes` processes, joined with `redis-cli --cluster create`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use reqwest::StatusCode;
use tokio::time::Instant;
use twofa_bridge::redis_server::RedisServer;

use tokio::task::JoinHandle;

use crate::support::{FeedClient, PATIENCE, Reply, TestApp, settled};

/// How long a cluster may take to agree, or to fail over.
const CLUSTER_PATIENCE: Duration = Duration::from_secs(30);

struct Cluster {
    /// `None` once stopped.
    nodes: Vec<Option<Arc<RedisServer>>>,
    ports: Vec<u16>,
}

impl Cluster {
    /// `primaries` primaries with `replicas` replicas each, all agreeing
    /// that the cluster is ok.
    async fn start(primaries: usize, replicas: usize) -> Cluster {
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
    fn url(&self) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Lets replicas take over failed primaries from now on.
    async fn allow_failover(&self) {
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
    async fn customer_off(&self, port: u16) -> String {
        for i in 1.. {
            let customer = format!("c{i}");
            if self.owner_of(&customer).await != port {
                return customer;
            }
        }
        unreachable!("some customer lives on another primary")
    }

    /// The process id of the node on `port`.
    async fn pid(&self, port: u16) -> String {
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

    fn node(&self, index: usize) -> Arc<RedisServer> {
        self.nodes[index].clone().expect("a running node")
    }

    /// Kills the node on `port`.
    fn stop(&mut self, port: u16) {
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

    async fn connection(&self, port: u16) -> MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("a connection to a cluster node")
    }

    /// Waits until every running node says the cluster is ok, knows `known`
    /// nodes and, if a replica, has synced with its primary; given a port,
    /// until no node counts it as a primary any more.
    async fn until_ok(&self, known: usize, without_primary: Option<u16>) {
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
    async fn owners_seen_by(&self, port: u16) -> BTreeMap<u16, u16> {
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
    async fn owner_of(&self, tag: &str) -> u16 {
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
    async fn hash(&self, access: &str) -> HashMap<String, String> {
        let mut conn = self.connection(self.owner_of(access).await).await;
        conn.hgetall(format!("2fa:access:{{{access}}}"))
            .await
            .expect("HGETALL")
    }
}

/// Reads the feed until an event says `access` is in `status`.
async fn until_event(feed: &mut FeedClient, access: &str, status: &str) {
    loop {
        let event = feed.next_event().await.expect("the feed is open");
        if event.data["access"] == access && event.data["status"] == status {
            return;
        }
    }
}

/// Sends `signal` to a process, as `kill -<signal>` does.
fn signal(pid: &str, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), pid])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Thirty scrapers waiting, spread over the three shards, and the primary a
/// test makes fail: not the first node, which the test app's own
/// connection holds.
struct Scene {
    by_shard: BTreeMap<u16, Vec<String>>,
    victim: u16,
    /// A customer off the victim's shard, whose feed and list stay up.
    customer: String,
    waiters: HashMap<String, JoinHandle<Reply>>,
}

impl Scene {
    async fn waiting(cluster: &Cluster, app: &TestApp, prefix: &str) -> Scene {
        let mut by_shard: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for i in 1..=30 {
            let access = format!("{prefix}-{i}");
            by_shard
                .entry(cluster.owner_of(&access).await)
                .or_default()
                .push(access);
        }
        assert_eq!(by_shard.len(), 3, "the accesses span all three shards");
        let victim = *by_shard
            .keys()
            .find(|port| **port != cluster.ports[0])
            .expect("a primary other than the first node");
        let customer = cluster.customer_off(victim).await;
        let mut waiters = HashMap::new();
        for access in by_shard.values().flatten() {
            let posted = app.challenge(access, &customer, "q").await;
            assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
            waiters.insert(access.clone(), app.spawn_wait(access, 60.0));
        }
        app.until_waiting(30).await;
        Scene {
            by_shard,
            victim,
            customer,
            waiters,
        }
    }

    /// The accesses on the shards that stay up.
    fn healthy(&self) -> Vec<String> {
        self.by_shard
            .iter()
            .filter(|(port, _)| **port != self.victim)
            .flat_map(|(_, accesses)| accesses.iter().cloned())
            .collect()
    }

    /// Submits the access's token, which must be taken at once and reach
    /// its waiter.
    async fn deliver(&mut self, app: &TestApp, access: &str) {
        let submitted = app.submit(access, &format!("token-{access}")).await;
        assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
        self.received(access).await;
    }

    /// Submits the victim shard's tokens, retrying while the gateway's
    /// connection learns the shard's primary again; each reaches its waiter.
    async fn deliver_to_victim(&mut self, app: &TestApp) {
        for access in self.by_shard[&self.victim].clone() {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let submitted = app.submit(&access, &format!("token-{access}")).await;
                if submitted.status == StatusCode::OK {
                    break;
                }
                assert_eq!(
                    submitted.status,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{submitted:?}"
                );
                assert!(Instant::now() < deadline, "still refused: {submitted:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.received(&access).await;
        }
    }

    async fn received(&mut self, access: &str) {
        let waiter = self.waiters.remove(access).expect("a waiter");
        let answer = settled(waiter).await;
        assert_eq!(
            answer.body["token"],
            format!("token-{access}"),
            "{answer:?}"
        );
    }
}

async fn gateway_on(cluster: &Cluster) -> TestApp {
    let url = cluster.url();
    TestApp::spawn_with(cluster.node(0), |config| {
        config.redis_url = Some(url);
        config.heartbeat_ms = 200;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_story_runs_on_a_three_primary_cluster_with_waiters_in_every_shard() {
    let cluster = Cluster::start(3, 0).await;
    let app = gateway_on(&cluster).await;
    let accesses: Vec<String> = (1..=12).map(|i| format!("acc-{i}")).collect();
    let customer_of = |i: usize| format!("c{}", i % 3);
    let mut feed = app.open_feed("c0", None).await;
    assert_eq!(feed.status, StatusCode::OK);

    let mut shards = BTreeSet::new();
    for (i, access) in accesses.iter().enumerate() {
        let posted = app.challenge(access, &customer_of(i), "q").await;
        assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
        shards.insert(cluster.owner_of(access).await);
    }
    assert_eq!(shards.len(), 3, "the accesses span all three shards");
    until_event(&mut feed, "acc-1", "question_sent").await;

    let waiters: Vec<_> = accesses
        .iter()
        .map(|access| app.spawn_wait(access, 30.0))
        .collect();
    app.until_waiting(accesses.len()).await;
    for customer in ["c0", "c1", "c2"] {
        assert_eq!(app.listed(customer).await.len(), 4, "{customer}'s list");
    }
    for access in &accesses {
        let submitted = app.submit(access, &format!("token-{access}")).await;
        assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
    }
    for (access, waiter) in accesses.iter().zip(waiters) {
        let answer = settled(waiter).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body["token"], format!("token-{access}"));
    }
    until_event(&mut feed, "acc-1", "token_received").await;

    // The bank refuses acc-1's token; its second attempt goes through.
    assert_eq!(app.report("acc-1", "rejected").await.status, StatusCode::OK);
    let again = app.challenge("acc-1", "c0", "q2").await;
    assert_eq!(again.status, StatusCode::CREATED, "{again:?}");
    assert_eq!(again.body["attempt"], 2);
    let waiter = app.spawn_wait("acc-1", 30.0);
    app.until_waiting(1).await;
    let submitted = app.submit("acc-1", "second-token").await;
    assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
    let answer = settled(waiter).await;
    assert_eq!(answer.body["token"], "second-token", "{answer:?}");
    assert_eq!(answer.body["attempt"], 2);

    for access in &accesses {
        assert_eq!(app.report(access, "ok").await.status, StatusCode::OK);
        let hash = cluster.hash(access).await;
        assert_eq!(hash["status"], "ok");
        assert!(!hash.contains_key("token"), "{access} kept its token");
        let trail = app
            .send(
                reqwest::Method::GET,
                &format!("/v1/accesses/{access}/events"),
                None,
            )
            .await;
        let types: Vec<&str> = trail
            .body
            .as_array()
            .expect("a trail")
            .iter()
            .filter_map(|event| event["type"].as_str())
            .collect();
        let expected: &[&str] = if access == "acc-1" {
            &[
                "challenge",
                "question_sent",
                "token_received",
                "rejected",
                "challenge",
                // Shown at once on c0's open feed.
                "question_sent",
                "token_received",
                "ok",
            ]
        } else {
            &["challenge", "question_sent", "token_received", "ok"]
        };
        assert_eq!(types, expected, "{access}");
    }
    for customer in ["c0", "c1", "c2"] {
        assert!(app.listed(customer).await.is_empty());
    }

    // The expiry sweep works across shards: a waiter is told `expired`.
    let short = serde_json::json!({
        "customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q", "expiresIn": 1
    });
    let posted = app.challenge_with("acc-late", short).await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    let answer = settled(app.spawn_wait("acc-late", 30.0)).await;
    answer.assert_error(StatusCode::GONE, "expired");
    assert_eq!(cluster.hash("acc-late").await["status"], "expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_primary_stalls_only_its_own_shard_whose_waiters_resume_after_failover() {
    let mut cluster = Cluster::start(3, 1).await;
    let app = gateway_on(&cluster).await;
    let mut scene = Scene::waiting(&cluster, &app, "fo").await;
    let victim = scene.victim;

    cluster.stop(victim);

    // The other shards answer at once, before the failover.
    for access in scene.healthy() {
        scene.deliver(&app, &access).await;
    }

    assert!(
        cluster
            .owners_seen_by(cluster.ports[0])
            .await
            .values()
            .any(|p| *p == victim),
        "all that happened before the replica took over"
    );

    // The failed shard's replica takes over; then its waiters get theirs.
    cluster.allow_failover().await;
    cluster.until_ok(6, Some(victim)).await;
    scene.deliver_to_victim(&app).await;
}

impl Cluster {
    /// Moves `slot`, keys and all, from the node on `from` to the node on
    /// `to`, as `redis-cli --cluster reshard` does.
    async fn migrate(&self, slot: u16, from: u16, to: u16) {
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

#[tokio::test(flavor = "multi_thread")]
async fn a_waiter_follows_its_slot_when_the_cluster_is_resharded() {
    let cluster = Cluster::start(3, 0).await;
    let app = gateway_on(&cluster).await;
    let posted = app.challenge("moving", "c1", "q").await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    let waiter = app.spawn_wait("moving", 30.0);
    app.until_waiting(1).await;

    let from = cluster.owner_of("moving").await;
    let to = *cluster
        .ports
        .iter()
        .find(|port| **port != from)
        .expect("another primary");
    let mut conn = cluster.connection(from).await;
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("{moving}")
        .query_async(&mut conn)
        .await
        .expect("CLUSTER KEYSLOT");
    cluster.migrate(slot, from, to).await;
    assert_eq!(cluster.owner_of("moving").await, to);

    let submitted = app.submit("moving", "246810").await;
    assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
    let answer = settled(waiter).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["token"], "246810");
    assert_eq!(cluster.hash("moving").await["status"], "token_received");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_primary_holds_up_only_its_own_shard() {
    let cluster = Cluster::start(3, 0).await;
    let app = gateway_on(&cluster).await;
    let mut scene = Scene::waiting(&cluster, &app, "fz").await;

    // Frozen, not dead: its connections stay open and answer nothing, as
    // with a node stuck in a long command or cut off by the network.
    let pid = cluster.pid(scene.victim).await;
    signal(&pid, "STOP");
    let healthy = scene.healthy();
    for access in &healthy {
        scene.deliver(&app, access).await;
    }
    // New long polls on the healthy shards are taken and woken too, once
    // the heartbeat has found the frozen node and while it stays frozen.
    for access in &healthy {
        let posted = app.challenge(access, &scene.customer, "again").await;
        assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
        let waiter = app.spawn_wait(access, 30.0);
        app.until_waiting(scene.by_shard[&scene.victim].len() + 1)
            .await;
        let submitted = app.submit(access, "second").await;
        assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
        let answer = settled(waiter).await;
        assert_eq!(answer.body["token"], "second", "{access}: {answer:?}");
    }

    // Thawed, its own waiters get their tokens.
    signal(&pid, "CONT");
    scene.deliver_to_victim(&app).await;
}
