//! The two indexes stay true to the hashes: a crash or a race may leave a
//! stale entry, never a missing or a wrong one.

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestApp, start_redis};

async fn redis_now_ms(app: &TestApp) -> u64 {
    let mut conn = app.conn.clone();
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .expect("TIME");
    secs * 1000 + micros / 1000
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_reposts_leave_the_expiring_index_true_to_the_hash() {
    let app = TestApp::spawn().await;
    let mut conn = app.conn.clone();
    for round in 0..100 {
        let access = format!("r{round}");
        let short = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q", "expiresIn": 1});
        let long = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q", "expiresIn": 3600});
        let (a, b) = tokio::join!(
            app.challenge_with(&access, short),
            app.challenge_with(&access, long)
        );
        assert_eq!(
            (a.status, b.status),
            (StatusCode::CREATED, StatusCode::CREATED)
        );
        let hash = app.hash(&access).await;
        let member = format!("{access}|{}", hash["started_at"]);
        let score: Option<u64> = conn.zscore("2fa:expiring", &member).await.expect("ZSCORE");
        let expires_at: u64 = hash["expires_at"].parse().expect("ms");
        assert_eq!(
            score,
            Some(expires_at),
            "round {round}: the sweep would come at the wrong time"
        );
        let pending: Option<u64> = conn
            .zscore("2fa:customer:{c1}:pending", &access)
            .await
            .expect("ZSCORE");
        let started_at: u64 = hash["started_at"].parse().expect("ms");
        assert_eq!(
            pending,
            Some(started_at),
            "round {round}: the pending index is off"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_overtaken_by_a_newer_one_starts_over_after_it() {
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "q").await;
    // As if a newer post had written the hash while this one was between its
    // index writes and its hash write: the hash started after any post made
    // now would.
    let newer = redis_now_ms(&app).await + 60_000;
    let mut conn = app.conn.clone();
    let _: () = conn
        .hset("2fa:access:{001}", "started_at", newer)
        .await
        .expect("HSET");
    let posted = app.challenge("001", "c1", "late").await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    let hash = app.hash("001").await;
    let started_at: u64 = hash["started_at"].parse().expect("ms");
    assert!(
        started_at > newer,
        "started_at only grows: {started_at} after {newer}"
    );
    assert_eq!(hash["question"], "late");
    let pending: Option<u64> = conn
        .zscore("2fa:customer:{c1}:pending", "001")
        .await
        .expect("ZSCORE");
    assert_eq!(pending, Some(started_at));
    let member = format!("001|{started_at}");
    let deadline: Option<u64> = conn.zscore("2fa:expiring", &member).await.expect("ZSCORE");
    assert_eq!(deadline, Some(hash["expires_at"].parse().expect("ms")));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_keeps_an_entry_whose_post_may_still_be_writing() {
    let app = TestApp::spawn().await;
    let now = redis_now_ms(&app).await;
    let mut conn = app.conn.clone();
    let _: () = conn
        .zadd("2fa:customer:{c1}:pending", "in-flight", now)
        .await
        .expect("ZADD");
    let _: () = conn
        .zadd("2fa:customer:{c1}:pending", "crashed", now - 3_600_000)
        .await
        .expect("ZADD");
    assert!(app.listed("c1").await.is_empty());
    let members: Vec<String> = conn
        .zrange("2fa:customer:{c1}:pending", 0, -1)
        .await
        .expect("ZRANGE");
    assert_eq!(
        members,
        ["in-flight"],
        "kept while its post may be writing; the old one dropped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_drops_only_entries_it_proves_stale() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| config.sweep_interval_ms = 10).await;
    app.challenge("early", "c1", "q").await;
    let hash = app.hash("early").await;
    let now = redis_now_ms(&app).await;
    let mut conn = app.conn.clone();
    // A waiting challenge's entry scored before its deadline, the entry of a
    // post that may still be writing its hash, and one whose post crashed
    // an hour ago: all three are due now.
    let early = format!("early|{}", hash["started_at"]);
    let in_flight = format!("slow|{}", now - 1_000);
    let crashed = format!("crashed|{}", now - 3_600_000);
    for member in [&early, &in_flight, &crashed] {
        let _: () = conn
            .zadd("2fa:expiring", member, now - 1)
            .await
            .expect("ZADD");
    }
    app.until("the sweep has settled all three", || async {
        let mut conn = app.conn.clone();
        let due: Vec<String> = conn
            .zrangebyscore("2fa:expiring", 0, now)
            .await
            .expect("ZRANGEBYSCORE");
        due.is_empty()
    })
    .await;
    let score: Option<u64> = conn.zscore("2fa:expiring", &early).await.expect("ZSCORE");
    let expires_at: u64 = hash["expires_at"].parse().expect("ms");
    assert_eq!(score, Some(expires_at), "moved on to the hash's deadline");
    let score: Option<u64> = conn
        .zscore("2fa:expiring", &in_flight)
        .await
        .expect("ZSCORE");
    assert!(score.is_some_and(|s| s > now), "postponed, not dropped");
    let score: Option<u64> = conn.zscore("2fa:expiring", &crashed).await.expect("ZSCORE");
    assert_eq!(score, None, "dropped");
    assert_eq!(
        app.hash("early").await["status"],
        "need",
        "and nothing expired early"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_prefix_names_every_key() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| {
        config.prefix = "bank1:2fa".parse().expect("valid prefix");
    })
    .await;
    app.challenge("001", "c1", "q").await;
    let keys: Vec<String> = app.keyspace().await.into_keys().collect();
    assert_eq!(
        keys,
        [
            "bank1:2fa:access:{001}",
            "bank1:2fa:access:{001}:events",
            "bank1:2fa:customer:{c1}:events",
            "bank1:2fa:customer:{c1}:latest",
            "bank1:2fa:customer:{c1}:pending",
            "bank1:2fa:expiring"
        ]
    );
    let waiter = app.spawn_wait("001", 10.0);
    app.until_waiting(1).await;
    app.submit("001", "987654").await;
    assert_eq!(
        crate::support::settled(waiter).await.body["token"],
        "987654"
    );
    let mut conn = app.conn.clone();
    let wake: Vec<String> = conn
        .lrange("bank1:2fa:access:{001}:wake", 0, -1)
        .await
        .expect("LRANGE");
    assert_eq!(wake, ["token_received"]);
}
