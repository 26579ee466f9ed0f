//! The outbox: a gateway SIGKILLed the instant a step commits, before it
//! relays what the step recorded, loses nothing. Another gateway's sweep
//! relays it, once, in order. The crash is driven by a test-only fault point
//! (`TWOFA_TEST_HALT_AFTER`), never by a sleep.

use twofa_bridge::client::Client;
use twofa_bridge::model::Token;

use crate::support::{Binary, TestApp, code_challenge, settled, start_redis};

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_between_a_commit_and_its_relay_loses_no_feed_event() {
    let redis = start_redis();
    let survivor = TestApp::spawn_on(redis.clone()).await;
    let mut feed = survivor.open_feed("c1", None).await;

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
    assert!(!survivor.hash("001").await.contains_key("relay_from"));
}
