//! Who is calling: an API key, a customer session, or nobody on a loopback
//! gateway without keys. Checked before any extractor and any access step,
//! so a request without the right credential learns nothing and changes
//! nothing.
//!
//! A customer session (`tfs_…`) is limited to its customer with or without
//! keys configured: a path that names another customer is refused here, and
//! an access step is given the session's customer to check in the same
//! Redis step as its action (see [`Caller::scope`]).

use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::AppError;
use crate::auth::{Allowed, ApiKeys, Gate, Role, Sessions};
use crate::model::{CustomerId, SESSION_PREFIX, SessionDigest, SessionString};
use crate::store::{Session, Store};

/// Who is calling, for handlers that record it or are limited by it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Authentication is off and no session was presented (loopback only).
    Open,
    Key(Role),
    /// A customer session, as Redis holds it.
    Session(Arc<SessionHolder>),
}

#[derive(Debug)]
pub struct SessionHolder {
    pub digest: SessionDigest,
    pub session: Session,
}

impl Caller {
    /// The customer a session limits this caller to; `None` for a key, or
    /// for no credential on a gateway without keys.
    pub fn scope(&self) -> Option<&CustomerId> {
        match self {
            Caller::Session(holder) => Some(&holder.session.customer),
            Caller::Open | Caller::Key(_) => None,
        }
    }
}

/// What a session-only route says to a caller without a session.
pub const SEND_SESSION: &str =
    "this route is for a customer session: send Authorization: Bearer tfs_…";

pub async fn require(
    State((keys, gate)): State<(Arc<ApiKeys>, Gate)>,
    axum::Extension(store): axum::Extension<Store>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let presented = bearer(request.headers());
    let session = match presented.filter(|value| value.starts_with(SESSION_PREFIX)) {
        Some(session) => Some(session.to_owned()),
        None if gate.sessions == Sessions::HeaderOrQuery => query_session(&request),
        None => None,
    };
    let caller = match session {
        Some(session) => {
            let holder = live_session(&store, &session).await?;
            admit_session(&holder, gate, &path?)?;
            Caller::Session(Arc::new(holder))
        }
        None if keys.is_enabled() => Caller::Key(key_role(&keys, presented, gate.keys)?),
        None if gate.keys == Allowed::SessionOnly => {
            return Err(AppError::Unauthorized(SEND_SESSION.to_owned()));
        }
        None => Caller::Open,
    };
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// The session a presented string names, if Redis still holds it.
async fn live_session(store: &Store, presented: &str) -> Result<SessionHolder, AppError> {
    let ended = || {
        AppError::Unauthorized(
            "this session is not known, or has ended; ask for a new one".to_owned(),
        )
    };
    let digest = SessionString::parse(presented).ok_or_else(ended)?.digest();
    let session = store.session(&digest).await?.ok_or_else(ended)?;
    Ok(SessionHolder { digest, session })
}

/// A session may call only the routes that take one, and only for its own
/// customer where the path names one.
fn admit_session(holder: &SessionHolder, gate: Gate, path: &RawPathParams) -> Result<(), AppError> {
    if gate.sessions == Sessions::Refused {
        return Err(AppError::Forbidden(
            "a customer session may not call this route".to_owned(),
        ));
    }
    let named = path
        .iter()
        .find_map(|(name, value)| (name == "customer").then_some(value));
    if named.is_some_and(|customer| customer != holder.session.customer.as_str()) {
        return Err(AppError::Forbidden(
            "this session is for another customer".to_owned(),
        ));
    }
    Ok(())
}

fn key_role(keys: &ApiKeys, presented: Option<&str>, allowed: Allowed) -> Result<Role, AppError> {
    let presented = presented.ok_or_else(|| {
        AppError::Unauthorized("send an API key as Authorization: Bearer <key>".to_owned())
    })?;
    let role = keys
        .role_of(presented)
        .ok_or_else(|| AppError::Unauthorized("this API key is not known".to_owned()))?;
    if !role.may(allowed) {
        return Err(AppError::Forbidden(format!(
            "a {} key may not call this route",
            role.as_str()
        )));
    }
    Ok(role)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// `?session=tfs_…`; a value that is not a session's is no session. The
/// request's span records the path alone, so the query, and this session
/// with it, reaches no log line.
fn query_session(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name == "session" && value.starts_with(SESSION_PREFIX))
        .map(|(_, value)| value.into_owned())
}
