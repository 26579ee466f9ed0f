//! An access as a whole: read by anyone, and the scraper's verdict.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::error::AppError;
use super::extract::{AppJson, PathId};
use crate::model::{Access, AccessId, Event, Report};

/// `GET /v1/accesses/{access}`, without the token.
pub async fn get(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
) -> Result<Json<Access>, AppError> {
    match state.store.access(&access).await? {
        Some(found) => Ok(Json(found)),
        None => Err(AppError::NotFound(format!(
            "access {access} has no challenge"
        ))),
    }
}

/// `GET /v1/accesses/{access}/events`: the audit trail, oldest first.
pub async fn events(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
) -> Result<Json<Vec<Event>>, AppError> {
    match state.store.events(&access).await? {
        Some(events) => Ok(Json(events)),
        None => Err(AppError::NotFound(format!(
            "access {access} has no challenge and no history"
        ))),
    }
}

/// The scraper used the token at the bank and says how it went. Allowed only
/// from `token_received`, or from waiting for a `decoupled` challenge.
pub async fn report(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
    AppJson(body): AppJson<Report>,
) -> Result<Json<Access>, AppError> {
    let reported = state
        .store
        .report(&access, body.status, body.reason.as_ref())
        .await?;
    Ok(Json(reported))
}
