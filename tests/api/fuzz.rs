//! Generated requests at every route: whatever comes in, the answer is a 2xx
//! or a 4xx with our error JSON, never a 5xx and never a panic.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::support::TestApp;

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("001".to_owned()),
        "[a-zA-Z0-9._:-]{1,12}",
        any::<String>(),
        "[{}* /\\\\.%\u{0}\u{202e}]{0,8}",
        Just("x".repeat(200)),
    ]
    .prop_map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
}

fn timeout() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("0.01".to_owned()),
        Just("-1".to_owned()),
        Just("1e999".to_owned()),
        Just("NaN".to_owned()),
        "[0-9a-z.+-]{0,6}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (segment(), timeout(), 0..9usize).prop_map(|(id, timeout, route)| match route {
        0 => format!("/v1/accesses/{id}/challenge"),
        1 => format!("/v1/accesses/{id}/token?timeout={timeout}"),
        2 => format!("/v1/accesses/{id}/status"),
        3 => format!("/v1/accesses/{id}"),
        4 => format!("/v1/accesses/{id}/events"),
        5 => format!("/v1/customers/{id}/challenges"),
        6 => format!("/v1/customers/{id}/events"),
        7 => "/v1/tokens".to_owned(),
        _ => format!("/{id}"),
    })
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        Just(Value::from("987654")),
        Just(Value::from("code")),
        Just(Value::from("choice")),
        Just(Value::from(r"\d{6}")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::hash_map("[a-z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("customer"),
        Just("finEntityName"),
        Just("doubleAuthQuestion"),
        Just("expiresIn"),
        Just("kind"),
        Just("choices"),
        Just("image"),
        Just("validation"),
        Just("validationMessage"),
        Just("instructions"),
        Just("access"),
        Just("token"),
        Just("attempt"),
        Just("status"),
        Just("reason"),
    ];
    prop_oneof![
        prop::collection::vec((field, value()), 0..8).prop_map(|fields| {
            let object: serde_json::Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            serde_json::to_vec(&object).unwrap_or_default()
        }),
        any::<Vec<u8>>(),
        value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
    ]
}

fn method() -> impl Strategy<Value = reqwest::Method> {
    prop_oneof![
        Just(reqwest::Method::GET),
        Just(reqwest::Method::POST),
        Just(reqwest::Method::PUT),
        Just(reqwest::Method::DELETE),
        Just(reqwest::Method::PATCH),
    ]
}

const ADMIN: &str = "admin-key-fuzz-0123456789abcdef0123456789";
const FRONTEND: &str = "frontend-key-fuzz-0123456789abcdef012345";

fn authorization() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(Some(format!("Bearer {ADMIN}"))),
        2 => Just(Some(format!("Bearer {FRONTEND}"))),
        1 => Just(None),
        1 => any::<String>().prop_map(Some),
        1 => Just(Some(format!("bearer  {ADMIN} "))),
    ]
}

fn last_event_id() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some("0-0".to_owned())),
        1 => Just(Some("+1-0".to_owned())),
        1 => Just(Some("1-+0".to_owned())),
        1 => Just(Some("99999999999999999999-0".to_owned())),
        1 => "[0-9]{1,14}-[0-9]{1,3}".prop_map(Some),
        1 => "[ -~]{0,24}".prop_map(Some),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        4 => Just(Some("application/json")),
        1 => Just(None),
        1 => Just(Some("text/plain")),
        1 => Just(Some("application/json; charset=utf-16")),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn no_generated_request_gets_a_5xx() {
    let redis = crate::support::start_redis();
    let keys = format!("admin:{ADMIN},frontend:{FRONTEND}");
    let mut app = TestApp::spawn_with(redis, |config| {
        config.api_keys = Some(keys.parse().expect("keys"));
    })
    .await;
    app.authorize(ADMIN);
    app.challenge("001", "c1", "123456").await;
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        (method(), path(), body(), content_type()),
        (authorization(), last_event_id()),
    );
    let outcome = runner.run(
        &strategy,
        |((method, path, body, content_type), headers)| {
            let (authorization, last_event_id) = headers;
            tokio::task::block_in_place(|| {
                handle.block_on(async {
                    let url = format!("{}{path}", app.base);
                    let mut request = reqwest::Client::new()
                        .request(method.clone(), url)
                        .body(body);
                    if let Some(content_type) = content_type {
                        request = request.header("content-type", content_type);
                    }
                    if let Some(authorization) = authorization {
                        request = request.header("authorization", authorization);
                    }
                    if let Some(id) = last_event_id {
                        request = request.header("last-event-id", id);
                    }
                    let Ok(response) = request.send().await else {
                        // reqwest refused to build it: nothing reached the gateway.
                        return Ok(());
                    };
                    let status = response.status();
                    if status.is_server_error() {
                        return Err(TestCaseError::fail(format!("{method} {path}: {status}")));
                    }
                    let streaming = response
                        .headers()
                        .get("content-type")
                        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/event-stream"));
                    if status.is_client_error() && !streaming {
                        let body: Value = response.json().await.map_err(|e| {
                            TestCaseError::fail(format!(
                                "{method} {path}: {status} without JSON: {e}"
                            ))
                        })?;
                        if body["error"]["code"].as_str().is_none() {
                            return Err(TestCaseError::fail(format!("{method} {path}: {body}")));
                        }
                    }
                    Ok(())
                })
            })
        },
    );
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
