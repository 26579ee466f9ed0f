//! Liveness and readiness, for load balancers and orchestrators. Neither
//! needs a key, and neither reveals any access or customer.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::AppError;

/// `GET /healthz`: the process is up and serving.
pub async fn alive() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: Redis answers and the pub/sub subscriber is connected, so
/// this instance can both store and wake.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    if !state.waiters.is_connected() {
        return Err(AppError::Unavailable(
            "the Redis subscriber is not connected".to_owned(),
        ));
    }
    state.store.ping().await?;
    Ok(Json(json!({ "status": "ready" })))
}
