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

    let mut conn = app.conn.clone();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1_500)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .expect("CLIENT PAUSE");
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
