//! Extractors that validate at the edge and fail with our error JSON.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;

use super::error::AppError;
use crate::model::{AccessId, CustomerId, Invalid};

/// `axum::Json`, but a rejection is our error JSON: 400 for malformed JSON,
/// 415 for a wrong content type, 422 for a wrong shape or a broken rule.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct AppJson<T>(pub T);

/// A JSON body that may be left out: `None` for a request with neither a
/// body nor a `Content-Type`; any body is `AppJson`'s to accept or refuse.
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let headers = request.headers();
        let empty = !headers.contains_key(header::CONTENT_TYPE)
            && !headers.contains_key(header::TRANSFER_ENCODING)
            && headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|length| length.as_bytes() == b"0");
        if empty {
            return Ok(OptionalJson(None));
        }
        let AppJson(body) = AppJson::from_request(request, state).await?;
        Ok(OptionalJson(Some(body)))
    }
}

/// A path id, validated before anything touches Redis: 400 otherwise.
pub struct PathId<T>(pub T);

/// The ids that can appear in a path.
pub trait IdSegment: Sized {
    fn parse_segment(value: String) -> Result<Self, Invalid>;
}

impl IdSegment for AccessId {
    fn parse_segment(value: String) -> Result<Self, Invalid> {
        AccessId::parse(value)
    }
}

impl IdSegment for CustomerId {
    fn parse_segment(value: String) -> Result<Self, Invalid> {
        CustomerId::parse(value)
    }
}

impl<S: Send + Sync, T: IdSegment> FromRequestParts<S> for PathId<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Path(value) = Path::<String>::from_request_parts(parts, state).await?;
        T::parse_segment(value)
            .map(PathId)
            .map_err(AppError::InvalidId)
    }
}

/// `axum::extract::Query`, but a rejection is our error JSON (400).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct AppQuery<T>(pub T);
