//! The challenge itself: the scraper posts it, the front end lists it, and
//! either side may cancel it.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::Caller;
use super::error::{AppError, ErrorBody};
use super::extract::{AppJson, AppQuery, PathId};
use super::openapi::{AccessPath, CustomerPath};
use crate::auth::Role;
use crate::model::{
    Access, AccessId, Actor, ChallengeParts, ChallengeRequest, CustomerId, NewChallenge,
};

/// Starts attempt n+1 of the access's challenge, in status `need`.
///
/// Any earlier attempt, whatever its status, is replaced; its token and
/// reason are deleted.
#[utoipa::path(
    put,
    path = "/v1/accesses/{access}/challenge",
    tag = "scraper",
    params(AccessPath),
    operation_id = "postChallenge",
    request_body = ChallengeRequest,
    responses(
        (status = 201, description = "The new attempt, in status `need`", body = Access,
            headers(("Location" = String, description = "`/v1/accesses/{access}`"))),
    )
)]
pub async fn post(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
    AppJson(body): AppJson<ChallengeRequest>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<Access>), AppError> {
    let instructions = match (body.instructions, body.label) {
        (Some(_), Some(_)) => {
            return Err(AppError::Unprocessable(
                "give instructions or label, not both".to_owned(),
            ));
        }
        (instructions, label) => instructions.or(label),
    };
    let challenge = NewChallenge::new(
        CustomerId::parse(body.customer).map_err(AppError::InvalidId)?,
        body.fin_entity_name,
        body.double_auth_question,
        body.expires_in.unwrap_or(state.limits.default_expires_in),
        instructions,
        ChallengeParts {
            kind: body.kind,
            choices: body.choices,
            image: body.image,
            validation: body.validation,
            validation_message: body.validation_message,
        },
    )?;
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
#[utoipa::path(
    get,
    path = "/v1/customers/{customer}/challenges",
    operation_id = "listChallenges",
    tag = "frontend",
    params(CustomerPath),
    responses((status = 200, description = "At most 200 waiting challenges, oldest first; never a token", body = Vec<Access>))
)]
pub async fn list(
    State(state): State<AppState>,
    PathId(customer): PathId<CustomerId>,
) -> Result<Json<Vec<Access>>, AppError> {
    Ok(Json(state.store.pending_for_customer(&customer).await?))
}

/// Who cancels, for the audit trail.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CancelQuery {
    /// `scraper` (the default) or `frontend`; heeded only for an admin key,
    /// or when authentication is off.
    #[param(pattern = "^(scraper|frontend)$")]
    by: Option<String>,
}

/// `DELETE /v1/accesses/{access}/challenge[?by=frontend]`. The caller's
/// role names who cancelled; `by` counts only for an admin key, or when
/// authentication is off.
#[utoipa::path(
    delete,
    path = "/v1/accesses/{access}/challenge",
    operation_id = "cancelChallenge",
    tag = "scraper",
    tag = "frontend",
    params(AccessPath, CancelQuery),
    responses(
        (status = 200, description = "The challenge, now `cancelled`; a waiting scraper gets 410", body = Access),
        (status = 404, description = "The access has no challenge", body = ErrorBody),
        (status = 409, description = "The challenge is already final", body = ErrorBody),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
    Extension(caller): Extension<Caller>,
    AppQuery(query): AppQuery<CancelQuery>,
) -> Result<Json<Access>, AppError> {
    let by = match (&caller, query.by.as_deref()) {
        (Caller::Key(Role::Scraper), _) => Actor::Scraper,
        (Caller::Key(Role::Frontend) | Caller::Session(_), _) => Actor::Frontend,
        (_, None | Some("scraper")) => Actor::Scraper,
        (_, Some("frontend")) => Actor::Frontend,
        (_, Some(_)) => {
            return Err(AppError::BadRequest(
                "by must be scraper or frontend".to_owned(),
            ));
        }
    };
    let cancelled = state.store.cancel(&access, by, caller.scope()).await?;
    Ok(Json(cancelled))
}
