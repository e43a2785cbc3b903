//! Errors of the HTTP API, mapped to status codes in one place.
//!
//! Clients get a specific message for what they can fix, with the value and the fix. Server
//! faults are logged in full and shown as a generic message with a request id to quote.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use caraml_engine::{Error as EngineError, SpecProblem};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub(crate) enum ApiError {
    BadRequest(String),
    /// No valid token: missing, malformed, unknown, expired or revoked.
    Unauthorized(String),
    /// A valid token whose role does not allow the request.
    Forbidden(String),
    InvalidSpec(Vec<SpecProblem>),
    NotFound(String),
    Conflict(String),
    IdempotencyKeyReused(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    Unavailable(String),
    MethodNotAllowed(String),
    Internal(String),
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
#[schema(as = ErrorResponse)]
pub(crate) struct Body<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ErrorDetail)]
struct ErrorBody<'a> {
    /// A stable code for the kind of error, such as `bad_request`, `not_found`,
    /// `invalid_spec` or `internal`.
    #[schema(value_type = String, example = "not_found")]
    code: &'a str,
    /// The failure, the value at fault and how to fix it.
    message: String,
    /// Every problem of a rejected spec, with code `invalid_spec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<SpecProblem>>)]
    problems: Option<&'a [SpecProblem]>,
    /// The id to look for in the server log, with code `internal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

/// An error as the client sees it.
pub(crate) struct Described<'a> {
    pub(crate) status: StatusCode,
    pub(crate) code: &'a str,
    pub(crate) message: String,
    pub(crate) problems: Option<&'a [SpecProblem]>,
    pub(crate) request_id: Option<String>,
}

impl ApiError {
    /// Returns the status and the message for the client, and logs a server fault in full
    /// under a new request id.
    pub(crate) fn describe(&self) -> Described<'_> {
        let (status, code, message, problems, request_id) = match self {
            ApiError::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                message.clone(),
                None,
                None,
            ),
            ApiError::Unauthorized(message) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                message.clone(),
                None,
                None,
            ),
            ApiError::Forbidden(message) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                message.clone(),
                None,
                None,
            ),
            ApiError::InvalidSpec(problems) => {
                let message = problems
                    .iter()
                    .map(|p| p.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_spec",
                    format!("invalid workflow spec: {message}"),
                    Some(problems.as_slice()),
                    None,
                )
            }
            ApiError::NotFound(message) => (
                StatusCode::NOT_FOUND,
                "not_found",
                message.clone(),
                None,
                None,
            ),
            ApiError::Conflict(message) => (
                StatusCode::CONFLICT,
                "conflict",
                message.clone(),
                None,
                None,
            ),
            ApiError::IdempotencyKeyReused(message) => (
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                message.clone(),
                None,
                None,
            ),
            ApiError::PayloadTooLarge(message) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                message.clone(),
                None,
                None,
            ),
            ApiError::UnsupportedMediaType(message) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                message.clone(),
                None,
                None,
            ),
            ApiError::Unavailable(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                message.clone(),
                None,
                None,
            ),
            ApiError::MethodNotAllowed(message) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                message.clone(),
                None,
                None,
            ),
            ApiError::Internal(detail) => {
                let request_id = uuid::Uuid::new_v4().to_string();
                tracing::error!(request.id = %request_id, error = %detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed to handle the request; check the server log for this request id".to_owned(),
                    None,
                    Some(request_id),
                )
            }
        };
        Described {
            status,
            code,
            message,
            problems,
            request_id,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let described = self.describe();
        let challenge = described.status == StatusCode::UNAUTHORIZED;
        let body = Body {
            error: ErrorBody {
                code: described.code,
                message: described.message,
                problems: described.problems,
                request_id: described.request_id,
            },
        };
        let mut response = (described.status, Json(body)).into_response();
        if challenge {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"caraml\""),
            );
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::NotFound { .. } | EngineError::TaskNotFound { .. } => {
                ApiError::NotFound(err.to_string())
            }
            EngineError::Conflict(message) => ApiError::Conflict(message),
            EngineError::IdempotencyKeyReused { .. } => {
                ApiError::IdempotencyKeyReused(err.to_string())
            }
            EngineError::InvalidSpec(spec) => ApiError::InvalidSpec(spec.problems),
            EngineError::InvalidInput(message) => ApiError::BadRequest(message),
            // Class 22 is a value PostgreSQL cannot store, such as a NUL character in text
            // or JSON: the request's fault, not the server's.
            EngineError::Database(sqlx::Error::Database(db))
                if db.code().is_some_and(|code| code.starts_with("22")) =>
            {
                ApiError::BadRequest(format!(
                    "a value in the request cannot be stored: {}; remove NUL characters (\\u0000) and other control characters from strings",
                    db.message()
                ))
            }
            EngineError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            ) => {
                tracing::warn!(error = %err, "request failed: database unavailable");
                ApiError::Unavailable(
                    "the database is unavailable; retry shortly, and check that PostgreSQL is running if this persists"
                        .to_owned(),
                )
            }
            EngineError::Database(_) | EngineError::Migration(_) => {
                ApiError::Internal(err.to_string())
            }
        }
    }
}
