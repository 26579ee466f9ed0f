//! The lifecycle table: allowed moves succeed, every other move is refused
//! with 409 and changes nothing in Redis.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Reply, TestApp};

/// Brings access `001` of customer c1 to `status`.
async fn access_in(app: &TestApp, status: &str) {
    assert_eq!(
        app.challenge("001", "c1", "123456").await.status,
        StatusCode::CREATED
    );
    match status {
        "need" => {}
        "question_sent" => {
            app.list("c1").await;
        }
        "token_received" => {
            app.submit("001", "987654").await;
        }
        "ok" | "rejected" => {
            app.submit("001", "987654").await;
            app.report("001", status).await;
        }
        "cancelled" => {
            app.cancel("001").await;
        }
        other => panic!("no way to reach {other}"),
    }
    assert_eq!(app.hash("001").await["status"], status);
}

/// Runs `step` and asserts it was refused with `status`/`code` and that the
/// keyspace is exactly as before.
async fn assert_refused_unchanged<F, Fut>(app: &TestApp, status: StatusCode, code: &str, step: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Reply>,
{
    let before = app.state().await;
    let reply = step().await;
    reply.assert_error(status, code);
    assert_eq!(app.state().await, before, "a refused step changed Redis");
}

#[tokio::test(flavor = "multi_thread")]
async fn report_is_allowed_only_from_token_received() {
    for from in ["need", "question_sent", "ok", "rejected", "cancelled"] {
        let app = TestApp::spawn().await;
        access_in(&app, from).await;
        assert_refused_unchanged(&app, StatusCode::CONFLICT, "conflict", || {
            app.report("001", "ok")
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_accepted_only_while_waiting() {
    for (from, status, code) in [
        ("token_received", StatusCode::CONFLICT, "conflict"),
        ("ok", StatusCode::CONFLICT, "conflict"),
        ("rejected", StatusCode::CONFLICT, "conflict"),
        ("cancelled", StatusCode::GONE, "cancelled"),
    ] {
        let app = TestApp::spawn().await;
        access_in(&app, from).await;
        assert_refused_unchanged(&app, status, code, || app.submit("001", "123123")).await;
    }
    let app = TestApp::spawn().await;
    assert_refused_unchanged(&app, StatusCode::NOT_FOUND, "not_found", || {
        app.submit("404", "123123")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_works_from_any_status_that_is_not_final() {
    for from in ["need", "question_sent", "token_received"] {
        let app = TestApp::spawn().await;
        access_in(&app, from).await;
        let cancelled = app.cancel("001").await;
        assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
        assert_eq!(cancelled.body["status"], "cancelled");
        let hash = app.hash("001").await;
        assert_eq!(hash["status"], "cancelled");
        assert!(!hash.contains_key("token"));
        assert!(app.listed("c1").await.is_empty());
    }
    for from in ["ok", "rejected", "cancelled"] {
        let app = TestApp::spawn().await;
        access_in(&app, from).await;
        assert_refused_unchanged(&app, StatusCode::CONFLICT, "conflict", || app.cancel("001"))
            .await;
    }
    let app = TestApp::spawn().await;
    assert_refused_unchanged(&app, StatusCode::NOT_FOUND, "not_found", || {
        app.cancel("404")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_challenge_starts_the_next_attempt_from_any_status() {
    for from in [
        "need",
        "question_sent",
        "token_received",
        "ok",
        "rejected",
        "cancelled",
    ] {
        let app = TestApp::spawn().await;
        access_in(&app, from).await;
        let again = app.challenge("001", "c1", "222333").await;
        assert_eq!(again.status, StatusCode::CREATED, "{again:?}");
        assert_eq!(again.body["attempt"], 2, "from {from}");
        assert_eq!(again.body["status"], "need");
        let hash = app.hash("001").await;
        assert!(!hash.contains_key("token"), "from {from}");
        assert!(!hash.contains_key("reason"), "from {from}");
        assert_eq!(app.listed("c1").await.len(), 1, "from {from}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_number_guards_against_answering_an_old_question() {
    let app = TestApp::spawn().await;
    access_in(&app, "rejected").await;
    app.challenge("001", "c1", "second").await;
    assert_refused_unchanged(&app, StatusCode::CONFLICT, "attempt_mismatch", || {
        app.send(
            Method::POST,
            "/v1/tokens",
            Some(json!({"access": "001", "token": "987654", "attempt": 1})),
        )
    })
    .await;
    let right = app
        .send(
            Method::POST,
            "/v1/tokens",
            Some(json!({"access": "001", "token": "987654", "attempt": 2})),
        )
        .await;
    assert_eq!(right.status, StatusCode::OK, "{right:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reason_is_kept_on_the_final_state() {
    let app = TestApp::spawn().await;
    access_in(&app, "token_received").await;
    let body = json!({"status": "rejected", "reason": "bank said: wrong code"});
    let reply = app
        .send(Method::PUT, "/v1/accesses/001/status", Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["reason"], "bank said: wrong code");
    assert_eq!(app.hash("001").await["reason"], "bank said: wrong code");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_list_holds_only_this_customers_waiting_accesses_oldest_first() {
    let app = TestApp::spawn().await;
    for access in ["a3", "a1", "a2"] {
        app.challenge(access, "c1", "q").await;
    }
    app.challenge("other", "c2", "q").await;
    app.challenge("done", "c1", "q").await;
    app.submit("done", "1").await;

    let items = app.listed("c1").await;
    let mut order: Vec<(String, String)> = items
        .iter()
        .map(|item| (item["startedAt"].to_string(), item["access"].to_string()))
        .collect();
    assert_eq!(order.len(), 3, "{items:?}");
    let shown = order.clone();
    // Oldest first; challenges started in the same millisecond by access id.
    order.sort();
    assert_eq!(shown, order);

    // An access re-posted for another customer leaves c1's list.
    app.challenge("a1", "c2", "q").await;
    assert_eq!(app.listed("c1").await.len(), 2);
    assert_eq!(app.listed("c2").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_index_entry_is_dropped_by_the_next_reader() {
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "q").await;
    // A gateway that crashed between its steps leaves an index entry whose
    // hash has moved on; simulate it by hand, as an operator would see it.
    let mut conn = app.conn.clone();
    let _: () = redis::cmd("ZADD")
        .arg("2fa:customer:{c1}:pending")
        .arg(1)
        .arg("ghost")
        .query_async(&mut conn)
        .await
        .expect("ZADD");
    assert_eq!(app.listed("c1").await.len(), 1);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg("2fa:customer:{c1}:pending")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    assert_eq!(members, ["001"]);
}
