//! The token: the front end submits it, the scraper waits for it.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::auth::Caller;
use super::error::{AppError, ErrorBody};
use super::extract::{AppJson, AppQuery, PathId};
use super::openapi::AccessPath;
use crate::follow::{Answer, wait_for_token};
use crate::model::{Access, AccessId, Status, TokenAnswer, TokenSubmission};

/// A long poll waits this long when the caller does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Stores the customer's token; the waiting scraper wakes at once.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "submitToken",
    tag = "frontend",
    request_body = TokenSubmission,
    responses(
        (status = 200, description = "The challenge, now `token_received`", body = Access),
        (status = 404, description = "The access has no challenge", body = ErrorBody),
        (status = 409, description = "The access is not waiting for a token (`conflict`), or has moved on to another attempt (`attempt_mismatch`)", body = ErrorBody),
        (status = 410, description = "The challenge is `expired` or `cancelled`", body = ErrorBody),
        (status = 422, description = "A malformed token (`invalid_body`), or one the challenge's rule refuses (`invalid_token`, with the `validationMessage`); the challenge keeps waiting", body = ErrorBody),
        (status = 429, description = "Too many submissions for this access", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until the next submission may come"))),
    )
)]
pub async fn submit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    AppJson(body): AppJson<TokenSubmission>,
) -> Result<Json<Access>, AppError> {
    let access = AccessId::parse(body.access).map_err(AppError::InvalidId)?;
    let attempt = body.attempt.map(NonZeroU32::get);
    let stored = state
        .store
        .submit_token(&access, &body.token, attempt, caller.scope())
        .await
        .map_err(AppError::gone_or_conflict)?;
    Ok(Json(stored))
}

/// Other query parameters (a cache buster, say) are ignored.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds, fractions allowed: 0 looks and returns. 30 when absent, at
    /// most `TWOFA_MAX_WAIT`.
    #[param(value_type = Option<f64>, minimum = 0)]
    timeout: Option<String>,
}

impl WaitQuery {
    fn timeout(&self, max: Duration) -> Result<Duration, AppError> {
        let Some(raw) = &self.timeout else {
            return Ok(DEFAULT_WAIT.min(max));
        };
        let invalid = || {
            AppError::BadRequest(format!(
                "timeout must be a number of seconds from 0 to {}",
                max.as_secs()
            ))
        };
        let seconds: f64 = raw.parse().map_err(|_| invalid())?;
        if !seconds.is_finite() || seconds < 0.0 || seconds > max.as_secs_f64() {
            return Err(invalid());
        }
        Ok(Duration::from_secs_f64(seconds))
    }
}

/// `GET /v1/accesses/{access}/token?timeout=30`: a long poll, woken by Redis
/// the moment the token lands. Reading does not consume the token.
#[utoipa::path(
    get,
    path = "/v1/accesses/{access}/token",
    operation_id = "waitForToken",
    tag = "scraper",
    params(AccessPath, WaitQuery),
    responses(
        (status = 200, description = "The token, as soon as it is there", body = TokenAnswer,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 204, description = "The timeout passed, or the gateway is stopping, and the challenge still waits: ask again"),
        (status = 404, description = "The access has no challenge", body = ErrorBody),
        (status = 409, description = "The token was already used (`ok` or `rejected`)", body = ErrorBody),
        (status = 410, description = "The challenge ended without a token: `expired` or `cancelled`", body = ErrorBody),
    )
)]
pub async fn wait(
    State(state): State<AppState>,
    PathId(access): PathId<AccessId>,
    AppQuery(query): AppQuery<WaitQuery>,
) -> Result<Response, AppError> {
    let timeout = query.timeout(state.limits.max_wait)?;
    let answer = wait_for_token(
        &state.store,
        &state.subscriber,
        &access,
        timeout,
        &state.shutdown,
    )
    .await?;
    match answer {
        Answer::Token { attempt, token, .. } => {
            let body = TokenAnswer {
                access,
                status: Status::TokenReceived,
                token,
                attempt,
            };
            let mut response = Json(body).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        }
        Answer::StillWaiting => Ok(StatusCode::NO_CONTENT.into_response()),
        Answer::Finished(status @ (Status::Expired | Status::Cancelled)) => {
            Err(AppError::Gone(status))
        }
        Answer::Finished(status) => Err(AppError::Conflict(format!(
            "access {access} is {status}; its token was already used"
        ))),
        Answer::NotFound => Err(AppError::NotFound(format!(
            "access {access} has no challenge"
        ))),
    }
}
