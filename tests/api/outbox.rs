//! The outbox: a gateway SIGKILLed the instant a step commits, before it
//! relays what the step recorded, loses nothing. Another gateway's sweep
//! relays it, once, in order, to the customer's feed and to every webhook
//! endpoint. The crash is driven by a test-only fault point
//! (`TWOFA_TEST_HALT_AFTER`), never by a sleep.

use twofa_bridge::client::Client;
use twofa_bridge::model::Token;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Binary, Receiver, TestApp, code_challenge, settled, start_redis};

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_between_a_commit_and_its_relay_loses_no_event() {
    let redis = start_redis();
    let survivor = TestApp::spawn_with(redis.clone(), |config| {
        config.webhook_allow_http = true;
        config.webhook_allow_private = true;
    })
    .await;
    let mut feed = survivor.open_feed("c1", None).await;
    let mut receiver = Receiver::start().await;
    let created = survivor
        .send(
            Method::POST,
            "/v1/webhooks",
            Some(json!({ "url": receiver.url })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    receiver.trust(&[created.body["secret"].as_str().expect("a secret")]);

    // Killed right after the post commits: the challenge is in Redis, and
    // this gateway never tells the feed.
    let mut doomed = Binary::serve(&redis, &[("TWOFA_TEST_HALT_AFTER", "post")]);
    let scraper = Client::new(&doomed.url(), None).expect("a client");
    let post = tokio::spawn(async move {
        scraper
            .challenge("001", &code_challenge("c1", "Enter the code"))
            .await
    });
    doomed.kill_at_fault_point();
    assert!(settled(post).await.is_err(), "the post's gateway died");
    // The step left its own relay mark, named after its relay field, for
    // any gateway's sweep to take a second later (unless the survivor's
    // sweep took both already, on a machine slow enough).
    let relay_field = survivor
        .hash("001")
        .await
        .into_keys()
        .find(|field| field.starts_with("relay:"));
    if let Some(field) = relay_field {
        let marks = relay_marks(&survivor).await;
        assert_eq!(
            marks,
            [format!("001|{}", &field["relay:".len()..])],
            "one mark, its step's"
        );
    }
    // The survivor's sweep relays it; the feed shows it, as any challenge.
    feed.expect("challenge", "001", "question_sent").await;
    feed.expect("status", "001", "question_sent").await;

    // Killed right after a token is stored.
    let mut doomed = Binary::serve(&redis, &[("TWOFA_TEST_HALT_AFTER", "submit")]);
    let tesback = Client::new(&doomed.url(), None).expect("a client");
    let submit = tokio::spawn(async move {
        let token = Token::parse("123456").expect("a token");
        tesback.submit("001", token).await
    });
    doomed.kill_at_fault_point();
    assert!(settled(submit).await.is_err(), "the submit's gateway died");
    feed.expect("status", "001", "token_received").await;

    // Each event once, in the order it happened, and the outbox is empty.
    let events: Vec<(String, String)> = survivor
        .stream("2fa:customer:{c1}:events")
        .await
        .into_iter()
        .map(|(_, fields)| (fields["event"].clone(), fields["status"].clone()))
        .collect();
    let expected = [
        ("challenge", "need"),
        ("status", "question_sent"),
        ("status", "token_received"),
    ];
    assert_eq!(
        events,
        expected.map(|(event, status)| (event.to_owned(), status.to_owned()))
    );
    // The relay closes the outbox's relay fields once every consumer has
    // it, just after the feed, and then their marks.
    survivor
        .until("the outbox is empty and unmarked", || async {
            !survivor
                .hash("001")
                .await
                .keys()
                .any(|field| field.starts_with("relay:"))
                && relay_marks(&survivor).await.is_empty()
        })
        .await;

    // TesBack heard all of it too, in order.
    let mut heard = Vec::new();
    for _ in 0..3 {
        let message = receiver.next().await;
        let status = message.body["data"]["status"].as_str().map(str::to_owned);
        heard.push((message.body["type"].as_str().map(str::to_owned), status));
    }
    let expected = [
        ("challenge.waiting", "need"),
        ("access.status_changed", "question_sent"),
        ("access.status_changed", "token_received"),
    ];
    assert_eq!(
        heard,
        expected.map(|(kind, status)| (Some(kind.to_owned()), Some(status.to_owned())))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relayed_step_leaves_no_mark_and_a_read_writes_none() {
    let app = TestApp::spawn().await;
    let clean = |what: &'static str| {
        let app = &app;
        async move {
            let open: Vec<String> = app
                .hash("001")
                .await
                .into_keys()
                .filter(|field| field.starts_with("relay:"))
                .collect();
            assert!(open.is_empty(), "{what} left relay fields {open:?}");
            let marks = relay_marks(app).await;
            assert!(marks.is_empty(), "{what} left relay marks {marks:?}");
        }
    };
    assert_eq!(
        app.challenge("001", "c1", "Enter the code").await.status,
        StatusCode::CREATED
    );
    clean("a post").await;
    assert_eq!(app.listed("c1").await.len(), 1);
    clean("a list").await;
    assert_eq!(app.access("001").await.status, StatusCode::OK);
    clean("a read").await;
    assert_eq!(app.submit("001", "123456").await.status, StatusCode::OK);
    clean("a submission").await;
    assert_eq!(app.report("001", "ok").await.status, StatusCode::OK);
    clean("a report").await;
}

/// The relay index's members on a single Redis.
async fn relay_marks(app: &TestApp) -> Vec<String> {
    let mut conn = app.conn.clone();
    redis::cmd("ZRANGE")
        .arg("2fa:relay")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("ZRANGE")
}
