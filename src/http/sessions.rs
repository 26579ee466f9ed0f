//! Customer sessions: TesBack mints one for the customer it has signed in,
//! and hands it to the browser, which then holds no key at all.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::{Extension, Json};

use super::AppState;
use std::sync::Arc;

use super::auth::{Caller, SEND_SESSION, SessionHolder};
use super::error::AppError;
use super::extract::{OptionalJson, PathId};
use super::openapi::CustomerPath;
use crate::model::{CreatedSession, CurrentSession, CustomerId, SessionRequest};

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

/// Who the session that calls it is for, and until when: what a page that
/// was handed only the session needs to know.
#[utoipa::path(
    get,
    path = "/v1/sessions/current",
    operation_id = "getSession",
    tag = "frontend",
    responses((status = 200, description = "The session's customer and end", body = CurrentSession)),
)]
pub async fn current(
    Extension(caller): Extension<Caller>,
) -> Result<Json<CurrentSession>, AppError> {
    let holder = held_session(caller)?;
    Ok(Json(CurrentSession {
        customer: holder.session.customer.clone(),
        expires_at: holder.session.expires_at,
    }))
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
    let holder = held_session(caller)?;
    state.store.end_session(&holder.digest).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The session a session-only route was called with, as its gate ensures.
fn held_session(caller: Caller) -> Result<Arc<SessionHolder>, AppError> {
    match caller {
        Caller::Session(holder) => Ok(holder),
        Caller::Open | Caller::Key(_) => Err(AppError::Unauthorized(SEND_SESSION.to_owned())),
    }
}
