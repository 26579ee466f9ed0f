//! Redis Cluster: the story on a real 3-primary cluster on loopback, with
//! waiters in every shard, and a primary's failure with a replica per
//! primary. Each test starts its own cluster of `redis-server
//! --cluster-enabled yes` processes, joined with `redis-cli --cluster create`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use tokio::task::JoinHandle;

use crate::support::{
    Cluster, FeedClient, PATIENCE, Receiver, Reply, SESSION_FEED_LIMIT, TestApp, settled,
};

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

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_story_runs_on_a_three_primary_cluster() {
    let cluster = Cluster::start(3, 0).await;
    let url = cluster.url();
    let app = TestApp::spawn_with(cluster.node(0), |config| {
        config.redis_url = Some(url);
        config.heartbeat_ms = 200;
        config.webhook_allow_http = true;
        config.webhook_allow_private = true;
    })
    .await;
    let mut receiver = Receiver::start().await;
    let created = app
        .send(
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(serde_json::json!({ "url": receiver.url })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    receiver.trust(&[created.body["secret"].as_str().expect("a secret")]);
    // Accesses on every shard, each through its whole story.
    let accesses: Vec<String> = (1..=6).map(|i| format!("hook-{i}")).collect();
    let mut shards = BTreeSet::new();
    for access in &accesses {
        shards.insert(cluster.owner_of(access).await);
        app.challenge(access, "c1", "q").await;
    }
    assert_eq!(shards.len(), 3, "the accesses span all three shards");
    app.listed("c1").await;
    for access in &accesses {
        app.submit(access, "987654").await;
        app.report(access, "ok").await;
    }
    let mut heard: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..accesses.len() * 4 {
        let message = receiver.next().await;
        assert!(!message.raw.contains("987654"), "{}", message.raw);
        let access = message.body["data"]["access"].as_str().expect("an access");
        let status = message.body["data"]["status"].as_str().expect("a status");
        heard
            .entry(access.to_owned())
            .or_default()
            .push(status.to_owned());
    }
    for access in &accesses {
        assert_eq!(
            heard[access],
            ["need", "question_sent", "token_received", "ok"],
            "{access}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_sessions_story_runs_on_a_three_primary_cluster() {
    let cluster = Cluster::start(3, 0).await;
    let app = gateway_on(&cluster).await;
    // Accesses of c1 on every shard, one of c2, and two sessions of c1.
    let mine: Vec<String> = (1..=6).map(|i| format!("mine-{i}")).collect();
    let mut shards = BTreeSet::new();
    for access in &mine {
        shards.insert(cluster.owner_of(access).await);
        app.challenge(access, "c1", "q").await;
    }
    assert_eq!(shards.len(), 3, "the accesses span all three shards");
    app.challenge("theirs", "c2", "q").await;
    let sessions = [app.mint("c1", None).await, app.mint("c1", None).await];
    let session = &sessions[0];
    let mut feed = app.open_feed_with_session("c1", session).await;
    assert_eq!(feed.status, StatusCode::OK);

    for access in &mine {
        let answered = app
            .as_session(
                session,
                Method::POST,
                "/v1/tokens",
                Some(serde_json::json!({"access": access, "token": "123456"})),
            )
            .await;
        assert_eq!(answered.body["status"], "token_received", "{answered:?}");
    }
    app.as_session(
        session,
        Method::POST,
        "/v1/tokens",
        Some(serde_json::json!({"access": "theirs", "token": "123456"})),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.as_session(session, Method::GET, "/v1/customers/c2/challenges", None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");

    // Revoking them all reaches every slot, and the feed hears it on its
    // session's shard.
    app.end_sessions("c1").await;
    feed.until_closed_within(SESSION_FEED_LIMIT).await;
    for session in &sessions {
        app.as_session(session, Method::GET, "/v1/customers/c1/challenges", None)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}
