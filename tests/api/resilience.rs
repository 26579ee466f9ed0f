//! Redis in trouble: a request gets a prompt 503, never a stalled connection.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::support::{TestApp, start_redis};

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_redis_is_a_prompt_503_with_retry_after_then_recovers() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| config.redis_timeout_ms = 300).await;
    app.challenge("001", "c1", "q").await;
    assert_eq!(
        app.send(Method::GET, "/readyz", None).await.status,
        StatusCode::OK
    );

    app.pause_redis(1_500).await;
    let asked = Instant::now();
    let stalled = app.access("001").await;
    let answered_in = asked.elapsed();
    stalled.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(stalled.headers["retry-after"], "1");
    assert!(
        answered_in < Duration::from_secs(2),
        "answered after {answered_in:?}"
    );
    app.send(Method::GET, "/readyz", None)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let healthz = app.send(Method::GET, "/healthz", None).await;
    assert_eq!(healthz.status, StatusCode::OK, "alive, though not ready");

    // The pause ends by itself (a paused Redis would not take UNPAUSE from
    // this connection either).
    app.until("the gateway serves again once the pause ends", || async {
        app.access("001").await.status == StatusCode::OK
    })
    .await;
    assert_eq!(
        app.send(Method::GET, "/readyz", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_a_request_id_echoing_the_callers() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .get(format!("{}/v1/accesses/001", app.base))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let generated = app.access("001").await;
    let id = generated.headers["x-request-id"].to_str().expect("ascii");
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_that_stops_answering_is_replaced_and_waiters_still_get_tokens() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| {
        config.heartbeat_ms = 100;
        config.redis_timeout_ms = 300;
    })
    .await;
    app.challenge("001", "c1", "q").await;
    let waiter = app.spawn_wait("001", 30.0);
    app.until_waiting(1).await;

    // A paused Redis keeps the connection open but answers nothing, like a
    // half-open connection: only the heartbeat can tell.
    app.pause_redis(1_000).await;
    let reconnects = app.subscriber.reconnects();
    app.until("the heartbeat replaced the dead subscriber", || async {
        app.subscriber.reconnects() > reconnects
    })
    .await;
    assert_eq!(app.submit("001", "987654").await.status, StatusCode::OK);
    assert_eq!(
        crate::support::settled(waiter).await.body["token"],
        "987654"
    );
}
