//! Extractors that validate at the edge and fail with our error JSON.

use axum::extract::{FromRequest, FromRequestParts, Path};
use axum::http::request::Parts;

use super::error::AppError;
use crate::model::{AccessId, CustomerId, Invalid};

/// `axum::Json`, but a rejection is our error JSON: 400 for malformed JSON,
/// 415 for a wrong content type, 422 for a wrong shape or a broken rule.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct AppJson<T>(pub T);

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
