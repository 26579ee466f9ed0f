//! The long poll: woken by Redis, never by polling, and never losing a
//! token, whoever waits where and whatever happens to the subscriber.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use reqwest::StatusCode;

use crate::support::{TestApp, settled, start_redis};

#[tokio::test(flavor = "multi_thread")]
async fn a_waiter_gets_its_answer_for_every_state() {
    let app = TestApp::spawn().await;
    app.wait_token("404", 0.0)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    app.challenge("001", "c1", "q").await;
    let started = Instant::now();
    let still = app.wait_token("001", 0.2).await;
    assert_eq!(still.status, StatusCode::NO_CONTENT);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        app.wait_token("001", 0.0).await.status,
        StatusCode::NO_CONTENT
    );

    app.submit("001", "987654").await;
    for _ in 0..2 {
        // Reading does not consume: the next call gets the same token.
        let got = app.wait_token("001", 0.0).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body["token"], "987654");
    }
    app.report("001", "ok").await;
    app.wait_token("001", 1.0)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");

    app.challenge("002", "c1", "q").await;
    app.cancel("002").await;
    app.wait_token("002", 1.0)
        .await
        .assert_error(StatusCode::GONE, "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_wakes_the_http_and_blpop_waiters_with_cancelled() {
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "q").await;
    let waiter = app.spawn_wait("001", 30.0);
    let raw = app.spawn_blpop("001").await;
    app.until_waiting(1).await;
    app.cancel("001").await;
    settled(waiter)
        .await
        .assert_error(StatusCode::GONE, "cancelled");
    assert_eq!(settled(raw).await, "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raw_redis_scraper_wakes_on_blpop_and_reads_the_token() {
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "123456").await;
    let scraper = app.spawn_blpop("001").await;
    app.until_blocked_in_blpop().await;
    assert_eq!(app.submit("001", "987654").await.status, StatusCode::OK);
    assert_eq!(settled(scraper).await, "token_received");
    let mut conn = app.conn.clone();
    let token: String = conn.hget("2fa:access:{001}", "token").await.expect("HGET");
    assert_eq!(token, "987654");
    let left: Vec<String> = conn
        .lrange("2fa:access:{001}:wake", 0, -1)
        .await
        .expect("LRANGE");
    assert!(
        left.is_empty(),
        "the wake list holds statuses, and BLPOP took it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_wake_up_is_lost_whenever_the_token_lands() {
    let app = TestApp::spawn().await;
    const ROUNDS: usize = 300;
    for batch in 0..(ROUNDS / 50) {
        let rounds = (0..50).map(|i| {
            let access = format!("race-{batch}-{i}");
            let app = &app;
            async move {
                app.challenge(&access, "c1", "q").await;
                let token = format!("t{batch}x{i}");
                let wait = app.wait_token(&access, 10.0);
                let submit = async {
                    // Land the token before, during or after the waiter's
                    // subscribe-then-read, by a varying head start.
                    for _ in 0..(i % 25) {
                        tokio::task::yield_now().await;
                    }
                    if i % 5 == 0 {
                        tokio::time::sleep(Duration::from_micros(200 * (i as u64 % 10))).await;
                    }
                    app.submit(&access, &token).await
                };
                let (got, submitted) = tokio::join!(wait, submit);
                assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
                assert_eq!(got.status, StatusCode::OK, "{access}: {got:?}");
                assert_eq!(got.body["token"], token.as_str());
            }
        });
        futures_util::future::join_all(rounds).await;
    }
    app.until_no_waiters().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_went_away_asks_again_and_gets_the_token() {
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "q").await;
    let impatient = app
        .http
        .get(format!("{}/v1/accesses/001/token?timeout=30", app.base))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(
        impatient.is_err_and(|e| e.is_timeout()),
        "the client gave up"
    );
    app.until("the abandoned wait is released", || async {
        app.subscribers("001").await == 0
    })
    .await;
    app.submit("001", "987654").await;
    let again = app.wait_token("001", 5.0).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["token"], "987654");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_submitted_through_one_gateway_wakes_a_waiter_on_another() {
    let redis = start_redis();
    let a = TestApp::spawn_on(redis.clone()).await;
    let b = TestApp::spawn_on(redis).await;
    a.challenge("001", "c1", "q").await;
    let waiter = a.spawn_wait("001", 30.0);
    a.until_waiting(1).await;
    assert_eq!(b.listed("c1").await[0]["access"], "001");
    assert_eq!(b.submit("001", "987654").await.status, StatusCode::OK);
    assert_eq!(settled(waiter).await.body["token"], "987654");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiters_survive_the_subscriber_connection_being_killed() {
    let app = TestApp::spawn().await;
    let accesses: Vec<String> = (0..50).map(|i| format!("acc-{i}")).collect();
    for access in &accesses {
        app.challenge(access, "c1", "q").await;
    }
    let waiters: Vec<_> = accesses
        .iter()
        .map(|access| app.spawn_wait(access, 30.0))
        .collect();
    app.until_waiting(accesses.len()).await;

    // Kill the shared subscriber, and keep it from subscribing again while
    // every token lands: their messages are lost for good, so only the
    // re-read after resubscribing can deliver them.
    let mut conn = app.conn.clone();
    let (killed,): (u64,) = redis::pipe()
        .atomic()
        .cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-subscribe")
        .ignore()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL");
    assert_eq!(
        killed, 1,
        "one shared subscriber connection, not one per waiter"
    );
    for access in &accesses {
        let submitted = app.submit(access, &format!("tok-{access}")).await;
        assert_eq!(submitted.status, StatusCode::OK);
    }
    assert!(
        !app.subscriber.is_connected(),
        "the subscriber cannot be back yet"
    );
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("+subscribe")
        .query_async(&mut conn)
        .await
        .expect("ACL SETUSER");

    for (access, waiter) in accesses.iter().zip(waiters) {
        let got = settled(waiter).await;
        assert_eq!(got.status, StatusCode::OK, "{access}: {got:?}");
        assert_eq!(got.body["token"], format!("tok-{access}").as_str());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_answers_waiters_at_once_instead_of_holding_them() {
    let mut app = TestApp::spawn().await;
    app.challenge("001", "c1", "q").await;
    let waiter = app.spawn_wait("001", 120.0);
    app.until_waiting(1).await;
    let stopping = Instant::now();
    app.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    assert_eq!(settled(waiter).await.status, StatusCode::NO_CONTENT);
}
