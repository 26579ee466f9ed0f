//! Hostile and malformed requests: each gets a 4xx error JSON, and none
//! changes anything in Redis.

use reqwest::{Method, StatusCode};

use crate::support::TestApp;

const JSON: Option<&str> = Some("application/json");

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: String,
    status: StatusCode,
    code: &'static str,
}

fn case(
    what: &'static str,
    method: Method,
    path: impl Into<String>,
    body: impl Into<String>,
    status: StatusCode,
    code: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.into(),
        content_type: JSON,
        body: body.into(),
        status,
        code,
    }
}

fn cases() -> Vec<Case> {
    use Method as M;
    use StatusCode as S;
    let ok_challenge = r#"{"customer":"c1","finEntityName":"Real","doubleAuthQuestion":"123456"}"#;
    let challenge = "/v1/accesses/001/challenge";
    let mut cases = vec![
        case(
            "malformed JSON",
            M::PUT,
            challenge,
            "{",
            S::BAD_REQUEST,
            "invalid_json",
        ),
        case(
            "not JSON at all",
            M::POST,
            "/v1/tokens",
            "token=1",
            S::BAD_REQUEST,
            "invalid_json",
        ),
        case(
            "a number for a string",
            M::PUT,
            challenge,
            r#"{"customer":1,"finEntityName":"Real","doubleAuthQuestion":"q"}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a missing field",
            M::PUT,
            challenge,
            r#"{"customer":"c1"}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "an unknown field",
            M::PUT,
            challenge,
            r#"{"customer":"c1","finEntityName":"Real","doubleAuthQuestion":"q","admin":true}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a customer id with a brace",
            M::PUT,
            challenge,
            r#"{"customer":"c{1}","finEntityName":"Real","doubleAuthQuestion":"q"}"#,
            S::BAD_REQUEST,
            "invalid_id",
        ),
        case(
            "an empty customer id",
            M::PUT,
            challenge,
            r#"{"customer":"","finEntityName":"Real","doubleAuthQuestion":"q"}"#,
            S::BAD_REQUEST,
            "invalid_id",
        ),
        case(
            "an empty question",
            M::PUT,
            challenge,
            r#"{"customer":"c1","finEntityName":"Real","doubleAuthQuestion":""}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a huge question",
            M::PUT,
            challenge,
            format!(
                r#"{{"customer":"c1","finEntityName":"Real","doubleAuthQuestion":"{}"}}"#,
                "x".repeat(1025)
            ),
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a NUL in the bank name",
            M::PUT,
            challenge,
            r#"{"customer":"c1","finEntityName":"Re\u0000al","doubleAuthQuestion":"q"}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a zero expiry",
            M::PUT,
            challenge,
            r#"{"customer":"c1","finEntityName":"Real","doubleAuthQuestion":"q","expiresIn":0}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a negative expiry",
            M::PUT,
            challenge,
            r#"{"customer":"c1","finEntityName":"Real","doubleAuthQuestion":"q","expiresIn":-5}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "an enormous expiry",
            M::PUT,
            challenge,
            r#"{"customer":"c1","finEntityName":"Real","doubleAuthQuestion":"q","expiresIn":99999999999}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "an empty token",
            M::POST,
            "/v1/tokens",
            r#"{"access":"001","token":""}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a token with a newline",
            M::POST,
            "/v1/tokens",
            r#"{"access":"001","token":"12\n34"}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a 257-character token",
            M::POST,
            "/v1/tokens",
            format!(r#"{{"access":"001","token":"{}"}}"#, "9".repeat(257)),
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a token as a number",
            M::POST,
            "/v1/tokens",
            r#"{"access":"001","token":987654}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "an attempt of zero",
            M::POST,
            "/v1/tokens",
            r#"{"access":"001","token":"1","attempt":0}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "an access id with a space",
            M::POST,
            "/v1/tokens",
            r#"{"access":"0 1","token":"1"}"#,
            S::BAD_REQUEST,
            "invalid_id",
        ),
        case(
            "an access id with a star",
            M::POST,
            "/v1/tokens",
            r#"{"access":"00*","token":"1"}"#,
            S::BAD_REQUEST,
            "invalid_id",
        ),
        case(
            "a report of another status",
            M::PUT,
            "/v1/accesses/001/status",
            r#"{"status":"token_received"}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a report with an unknown field",
            M::PUT,
            "/v1/accesses/001/status",
            r#"{"status":"ok","token":"1"}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "a wait with a negative timeout",
            M::GET,
            "/v1/accesses/001/token?timeout=-1",
            "",
            S::BAD_REQUEST,
            "bad_request",
        ),
        case(
            "a wait with an enormous timeout",
            M::GET,
            "/v1/accesses/001/token?timeout=1e12",
            "",
            S::BAD_REQUEST,
            "bad_request",
        ),
        case(
            "a wait with a word for a timeout",
            M::GET,
            "/v1/accesses/001/token?timeout=soon",
            "",
            S::BAD_REQUEST,
            "bad_request",
        ),
        case(
            "a wait with NaN",
            M::GET,
            "/v1/accesses/001/token?timeout=NaN",
            "",
            S::BAD_REQUEST,
            "bad_request",
        ),
        case(
            "a wait with a timeout given twice",
            M::GET,
            "/v1/accesses/001/token?timeout=1&timeout=2",
            "",
            S::BAD_REQUEST,
            "bad_request",
        ),
        case(
            "a duplicate key in the body",
            M::POST,
            "/v1/tokens",
            r#"{"access":"001","token":"1","token":"2"}"#,
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "deeply nested JSON",
            M::PUT,
            challenge,
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
            S::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        case(
            "an unknown route",
            M::GET,
            "/v1/nothing",
            "",
            S::NOT_FOUND,
            "no_route",
        ),
        case(
            "a wrong method",
            M::POST,
            "/v1/accesses/001",
            "",
            S::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        Case {
            content_type: None,
            ..case(
                "no content type",
                M::PUT,
                challenge,
                ok_challenge,
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            )
        },
        Case {
            content_type: Some("text/plain"),
            ..case(
                "a text body",
                M::POST,
                "/v1/tokens",
                r#"{"access":"001","token":"1"}"#,
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            )
        },
        case(
            "a body over 256 KiB",
            M::PUT,
            challenge,
            format!(
                r#"{{"customer":"c1","finEntityName":"Real","doubleAuthQuestion":"{}"}}"#,
                "x".repeat(300 * 1024)
            ),
            S::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    // Ids that must be refused in every path, before Redis is touched.
    for (what, id) in [
        ("an id with braces", "%7B001%7D"),
        ("an id with a space", "0%2001"),
        ("an id with a star", "00*"),
        ("an id that is too long", &*"x".repeat(129).leak()),
        ("a unicode id", "%C3%A9t%C3%A9"),
        ("a zero-width space in an id", "00%E2%80%8B1"),
        ("a NUL in an id", "00%001"),
        ("a traversal id", "..%2F..%2Fetc"),
    ] {
        let paths = [
            (
                Method::PUT,
                format!("/v1/accesses/{id}/challenge"),
                ok_challenge,
            ),
            (Method::DELETE, format!("/v1/accesses/{id}/challenge"), ""),
            (
                Method::GET,
                format!("/v1/accesses/{id}/token?timeout=0"),
                "",
            ),
            (
                Method::PUT,
                format!("/v1/accesses/{id}/status"),
                r#"{"status":"ok"}"#,
            ),
            (Method::GET, format!("/v1/accesses/{id}"), ""),
            (Method::GET, format!("/v1/customers/{id}/challenges"), ""),
        ];
        for (method, path, body) in paths {
            cases.push(case(what, method, path, body, S::BAD_REQUEST, "invalid_id"));
        }
    }
    cases
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_get_a_4xx_error_and_change_nothing() {
    let app = TestApp::spawn().await;
    // Something to damage: a waiting challenge.
    app.challenge("001", "c1", "123456").await;
    let before = app.keyspace().await;
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    for case in cases {
        let reply = app
            .send_raw(
                case.method.clone(),
                &case.path,
                case.content_type,
                case.body.clone(),
            )
            .await;
        assert_eq!(
            reply.status, case.status,
            "{}: {} {}: {reply:?}",
            case.what, case.method, case.path
        );
        assert_eq!(reply.error_code(), case.code, "{}: {reply:?}", case.what);
        assert_eq!(app.keyspace().await, before, "{} changed Redis", case.what);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_sent_as_a_number_is_not_echoed_in_the_error() {
    let app = TestApp::spawn().await;
    let reply = app
        .send_raw(
            Method::POST,
            "/v1/tokens",
            JSON,
            r#"{"access":"001","token":987654}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!reply.body.to_string().contains("987654"), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_query_parameters_are_ignored() {
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "q").await;
    let reply = app
        .send(
            Method::GET,
            "/v1/accesses/001/token?timeout=0&_=1764089305",
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
}
