//! Every kind of bank challenge, and the rules a token must follow before it
//! can burn one of the bank's attempts.

use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, settled};

/// What a token breaking a validation without a message is told.
const WRONG_FORM: &str = "the token does not have the form this challenge expects";

/// A one-pixel PNG, as a data URI.
const PIXEL: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn challenge(extra: Value) -> Value {
    let mut body = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

/// Submits a token the rule refuses: 422 with `message`, and the challenge
/// is still waiting, untouched.
async fn assert_token_refused(app: &TestApp, access: &str, token: &str, message: &str) {
    let before = app.hash(access).await;
    let refused = app.submit(access, token).await;
    refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_token");
    assert_eq!(refused.body["error"]["message"], message);
    assert!(
        !refused.body.to_string().contains(token),
        "the token is not quoted back"
    );
    assert_eq!(
        app.hash(access).await,
        before,
        "the challenge keeps waiting"
    );
}

/// The customer answers and the scraper waiting on the access gets it.
async fn assert_answered(app: &TestApp, access: &str, token: &str) {
    let waiter = app.spawn_wait(access, 10.0);
    let submitted = app.submit(access, token).await;
    assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
    assert_eq!(settled(waiter).await.body["token"], token);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_is_checked_against_its_validation_before_it_is_taken() {
    let app = TestApp::spawn().await;
    let body = challenge(json!({
        "kind": "code",
        "validation": r"\d{6}",
        "validationMessage": "Six digits, please",
        "instructions": "Sent by SMS to +33 6 •• •• 12",
    }));
    let posted = app.challenge_with("001", body).await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    assert_eq!(posted.body["validation"], r"\d{6}");
    assert_eq!(posted.body["validationMessage"], "Six digits, please");
    let item = &app.listed("c1").await[0];
    assert_eq!(item["instructions"], "Sent by SMS to +33 6 •• •• 12");
    assert_eq!(item["validation"], r"\d{6}");

    assert_token_refused(&app, "001", "12345", "Six digits, please").await;
    assert_token_refused(&app, "001", "1234567", "Six digits, please").await;
    assert_answered(&app, "001", "123456").await;

    let hash = app.hash("001").await;
    assert_eq!(hash["validation"], r"\d{6}");
    assert_eq!(hash["validation_message"], "Six digits, please");
    assert_eq!(hash["instructions"], "Sent by SMS to +33 6 •• •• 12");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_validation_without_a_message_says_so_plainly() {
    let app = TestApp::spawn().await;
    app.challenge_with("001", challenge(json!({"validation": "[A-Z]{3}"})))
        .await;
    assert_token_refused(&app, "001", "abc", WRONG_FORM).await;
    assert_answered(&app, "001", "ABC").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_answer_is_free_text() {
    let app = TestApp::spawn().await;
    let body = challenge(json!({"kind": "text", "label": "Your mother's maiden name"}));
    let posted = app.challenge_with("001", body).await;
    assert_eq!(posted.body["kind"], "text");
    assert_eq!(posted.body["instructions"], "Your mother's maiden name");
    assert_answered(&app, "001", "Dupont de la Tour").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_choice_is_answered_with_one_of_its_values() {
    let app = TestApp::spawn().await;
    let choices = json!([
        {"value": "sms", "label": "By SMS"},
        {"value": "app", "label": "In the bank's app"}
    ]);
    let body = challenge(json!({"kind": "choice", "choices": choices}));
    let posted = app.challenge_with("001", body).await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    assert_eq!(app.listed("c1").await[0]["choices"], choices);
    let stored: Value = serde_json::from_str(&app.hash("001").await["choices"]).expect("JSON");
    assert_eq!(stored, choices);

    assert_token_refused(
        &app,
        "001",
        "email",
        "the token must be one of the choices' values",
    )
    .await;
    assert_token_refused(
        &app,
        "001",
        "By SMS",
        "the token must be one of the choices' values",
    )
    .await;
    assert_answered(&app, "001", "app").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_is_stored_once_and_sent_only_to_whoever_reads_the_access() {
    let app = TestApp::spawn().await;
    let body = challenge(json!({"kind": "image", "image": PIXEL, "validation": r"\d{8}"}));
    let posted = app.challenge_with("001", body).await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    assert_eq!(posted.body["hasImage"], true);
    assert!(posted.body.get("image").is_none());

    let item = &app.listed("c1").await[0];
    assert_eq!(item["hasImage"], true);
    assert!(item.get("image").is_none(), "list items carry no image");
    let read = app.access("001").await;
    assert_eq!(read.body["image"], PIXEL);
    assert_eq!(read.body["hasImage"], true);
    assert_eq!(app.hash("001").await["image"], PIXEL);

    assert_token_refused(&app, "001", "1234", WRONG_FORM).await;
    assert_answered(&app, "001", "12345678").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decoupled_challenge_takes_no_token_and_the_scraper_ends_it() {
    let app = TestApp::spawn().await;
    let body = challenge(json!({"kind": "decoupled", "instructions": "Approve in your app"}));
    assert_eq!(
        app.challenge_with("001", body).await.status,
        StatusCode::CREATED
    );
    assert_eq!(app.listed("c1").await[0]["kind"], "decoupled");
    assert_token_refused(
        &app,
        "001",
        "123456",
        "this challenge is approved in the bank's app and takes no token",
    )
    .await;

    let waiter = app.spawn_wait("001", 10.0);
    app.until_waiting(1).await;
    let ok = app.report("001", "ok").await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    assert_eq!(ok.body["status"], "ok");
    settled(waiter)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let hash = app.hash("001").await;
    assert_eq!(hash["status"], "ok");
    assert!(!hash.contains_key("token"));
    assert!(
        app.listed("c1").await.is_empty(),
        "it left the pending index"
    );
    let mut conn = app.conn.clone();
    let expiring: usize = conn.zcard("2fa:expiring").await.expect("ZCARD");
    assert_eq!(expiring, 0);

    // The scraper may also report the bank's refusal; the front end may
    // only cancel.
    app.challenge_with("002", challenge(json!({"kind": "decoupled"})))
        .await;
    assert_eq!(
        app.report("002", "rejected").await.body["status"],
        "rejected"
    );
    app.challenge_with("003", challenge(json!({"kind": "decoupled"})))
        .await;
    let cancelled = app
        .send(
            Method::DELETE,
            "/v1/accesses/003/challenge?by=frontend",
            None,
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn challenges_whose_parts_do_not_fit_their_kind_are_refused() {
    let app = TestApp::spawn().await;
    let choices = json!([{"value": "a", "label": "A"}, {"value": "b", "label": "B"}]);
    let too_big = format!("data:image/png;base64,{}", "A".repeat(200 * 1024));
    let cases = [
        ("a choice without choices", json!({"kind": "choice"})),
        ("choices on a code", json!({"choices": choices})),
        (
            "one choice",
            json!({"kind": "choice", "choices": [{"value": "a", "label": "A"}]}),
        ),
        (
            "duplicate choice values",
            json!({"kind": "choice", "choices": [{"value": "a", "label": "A"}, {"value": "a", "label": "B"}]}),
        ),
        (
            "a choice with a stray field",
            json!({"kind": "choice", "choices": [{"value": "a", "label": "A", "x": 1}, {"value": "b", "label": "B"}]}),
        ),
        (
            "both instructions and label",
            json!({"instructions": "a", "label": "b"}),
        ),
        (
            "an image challenge without an image",
            json!({"kind": "image"}),
        ),
        (
            "an image on a text",
            json!({"kind": "text", "image": PIXEL}),
        ),
        (
            "a GIF",
            json!({"kind": "image", "image": "data:image/gif;base64,R0lGODlh"}),
        ),
        (
            "an image over 192 KiB",
            json!({"kind": "image", "image": too_big}),
        ),
        (
            "validation on a decoupled",
            json!({"kind": "decoupled", "validation": "x"}),
        ),
        (
            "validation on a choice",
            json!({"kind": "choice", "choices": choices, "validation": "a"}),
        ),
        (
            "a message without a validation",
            json!({"validationMessage": "no"}),
        ),
        ("a broken regex", json!({"validation": "(["})),
        ("a huge regex", json!({"validation": r"\w{1000}{1000}"})),
        ("a long regex", json!({"validation": "a".repeat(257)})),
        ("an unknown kind", json!({"kind": "telepathy"})),
        (
            "both label and instructions",
            json!({"label": "a", "instructions": "b"}),
        ),
    ];
    for (what, extra) in cases {
        let before = app.keyspace().await;
        let reply = app.challenge_with("001", challenge(extra)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {reply:?}"
        );
        assert_eq!(app.keyspace().await, before, "{what} changed Redis");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_checked_against_an_old_rule_is_never_stored_under_a_new_one() {
    let app = TestApp::spawn().await;
    for round in 0..200 {
        let access = format!("r{round}");
        app.challenge(&access, "c1", "q").await;
        let stricter = challenge(json!({"validation": r"\d{6}"}));
        // "abc" suits the first challenge, not the one re-posted meanwhile.
        tokio::join!(
            app.submit(&access, "abc"),
            app.challenge_with(&access, stricter)
        );
        let hash = app.hash(&access).await;
        if hash.contains_key("validation") && hash["status"] == "token_received" {
            assert_eq!(
                hash["token"].len(),
                6,
                "round {round}: stored under the new rule"
            );
        }
    }
}
