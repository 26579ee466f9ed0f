//! Customer sessions: TesBack mints one for a customer, and the browser that
//! holds it may see and answer that customer's challenges, and nothing else,
//! with or without API keys; revoking it, or its end, shuts it out at once
//! and ends its live feed within 5 s.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{
    Binary, SESSION_FEED_LIMIT, TestApp, keyed_app, keys, metrics_of, start_redis,
};

/// The key Redis holds a session under: its SHA-256, never the string.
fn session_key(session: &str) -> String {
    let digest: String = Sha256::digest(session.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("2fa:session:{{{digest}}}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_front_end_mints_a_session_that_redis_knows_only_by_its_digest() {
    let mut app = keyed_app(Some(keys::FRONTEND)).await;
    let minted = app
        .send(Method::POST, "/v1/customers/c1/sessions", None)
        .await;
    assert_eq!(minted.status, StatusCode::CREATED, "{minted:?}");
    assert_eq!(minted.headers["cache-control"], "no-store");
    let session = minted.body["session"].as_str().expect("session");
    assert!(
        regex::Regex::new("^tfs_[A-Za-z0-9_-]{43}$")
            .expect("regex")
            .is_match(session),
        "{session}"
    );
    assert_eq!(minted.body["customer"], "c1");
    let expires_at = humantime::parse_rfc3339(minted.body["expiresAt"].as_str().expect("time"))
        .expect("an RFC 3339 time");
    let lives = expires_at
        .duration_since(std::time::SystemTime::now())
        .expect("in the future");
    assert!(lives > Duration::from_secs(890) && lives <= Duration::from_secs(900));

    // Redis: the digest's hash, with the session's lifetime, and the
    // customer's list of digests.
    let key = session_key(session);
    let stored: std::collections::HashMap<String, String> =
        app.conn.hgetall(&key).await.expect("HGETALL");
    assert_eq!(stored["customer"], "c1", "{stored:?}");
    let ttl: i64 = app.conn.pttl(&key).await.expect("PTTL");
    assert!(ttl > 890_000 && ttl <= 900_000, "{ttl}");
    let digest = &key["2fa:session:{".len()..key.len() - 1];
    let listed: Vec<String> = app
        .conn
        .zrange("2fa:customer:{c1}:sessions", 0, -1)
        .await
        .expect("ZRANGE");
    assert_eq!(listed, [digest]);

    // A ttl of its own, by the admin key; a bad one changes nothing.
    app.authorize(keys::ADMIN);
    let short = app
        .send(
            Method::POST,
            "/v1/customers/c1/sessions",
            Some(json!({"ttl": 60})),
        )
        .await;
    assert_eq!(short.status, StatusCode::CREATED);
    let ttl: i64 = app
        .conn
        .pttl(session_key(
            short.body["session"].as_str().expect("session"),
        ))
        .await
        .expect("PTTL");
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
    let before = app.keyspace().await;
    for body in [
        json!({"ttl": 0}),
        json!({"ttl": 3601}),
        json!({"ttl": 5, "x": 1}),
    ] {
        app.send(Method::POST, "/v1/customers/c1/sessions", Some(body))
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    }
    app.send(Method::POST, "/v1/customers/c%20/sessions", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_id");
    assert_eq!(app.keyspace().await, before);

    // A scraper key may not mint one; no key at all is 401.
    let path = "/v1/customers/c1/sessions";
    let bearer = format!("Bearer {}", keys::SCRAPER);
    app.send_as(Some(&bearer), Method::POST, path, None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.send_as(None, Method::POST, path, None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A session for c1, with a waiting challenge of c1's (`mine`) and one of
/// c2's (`theirs`).
async fn two_customers(app: &TestApp) -> String {
    for (access, customer) in [("mine", "c1"), ("theirs", "c2")] {
        let posted = app.challenge(access, customer, "code?").await;
        assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    }
    app.mint("c1", None).await
}

/// What a session for c1 may and may not do, whoever the gateway trusts
/// otherwise.
async fn a_session_is_limited_to_its_customer(app: &TestApp, session: &str) {
    // Its own customer's challenges, listed.
    let listed = app
        .as_session(session, Method::GET, "/v1/customers/c1/challenges", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert_eq!(listed.body[0]["access"], "mine");

    // Another customer's path: 403. Another customer's access: 404, word
    // for word as an access that does not exist, and nothing changes.
    let before = app.keyspace().await;
    for path in ["/v1/customers/c2/challenges", "/v1/customers/c2/events"] {
        app.as_session(session, Method::GET, path, None)
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    for access in ["theirs", "nobody"] {
        let read = app
            .as_session(
                session,
                Method::GET,
                &format!("/v1/accesses/{access}"),
                None,
            )
            .await;
        read.assert_error(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(
            read.body["error"]["message"],
            format!("access {access} has no challenge")
        );
        let submitted = app
            .as_session(
                session,
                Method::POST,
                "/v1/tokens",
                Some(json!({"access": access, "token": "123456"})),
            )
            .await;
        submitted.assert_error(StatusCode::NOT_FOUND, "not_found");
        let cancel = format!("/v1/accesses/{access}/challenge");
        app.as_session(session, Method::DELETE, &cancel, None)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
        let trail = format!("/v1/accesses/{access}/events");
        app.as_session(session, Method::GET, &trail, None)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    // Not even the submission counter: the whole keyspace is as it was.
    assert_eq!(app.keyspace().await, before);

    // Every route a session may not call is 403.
    let refused: [(Method, &str, Option<Value>); 9] = [
        (
            Method::PUT,
            "/v1/accesses/mine/challenge",
            Some(json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q"})),
        ),
        (Method::GET, "/v1/accesses/mine/token?timeout=0", None),
        (
            Method::PUT,
            "/v1/accesses/mine/status",
            Some(json!({"status": "ok"})),
        ),
        (Method::POST, "/v1/customers/c1/sessions", None),
        (Method::DELETE, "/v1/customers/c1/sessions", None),
        (Method::GET, "/v1/webhooks", None),
        (
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": "https://example.com/hook"})),
        ),
        (Method::GET, "/v1/webhooks/wh_1", None),
        (Method::GET, "/v1/webhooks/wh_1/deliveries", None),
    ];
    for (method, path, body) in refused {
        app.as_session(session, method.clone(), path, body)
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(app.keyspace().await, before);

    // Its own customer's access: read, answered, and cancelled by the
    // front end, as the trail records.
    let read = app
        .as_session(session, Method::GET, "/v1/accesses/mine", None)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    let answered = app
        .as_session(
            session,
            Method::POST,
            "/v1/tokens",
            Some(json!({"access": "mine", "token": "123456"})),
        )
        .await;
    assert_eq!(answered.body["status"], "token_received", "{answered:?}");
    let cancelled = app
        .as_session(session, Method::DELETE, "/v1/accesses/mine/challenge", None)
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{cancelled:?}");
    let trail = app
        .as_session(session, Method::GET, "/v1/accesses/mine/events", None)
        .await;
    let last = trail.body.as_array().and_then(|t| t.last()).cloned();
    assert_eq!(
        last.map(|entry| (entry["type"].clone(), entry["by"].clone())),
        Some((json!("cancelled"), json!("frontend")))
    );
    // c2's challenge is untouched.
    assert_eq!(app.hash("theirs").await["status"], "need");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_keys_a_session_sees_and_answers_only_its_customers_challenges() {
    let app = keyed_app(Some(keys::ADMIN)).await;
    let session = two_customers(&app).await;
    a_session_is_limited_to_its_customer(&app, &session).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_keys_a_session_still_limits_its_holder() {
    let app = TestApp::spawn().await;
    let session = two_customers(&app).await;
    a_session_is_limited_to_its_customer(&app, &session).await;
    // While a request with no credential at all may do anything, but has
    // no session to read or end.
    assert_eq!(app.access("theirs").await.status, StatusCode::OK);
    app.send(Method::GET, "/v1/sessions/current", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// The check is in the step that stores the token: an access re-posted for
/// another customer while a session answers it is never answered for them.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_an_access_reposted_for_another_customer_is_never_stored() {
    let app = TestApp::spawn_with(start_redis(), |config| {
        config.submissions_per_minute = 1_000_000;
    })
    .await;
    let session = app.mint("c1", None).await;
    const POSTS: u32 = 100;
    // Attempt n is c1's when n is odd, c2's when it is even.
    let poster = async {
        for attempt in 1..=POSTS {
            let customer = if attempt % 2 == 1 { "c1" } else { "c2" };
            let posted = app.challenge("shared", customer, "code?").await;
            assert_eq!(posted.body["attempt"], attempt, "{posted:?}");
        }
    };
    let answerer = async {
        let mut stored = 0;
        let mut refused = 0;
        for _ in 0..POSTS {
            let submitted = app
                .as_session(
                    &session,
                    Method::POST,
                    "/v1/tokens",
                    Some(json!({"access": "shared", "token": "123456"})),
                )
                .await;
            match submitted.status {
                StatusCode::OK => {
                    assert_eq!(submitted.body["customer"], "c1", "{submitted:?}");
                    stored += 1;
                }
                // c2's attempt.
                StatusCode::NOT_FOUND => refused += 1,
                // One of c1's, already answered.
                StatusCode::CONFLICT => {}
                other => panic!("unexpected {other}: {submitted:?}"),
            }
        }
        (stored, refused)
    };
    let ((), (stored, refused)) = tokio::join!(poster, answerer);
    assert!(
        stored > 0 && refused > 0,
        "{stored} stored, {refused} refused: no race was run"
    );
    let trail = app.stream("2fa:access:{shared}:events").await;
    let answered: Vec<u32> = trail
        .iter()
        .filter(|(_, entry)| entry["type"] == "token_received")
        .map(|(_, entry)| entry["attempt"].parse().expect("an attempt"))
        .collect();
    assert!(
        answered.iter().all(|attempt| attempt % 2 == 1),
        "a token was stored on one of c2's attempts: {answered:?}"
    );
    // The trail keeps the last 100 entries: count only what it still holds.
    assert!(answered.len() <= stored, "{answered:?} against {stored}");
    eprintln!("{stored} of {POSTS} submissions landed on c1's attempts");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_ended_by_itself_is_refused_and_its_feed_closes() {
    let app = TestApp::spawn().await;
    let session = app.mint("c1", None).await;
    let mut feed = app.open_feed_with_session("c1", &session).await;
    assert_eq!(feed.status, StatusCode::OK);
    let posted = app.challenge("001", "c1", "code?").await;
    assert_eq!(posted.status, StatusCode::CREATED);
    feed.expect("challenge", "001", "question_sent").await;

    let ended = app
        .as_session(&session, Method::DELETE, "/v1/sessions/current", None)
        .await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{ended:?}");
    // The feed closes (within PATIENCE, far less in practice), after
    // whatever it had to send.
    let last = feed
        .until_closed_within(SESSION_FEED_LIMIT)
        .await
        .pop()
        .expect("a closing event");
    assert!(last.retry.is_some(), "{last:?}");
    for (method, path) in [
        (Method::GET, "/v1/customers/c1/challenges"),
        (Method::DELETE, "/v1/sessions/current"),
    ] {
        app.as_session(&session, method, path, None)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let reopened = app.open_feed_with_session("c1", &session).await;
    assert_eq!(reopened.status, StatusCode::UNAUTHORIZED);
    let exists: bool = app
        .conn
        .clone()
        .exists(session_key(&session))
        .await
        .expect("EXISTS");
    assert!(!exists);
}

#[tokio::test(flavor = "multi_thread")]
async fn ending_a_customers_sessions_ends_all_of_theirs_and_no_one_elses() {
    let mut app = keyed_app(Some(keys::FRONTEND)).await;
    let first = app.mint("c1", None).await;
    let second = app.mint("c1", Some(json!({"ttl": 60}))).await;
    let other = app.mint("c2", None).await;
    let mut feed = app.open_feed_with_session("c1", &first).await;
    assert_eq!(feed.status, StatusCode::OK);

    // A session says who it is for, never what it is.
    let current = app
        .as_session(&first, Method::GET, "/v1/sessions/current", None)
        .await;
    assert_eq!(current.status, StatusCode::OK, "{current:?}");
    assert_eq!(current.body["customer"], "c1");
    assert!(current.body["expiresAt"].is_string());
    assert!(!current.body.to_string().contains(&first["tfs_".len()..]));
    // A session may not end its customer's others.
    app.as_session(&first, Method::DELETE, "/v1/customers/c1/sessions", None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.end_sessions("c1").await;
    feed.until_closed_within(SESSION_FEED_LIMIT).await;
    for session in [&first, &second] {
        app.as_session(session, Method::GET, "/v1/customers/c1/challenges", None)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let theirs = app
        .as_session(&other, Method::GET, "/v1/customers/c2/challenges", None)
        .await;
    assert_eq!(theirs.status, StatusCode::OK);
    let listed: Vec<String> = app
        .conn
        .zrange("2fa:customer:{c1}:sessions", 0, -1)
        .await
        .expect("ZRANGE");
    assert!(listed.is_empty(), "{listed:?}");

    // Again, by the admin key, with nothing left to end: still 204.
    app.authorize(keys::ADMIN);
    app.end_sessions("c1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_session_is_refused_and_its_feed_closes_at_its_end() {
    let app = TestApp::spawn().await;
    // A second's session is refused once Redis has ended it.
    let brief = app.mint("c1", Some(json!({"ttl": 1}))).await;
    app.until("the one-second session is refused", || async {
        let listed = app
            .as_session(&brief, Method::GET, "/v1/customers/c1/challenges", None)
            .await;
        listed.status == StatusCode::UNAUTHORIZED
    })
    .await;
    let exists: bool = app
        .conn
        .clone()
        .exists(session_key(&brief))
        .await
        .expect("EXISTS");
    assert!(!exists, "Redis ended it");

    // A feed open at a session's end closes within the limit after it (the
    // session lives a few seconds, so that a loaded machine opens the feed
    // in time).
    const TTL: Duration = Duration::from_secs(3);
    let minted = tokio::time::Instant::now();
    let session = app.mint("c1", Some(json!({"ttl": TTL.as_secs()}))).await;
    let mut feed = app.open_feed_with_session("c1", &session).await;
    assert_eq!(feed.status, StatusCode::OK);
    feed.until_closed_within(TTL + SESSION_FEED_LIMIT).await;
    let took = minted.elapsed();
    assert!(
        took >= TTL - Duration::from_millis(100),
        "closed early, after {took:?}"
    );
    app.as_session(&session, Method::GET, "/v1/customers/c1/challenges", None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_or_malformed_session_is_refused() {
    let app = keyed_app(None).await;
    let unknown = format!("tfs_{}", "A".repeat(43));
    for session in [unknown.as_str(), "tfs_short", "tfs_"] {
        app.as_session(session, Method::GET, "/v1/customers/c1/challenges", None)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // The feed takes a session from its query, for its own customer only;
    // other routes do not.
    let frontend = format!("Bearer {}", keys::FRONTEND);
    let minted = app
        .send_as(
            Some(&frontend),
            Method::POST,
            "/v1/customers/c1/sessions",
            None,
        )
        .await;
    let session = minted.body["session"].as_str().expect("a session");
    let theirs = app.open_feed_with_session("c2", session).await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    let queried = app
        .send_as(
            None,
            Method::GET,
            &format!("/v1/customers/c1/challenges?session={unknown}"),
            None,
        )
        .await;
    queried.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(
        queried.body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("API key")),
        "{queried:?}"
    );
    // A key is not a session: "the current session" is not its to read or end.
    for method in [Method::GET, Method::DELETE] {
        app.send_as(
            Some(&format!("Bearer {}", keys::FRONTEND)),
            method,
            "/v1/sessions/current",
            None,
        )
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
}

/// Scans every key and value in Redis for `needle`.
async fn redis_holds(app: &TestApp, needle: &str) -> Vec<String> {
    app.keyspace()
        .await
        .into_iter()
        .filter(|(key, content)| key.contains(needle) || content.contains(needle))
        .map(|(key, _)| key)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_string_is_in_no_redis_key_or_value_no_log_line_and_no_metric() {
    let redis = start_redis();
    let mut gateway = Binary::serve(&redis, &[("RUST_LOG", "trace")]);
    let mut app = TestApp::spawn_on(redis).await;
    app.base = gateway.url();

    let session = app.mint("c1", None).await;
    // Its random part alone, so that no encoding of the whole hides it.
    let secret = &session["tfs_".len()..];
    let mut feed = app.open_feed_with_session("c1", &session).await;
    assert_eq!(
        app.challenge("001", "c1", "code?").await.status,
        StatusCode::CREATED
    );
    feed.expect("challenge", "001", "question_sent").await;
    let answered = app
        .as_session(
            &session,
            Method::POST,
            "/v1/tokens",
            Some(json!({"access": "001", "token": "123456"})),
        )
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
    // The scraper's long poll logs at trace level.
    assert_eq!(app.wait_token("001", 0.0).await.status, StatusCode::OK);
    app.as_session(&session, Method::GET, "/v1/customers/c2/challenges", None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.as_session(&session, Method::GET, "/v1/webhooks", None)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");

    assert_eq!(redis_holds(&app, secret).await, Vec::<String>::new());
    assert!(
        !redis_holds(&app, "2fa:session:{").await.is_empty(),
        "the scan sees sessions"
    );
    let metrics = metrics_of(&app.base).await;
    assert!(metrics.contains("twofa_"), "the metrics were read");
    assert!(!metrics.contains(secret));

    assert_eq!(
        app.as_session(&session, Method::DELETE, "/v1/sessions/current", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    feed.until_closed_within(SESSION_FEED_LIMIT).await;
    gateway.child.kill().expect("stop the gateway");
    let log = gateway.log_after_exit();
    assert!(
        log.iter().any(|line| line.contains(" TRACE ")),
        "trace logging was on"
    );
    assert!(
        log.iter()
            .any(|line| line.contains("path=/v1/customers/c1/events")),
        "the feed's request was logged, by its path alone"
    );
    let leaks: Vec<&String> = log.iter().filter(|line| line.contains(secret)).collect();
    assert!(
        leaks.is_empty(),
        "the session leaked into the log: {leaks:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_reads_an_accesss_trail_only_from_when_its_customer_took_it() {
    let app = TestApp::spawn().await;
    // c2's attempt, then c1's two.
    for customer in ["c2", "c1", "c1"] {
        let posted = app.challenge("moved", customer, "code?").await;
        assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    }
    let session = app.mint("c1", None).await;
    let attempts = |trail: &Value| -> Vec<u64> {
        let entries = trail.as_array().expect("a trail");
        entries
            .iter()
            .map(|e| e["attempt"].as_u64().expect("an attempt"))
            .collect()
    };
    let theirs = app
        .as_session(&session, Method::GET, "/v1/accesses/moved/events", None)
        .await;
    assert_eq!(theirs.status, StatusCode::OK, "{theirs:?}");
    assert_eq!(attempts(&theirs.body), [2, 3]);
    let whole = app
        .send(Method::GET, "/v1/accesses/moved/events", None)
        .await;
    assert_eq!(attempts(&whole.body), [1, 2, 3]);
}
