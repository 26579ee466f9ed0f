//! Webhooks: TesBack hears of every challenge with no page open. Each test
//! runs a real receiver that verifies every signature with the
//! `standardwebhooks` crate.

use futures_util::StreamExt;
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    Binary, Receiver, TestApp, eventually, hanging_receiver, keyed_app_with, keys,
};
use twofa_bridge::redis_server::RedisServer;

/// A gateway that lets endpoints use loopback `http` URLs, with API keys.
async fn gateway(authorized_as: &str) -> TestApp {
    keyed_app_with(Some(authorized_as), |config| {
        config.webhook_allow_http = true;
        config.webhook_allow_private = true;
    })
    .await
}

/// Registers the receiver; returns the endpoint's id, trusting its secret.
async fn register(app: &TestApp, receiver: &Receiver) -> String {
    let created = app
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": receiver.url, "description": "TesBack"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        created.headers["location"],
        format!("/v1/webhooks/{id}").as_str()
    );
    let secret = created.body["secret"].as_str().expect("a secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(created.body["disabled"], false);
    assert_eq!(
        created.body["events"],
        json!(["challenge.waiting", "access.status_changed"])
    );
    receiver.trust(&[secret]);
    id
}

fn kind_and_status(message: &Value) -> (String, String) {
    (
        message["type"].as_str().unwrap_or_default().to_owned(),
        message["data"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_story_reaches_tesback_in_order_signed_and_without_a_token() {
    let app = gateway(keys::ADMIN).await;
    let mut receiver = Receiver::start().await;
    register(&app, &receiver).await;

    app.challenge("001", "c1", "Enter the code sent by SMS")
        .await;
    let waiting = receiver.next().await;
    assert_eq!(waiting.body["type"], "challenge.waiting");
    assert_eq!(waiting.body["data"]["access"], "001");
    assert_eq!(waiting.body["data"]["customer"], "c1");
    assert_eq!(waiting.body["data"]["status"], "need");
    assert_eq!(
        waiting.body["data"]["doubleAuthQuestion"],
        "Enter the code sent by SMS"
    );
    assert!(
        waiting.headers["user-agent"]
            .to_str()
            .is_ok_and(|agent| agent.starts_with("twofa-bridge/")),
        "{:?}",
        waiting.headers
    );
    assert_eq!(waiting.headers["content-type"], "application/json");

    app.listed("c1").await;
    app.submit("001", "987654").await;
    app.report("001", "ok").await;
    let mut story = Vec::new();
    for _ in 0..3 {
        let message = receiver.next().await;
        assert!(
            !message.raw.contains("987654"),
            "a token in {}",
            message.raw
        );
        story.push(kind_and_status(&message.body));
    }
    let expected = ["question_sent", "token_received", "ok"]
        .map(|status| ("access.status_changed".to_owned(), status.to_owned()));
    assert_eq!(story, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receiver_gets_the_message_again_with_the_same_id() {
    let app = gateway(keys::ADMIN).await;
    let mut receiver = Receiver::start().await;
    let id = register(&app, &receiver).await;
    receiver.answer(&[500, 500]);
    app.challenge("001", "c1", "q").await;
    let tries: Vec<String> = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ]
    .iter()
    .map(|message| message.id.clone())
    .collect();
    assert!(tries[0].starts_with("msg_"), "{tries:?}");
    assert!(tries.iter().all(|id| *id == tries[0]), "{tries:?}");
    let path = format!("/v1/webhooks/{id}/deliveries");
    let mut rows = Value::Null;
    for _ in 0..200 {
        rows = app.send(Method::GET, &path, None).await.body;
        if rows[0]["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(rows[0]["messageId"], tries[0].as_str(), "{rows}");
    assert_eq!(rows[0]["tries"], 3, "{rows}");
    assert_eq!(rows[0]["state"], "delivered", "{rows}");
    assert_eq!(rows[0]["lastStatus"], 200, "{rows}");
    assert_eq!(rows[0]["type"], "challenge.waiting", "{rows}");
    assert_eq!(rows[0]["access"], "001", "{rows}");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_admin_key_reaches_webhooks_and_no_list_shows_a_secret() {
    let mut app = gateway(keys::ADMIN).await;
    let receiver = Receiver::start().await;
    let id = register(&app, &receiver).await;
    let listed = app.send(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body[0]["id"], id.as_str());
    let one = app
        .send(Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(one.status, StatusCode::OK);
    for shown in [&listed.body[0], &one.body] {
        assert!(shown.get("secret").is_none(), "{shown}");
        assert!(!shown.to_string().contains("whsec_"), "{shown}");
    }
    for key in [keys::SCRAPER, keys::FRONTEND] {
        app.authorize(key);
        for (method, path) in [
            (Method::GET, "/v1/webhooks".to_owned()),
            (Method::POST, "/v1/webhooks".to_owned()),
            (Method::GET, format!("/v1/webhooks/{id}")),
            (Method::DELETE, format!("/v1/webhooks/{id}")),
            (Method::POST, format!("/v1/webhooks/{id}/rotate")),
        ] {
            let refused = app.send(method, &path, Some(json!({}))).await;
            refused.assert_error(StatusCode::FORBIDDEN, "forbidden");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn urls_that_point_inward_or_are_not_https_are_refused() {
    // Without the allow flags, as in production.
    let app = TestApp::spawn().await;
    for url in [
        "http://tesback.example/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://10.0.0.8/hooks",
        "https://192.168.1.1/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://[fd00::1]/hooks",
        "file:///etc/passwd",
        "https://user:pw@tesback.example/hooks",
        "https://tesback.example/hooks#top",
    ] {
        let refused = app
            .send(Method::POST, "/v1/webhooks", Some(json!({ "url": url })))
            .await;
        refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    }
    let listed = app.send(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(listed.body, json!([]), "nothing was registered");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_endpoint_gets_nothing_and_a_410_disables_one() {
    let app = gateway(keys::ADMIN).await;
    let mut gone = Receiver::start().await;
    let gone_id = register(&app, &gone).await;
    let mut kept = Receiver::start().await;
    register(&app, &kept).await;
    let mut deleted = Receiver::start().await;
    let deleted_id = register(&app, &deleted).await;
    let removed = app
        .send(Method::DELETE, &format!("/v1/webhooks/{deleted_id}"), None)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);

    gone.answer(&[410]);
    app.challenge("001", "c1", "q").await;
    assert_eq!(gone.next().await.body["type"], "challenge.waiting");
    assert_eq!(kept.next().await.body["type"], "challenge.waiting");
    let path = format!("/v1/webhooks/{gone_id}");
    app.until("the 410 disabled its endpoint", || async {
        app.send(Method::GET, &path, None).await.body["disabled"] == true
    })
    .await;

    // The next message reaches the kept endpoint only. Deliveries to one
    // endpoint do not wait for another's, so the kept one's arrival
    // proves nothing about the others: their queues are checked too.
    app.cancel("001").await;
    assert_eq!(kept.next().await.body["data"]["status"], "cancelled");
    let rows = app
        .send(
            Method::GET,
            &format!("/v1/webhooks/{gone_id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(rows.body.as_array().map(Vec::len), Some(1), "{rows:?}");
    assert_eq!(rows.body[0]["state"], "failed");
    assert!(gone.try_next().is_none());
    assert!(deleted.try_next().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn during_a_rotation_both_secrets_sign() {
    let app = gateway(keys::ADMIN).await;
    let mut old_only = Receiver::start().await;
    let id = register(&app, &old_only).await;
    let rotated = app
        .send(Method::POST, &format!("/v1/webhooks/{id}/rotate"), None)
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new = rotated.body["secret"]
        .as_str()
        .expect("a new secret")
        .to_owned();
    // Still verified with the old secret alone (the receiver trusts it).
    let test = app
        .send(Method::POST, &format!("/v1/webhooks/{id}/test"), None)
        .await;
    assert_eq!(test.status, StatusCode::ACCEPTED);
    let message = old_only.next().await;
    assert_eq!(message.body["type"], "webhook.test");
    assert_eq!(message.body["data"], json!({}));
    // And with the new one alone.
    old_only.trust(&[&new]);
    app.send(Method::POST, &format!("/v1/webhooks/{id}/test"), None)
        .await;
    let signatures = old_only.next().await.headers["webhook-signature"]
        .to_str()
        .expect("a header")
        .to_owned();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
}

#[tokio::test(flavor = "multi_thread")]
async fn readmes_python_receiver_verifies_a_real_message_and_drops_a_duplicate() {
    let Some(snippet) = crate::support::readme_python("python-receiver", "standardwebhooks") else {
        return;
    };
    let app = gateway(keys::ADMIN).await;
    let mut receiver = Receiver::start().await;
    register(&app, &receiver).await;
    let created = app.send(Method::GET, "/v1/webhooks", None).await;
    let id = created.body[0]["id"].as_str().expect("an id").to_owned();
    let rotated = app
        .send(Method::POST, &format!("/v1/webhooks/{id}/rotate"), None)
        .await;
    let secret = rotated.body["secret"]
        .as_str()
        .expect("a secret")
        .to_owned();
    receiver.trust(&[secret.as_str()]);
    app.challenge("001", "c1", "q").await;
    let message = receiver.next().await;
    let headers: serde_json::Map<String, Value> = message
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("webhook-"))
        .map(|(name, value)| (name.to_string(), json!(value.to_str().expect("a header"))))
        .collect();
    // The same message twice, then one whose body was changed.
    let program = format!(
        "{snippet}\nimport json, sys\nm = json.loads(sys.stdin.read())\n\
         print(json.dumps(receive(m['body'].encode(), m['headers'])))\n\
         print(json.dumps(receive(m['body'].encode(), m['headers'])))\n\
         receive(m['body'].replace('001', '002').encode(), m['headers'])\n"
    );
    let input = json!({"body": message.raw, "headers": headers}).to_string();
    let mut python = tokio::process::Command::new("python3")
        .args(["-c", &program])
        .env("TWOFA_WEBHOOK_SECRET", &secret)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use tokio::io::AsyncWriteExt;
    let mut stdin = python.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("written");
    drop(stdin);
    let output = python.wait_with_output().await.expect("python3 ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{output:?}");
    let verified: Value = serde_json::from_str(lines[0]).expect("the message");
    assert_eq!(verified["type"], "challenge.waiting", "{output:?}");
    assert_eq!(verified["data"]["access"], "001");
    assert_eq!(lines[1], "null", "the duplicate is dropped");
    assert!(!output.status.success(), "a changed body must not verify");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("WebhookVerificationError"),
        "{output:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_hangs_never_slows_a_submission_or_a_wake() {
    let app = gateway(keys::ADMIN).await;
    let (url, _held) = hanging_receiver().await;
    let created = app
        .send(Method::POST, "/v1/webhooks", Some(json!({ "url": url })))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    // Every one of these accesses' messages hangs in flight (the timeout is
    // 5 s) while the story goes on.
    for i in 0..20 {
        let access = format!("a{i:02}");
        app.challenge(&access, "c1", "q").await;
        let waiter = app.spawn_wait(&access, 30.0);
        app.until_waiting(1).await;
        let started = std::time::Instant::now();
        let stored = app.submit(&access, "987654").await;
        let woken = crate::support::settled(waiter).await;
        let took = started.elapsed();
        assert_eq!(stored.status, StatusCode::OK, "{stored:?}");
        assert_eq!(woken.body["token"], "987654", "{woken:?}");
        assert!(
            took < std::time::Duration::from_millis(500),
            "a submission and its wake took {took:?} with a hanging receiver"
        );
    }
    // Meanwhile no message got through: they all hang, or wait behind.
    let id = created.body["id"].as_str().expect("an id");
    let rows = app
        .send(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?limit=100"),
            None,
        )
        .await
        .body;
    let rows = rows.as_array().expect("rows");
    assert!(rows.len() >= 20, "{rows:?}");
    assert!(rows.iter().all(|row| row["state"] == "pending"), "{rows:?}");
}

/// A gateway with keys off and the webhook retry delays divided by 100 (a
/// test-only knob): 10 ms, 50 ms, 300 ms, 1.2 s, 6 s, 18 s, 36 s.
async fn hurried_gateway(
    redis: std::sync::Arc<twofa_bridge::redis_server::RedisServer>,
) -> TestApp {
    TestApp::spawn_with(redis, |config| {
        config.webhook_allow_http = true;
        config.webhook_allow_private = true;
        config.test_webhook_delay_divisor = 100;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_is_down_gets_the_message_once_it_is_back() {
    let app = hurried_gateway(crate::support::start_redis()).await;
    let port = crate::support::free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/2fa");
    let created = app
        .send(Method::POST, "/v1/webhooks", Some(json!({ "url": url })))
        .await;
    let id = created.body["id"].as_str().expect("an id").to_owned();
    app.challenge("001", "c1", "q").await;
    // Down through its first five tries: 2.6 minutes of the real schedule.
    let path = format!("/v1/webhooks/{id}/deliveries");
    app.until("five tries found nobody", || async {
        let rows = app.send(Method::GET, &path, None).await.body;
        rows[0]["tries"].as_u64() >= Some(5)
    })
    .await;
    let rows = app.send(Method::GET, &path, None).await.body;
    assert_eq!(rows[0]["state"], "pending", "{rows}");
    assert_eq!(rows[0]["lastStatus"], Value::Null, "{rows}");
    assert_eq!(rows[0]["lastError"], "could not connect", "{rows}");
    assert!(rows[0]["nextTryAt"].is_string(), "{rows}");
    let mut receiver = Receiver::start_on(port).await;
    receiver.trust(&[created.body["secret"].as_str().expect("a secret")]);
    let message = receiver.next().await;
    assert_eq!(message.body["type"], "challenge.waiting");
    assert_eq!(message.id, rows[0]["messageId"].as_str().expect("an id"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_and_a_flaky_receiver_lose_nothing_and_keep_each_access_in_order() {
    let redis = crate::support::start_redis();
    let (a, b) = (
        hurried_gateway(redis.clone()).await,
        hurried_gateway(redis.clone()).await,
    );
    let mut receiver = Receiver::start().await;
    let created = a
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(json!({ "url": receiver.url })),
        )
        .await;
    receiver.trust(&[created.body["secret"].as_str().expect("a secret")]);
    // A change through gateway b makes b re-read the endpoints at once
    // (it would within half a second anyway).
    let id = created.body["id"].as_str().expect("an id");
    let patched = b
        .send(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(json!({"description": "TesBack"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    let seed = 0x5eed_u64;
    receiver.fail_at_random(30, seed);
    let accesses: Vec<String> = (0..200).map(|i| format!("load-{i:03}")).collect();
    let steps = accesses.iter().enumerate().map(|(i, access)| {
        let (first, second) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let customer = format!("c{}", i % 20);
        async move {
            first.challenge(access, &customer, "q").await;
            second.listed(&customer).await;
            first.submit(access, "987654").await;
            second.report(access, "ok").await;
        }
    });
    futures_util::future::join_all(steps).await;
    // Every arrival, including those answered 500, per access in order.
    let mut arrivals: std::collections::HashMap<String, Vec<(String, String)>> =
        std::collections::HashMap::new();
    let mut ids: std::collections::HashMap<(String, String), String> =
        std::collections::HashMap::new();
    let mut distinct = std::collections::HashSet::new();
    while distinct.len() < accesses.len() * 4 {
        let message = receiver.next().await;
        let access = message.body["data"]["access"]
            .as_str()
            .expect("an access")
            .to_owned();
        let status = message.body["data"]["status"]
            .as_str()
            .expect("a status")
            .to_owned();
        let known = ids
            .entry((access.clone(), status.clone()))
            .or_insert(message.id.clone());
        assert_eq!(*known, message.id, "one message, two ids (seed {seed:#x})");
        distinct.insert(message.id.clone());
        arrivals
            .entry(access)
            .or_default()
            .push((status, message.id));
    }
    for access in &accesses {
        let mut order: Vec<&str> = arrivals[access].iter().map(|(s, _)| s.as_str()).collect();
        order.dedup();
        assert_eq!(
            order,
            ["need", "question_sent", "token_received", "ok"],
            "{access} (seed {seed:#x})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_endpoint_past_the_limit_is_refused_and_a_patch_is_checked_like_a_post() {
    let app = TestApp::spawn_with(crate::support::start_redis(), |config| {
        config.max_webhooks = 2;
    })
    .await;
    let body = json!({"url": "https://tesback.example/hooks", "events": ["access.status_changed"]});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let created = app
            .send(Method::POST, "/v1/webhooks", Some(body.clone()))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        assert_eq!(created.body["events"], json!(["access.status_changed"]));
        ids.push(created.body["id"].as_str().expect("an id").to_owned());
    }
    let third = app.send(Method::POST, "/v1/webhooks", Some(body)).await;
    third.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    let path = format!("/v1/webhooks/{}", ids[0]);
    for refused in [
        json!({"url": "https://127.0.0.1/hooks"}),
        json!({"events": []}),
        json!({"description": "x".repeat(257)}),
        json!({"disabled": "yes"}),
    ] {
        app.send(Method::PATCH, &path, Some(refused))
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    }
    let patched = app
        .send(
            Method::PATCH,
            &path,
            Some(json!({"disabled": true, "description": "paused"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(patched.body["disabled"], true);
    assert_eq!(patched.body["description"], "paused");
    assert_eq!(patched.body["url"], "https://tesback.example/hooks");
    app.send(Method::GET, "/v1/webhooks/wh_nope", None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

/// A gateway in its own process that lets endpoints use loopback `http`
/// URLs, with `env` besides.
fn binary_gateway(redis: &RedisServer, env: &[(&str, &str)]) -> Binary {
    let mut all = vec![
        ("TWOFA_WEBHOOK_ALLOW_HTTP", "1"),
        ("TWOFA_WEBHOOK_ALLOW_PRIVATE", "1"),
    ];
    all.extend_from_slice(env);
    Binary::serve(redis, &all)
}

/// Registers the receiver on a gateway in its own process, and trusts the
/// secret; returns the created endpoint.
async fn register_on(gateway: &Binary, receiver: &Receiver) -> Value {
    let created: Value = reqwest::Client::new()
        .post(format!("{}/v1/webhooks", gateway.url()))
        .json(&json!({ "url": receiver.url }))
        .send()
        .await
        .expect("registered")
        .json()
        .await
        .expect("JSON");
    receiver.trust(&[created["secret"].as_str().expect("a secret")]);
    created
}

/// Posts access 001's challenge for c1 on a gateway in its own process.
async fn post_on(gateway: &Binary, question: &str) {
    reqwest::Client::new()
        .put(format!("{}/v1/accesses/001/challenge", gateway.url()))
        .json(&json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": question}))
        .send()
        .await
        .expect("posted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_mid_delivery_hands_the_message_on_when_its_lease_ends() {
    let redis = crate::support::start_redis();
    // A 1 s timeout gives a 12 s lease (twice the timeout, plus 10 s).
    let doomed = binary_gateway(&redis, &[("TWOFA_WEBHOOK_TIMEOUT_MS", "1000")]);
    let mut receiver = Receiver::start().await;
    receiver.hang(1);
    register_on(&doomed, &receiver).await;
    post_on(&doomed, "q").await;
    // The doomed gateway holds the lane, its try hanging: kill it there.
    let first = receiver.next().await;
    drop(doomed);
    let survivor = hurried_gateway(redis).await;
    let started = std::time::Instant::now();
    let again = receiver.next().await;
    assert_eq!(again.id, first.id, "the same webhook-id");
    assert_eq!(again.body["type"], "challenge.waiting");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "handed on after {:?}",
        started.elapsed()
    );
    drop(survivor);
}

/// What an operator sees of webhooks, from a gateway in its own process
/// (so the counters are its alone): the metrics count every try, and the
/// log names a failed try's endpoint, status and error, never the secret or
/// a body.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_each_try_and_the_log_shows_no_secret_and_no_body() {
    let redis = crate::support::start_redis();
    let env = [
        ("TWOFA_TEST_WEBHOOK_DELAY_DIVISOR", "100"),
        ("TWOFA_LOG_FORMAT", "json"),
        ("RUST_LOG", "debug"),
    ];
    let mut gateway = binary_gateway(&redis, &env);
    let base = gateway.url();
    let client = reqwest::Client::new();
    let mut receiver = Receiver::start().await;
    receiver.answer(&[500, 500]);
    let created = register_on(&gateway, &receiver).await;
    let endpoint = created["id"].as_str().expect("an id").to_owned();
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    let question = "Body-only question 5e1c";
    post_on(&gateway, question).await;
    for _ in 0..3 {
        receiver.next().await;
    }

    let metrics = || async {
        let response = client.get(format!("{base}/metrics")).send().await;
        match response {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    // The third try's 2xx is counted just after the receiver answers it,
    // and the pending gauge is sampled once a poll.
    eventually("the delivery is counted and nothing is pending", || async {
        let text = metrics().await;
        text.contains("twofa_webhook_messages_total{outcome=\"delivered\"} 1")
            && text.lines().any(|l| l == "twofa_webhook_pending 0")
    })
    .await;
    let text = metrics().await;
    for line in [
        "twofa_webhook_messages_total{outcome=\"retried\"} 2",
        "twofa_webhook_delivery_seconds_count 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(!text.contains("outcome=\"failed\"} 1"), "{text}");
    let relayed = text
        .lines()
        .find_map(|l| l.strip_prefix("twofa_relay_lag_seconds_count "))
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(relayed, Some(1), "one move relayed, in:\n{text}");

    gateway.child.kill().expect("stop the gateway");
    let mut log = gateway.log_before_listening.clone();
    log.extend(gateway.log_after_exit());
    let failures: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("a webhook delivery failed"))
        .collect();
    assert_eq!(failures.len(), 2, "{log:#?}");
    for line in failures {
        assert!(line.contains(&endpoint) && line.contains("500"), "{line}");
    }
    let key = secret.trim_start_matches("whsec_");
    for line in &log {
        assert!(!line.contains(key), "the secret is in: {line}");
        assert!(!line.contains(question), "a body is in: {line}");
    }
}

/// An endpoint's history keeps no finished message older than a day, and
/// at most the last 1,000.
#[tokio::test(flavor = "multi_thread")]
async fn history_keeps_the_last_thousand_messages_and_none_from_yesterday() {
    let app = gateway(keys::ADMIN).await;
    let mut receiver = Receiver::start().await;
    let id = register(&app, &receiver).await;
    let (messages, history) = (
        format!("2fa:webhook:{{{id}}}:messages"),
        format!("2fa:webhook:{{{id}}}:history"),
    );
    // A message delivered 25 hours ago, as a day-old history holds it.
    let day_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
        - 25 * 3600 * 1000;
    let old = json!({
        "type": "webhook.test", "body": "{}", "tries": 1, "state": "delivered",
        "lastStatus": 200, "createdAt": day_ago, "at": day_ago,
    });
    let mut conn = app.conn.clone();
    redis::pipe()
        .hset(&messages, "msg_yesterday", old.to_string())
        .zadd(&history, "msg_yesterday", day_ago)
        .query_async::<()>(&mut conn)
        .await
        .expect("a day-old message");

    let test = format!("/v1/webhooks/{id}/test");
    let send = |n: usize| {
        let (app, test) = (&app, &test);
        async move {
            let sent = futures_util::stream::iter(0..n)
                .map(|_| async move { app.send(Method::POST, test, None).await.status })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await;
            assert!(sent.iter().all(|s| *s == StatusCode::ACCEPTED), "{sent:?}");
        }
    };
    let count = |conn: redis::aio::MultiplexedConnection| {
        let (messages, history) = (messages.clone(), history.clone());
        async move {
            let mut conn = conn;
            let kept: usize = conn.zcard(&history).await.expect("ZCARD");
            let records: usize = conn.hlen(&messages).await.expect("HLEN");
            let old: bool = conn
                .hexists(&messages, "msg_yesterday")
                .await
                .expect("HEXISTS");
            (kept, records, old)
        }
    };

    // One delivery later, yesterday's message is gone.
    send(1).await;
    receiver.next().await;
    eventually("yesterday's message goes", || async {
        count(conn.clone()).await == (1, 1, false)
    })
    .await;

    // 1,001 more: the oldest goes, the last 1,000 stay.
    send(1_001).await;
    for _ in 0..1_001 {
        receiver.next().await;
    }
    eventually("the history holds the last 1,000", || async {
        count(conn.clone()).await == (1_000, 1_000, false)
    })
    .await;
    let listed = app
        .send(Method::GET, &format!("/v1/webhooks/{id}/deliveries"), None)
        .await
        .body;
    let listed = listed.as_array().expect("rows");
    assert!(
        !listed.is_empty() && listed.len() <= 1_000,
        "{}",
        listed.len()
    );
    assert!(listed.iter().all(|row| row["state"] == "delivered"));
}
