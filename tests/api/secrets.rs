//! A token is never written to a log line, at any level.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Binary, TestApp, settled, start_redis};

/// Distinctive enough that any occurrence in the log is a leak.
const TOKEN: &str = "tok-5830917264";

/// The API key the requests carry, which must not leak either.
const KEY: &str = "key-9f8e7d6c5b4a39281706f5e4d3c2b1a0";

#[tokio::test(flavor = "multi_thread")]
async fn the_token_never_reaches_the_log_even_at_trace_level() {
    let redis = start_redis();
    let keys = format!("admin:{KEY}");
    let mut gateway = Binary::serve(&redis, &[("RUST_LOG", "trace"), ("TWOFA_API_KEYS", &keys)]);

    // The whole story through the real binary, plus the ways a token could
    // slip into an error: a duplicate, a wrong type, a wrong access. Our
    // helpers are pointed at the binary.
    let mut remote = TestApp::spawn_on(redis).await;
    remote.base = gateway.url();
    remote.authorize(KEY);
    assert_eq!(
        remote.challenge("001", "c1", "123456").await.status,
        StatusCode::CREATED
    );
    remote.listed("c1").await;
    let waiter = remote.spawn_wait("001", 10.0);
    assert_eq!(remote.submit("001", TOKEN).await.status, StatusCode::OK);
    assert_eq!(
        remote.submit("001", TOKEN).await.status,
        StatusCode::CONFLICT
    );
    remote.submit("nope", TOKEN).await;
    remote
        .send(
            Method::POST,
            "/v1/tokens",
            Some(json!({"access": "001", "token": [TOKEN]})),
        )
        .await;
    assert_eq!(settled(waiter).await.body["token"], TOKEN);
    assert_eq!(remote.wait_token("001", 0.0).await.body["token"], TOKEN);
    assert_eq!(remote.report("001", "ok").await.status, StatusCode::OK);

    gateway.child.kill().expect("stop the gateway");
    let log = gateway.log_after_exit();
    assert!(
        log.iter()
            .any(|line| line.contains("TRACE") && line.contains("long poll answered")),
        "trace logging was on, around the token's way"
    );
    let leaks: Vec<&String> = log.iter().filter(|line| line.contains(TOKEN)).collect();
    assert!(
        leaks.is_empty(),
        "the token leaked into the log: {leaks:#?}"
    );
}
