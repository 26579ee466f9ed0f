//! The live feed: TesBack's front end learns of challenges and status
//! changes the moment they happen, and misses nothing across reconnects.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{TestApp, start_redis};

#[tokio::test(flavor = "multi_thread")]
async fn a_connected_feed_gets_a_new_challenge_at_once_and_every_change_after() {
    let app = TestApp::spawn().await;
    let mut feed = app.open_feed("c1", None).await;
    assert_eq!(feed.status, StatusCode::OK);

    let posted_at = Instant::now();
    app.challenge("001", "c1", "123456").await;
    let got = feed.next_event().await.expect("open");
    let after = posted_at.elapsed();
    assert!(
        after < Duration::from_millis(100),
        "the challenge came {after:?} after the PUT"
    );
    assert_eq!(got.event, "challenge");
    assert_eq!(got.data["access"], "001");
    assert_eq!(got.data["doubleAuthQuestion"], "123456");
    assert_eq!(got.data["finEntityName"], "Real");
    assert_eq!(
        got.data["status"], "question_sent",
        "delivering it sent the question"
    );
    assert!(got.data.get("token").is_none());
    assert_eq!(app.hash("001").await["status"], "question_sent");

    feed.expect("status", "001", "question_sent").await;
    app.submit("001", "987654").await;
    feed.expect("status", "001", "token_received").await;
    app.report("001", "ok").await;
    let last = feed.next_event().await.expect("open");
    assert_eq!(last.data["status"], "ok");
    assert_eq!(last.data["attempt"], 1);
    assert!(last.data["at"].as_str().is_some_and(|at| at.ends_with('Z')));
    assert!(
        !last.data.to_string().contains("987654"),
        "no token on the feed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_feed_first_gets_what_is_waiting() {
    let app = TestApp::spawn().await;
    app.challenge("a1", "c1", "q1").await;
    app.challenge("a2", "c1", "q2").await;
    app.challenge("other", "c2", "q").await;
    let mut feed = app.open_feed("c1", None).await;
    let first = feed.expect("challenge", "a1", "question_sent").await;
    let second = feed.expect("challenge", "a2", "question_sent").await;
    // Only the last carries the feed's position: a client cut off between
    // them resumes from before them all.
    assert_eq!(first, "");
    assert!(!second.is_empty());
    // Showing them sent the questions; then the feed goes on live.
    feed.expect("status", "a1", "question_sent").await;
    feed.expect("status", "a2", "question_sent").await;
    app.challenge("a3", "c1", "q3").await;
    feed.expect("challenge", "a3", "question_sent").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_feed_that_reconnects_gets_exactly_what_it_missed() {
    let app = TestApp::spawn().await;
    let (feed, seen) = app.follow_a_challenge("c1", "001").await;
    drop(feed);

    app.submit("001", "987654").await;
    app.report("001", "rejected").await;

    let mut feed = app.open_feed("c1", Some(&seen)).await;
    assert_eq!(feed.status, StatusCode::OK);
    let first = feed.expect("status", "001", "token_received").await;
    let second = feed.expect("status", "001", "rejected").await;
    assert!(
        seen < first && first < second,
        "in order: {seen} {first} {second}"
    );
    // Nothing else was pending: the next event is the next thing to happen.
    app.challenge("002", "c1", "q").await;
    feed.expect("challenge", "002", "question_sent").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_feed_on_one_gateway_sees_a_challenge_posted_through_another() {
    let redis = start_redis();
    let a = TestApp::spawn_on(redis.clone()).await;
    let b = TestApp::spawn_on(redis).await;
    let mut feed = a.open_feed("c1", None).await;
    b.challenge("001", "c1", "q").await;
    feed.expect("challenge", "001", "question_sent").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_feed_gets_heartbeats() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| config.feed_heartbeat_ms = 20).await;
    let mut feed = app.open_feed("c1", None).await;
    assert!(feed.next_heartbeat().await, "a first heartbeat");
    assert!(feed.next_heartbeat().await, "and another");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_feeds_with_a_retry_hint() {
    let mut app = TestApp::spawn().await;
    let mut feed = app.open_feed("c1", None).await;
    let closing = tokio::spawn(async move {
        let last = feed.next_event().await;
        (last, feed.next_event().await)
    });
    app.stop().await;
    let (last, after) = crate::support::settled(closing).await;
    assert_eq!(last.and_then(|e| e.retry).as_deref(), Some("1000"));
    assert!(after.is_none(), "then the feed ends");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_feeds_cost_a_handful_of_redis_connections() {
    let app = TestApp::spawn().await;
    let customers: Vec<String> = (0..10).map(|i| format!("cust-{i}")).collect();
    let opening = (0..1000).map(|i| app.open_feed(&customers[i % 10], None));
    let mut feeds = futures_util::future::join_all(opening).await;
    assert!(feeds.iter().all(|f| f.status == StatusCode::OK));

    let clients = app.redis_clients().await;
    // The gateway's command and pub/sub connections, and this test's own.
    let connections = clients.lines().count();
    assert!(
        connections <= 4,
        "{connections} Redis connections:\n{clients}"
    );

    for (i, customer) in customers.iter().enumerate() {
        app.challenge(&format!("acc-{i}"), customer, "q").await;
    }
    let delivered = feeds.iter_mut().enumerate().map(|(i, feed)| async move {
        let got = feed.next_event().await.expect("open");
        assert_eq!(got.event, "challenge");
        assert_eq!(got.data["access"], format!("acc-{}", i % 10));
    });
    futures_util::future::join_all(delivered).await;
}
