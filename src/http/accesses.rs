//! An access as a whole: read by anyone, and the scraper's verdict.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::AppState;
use super::error::AppError;
use super::extract::{AppJson, PathId};
use crate::model::{Access, AccessId, Outcome, Reason};

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

/// `PUT /v1/accesses/{access}/status`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    status: Outcome,
    reason: Option<Reason>,
}

/// The scraper used the token at the bank and says how it went. Allowed only
/// from `token_received`.
pub async fn report(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
    AppJson(body): AppJson<ReportBody>,
) -> Result<Json<Access>, AppError> {
    let reported = state
        .store
        .report(&access, body.status, body.reason.as_ref())
        .await?;
    Ok(Json(reported))
}
