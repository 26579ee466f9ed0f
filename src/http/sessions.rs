//! Customer sessions: TesBack mints one for the customer it has signed in,
//! and hands it to the browser, which then holds no key at all.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::{Extension, Json};

use super::AppState;
use super::auth::Caller;
use super::error::AppError;
use super::extract::{OptionalJson, PathId};
use super::openapi::CustomerPath;
use crate::model::{CreatedSession, CustomerId, SessionRequest};

/// Mints a session for one customer. Its string is shown here only: Redis
/// keeps its SHA-256 digest.
///
/// The session may list and follow this customer's challenges, answer and
/// cancel them, read their accesses, and end itself; nothing else.
#[utoipa::path(
    post,
    path = "/v1/customers/{customer}/sessions",
    operation_id = "createSession",
    tag = "frontend",
    params(CustomerPath),
    request_body(content = Option<SessionRequest>, description = "Optional: `{\"ttl\":900}`"),
    responses(
        (status = 201, description = "The new session", body = CreatedSession,
            headers(("Cache-Control" = String, description = "`no-store`"))),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    PathId(customer): PathId<CustomerId>,
    OptionalJson(body): OptionalJson<SessionRequest>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, &'static str); 1],
        Json<CreatedSession>,
    ),
    AppError,
> {
    let ttl = body
        .and_then(|body| body.ttl)
        .unwrap_or(state.limits.session_ttl);
    let (session, expires_at) = state.store.open_session(&customer, ttl).await?;
    let created = CreatedSession {
        session: session.expose().to_owned(),
        customer,
        expires_at,
    };
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(created),
    ))
}

/// Ends every session of one customer; their live feeds end within 5 s.
#[utoipa::path(
    delete,
    path = "/v1/customers/{customer}/sessions",
    operation_id = "endCustomerSessions",
    tag = "frontend",
    params(CustomerPath),
    responses((status = 204, description = "The customer has no live session now")),
)]
pub async fn end_all(
    State(state): State<AppState>,
    PathId(customer): PathId<CustomerId>,
) -> Result<StatusCode, AppError> {
    state.store.end_sessions(&customer).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends the session that calls it, such as when the customer signs out; its
/// live feeds end within 5 s.
#[utoipa::path(
    delete,
    path = "/v1/sessions/current",
    operation_id = "endSession",
    tag = "frontend",
    responses((status = 204, description = "The session has ended")),
)]
pub async fn end_current(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, AppError> {
    let Caller::Session(holder) = caller else {
        return Err(AppError::Unauthorized(
            "send the session to end as Authorization: Bearer tfs_…".to_owned(),
        ));
    };
    state.store.end_session(&holder.digest).await?;
    Ok(StatusCode::NO_CONTENT)
}
