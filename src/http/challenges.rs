//! The challenge itself: the scraper posts it, the front end lists it, and
//! either side may cancel it.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use serde::Deserialize;

use super::AppState;
use super::error::AppError;
use super::extract::{AppJson, PathId};
use crate::model::{
    Access, AccessId, BankName, CustomerId, ExpiresIn, Kind, NewChallenge, Question,
};

/// `PUT /v1/accesses/{access}/challenge`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChallengeBody {
    /// Checked by the handler, so a bad id is a 400 as in a path.
    customer: String,
    fin_entity_name: BankName,
    double_auth_question: Question,
    /// Seconds; the gateway's default when absent.
    expires_in: Option<ExpiresIn>,
}

/// Starts attempt n+1 of the access's challenge, in status `need`.
pub async fn post(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
    AppJson(body): AppJson<ChallengeBody>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Access>), AppError> {
    let challenge = NewChallenge {
        customer: CustomerId::parse(body.customer).map_err(AppError::InvalidId)?,
        fin_entity_name: body.fin_entity_name,
        question: body.double_auth_question,
        kind: Kind::Code,
        expires_in: body.expires_in.unwrap_or(state.limits.default_expires_in),
    };
    let posted = state.store.post_challenge(&access, &challenge).await?;
    let location = format!("/v1/accesses/{access}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(posted),
    ))
}

/// `GET /v1/customers/{customer}/challenges`: what the customer must answer,
/// oldest first. Listing counts as showing: `need` becomes `question_sent`.
pub async fn list(
    State(state): State<AppState>,
    PathId(customer): PathId<CustomerId>,
) -> Result<Json<Vec<Access>>, AppError> {
    Ok(Json(state.store.pending_for_customer(&customer).await?))
}

/// `DELETE /v1/accesses/{access}/challenge`
pub async fn cancel(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
) -> Result<Json<Access>, AppError> {
    Ok(Json(state.store.cancel(&access).await?))
}
