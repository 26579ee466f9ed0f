//! Browsers on the listed origins may call the gateway (`TWOFA_CORS_ORIGINS`);
//! no other origin is allowed (it gets no `access-control-allow-origin`),
//! and there is no CORS header at all when none is listed.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::support::{TestApp, keyed_app_with, keys, refused_start, start_redis};

const FRONT: &str = "https://app.tesfront.example";

/// A browser's preflight for a `POST /v1/tokens` from `origin`.
async fn preflight(app: &TestApp, origin: &str) -> (StatusCode, HeaderMap) {
    let response = app
        .http
        .request(Method::OPTIONS, format!("{}/v1/tokens", app.base))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,last-event-id,x-request-id",
        )
        .send()
        .await
        .expect("preflight");
    (response.status(), response.headers().clone())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_origin_may_call_and_any_other_gets_no_cors_header() {
    let app = keyed_app_with(None, |config| {
        config.cors_origins = Some(format!("{FRONT}, http://localhost:3000"));
    })
    .await;
    let (status, headers) = preflight(&app, FRONT).await;
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    assert_eq!(header(&headers, "access-control-allow-origin"), FRONT);
    let methods = header(&headers, "access-control-allow-methods").to_lowercase();
    for method in ["get", "post", "put", "patch", "delete"] {
        assert!(methods.contains(method), "{method} in {methods}");
    }
    let allowed = header(&headers, "access-control-allow-headers").to_lowercase();
    for name in [
        "authorization",
        "content-type",
        "last-event-id",
        "x-request-id",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    assert!(
        headers.get("access-control-allow-credentials").is_none(),
        "no credentials mode"
    );

    let (_, headers) = preflight(&app, "https://evil.example").await;
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "{headers:?}"
    );

    // The call itself: the answer names the origin and shows the request id.
    let listed = app
        .http
        .get(format!("{}/v1/customers/c1/challenges", app.base))
        .header("origin", FRONT)
        .bearer_auth(keys::FRONTEND)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.status(), StatusCode::OK);
    let headers = listed.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), FRONT);
    assert!(header(headers, "access-control-expose-headers").contains("x-request-id"));
    assert!(!header(headers, "x-request-id").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_origin_listed_there_are_no_cors_headers() {
    let app = TestApp::spawn().await;
    let (_, headers) = preflight(&app, FRONT).await;
    assert!(
        !headers
            .keys()
            .any(|name| name.as_str().starts_with("access-control-")),
        "{headers:?}"
    );
}

#[test]
fn every_origin_is_refused_at_start_when_keys_are_configured() {
    let redis = start_redis();
    let url = redis.url();
    let keys = format!("scraper:{},frontend:{}", keys::SCRAPER, keys::FRONTEND);
    let stderr = refused_start(&[
        ("REDIS_URL", &url),
        ("TWOFA_API_KEYS", &keys),
        ("TWOFA_CORS_ORIGINS", "*"),
    ]);
    assert!(stderr.contains("TWOFA_CORS_ORIGINS"), "{stderr}");
    let stderr = refused_start(&[
        ("REDIS_URL", &url),
        ("TWOFA_CORS_ORIGINS", "https://app.example/"),
    ]);
    assert!(stderr.contains("exact origin"), "{stderr}");
}
