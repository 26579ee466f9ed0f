//! The one place where failures become HTTP statuses and the error JSON,
//! `{"error":{"code":"snake_case","message":"…"}}`.
//!
//! Internal errors are logged once here and never shown to the client.

use axum::Json;
use axum::extract::rejection::{
    JsonRejection, PathRejection, QueryRejection, RawPathParamsRejection,
};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::follow::FollowError;
use crate::model::{Invalid, Status};
use crate::store::StoreError;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "1";

/// Every error's JSON: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For a person: what was wrong, never the value itself.
    pub message: String,
}

/// The stable, machine-readable part of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidId,
    BadRequest,
    InvalidJson,
    InvalidBody,
    UnsupportedMediaType,
    PayloadTooLarge,
    UnreadableBody,
    InvalidToken,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    AttemptMismatch,
    Cancelled,
    Expired,
    TooManyRequests,
    Unavailable,
    Internal,
    NoRoute,
    MethodNotAllowed,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// An access or customer id, in a path or a body, breaks the id rules.
    #[error("{0}")]
    InvalidId(Invalid),
    /// A path segment or query parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Json(#[from] JsonRejection),
    /// The body parsed, but a value breaks a rule.
    #[error("{0}")]
    Unprocessable(String),
    /// The token breaks the challenge's rule; the challenge keeps waiting.
    #[error("{0}")]
    InvalidToken(String),
    /// No API key, or one we do not know.
    #[error("{0}")]
    Unauthorized(String),
    /// A known key of a role that may not call this route.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The lifecycle forbids this step from the access's current status.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    AttemptMismatch(String),
    /// The challenge ended without a token: `expired` or `cancelled`.
    #[error("the challenge is {0}")]
    Gone(Status),
    /// Too many token submissions for one access: retry after this long.
    #[error("too many token submissions for this access; retry in {0} s")]
    TooManyRequests(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("no route for this path")]
    NoRoute,
    #[error("this method is not allowed here")]
    MethodNotAllowed,
}

impl AppError {
    /// A refused step on a challenge that ended without a token is a 410, as
    /// the token routes promise; any other refusal is a conflict.
    pub fn gone_or_conflict(error: StoreError) -> AppError {
        match &error {
            StoreError::Refused(access)
                if matches!(access.status, Status::Expired | Status::Cancelled) =>
            {
                AppError::Gone(access.status)
            }
            _ => AppError::from(error),
        }
    }

    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            AppError::InvalidId(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidId),
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            AppError::Json(rejection) => match rejection {
                JsonRejection::JsonSyntaxError(_) => {
                    (StatusCode::BAD_REQUEST, ErrorCode::InvalidJson)
                }
                JsonRejection::JsonDataError(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidBody)
                }
                JsonRejection::MissingJsonContentType(_) => (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::UnsupportedMediaType,
                ),
                _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
                }
                _ => (StatusCode::BAD_REQUEST, ErrorCode::UnreadableBody),
            },
            AppError::Unprocessable(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidBody)
            }
            AppError::InvalidToken(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidToken)
            }
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            AppError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            AppError::AttemptMismatch(_) => (StatusCode::CONFLICT, ErrorCode::AttemptMismatch),
            AppError::Gone(Status::Cancelled) => (StatusCode::GONE, ErrorCode::Cancelled),
            AppError::Gone(_) => (StatusCode::GONE, ErrorCode::Expired),
            AppError::TooManyRequests(_) => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests)
            }
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
            AppError::NoRoute => (StatusCode::NOT_FOUND, ErrorCode::NoRoute),
            AppError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed)
            }
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(_) => AppError::NotFound(error.to_string()),
            StoreError::Refused(ref access) => AppError::Conflict(format!(
                "{error}; this step is not allowed from status {}",
                access.status
            )),
            StoreError::AttemptMismatch(_) => AppError::AttemptMismatch(error.to_string()),
            StoreError::InvalidAnswer(message) => AppError::InvalidToken(message),
            StoreError::Throttled(wait) => {
                AppError::TooManyRequests(wait.as_millis().div_ceil(1000).max(1) as u64)
            }
            _ if error.is_out_of_memory() => {
                AppError::Unavailable("Redis is out of memory".to_owned())
            }
            _ if error.is_unavailable() => AppError::Unavailable(error.to_string()),
            _ => AppError::Internal(error.to_string()),
        }
    }
}

impl From<FollowError> for AppError {
    fn from(error: FollowError) -> Self {
        match error {
            FollowError::Store(error) => error.into(),
            FollowError::Subscriber(error) => AppError::Unavailable(error.to_string()),
            FollowError::SessionEnded => AppError::Unauthorized(error.to_string()),
        }
    }
}

impl From<Invalid> for AppError {
    fn from(error: Invalid) -> Self {
        AppError::Unprocessable(error.to_string())
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        AppError::BadRequest(rejection.body_text())
    }
}

impl From<RawPathParamsRejection> for AppError {
    fn from(rejection: RawPathParamsRejection) -> Self {
        AppError::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        AppError::BadRequest(rejection.body_text())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            AppError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error; see the gateway's log".to_owned()
            }
            AppError::Unavailable(detail) => {
                tracing::warn!(%detail, "Redis unavailable");
                self.to_string()
            }
            AppError::Json(rejection) => rejection.body_text(),
            _ => self.to_string(),
        };
        let retry_after = match &self {
            AppError::TooManyRequests(secs) => Some(HeaderValue::from(*secs)),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                Some(HeaderValue::from_static(RETRY_AFTER_SECS))
            }
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail { code, message },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(retry_after) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
