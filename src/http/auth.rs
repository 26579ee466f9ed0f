//! The API key check, run before any extractor and any Redis call, so a
//! request without the right key learns nothing and changes nothing.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::AppError;
use crate::auth::{Allowed, ApiKeys, Role};

/// Who is calling, for handlers that record it: `None` when authentication
/// is off (no keys configured, loopback only).
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub Option<Role>);

pub async fn require(
    State((keys, allowed)): State<(Arc<ApiKeys>, Allowed)>,
    mut request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let role = if keys.is_enabled() {
        let presented = bearer(request.headers()).ok_or_else(|| {
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
        Some(role)
    } else {
        None
    };
    request.extensions_mut().insert(Caller(role));
    Ok(next.run(request).await)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}
