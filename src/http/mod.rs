//! The HTTP gateway: axum only. Handlers validate, call one store or wait
//! function, and shape the answer; no handler knows a Redis key.

mod accesses;
mod challenges;
pub mod error;
mod extract;
mod feeds;
mod health;
mod tokens;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::routing::{get, post, put};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::model::ExpiresIn;
use crate::store::Store;
use crate::wait::Waiters;
use error::AppError;

/// Request bodies larger than this get 413.
pub const BODY_LIMIT: usize = 256 * 1024;

/// Limits that come from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub default_expires_in: ExpiresIn,
    /// The longest `timeout` a long poll may ask for.
    pub max_wait: Duration,
    /// How often an idle live feed gets a heartbeat comment.
    pub feed_heartbeat: Duration,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub waiters: Waiters,
    pub limits: Limits,
    /// Cancelled on SIGTERM: long polls answer 204 at once instead of
    /// holding shutdown for their whole timeout.
    pub shutdown: CancellationToken,
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route(
            "/v1/accesses/{access}/challenge",
            put(challenges::post).delete(challenges::cancel),
        )
        .route("/v1/accesses/{access}/token", get(tokens::wait))
        .route("/v1/accesses/{access}/status", put(accesses::report))
        .route("/v1/accesses/{access}/events", get(accesses::events))
        .route("/v1/accesses/{access}", get(accesses::get))
        .route("/v1/customers/{customer}/challenges", get(challenges::list))
        .route("/v1/customers/{customer}/events", get(feeds::events))
        .route("/v1/tokens", post(tokens::submit))
        .route("/healthz", get(health::alive))
        .route("/readyz", get(health::ready))
        .fallback(|| async { AppError::NoRoute })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Spans carry the method, path and request id; never a body, so a
        // token cannot reach a log line through them.
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
