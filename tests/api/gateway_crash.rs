//! A gateway killed mid-wait (SIGKILL: no chance to answer anyone) while a
//! hundred scrapers wait on it: the tokens submitted through another gateway
//! meanwhile are kept, each scraper gets its own once its gateway is back,
//! and the audit trail skips no status. No token and no status is lost.

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use reqwest::StatusCode;
use serde_json::Value;
use twofa_bridge::client::Client;
use twofa_bridge::model::Status;

use crate::support::{
    Binary, PATIENCE, WAITING_SCRAPERS, assert_tokens_delivered, code_challenge, eventually,
    free_port, redis_connection, spawn_waiting_scrapers, start_redis, token_for,
};

/// True once every one of these accesses' channels has a subscriber: each
/// scraper's long poll is registered with a gateway.
async fn all_subscribed(conn: &MultiplexedConnection, accesses: &[String]) -> bool {
    let mut conn = conn.clone();
    let mut numsub = redis::cmd("PUBSUB");
    numsub.arg("NUMSUB");
    for access in accesses {
        numsub.arg(format!("2fa:access:{{{access}}}:changed"));
    }
    let counts: Vec<(String, usize)> = numsub.query_async(&mut conn).await.expect("PUBSUB NUMSUB");
    counts.iter().all(|(_, subscribers)| *subscribers > 0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_mid_wait_loses_no_token_and_skips_no_status() {
    let redis = start_redis();
    let port = free_port();
    let mut first = Binary::serve_on(&redis, port, &[]);
    let second = Binary::serve(&redis, &[]);
    let scraper = Client::new(&first.url(), None).expect("a client of the first gateway");
    let tesback = Client::new(&second.url(), None).expect("a client of the second gateway");
    let accesses: Vec<String> = (0..WAITING_SCRAPERS)
        .map(|i| format!("killed-{i:03}"))
        .collect();
    for (i, access) in accesses.iter().enumerate() {
        let customer = format!("c{}", i % 10);
        scraper
            .challenge(
                access,
                &code_challenge(&customer, "Enter the code sent by SMS"),
            )
            .await
            .expect("challenge posted");
    }
    let scrapers = spawn_waiting_scrapers(&scraper, &accesses, 3 * PATIENCE);
    let conn = redis_connection(&redis).await;
    eventually("every scraper waits on the first gateway", || {
        all_subscribed(&conn, &accesses)
    })
    .await;

    // SIGKILL: no chance to answer anyone; the long polls just break.
    first.child.kill().expect("SIGKILL the first gateway");
    first.child.wait().expect("the first gateway is gone");
    let submitted = join_all(
        accesses
            .iter()
            .map(|access| tesback.submit(access, token_for(access))),
    )
    .await;
    for (access, stored) in accesses.iter().zip(submitted) {
        let stored = stored.unwrap_or_else(|e| panic!("{access}: the token was refused: {e}"));
        assert_eq!(stored.status, Status::TokenReceived, "{access}");
    }
    for (access, scraper) in accesses.iter().zip(&scrapers) {
        assert!(
            !scraper.is_finished(),
            "{access}'s scraper stopped waiting while its gateway was dead"
        );
    }

    let _restarted = Binary::serve_on(&redis, port, &[]);
    assert_tokens_delivered(&accesses, scrapers).await;

    // No status skipped, as the audit trail tells it through the API.
    let http = reqwest::Client::new();
    let trails = join_all(accesses.iter().map(|access| {
        let request = http.get(format!("{}/v1/accesses/{access}/events", second.url()));
        async move {
            let response = request.send().await.expect("the audit trail");
            assert_eq!(response.status(), StatusCode::OK, "{access}");
            response.json::<Vec<Value>>().await.expect("a JSON array")
        }
    }))
    .await;
    for (access, trail) in accesses.iter().zip(trails) {
        let steps: Vec<(&str, u64, &str)> = trail
            .iter()
            .map(|event| {
                (
                    event["type"].as_str().unwrap_or_default(),
                    event["attempt"].as_u64().unwrap_or_default(),
                    event["by"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("challenge", 1, "scraper"),
                ("token_received", 1, "frontend")
            ],
            "{access}: need, then token_received"
        );
    }
}
