//! The acceptance story, end to end, with the Redis hash checked at every
//! step as redis-cli would show it.

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestApp, field, settled};

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_story_from_question_to_ok_and_a_second_attempt() {
    let app = TestApp::spawn().await;

    // 1. The scraper posts the bank's question.
    let posted = app.challenge("001", "c1", "123456").await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    assert_eq!(posted.headers["location"], "/v1/accesses/001");
    assert_eq!(posted.body["status"], "need");
    assert_eq!(posted.body["attempt"], 1);
    assert_eq!(posted.body["kind"], "code");
    assert_eq!(posted.body["finEntityName"], "Real");
    assert_eq!(posted.body["doubleAuthQuestion"], "123456");
    let hash = app.hash("001").await;
    assert_eq!(field(&hash, "status"), "need");
    assert_eq!(field(&hash, "customer"), "c1");
    assert_eq!(field(&hash, "fin_entity_name"), "Real");
    assert_eq!(field(&hash, "question"), "123456");
    assert_eq!(field(&hash, "kind"), "code");
    assert_eq!(field(&hash, "attempt"), "1");
    let started_at: u64 = field(&hash, "started_at").parse().expect("ms");
    let expires_at: u64 = field(&hash, "expires_at").parse().expect("ms");
    assert_eq!(
        expires_at - started_at,
        300_000,
        "the default expiry is 300 s"
    );
    assert_eq!(field(&hash, "updated_at"), field(&hash, "started_at"));
    assert!(!hash.contains_key("token"));
    let mut conn = app.conn.clone();
    let pending: Vec<(String, u64)> = conn
        .zrange_withscores("2fa:customer:{c1}:pending", 0, -1)
        .await
        .expect("ZRANGE");
    assert_eq!(pending, vec![("001".to_owned(), started_at)]);

    // 3. The scraper blocks until the token arrives (started before TesBack
    // even lists, to show the wait does not depend on it).
    let waiter = app.spawn_wait("001", 30.0);

    // 2. TesBack lists the customer's pending challenges.
    let items = app.listed("c1").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["access"], "001");
    assert_eq!(items[0]["finEntityName"], "Real");
    assert_eq!(items[0]["doubleAuthQuestion"], "123456");
    assert_eq!(items[0]["status"], "question_sent");
    assert_eq!(items[0]["attempt"], 1);
    for key in ["kind", "startedAt", "expiresAt"] {
        assert!(items[0].get(key).is_some(), "list item without {key}");
    }
    assert!(items[0].get("token").is_none());
    assert_eq!(field(&app.hash("001").await, "status"), "question_sent");

    // 4. The customer types the code; TesBack sends the seed's message.
    let submitted = app.submit("001", "987654").await;
    assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
    assert_eq!(submitted.body["status"], "token_received");
    assert!(
        submitted.body.get("token").is_none(),
        "TesBack never gets the token back"
    );
    let hash = app.hash("001").await;
    assert_eq!(field(&hash, "status"), "token_received");
    assert_eq!(field(&hash, "token"), "987654");
    let wake: Vec<String> = conn
        .lrange("2fa:access:{001}:wake", 0, -1)
        .await
        .expect("LRANGE");
    assert_eq!(wake, vec!["token_received"]);
    let still_pending: Vec<String> = conn
        .zrange("2fa:customer:{c1}:pending", 0, -1)
        .await
        .expect("ZRANGE");
    assert!(
        still_pending.is_empty(),
        "answered accesses leave the index"
    );

    // 5. The scraper wakes with the token.
    let woke = settled(waiter).await;
    assert_eq!(woke.status, StatusCode::OK);
    assert_eq!(
        woke.body,
        json!({"access": "001", "status": "token_received", "token": "987654", "attempt": 1})
    );
    assert_eq!(woke.headers["cache-control"], "no-store");

    // The bank refuses the token: the scraper reports it...
    let reported = app.report("001", "rejected").await;
    assert_eq!(reported.status, StatusCode::OK, "{reported:?}");
    assert_eq!(reported.body["status"], "rejected");
    let hash = app.hash("001").await;
    assert_eq!(field(&hash, "status"), "rejected");
    assert!(!hash.contains_key("token"), "the token is gone once used");

    // ...and posts the bank's new question: attempt 2.
    let again = app.challenge("001", "c1", "654321").await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body["attempt"], 2);
    assert_eq!(again.body["status"], "need");
    let hash = app.hash("001").await;
    assert_eq!(field(&hash, "attempt"), "2");
    assert_eq!(field(&hash, "question"), "654321");
    let wake_len: usize = conn.llen("2fa:access:{001}:wake").await.expect("LLEN");
    assert_eq!(wake_len, 0, "a new challenge clears the wake list");

    assert_eq!(app.listed("c1").await[0]["attempt"], 2);
    assert_eq!(app.submit("001", "111222").await.status, StatusCode::OK);
    let token = app.wait_token("001", 5.0).await;
    assert_eq!(token.headers["cache-control"], "no-store");
    assert_eq!(token.body["token"], "111222");
    assert_eq!(token.body["attempt"], 2);
    let ok = app.report("001", "ok").await;
    assert_eq!(ok.status, StatusCode::OK);
    let hash = app.hash("001").await;
    assert_eq!(field(&hash, "status"), "ok");
    assert!(!hash.contains_key("token"));

    let shown = app.access("001").await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["status"], "ok");
    assert_eq!(shown.body["attempt"], 2);
    assert!(shown.body.get("token").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_expires_retention_after_the_deadline() {
    let app = TestApp::spawn().await;
    let body = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q", "expiresIn": 60});
    assert_eq!(
        app.challenge_with("001", body).await.status,
        StatusCode::CREATED
    );
    assert_eq!(app.submit("001", "987654").await.status, StatusCode::OK);

    let mut conn = app.conn.clone();
    let day_and_a_minute: i64 = (86_400 + 60) * 1000;
    let pending_ttl: i64 = conn.pttl("2fa:customer:{c1}:pending").await.expect("PTTL");
    assert_eq!(
        pending_ttl, -2,
        "the answered access left the pending index, which went"
    );
    app.challenge_with("002", json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q", "expiresIn": 60})).await;
    let pending_ttl: i64 = conn.pttl("2fa:customer:{c1}:pending").await.expect("PTTL");
    assert!(
        pending_ttl > day_and_a_minute - 5_000,
        "the pending index outlives its entries"
    );
    for key in ["2fa:access:{001}", "2fa:access:{001}:wake"] {
        let ttl: i64 = conn.pttl(key).await.expect("PTTL");
        assert!(
            ttl > day_and_a_minute - 5_000 && ttl <= day_and_a_minute,
            "{key} has TTL {ttl} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_transition_is_published_on_the_changed_channel() {
    let app = TestApp::spawn().await;
    let mut pubsub = app.redis_pubsub().await;
    let mut messages = pubsub.on_message();
    app.challenge("001", "c1", "q").await;
    app.listed("c1").await;
    app.submit("001", "987654").await;
    app.report("001", "rejected").await;
    app.challenge("001", "c1", "q2").await;
    app.cancel("001").await;
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let message = tokio::time::timeout(
            crate::support::PATIENCE,
            futures_util::StreamExt::next(&mut messages),
        )
        .await
        .expect("a message")
        .expect("the stream is open");
        assert_eq!(message.get_channel_name(), "2fa:access:{001}:changed");
        seen.push(message.get_payload::<String>().expect("a status"));
    }
    assert_eq!(
        seen,
        [
            "need",
            "question_sent",
            "token_received",
            "rejected",
            "need",
            "cancelled"
        ]
    );
}
