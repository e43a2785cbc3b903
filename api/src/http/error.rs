//! Errors of the HTTP API, mapped to status codes in one place.
//!
//! Clients get a specific message for what they can fix, with the value and the fix. Server
//! faults are logged in full and shown as a generic message with a request id to quote.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use caraml_engine::{Error as EngineError, SpecProblem};
use serde::Serialize;

#[derive(Debug)]
pub(crate) enum ApiError {
    BadRequest(String),
    InvalidSpec(Vec<SpecProblem>),
    NotFound(String),
    Conflict(String),
    PayloadTooLarge(String),
    Unavailable(String),
    MethodNotAllowed(String),
    Rejection(StatusCode, String),
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<&'a [SpecProblem]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, problems, request_id) = match &self {
            ApiError::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                "bad_request",
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
            ApiError::PayloadTooLarge(message) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
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
            ApiError::Rejection(status, message) => {
                (*status, "bad_request", message.clone(), None, None)
            }
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
        let body = Body {
            error: ErrorBody {
                code,
                message,
                problems,
                request_id,
            },
        };
        (status, Json(body)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::NotFound { .. } => ApiError::NotFound(err.to_string()),
            EngineError::Conflict(message) => ApiError::Conflict(message),
            EngineError::InvalidSpec(spec) => ApiError::InvalidSpec(spec.problems),
            EngineError::InvalidInput(message) => ApiError::BadRequest(message),
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

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge(format!(
                "the request body is larger than the server's limit of {} bytes; send a smaller body or raise --body-limit-bytes",
                crate::http::body_limit()
            ));
        }
        let message = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "the request has no `Content-Type: application/json` header; send the body as JSON with that header".to_owned()
            }
            other => format!("the request body is not valid JSON for this endpoint: {}", other.body_text()),
        };
        ApiError::Rejection(status, message)
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(format!(
            "invalid path parameter: {}; run ids are UUIDs such as 01934a6e-7b1c-7d2e-8f90-123456789abc",
            rejection.body_text()
        ))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(format!("invalid query string: {}", rejection.body_text()))
    }
}
