//! Liveness, readiness and metrics, for load balancers, orchestrators and
//! Prometheus. None needs a key, and none reveals an access or a customer.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{AppError, ErrorBody};

/// What the health routes answer when all is well.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    #[schema(examples("ok", "ready"))]
    status: &'static str,
}

/// `GET /healthz`: the process is up and serving.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health))
)]
pub async fn alive() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: Redis answers and the pub/sub subscriber is connected, so
/// this instance can both store and wake.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "Redis does not answer, or the subscriber is not connected; the message says which", body = ErrorBody),
        (status = 500, description = "Redis answered the check with an error (`internal`)", body = ErrorBody),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Health>, AppError> {
    if !state.subscriber.is_connected() {
        return Err(AppError::Unavailable(
            "the Redis subscriber is not connected".to_owned(),
        ));
    }
    state.store.ping().await?;
    Ok(Json(Health { status: "ready" }))
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((status = 200, description = "The Prometheus text exposition format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::handle().render(),
    )
}

/// Counts every routed request by its route template (never its ids) and
/// status.
pub async fn count_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    crate::metrics::http_request(route, response.status().as_u16(), started.elapsed());
    response
}
