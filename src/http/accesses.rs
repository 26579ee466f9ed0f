//! An access as a whole: read by anyone, and the scraper's verdict.

use axum::extract::State;
use axum::{Extension, Json};

use super::AppState;
use super::auth::Caller;
use super::error::{AppError, ErrorBody};
use super::extract::{AppJson, PathId};
use super::openapi::AccessPath;
use crate::model::{Access, AccessId, StatusReport, TrailEntry};

/// `GET /v1/accesses/{access}`: the current challenge, without the token.
///
/// The only route that returns an `image` challenge's image.
#[utoipa::path(
    get,
    path = "/v1/accesses/{access}",
    operation_id = "getAccess",
    tag = "scraper",
    tag = "frontend",
    params(AccessPath),
    responses(
        (status = 200, description = "The current challenge", body = Access),
        (status = 404, description = "The access has no challenge", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Access>, AppError> {
    match state.store.access(&access, caller.scope()).await? {
        Some(found) => Ok(Json(found)),
        None => Err(AppError::NotFound(format!(
            "access {access} has no challenge"
        ))),
    }
}

/// `GET /v1/accesses/{access}/events`: the audit trail, oldest first.
///
/// Every transition across attempts; never a token.
#[utoipa::path(
    get,
    path = "/v1/accesses/{access}/events",
    operation_id = "getAuditTrail",
    tag = "scraper",
    tag = "frontend",
    params(AccessPath),
    responses(
        (status = 200, description = "The audit trail, oldest first", body = Vec<TrailEntry>),
        (status = 404, description = "The access has neither a challenge nor a trail", body = ErrorBody),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<TrailEntry>>, AppError> {
    match state.store.trail(&access, caller.scope()).await? {
        Some(events) => Ok(Json(events)),
        None => Err(AppError::NotFound(format!(
            "access {access} has no challenge and no history"
        ))),
    }
}

/// The scraper used the token at the bank and says how it went. Allowed only
/// from `token_received`, or from waiting for a `decoupled` challenge.
#[utoipa::path(
    put,
    path = "/v1/accesses/{access}/status",
    operation_id = "reportOutcome",
    tag = "scraper",
    params(AccessPath),
    request_body = StatusReport,
    responses(
        (status = 200, description = "The challenge, now `ok` or `rejected`; the token is deleted", body = Access),
        (status = 404, description = "The access has no challenge", body = ErrorBody),
        (status = 409, description = "The challenge is not in a status this report may follow", body = ErrorBody),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
    AppJson(body): AppJson<StatusReport>,
) -> Result<Json<Access>, AppError> {
    let reported = state
        .store
        .report(&access, body.status, body.reason.as_ref())
        .await?;
    Ok(Json(reported))
}
