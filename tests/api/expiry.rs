//! Challenges past their deadline expire on their own, and wake everyone.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{PATIENCE, TestApp, settled, start_redis};

#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_challenge_expires_and_wakes_http_and_blpop_waiters() {
    let app = TestApp::spawn().await;
    let body = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q", "expiresIn": 1});
    let posted_at = Instant::now();
    assert_eq!(
        app.challenge_with("001", body).await.status,
        StatusCode::CREATED
    );

    let raw = tokio::spawn({
        let blpop = app.spawn_blpop("001").await;
        async move { (settled(blpop).await, Instant::now()) }
    });
    let http = app.wait_token("001", 10.0).await;
    let http_at = Instant::now();
    http.assert_error(StatusCode::GONE, "expired");
    let (status, raw_at) = settled(raw).await;
    assert_eq!(status, "expired");
    for woke in [http_at, raw_at] {
        let after = woke - posted_at;
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(2),
            "woken {after:?} after a 1 s challenge was posted"
        );
    }
    let hash = app.hash("001").await;
    assert_eq!(hash["status"], "expired");
    assert!(app.listed("c1").await.is_empty());
    let mut conn = app.conn.clone();
    let expiring: usize = conn.zcard("2fa:expiring").await.expect("ZCARD");
    assert_eq!(expiring, 0, "the sweeper empties its index");
    app.submit("001", "987654")
        .await
        .assert_error(StatusCode::GONE, "expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_gateways_sweep_the_same_challenges_safely() {
    let redis = start_redis();
    let fast = |config: &mut twofa_bridge::config::Config| config.sweep_interval_ms = 10;
    let a = TestApp::spawn_with(redis.clone(), fast).await;
    let _b = TestApp::spawn_with(redis.clone(), fast).await;
    let _c = TestApp::spawn_with(redis, fast).await;

    let mut pubsub = a.redis_pubsub().await;
    let mut messages = pubsub.on_message();
    for i in 0..20 {
        let body = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q", "expiresIn": 1});
        a.challenge_with(&format!("x{i}"), body).await;
    }
    let mut expired = Vec::new();
    while expired.len() < 20 {
        let message = tokio::time::timeout(PATIENCE, futures_util::StreamExt::next(&mut messages))
            .await
            .expect("an expiry is announced")
            .expect("message");
        let status: String = message.get_payload().expect("payload");
        if status == "expired" {
            expired.push(message.get_channel_name().to_owned());
        }
    }
    let distinct: std::collections::BTreeSet<&String> = expired.iter().collect();
    assert_eq!(
        distinct.len(),
        20,
        "no challenge expired twice: {expired:?}"
    );
    for i in 0..20 {
        let wake: Vec<String> = {
            let mut conn = a.conn.clone();
            conn.lrange(format!("2fa:access:{{x{i}}}:wake"), 0, -1)
                .await
                .expect("LRANGE")
        };
        assert_eq!(wake, ["expired"], "x{i} was woken once");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_step_acts_on_a_challenge_past_its_deadline_even_before_the_sweep() {
    let redis = start_redis();
    // A sweep too slow to matter here: each step must see the deadline itself.
    let app = TestApp::spawn_with(redis, |config| config.sweep_interval_ms = 10_000).await;
    // "waited" is posted last, so its deadline is the latest: once its
    // waiter learns of the expiry, every other deadline has passed too,
    // however slowly a loaded machine made the posts.
    let accesses = [
        "late-token",
        "late-rule",
        "late-report",
        "late-cancel",
        "late-read",
        "waited",
    ];
    for access in accesses {
        let body = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q",
                          "expiresIn": 1, "validation": r"\d+"});
        assert_eq!(
            app.challenge_with(access, body).await.status,
            StatusCode::CREATED
        );
    }
    // A waiter learns of the expiry at the deadline, from its own timer.
    let raw = app.spawn_blpop("waited").await;
    let posted_at = Instant::now();
    app.wait_token("waited", 5.0)
        .await
        .assert_error(StatusCode::GONE, "expired");
    let after = posted_at.elapsed();
    assert!(
        after < Duration::from_millis(1_500),
        "woken {after:?} after posting"
    );
    assert_eq!(
        settled(raw).await,
        "expired",
        "its read woke the BLPOP waiter too"
    );

    app.submit("late-token", "987654")
        .await
        .assert_error(StatusCode::GONE, "expired");
    // Even a token the rule would refuse: the challenge is over.
    app.submit("late-rule", "abc")
        .await
        .assert_error(StatusCode::GONE, "expired");
    app.report("late-report", "ok")
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    app.cancel("late-cancel")
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(app.access("late-read").await.body["status"], "expired");
    assert!(app.listed("c1").await.is_empty());
    for access in accesses {
        assert_eq!(app.hash(access).await["status"], "expired", "{access}");
    }
    let mut conn = app.conn.clone();
    let pending: usize = conn
        .zcard("2fa:customer:{c1}:pending")
        .await
        .expect("ZCARD");
    let expiring: usize = conn.zcard("2fa:expiring").await.expect("ZCARD");
    assert_eq!(
        (pending, expiring),
        (0, 0),
        "expired in passing, and dropped from both indexes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_nobody_reports_expires_after_the_token_ttl_and_is_erased() {
    let app = TestApp::spawn_with(start_redis(), |config| config.token_ttl = 1).await;
    assert_eq!(
        app.challenge("001", "c1", "q").await.status,
        StatusCode::CREATED
    );
    assert_eq!(app.submit("001", "987654").await.status, StatusCode::OK);
    let submitted = Instant::now();
    // The scraper died before it read the token: the sweep ends the
    // challenge once the token has waited its second.
    app.until("the token expired", || async {
        app.hash("001").await.get("status").map(String::as_str) == Some("expired")
    })
    .await;
    assert!(
        submitted.elapsed() < Duration::from_secs(3),
        "about a second late at most"
    );
    let everything = app.keyspace().await;
    assert!(
        !everything
            .values()
            .any(|content| content.contains("987654")),
        "the token is erased: {everything:?}"
    );
    let trail = app
        .send(reqwest::Method::GET, "/v1/accesses/001/events", None)
        .await;
    let last = trail
        .body
        .as_array()
        .and_then(|events| events.last())
        .cloned();
    let last = last.expect("an audit trail");
    assert_eq!(
        (last["type"].as_str(), last["by"].as_str()),
        (Some("expired"), Some("system"))
    );
    let mut conn = app.conn.clone();
    let woken: Vec<String> = conn
        .lrange("2fa:access:{001}:wake", 0, -1)
        .await
        .expect("LRANGE");
    assert_eq!(woken, ["token_received", "expired"]);
    // A scraper that comes back finds it gone, and must post again.
    app.wait_token("001", 1.0)
        .await
        .assert_error(StatusCode::GONE, "expired");
    app.report("001", "ok")
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let expiring: usize = conn.zcard("2fa:expiring").await.expect("ZCARD");
    assert_eq!(expiring, 0, "nothing left to watch");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reported_token_leaves_nothing_for_the_sweep() {
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "q").await;
    app.submit("001", "987654").await;
    let mut conn = app.conn.clone();
    let watched: Option<u64> = conn
        .zscore(
            "2fa:expiring",
            format!("001|{}", app.hash("001").await["started_at"]),
        )
        .await
        .expect("ZSCORE");
    let stored_at: u64 = app.hash("001").await["updated_at"]
        .parse()
        .expect("updated_at");
    assert_eq!(
        watched,
        Some(stored_at + 600_000),
        "watched until the default token TTL"
    );
    assert_eq!(app.report("001", "ok").await.status, StatusCode::OK);
    let expiring: usize = conn.zcard("2fa:expiring").await.expect("ZCARD");
    assert_eq!(expiring, 0);
}
