//! The demo front end: a page, a script and a style sheet compiled into the
//! binary, served at `/` unless the gateway runs with `--no-demo`. The page
//! talks to the API like any front end, with the key its user types.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::AppError;

const PAGE: &str = include_str!("demo/index.html");
const SCRIPT: &str = include_str!("demo/app.js");
const STYLE: &str = include_str!("demo/app.css");

/// Only the gateway's own files, no inline code, and images from data URIs
/// (a bank's QR code), so that text a bank or scraper sends can never run.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

fn asset(state: &AppState, content_type: &'static str, body: &'static str) -> Response {
    if !state.limits.demo {
        return AppError::NoRoute.into_response();
    }
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: the demo front end's page.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "demoPage",
    tag = "demo",
    responses(
        (status = 200, description = "The demo front end's page", content_type = "text/html; charset=utf-8", body = String),
        (status = 404, description = "The gateway runs with `--no-demo`", body = super::error::ErrorBody),
    )
)]
pub async fn page(State(state): State<AppState>) -> Response {
    asset(&state, "text/html; charset=utf-8", PAGE)
}

/// `GET /demo/app.js`: the demo front end's script, a plain ES module.
#[utoipa::path(
    get,
    path = "/demo/app.js",
    operation_id = "demoScript",
    tag = "demo",
    responses(
        (status = 200, description = "The demo front end's script", content_type = "text/javascript; charset=utf-8", body = String),
        (status = 404, description = "The gateway runs with `--no-demo`", body = super::error::ErrorBody),
    )
)]
pub async fn script(State(state): State<AppState>) -> Response {
    asset(&state, "text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /demo/app.css`: the demo front end's style sheet.
#[utoipa::path(
    get,
    path = "/demo/app.css",
    operation_id = "demoStyle",
    tag = "demo",
    responses(
        (status = 200, description = "The demo front end's style sheet", content_type = "text/css; charset=utf-8", body = String),
        (status = 404, description = "The gateway runs with `--no-demo`", body = super::error::ErrorBody),
    )
)]
pub async fn style(State(state): State<AppState>) -> Response {
    asset(&state, "text/css; charset=utf-8", STYLE)
}
