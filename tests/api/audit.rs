//! The audit trail: what happened to an access, when, and by whom, in the
//! same atomic step as each transition, and never with a token.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, start_redis};

#[tokio::test(flavor = "multi_thread")]
async fn a_two_attempt_story_is_recorded_in_order_without_any_token() {
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "123456").await;
    app.listed("c1").await;
    app.submit("001", "111111").await;
    let body = json!({"status": "rejected", "reason": "the bank refused the code"});
    app.send(Method::PUT, "/v1/accesses/001/status", Some(body))
        .await;
    app.challenge("001", "c1", "654321").await;
    app.listed("c1").await;
    app.submit("001", "222222").await;
    app.report("001", "ok").await;

    // Read straight from Redis, as an operator would.
    let raw = app.stream("2fa:access:{001}:events").await;
    let text = format!("{raw:?}");
    for token in ["111111", "222222"] {
        assert!(
            !text.contains(token),
            "a token is in the audit trail: {text}"
        );
    }
    let trail: Vec<[&str; 3]> = raw
        .iter()
        .map(|(_, f)| [f["type"].as_str(), f["attempt"].as_str(), f["by"].as_str()])
        .collect();
    assert_eq!(
        trail,
        [
            ["challenge", "1", "scraper"],
            ["question_sent", "1", "frontend"],
            ["token_received", "1", "frontend"],
            ["rejected", "1", "scraper"],
            ["challenge", "2", "scraper"],
            ["question_sent", "2", "frontend"],
            ["token_received", "2", "frontend"],
            ["ok", "2", "scraper"],
        ]
    );
    assert_eq!(raw[3].1["reason"], "the bank refused the code");

    // The same over HTTP, with times.
    let events = app.send(Method::GET, "/v1/accesses/001/events", None).await;
    assert_eq!(events.status, StatusCode::OK);
    let events = events.body.as_array().cloned().expect("array");
    assert_eq!(events.len(), 8);
    assert_eq!(events[0]["type"], "challenge");
    assert_eq!(events[3]["reason"], "the bank refused the code");
    assert_eq!(events[7]["type"], "ok");
    assert_eq!(events[7]["by"], "scraper");
    let at = |i: usize| events[i]["at"].as_str().map(str::to_owned).expect("at");
    assert!(at(0) <= at(7), "in order");
    assert!(events[0]["id"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_and_the_front_end_are_named_when_they_act() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| config.sweep_interval_ms = 10).await;
    let body = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q", "expiresIn": 1});
    app.challenge_with("late", body).await;
    app.challenge("gone", "c1", "q").await;
    app.send(
        Method::DELETE,
        "/v1/accesses/gone/challenge?by=frontend",
        None,
    )
    .await;
    app.send(Method::DELETE, "/v1/accesses/x/challenge?by=nobody", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    app.until("the sweep expires it", || async {
        app.hash("late").await["status"] == "expired"
    })
    .await;
    let late = app
        .send(Method::GET, "/v1/accesses/late/events", None)
        .await;
    assert_eq!(late.body[1]["type"], "expired");
    assert_eq!(late.body[1]["by"], "system");
    let gone = app
        .send(Method::GET, "/v1/accesses/gone/events", None)
        .await;
    assert_eq!(gone.body[1]["type"], "cancelled");
    assert_eq!(gone.body[1]["by"], "frontend");
    app.send(Method::GET, "/v1/accesses/nope/events", None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trail_is_bounded_and_lives_as_long_as_the_hash() {
    let app = TestApp::spawn().await;
    for _ in 0..55 {
        app.challenge("001", "c1", "q").await;
        app.cancel("001").await;
    }
    let mut conn = app.conn.clone();
    let length: usize = conn.xlen("2fa:access:{001}:events").await.expect("XLEN");
    assert_eq!(length, 100, "110 events, trimmed to the last 100");
    let hash_ttl: i64 = conn.pttl("2fa:access:{001}").await.expect("PTTL");
    let trail_ttl: i64 = conn.pttl("2fa:access:{001}:events").await.expect("PTTL");
    let gap = Duration::from_millis(hash_ttl.abs_diff(trail_ttl));
    assert!(
        hash_ttl > 0 && gap < Duration::from_secs(5),
        "{hash_ttl} vs {trail_ttl}"
    );
}
