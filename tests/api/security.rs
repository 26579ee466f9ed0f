//! API keys with roles, secrets that never linger, and limits that keep one
//! caller from exhausting an access or a gateway.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::keys::{ADMIN, FRONTEND, SCRAPER};
use crate::support::{TestApp, keyed_app, settled, start_redis};

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Every /v1 route, with a body that would be accepted, and who may call it.
fn routes() -> Vec<(Method, &'static str, Option<Value>, &'static str)> {
    let challenge = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q"});
    vec![
        (
            Method::PUT,
            "/v1/accesses/002/challenge",
            Some(challenge),
            "scraper",
        ),
        (
            Method::GET,
            "/v1/accesses/001/token?timeout=0",
            None,
            "scraper",
        ),
        (
            Method::PUT,
            "/v1/accesses/001/status",
            Some(json!({"status": "ok"})),
            "scraper",
        ),
        (Method::GET, "/v1/customers/c1/challenges", None, "frontend"),
        (
            Method::POST,
            "/v1/tokens",
            Some(json!({"access": "001", "token": "987654"})),
            "frontend",
        ),
        (Method::DELETE, "/v1/accesses/001/challenge", None, "anyone"),
        (Method::GET, "/v1/accesses/001", None, "anyone"),
        (Method::GET, "/v1/accesses/001/events", None, "anyone"),
        (Method::GET, "/v1/customers/c1/events", None, "frontend"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_a_missing_unknown_or_wrong_key_and_changes_nothing() {
    let app = keyed_app(Some(ADMIN)).await;
    app.challenge("001", "c1", "123456").await;
    app.submit("001", "987654").await;
    let before = app.keyspace().await;
    let unknown = bearer("nobody-0123456789abcdef0123456789abcdef");
    let mut cases = 0;
    for (method, path, body, allowed) in routes() {
        let mut refusals = vec![
            (None, StatusCode::UNAUTHORIZED, "unauthorized"),
            (
                Some(unknown.clone()),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                Some(ADMIN.to_owned()),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                Some(format!("Basic {ADMIN}")),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
            (
                Some("Bearer ".to_owned()),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
        ];
        match allowed {
            "scraper" => {
                refusals.push((Some(bearer(FRONTEND)), StatusCode::FORBIDDEN, "forbidden"))
            }
            "frontend" => {
                refusals.push((Some(bearer(SCRAPER)), StatusCode::FORBIDDEN, "forbidden"))
            }
            _ => {}
        }
        for (authorization, status, code) in refusals {
            let reply = app
                .send_as(authorization.as_deref(), method.clone(), path, body.clone())
                .await;
            reply.assert_error(status, code);
            if status == StatusCode::UNAUTHORIZED {
                assert_eq!(reply.headers["www-authenticate"], "Bearer");
            }
            assert_eq!(
                app.keyspace().await,
                before,
                "{method} {path} changed Redis"
            );
            cases += 1;
        }
    }
    assert!(cases >= 40, "{cases} cases");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_reaches_what_it_may() {
    let app = keyed_app(Some(ADMIN)).await;
    for (method, path, body, allowed) in routes() {
        let callers: &[&str] = match allowed {
            "scraper" => &[SCRAPER, ADMIN],
            "frontend" => &[FRONTEND, ADMIN],
            _ => &[SCRAPER, FRONTEND, ADMIN],
        };
        for key in callers {
            // Only the status: a live feed's body never ends.
            let mut request = reqwest::Client::new()
                .request(method.clone(), format!("{}{path}", app.base))
                .header("authorization", bearer(key));
            if let Some(body) = &body {
                request = request.json(body);
            }
            let status = request.send().await.expect("request sent").status();
            assert!(
                !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "{method} {path} refused a key allowed to call it: {status}"
            );
        }
    }
    // The live feed is the front end's.
    let feed = app
        .send_as(
            Some(&bearer(SCRAPER)),
            Method::GET,
            "/v1/customers/c1/events",
            None,
        )
        .await;
    feed.assert_error(StatusCode::FORBIDDEN, "forbidden");
    // Health needs no key and shows nothing about accesses.
    for path in ["/healthz", "/readyz"] {
        let health = app.send_as(None, Method::GET, path, None).await;
        assert_eq!(health.status, StatusCode::OK, "{path}");
        assert!(!health.body.to_string().contains("001"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_trail_names_the_role_that_cancelled() {
    let app = keyed_app(Some(ADMIN)).await;
    app.challenge("001", "c1", "q").await;
    // A front-end key cancels; a `by` claiming otherwise counts for nothing.
    let path = "/v1/accesses/001/challenge?by=scraper";
    let reply = app
        .send_as(Some(&bearer(FRONTEND)), Method::DELETE, path, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let trail = app.send(Method::GET, "/v1/accesses/001/events", None).await;
    assert_eq!(trail.body[1]["by"], "frontend");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_final_state_keeps_a_token() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| config.sweep_interval_ms = 10).await;
    for (access, end) in [
        ("a-ok", "ok"),
        ("a-rejected", "rejected"),
        ("a-cancelled", "cancel"),
    ] {
        app.challenge(access, "c1", "q").await;
        app.submit(access, "987654").await;
        assert_eq!(app.hash(access).await["token"], "987654");
        match end {
            "cancel" => assert_eq!(app.cancel(access).await.status, StatusCode::OK),
            outcome => assert_eq!(app.report(access, outcome).await.status, StatusCode::OK),
        }
    }
    let body = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q", "expiresIn": 1});
    app.challenge_with("a-expired", body).await;
    app.until("the sweep expires it", || async {
        app.hash("a-expired").await["status"] == "expired"
    })
    .await;
    for access in ["a-ok", "a-rejected", "a-cancelled", "a-expired"] {
        let hash = app.hash(access).await;
        assert!(
            !hash.contains_key("token"),
            "{access} kept its token: {hash:?}"
        );
    }
    let everything = app.keyspace().await;
    assert!(
        !everything
            .values()
            .any(|content| content.contains("987654")),
        "the token is still somewhere in Redis: {everything:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_submissions_are_limited_per_access() {
    let app = TestApp::spawn().await;
    let body = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q", "validation": r"\d{6}"});
    app.challenge_with("001", body.clone()).await;
    app.challenge_with("002", body).await;
    for _ in 0..10 {
        let refused = app.submit("001", "guess").await;
        refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_token");
    }
    let throttled = app.submit("001", "123456").await;
    throttled.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    let retry_after: u64 = throttled.headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        app.hash("001").await["status"],
        "need",
        "the throttled token was not taken"
    );
    // Another access is not affected, and an unknown one is never counted.
    assert_eq!(app.submit("002", "123456").await.status, StatusCode::OK);
    app.submit("nope", "123456")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    assert!(
        !app.keyspace()
            .await
            .contains_key("2fa:access:{nope}:submitted")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_holds_a_bounded_number_of_waiting_requests() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| config.max_waiters = 2).await;
    app.challenge("001", "c1", "q").await;
    let first = app.spawn_wait("001", 30.0);
    let mut feed = app.open_feed("c1", None).await;
    assert_eq!(feed.status, StatusCode::OK);
    app.until_waiting(1).await;
    let refused = app.wait_token("001", 30.0).await;
    refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(refused.headers["retry-after"], "1");
    let no_feed = app.open_feed("c2", None).await;
    assert_eq!(no_feed.status, StatusCode::SERVICE_UNAVAILABLE);
    // Once one leaves, the next gets in.
    app.submit("001", "987654").await;
    assert_eq!(settled(first).await.status, StatusCode::OK);
    feed.expect("challenge", "001", "question_sent").await;
    let again = app.wait_token("001", 1.0).await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| config.header_timeout_ms = 200).await;
    let addr = app.base.trim_start_matches("http://");
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // Headers begun, never finished.
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(crate::support::PATIENCE, slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the gateway kept the connection open");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_front_end_key_cannot_even_ask_how_a_token_answer_would_look() {
    let app = keyed_app(Some(ADMIN)).await;
    app.challenge("001", "c1", "q").await;
    app.submit("001", "987654").await;
    let head = app
        .send_as(
            Some(&bearer(FRONTEND)),
            Method::HEAD,
            "/v1/accesses/001/token?timeout=0",
            None,
        )
        .await;
    assert_eq!(head.status, StatusCode::FORBIDDEN);
}
