//! `/openapi.json`: the committed copy is what the gateway serves, every
//! route the router answers is in it, its security is what the key check
//! enforces, and the story's real responses validate against its schemas.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::keys::{ADMIN, FRONTEND, SCRAPER};
use crate::support::{Reply, TestApp, keyed_app, settled};

/// The methods a probe tries on every path.
const METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"];

async fn served_document(app: &TestApp) -> (String, Value) {
    let response = reqwest::get(format!("{}/openapi.json", app.base))
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), StatusCode::OK, "no key is needed");
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.expect("the document");
    let doc = serde_json::from_str(&text).expect("the document is JSON");
    (text, doc)
}

/// A documented path with its parameters filled in.
fn concrete(template: &str) -> String {
    template
        .replace("{access}", "001")
        .replace("{customer}", "c1")
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("an HTTP method")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_committed_document_is_the_served_one() {
    let app = keyed_app(None).await;
    let (served, doc) = served_document(&app).await;
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
            .expect("docs/openapi.json");
    assert!(
        served == committed,
        "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json`"
    );
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKey"]["scheme"],
        "bearer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_have_unique_ids_and_the_document_is_valid_openapi() {
    let app = TestApp::spawn().await;
    let (_, doc) = served_document(&app).await;
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for operation in item.as_object().expect("a path item").values() {
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        }
    }

    // The reference validator, when Python has it (scripts/test installs it).
    let python = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output();
    if !python.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: openapi-spec-validator is not importable by python3");
        return;
    }
    let checked = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .output()
        .expect("python3 runs");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_the_router_answers_is_documented_and_no_more() {
    let app = keyed_app(None).await;
    let (_, doc) = served_document(&app).await;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 12, "{:?}", paths.keys());

    // Probe each documented path with every method, unauthenticated: a
    // route the router has answers anything but 404 `no_route` and 405.
    for (template, item) in paths {
        let mut documented: BTreeSet<String> = item
            .as_object()
            .expect("a path item")
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        // HTTP gives every GET route a HEAD; OpenAPI leaves it implied.
        if documented.contains("GET") {
            documented.insert("HEAD".to_owned());
        }
        let mut routed = BTreeSet::new();
        for name in METHODS {
            let (status, code) = probe(&app, None, method(name), &concrete(template)).await;
            assert_ne!(code, "no_route", "{name} {template}");
            if status != StatusCode::METHOD_NOT_ALLOWED {
                routed.insert(name.to_owned());
            }
        }
        assert_eq!(routed, documented, "{template}");
    }

    // Paths around the documented ones lead nowhere.
    for path in [
        "/index.html",
        "/demo",
        "/demo/other.js",
        "/v1",
        "/v1/accesses",
        "/v1/accesses/001/",
        "/v1/accesses/001/tokens",
        "/v1/accesses/001/challenge/x",
        "/v1/customers",
        "/v1/customers/c1",
        "/v1/customers/c1/pending",
        "/v1/tokens/001",
        "/openapi.yaml",
        "/docs",
    ] {
        for name in METHODS {
            let (status, code) = probe(&app, None, method(name), path).await;
            // A HEAD answer has no body to name its code.
            let expected = if name == "HEAD" { "" } else { "no_route" };
            assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, expected));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_security_is_what_the_gateway_enforces() {
    let mut app = keyed_app(None).await;
    let (_, doc) = served_document(&app).await;
    app.authorize(FRONTEND);
    let keys = [
        ("scraper", SCRAPER),
        ("frontend", FRONTEND),
        ("admin", ADMIN),
    ];
    let mut keyed = 0;
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (name, operation) in item.as_object().expect("a path item") {
            let path = concrete(template);
            let method = method(&name.to_uppercase());
            let Some(security) = operation.get("security") else {
                assert!(
                    !template.starts_with("/v1/"),
                    "{name} {template} names no roles"
                );
                let reply = app.send_as(None, method.clone(), &path, None).await;
                assert_eq!(reply.status, StatusCode::OK, "{name} {template} is open");
                continue;
            };
            keyed += 1;
            let requirements = security.as_array().expect("security requirements");
            let named = |scheme: &str| requirements.iter().find_map(|r| r.get(scheme));
            let roles: Vec<&str> = named("apiKey")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|r| r.as_str().expect("a role"))
                .collect();
            // A session for c1, the customer in every concrete path; a new
            // one each time, as some routes end sessions.
            let session = app.mint("c1", None).await;
            let (status, code) = probe(&app, Some(&session), method.clone(), &path).await;
            let allowed = named("session").is_some();
            assert_eq!(
                status == StatusCode::FORBIDDEN,
                !allowed,
                "a session on {name} {template}: {status} {code}"
            );
            assert_ne!(status, StatusCode::UNAUTHORIZED, "a session on {template}");
            if named("sessionQuery").is_some() {
                let query = format!("{path}?session={session}");
                let (status, code) = probe(&app, None, method.clone(), &query).await;
                assert_eq!(
                    status,
                    StatusCode::BAD_REQUEST,
                    "a session in the query of {template} passes, to the bad Last-Event-ID: {code}"
                );
            }
            let (status, _) = probe(&app, None, method.clone(), &path).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} {template}");
            for (role, key) in keys {
                let (status, code) = probe(&app, Some(key), method.clone(), &path).await;
                assert_eq!(
                    status == StatusCode::FORBIDDEN,
                    !roles.contains(&role),
                    "{role} on {name} {template}: {status} {code}"
                );
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{role} on {template}");
            }
        }
    }
    assert!(keyed >= 9, "only {keyed} keyed operations");
}

/// A request that passes the key check and then stops: no body, a timeout
/// of 0 s and a malformed `Last-Event-ID`, so no call waits, holds a feed
/// open or changes anything. Returns the status and error code.
async fn probe(
    app: &TestApp,
    key: Option<&str>,
    method: Method,
    path: &str,
) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .request(
            method,
            format!(
                "{}{path}{}timeout=0",
                app.base,
                if path.contains('?') { '&' } else { '?' }
            ),
        )
        .header("last-event-id", "not-an-id");
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"].as_str().unwrap_or_default();
    (status, code.to_owned())
}

/// Validates a reply against the schema the document gives its operation
/// and status, and fails if the status is not documented at all.
fn assert_documented(doc: &Value, name: &str, template: &str, reply: &Reply) {
    let operation = &doc["paths"][template][name.to_lowercase()];
    assert!(operation.is_object(), "{name} {template} is not documented");
    let response = &operation["responses"][reply.status.as_str()];
    assert!(
        response.is_object(),
        "{name} {template} answered {}, which is not documented: {reply:?}",
        reply.status
    );
    for header in response["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|h| h.0)
    {
        assert!(
            reply.headers.contains_key(header.as_str()),
            "{name} {template} {}: no {header} header",
            reply.status
        );
    }
    match response["content"].as_object() {
        None => assert_eq!(reply.body, Value::Null, "{name} {template}: no body"),
        Some(content) => {
            let content_type = reply.headers["content-type"].to_str().expect("ASCII");
            assert!(
                content.contains_key(content_type),
                "{name} {template}: {content_type}"
            );
            let schema = content
                .get("application/json")
                .map(|c| &c["schema"])
                .unwrap_or_else(|| panic!("{name} {template}: no JSON schema: {content:?}"));
            assert_valid(doc, schema, &reply.body, &format!("{name} {template}"));
        }
    }
}

/// Validates `instance` against `schema`, with the document's components
/// beside it so that its `$ref`s resolve (JSON Schema 2020-12, OpenAPI
/// 3.1's dialect).
fn assert_valid(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let validator = validator(doc, schema);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?} in {instance}");
}

fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut rooted = schema.clone();
    rooted["components"] = doc["components"].clone();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&rooted)
        .expect("a valid JSON Schema")
}

fn component(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_story_answers_with_the_documented_statuses_and_schemas() {
    let app = TestApp::spawn().await;
    let (_, doc) = served_document(&app).await;
    let check = |name: &str, template: &str, reply: &Reply| {
        assert_documented(&doc, name, template, reply);
    };

    // The scraper posts a question with a rule, and looks before waiting.
    let body = json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "123456",
        "validation": "\\d{6}", "validationMessage": "Six digits", "instructions": "See your phone"});
    let posted = app.challenge_with("001", body).await;
    assert_eq!(posted.status, StatusCode::CREATED);
    check("PUT", "/v1/accesses/{access}/challenge", &posted);
    let early = app.wait_token("001", 0.0).await;
    assert_eq!(early.status, StatusCode::NO_CONTENT);
    check("GET", "/v1/accesses/{access}/token", &early);
    let waiter = app.spawn_wait("001", 30.0);

    // TesBack lists, follows the feed, and submits a wrong then a good code.
    let listed = app.list("c1").await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    check("GET", "/v1/customers/{customer}/challenges", &listed);
    let mut feed = app.open_feed("c1", None).await;
    let first = feed.next_event().await.expect("the waiting challenge");
    assert_eq!(first.event, "challenge");
    assert_valid(&doc, &component("Access"), &first.data, "event: challenge");
    let refused = app.submit("001", "12ab56").await;
    refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_token");
    check("POST", "/v1/tokens", &refused);
    let submitted = app.submit("001", "987654").await;
    assert_eq!(submitted.status, StatusCode::OK);
    check("POST", "/v1/tokens", &submitted);
    let change = feed.next_event().await.expect("a status change");
    assert_eq!(change.event, "status");
    assert_valid(
        &doc,
        &component("StatusChange"),
        &change.data,
        "event: status",
    );

    // The scraper gets the token and reports; the access and its trail read.
    let answer = settled(waiter).await;
    assert_eq!(answer.body["token"], "987654");
    check("GET", "/v1/accesses/{access}/token", &answer);
    let reported = app.report("001", "ok").await;
    assert_eq!(reported.status, StatusCode::OK);
    check("PUT", "/v1/accesses/{access}/status", &reported);
    check("GET", "/v1/accesses/{access}", &app.access("001").await);
    let trail = app.send(Method::GET, "/v1/accesses/001/events", None).await;
    assert_eq!(trail.body.as_array().map(Vec::len), Some(4), "{trail:?}");
    check("GET", "/v1/accesses/{access}/events", &trail);

    // Steps the lifecycle refuses, and unknown accesses.
    let again = app.submit("001", "987654").await;
    again.assert_error(StatusCode::CONFLICT, "conflict");
    check("POST", "/v1/tokens", &again);
    let used = app.wait_token("001", 0.0).await;
    used.assert_error(StatusCode::CONFLICT, "conflict");
    check("GET", "/v1/accesses/{access}/token", &used);
    let late = app.cancel("001").await;
    late.assert_error(StatusCode::CONFLICT, "conflict");
    check("DELETE", "/v1/accesses/{access}/challenge", &late);
    let unknown = app.access("nobody").await;
    unknown.assert_error(StatusCode::NOT_FOUND, "not_found");
    check("GET", "/v1/accesses/{access}", &unknown);
    let bad_id = app.access("a%20b").await;
    bad_id.assert_error(StatusCode::BAD_REQUEST, "invalid_id");
    check("GET", "/v1/accesses/{access}", &bad_id);

    // A second attempt, cancelled: the scraper's poll ends with 410.
    assert_eq!(
        app.challenge("001", "c1", "q").await.status,
        StatusCode::CREATED
    );
    let cancelled = app.cancel("001").await;
    assert_eq!(cancelled.status, StatusCode::OK);
    check("DELETE", "/v1/accesses/{access}/challenge", &cancelled);
    let gone = app.wait_token("001", 0.0).await;
    gone.assert_error(StatusCode::GONE, "cancelled");
    check("GET", "/v1/accesses/{access}/token", &gone);

    // The other kinds, and `label` for `instructions`, as the schemas say.
    for (access, extra) in [
        (
            "002",
            json!({"kind": "choice", "label": "Pick one",
            "choices": [{"value": "sms", "label": "By SMS"}, {"value": "app", "label": "In the app"}]}),
        ),
        ("003", json!({"kind": "decoupled"})),
        ("004", json!({"kind": "text", "expiresIn": 60})),
    ] {
        let mut body =
            json!({"customer": "c2", "finEntityName": "Real", "doubleAuthQuestion": "q"});
        for (field, value) in extra.as_object().expect("fields") {
            body[field] = value.clone();
        }
        let request = validator(&doc, &component("ChallengeRequest"));
        assert!(request.is_valid(&body), "{body}");
        let posted = app.challenge_with(access, body).await;
        assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
        check("PUT", "/v1/accesses/{access}/challenge", &posted);
    }
    check(
        "GET",
        "/v1/customers/{customer}/challenges",
        &app.list("c2").await,
    );

    for path in ["/healthz", "/readyz"] {
        check("GET", path, &app.send(Method::GET, path, None).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schemas_refuse_what_the_gateway_never_sends() {
    let app = TestApp::spawn().await;
    let (_, doc) = served_document(&app).await;
    let posted = app.challenge("001", "c1", "123456").await;
    let access = validator(&doc, &component("Access"));
    assert!(access.is_valid(&posted.body), "{}", posted.body);
    for (field, wrong) in [
        ("status", json!("done")),
        ("access", json!("a b")),
        ("attempt", json!(-1)),
        ("kind", json!("sms")),
    ] {
        let mut body = posted.body.clone();
        body[field] = wrong;
        assert!(!access.is_valid(&body), "{field} passed: {body}");
    }
    let mut missing = posted.body.clone();
    missing
        .as_object_mut()
        .expect("an object")
        .remove("expiresAt");
    assert!(!access.is_valid(&missing), "expiresAt is required");

    let error = validator(&doc, &component("ErrorBody"));
    let refused = app.submit("001", "").await;
    assert!(error.is_valid(&refused.body), "{}", refused.body);
    assert!(!error.is_valid(&json!({"error": {"code": "oops", "message": "x"}})));
}
