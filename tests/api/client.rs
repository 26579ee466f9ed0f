//! The typed client, as a Rust scraper and a Rust front end would use it.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use twofa_bridge::client::{Client, ClientError, FeedMessage};
use twofa_bridge::model::{Outcome, Status, Token};

use crate::support::{TestApp, code_challenge, free_port, settled, start_redis};

const SCRAPER: &str = "scraper-client-0123456789abcdef01234567";
const FRONTEND: &str = "frontend-client-0123456789abcdef0123456";

fn token(value: &str) -> Token {
    Token::parse(value).expect("token")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_story_through_the_client_with_a_key_for_each_side() {
    let redis = start_redis();
    let keys = format!("scraper:{SCRAPER},frontend:{FRONTEND}");
    let app = TestApp::spawn_with(redis, |config| {
        config.api_keys = Some(keys.parse().expect("keys"));
    })
    .await;
    let scraper = Client::new(&app.base, Some(SCRAPER)).expect("client");
    let tesback = Client::new(&app.base, Some(FRONTEND)).expect("client");

    let posted = scraper
        .challenge("001", &code_challenge("c1", "123456"))
        .await
        .expect("posted");
    assert_eq!((posted.status, posted.attempt), (Status::Need, 1));
    let waiting = tokio::spawn({
        let scraper = scraper.clone();
        async move { scraper.wait_token("001", Duration::from_secs(10)).await }
    });
    let listed = tesback.list("c1").await.expect("listed");
    assert_eq!(listed[0].question, "123456");
    assert_eq!(listed[0].status, Status::QuestionSent);
    tesback
        .submit("001", token("987654"))
        .await
        .expect("submitted");
    let answer = settled(waiting).await.expect("a token");
    assert_eq!(answer.token.expose(), "987654");
    assert_eq!(answer.attempt, 1);
    let done = scraper
        .report("001", Outcome::Ok, None)
        .await
        .expect("reported");
    assert_eq!(done.status, Status::Ok);

    // Each key stays in its lane.
    let refused = tesback.wait_token("001", Duration::from_secs(1)).await;
    assert!(
        matches!(refused, Err(ClientError::Refused { status: 403, .. })),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_typed_so_a_scraper_can_match_them() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| config.sweep_interval_ms = 10).await;
    let gateway = Client::new(&app.base, None).expect("client");

    let missing = gateway.wait_token("nope", Duration::from_secs(1)).await;
    assert!(
        matches!(missing, Err(ClientError::NotFound { .. })),
        "{missing:?}"
    );

    gateway
        .challenge("gone", &code_challenge("c1", "q"))
        .await
        .expect("posted");
    gateway.cancel("gone").await.expect("cancelled");
    let cancelled = gateway.wait_token("gone", Duration::from_secs(1)).await;
    assert!(
        matches!(cancelled, Err(ClientError::Cancelled)),
        "{cancelled:?}"
    );

    let mut short = code_challenge("c1", "q");
    short.expires_in = Some(twofa_bridge::model::ExpiresIn::from_secs(1).expect("1 s"));
    gateway.challenge("late", &short).await.expect("posted");
    let expired = gateway.wait_token("late", Duration::from_secs(10)).await;
    assert!(matches!(expired, Err(ClientError::Expired)), "{expired:?}");

    gateway
        .challenge("done", &code_challenge("c1", "q"))
        .await
        .expect("posted");
    gateway.submit("done", token("1")).await.expect("submitted");
    let twice = gateway.submit("done", token("2")).await;
    assert!(
        matches!(&twice, Err(ClientError::Conflict { code, .. }) if code == "conflict"),
        "{twice:?}"
    );

    let mut strict = code_challenge("c1", "q");
    strict.validation = Some(twofa_bridge::model::Validation::parse(r"\d{6}").expect("regex"));
    gateway.challenge("strict", &strict).await.expect("posted");
    let invalid = gateway.submit("strict", token("abc")).await;
    assert!(
        matches!(&invalid, Err(ClientError::Refused { status: 422, code, .. }) if code == "invalid_token"),
        "{invalid:?}"
    );

    let waiting = gateway
        .wait_token("strict", Duration::from_millis(300))
        .await;
    assert!(
        matches!(waiting, Err(ClientError::TimedOut(_))),
        "{waiting:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_token_rides_out_a_gateway_restart() {
    let redis = start_redis();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let on_port = |config: &mut twofa_bridge::config::Config| {
        config.listen = listen.parse().expect("address");
    };
    let mut first = TestApp::spawn_with(redis.clone(), on_port).await;
    let scraper = Client::new(&first.base, None).expect("client");
    scraper
        .challenge("001", &code_challenge("c1", "q"))
        .await
        .expect("posted");
    let waiting = tokio::spawn({
        let scraper = scraper.clone();
        async move { scraper.wait_token("001", Duration::from_secs(20)).await }
    });
    first.until_waiting(1).await;

    // The gateway goes away (its waiter is answered 204), a token lands
    // while nothing listens, and a new gateway comes up on the same port.
    first.stop().await;
    let other = TestApp::spawn_on(redis.clone()).await;
    assert_eq!(
        other.submit("001", "987654").await.status,
        reqwest::StatusCode::OK
    );
    let _second = TestApp::spawn_with(redis, on_port).await;
    let answer = settled(waiting)
        .await
        .expect("the token, after the restart");
    assert_eq!(answer.token.expose(), "987654");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_stream_brings_challenges_and_changes() {
    let app = TestApp::spawn().await;
    let tesback = Client::new(&app.base, None).expect("client");
    let mut feed = Box::pin(tesback.events("c1"));
    let body = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "123456"});
    let posting = async {
        // Wait until the feed is open (its subscription counts as a channel).
        app.until("the feed is open", || async {
            app.subscriber.channels() == 1
        })
        .await;
        app.challenge_with("001", body).await;
    };
    let (_, first) = tokio::join!(posting, feed.next());
    match first {
        Some(Ok(FeedMessage::Challenge { access, .. })) => {
            assert_eq!(access.question, "123456");
            assert_eq!(access.status, Status::QuestionSent);
        }
        other => panic!("expected the challenge, got {other:?}"),
    }
    match feed.next().await {
        Some(Ok(FeedMessage::Status { change, .. })) => {
            assert_eq!(change.status, Status::QuestionSent);
        }
        other => panic!("expected a status change, got {other:?}"),
    }
}
