//! Signals sent to runs: deliver one, list them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use caraml_engine::{Delivered, SignalView};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{RunId, body_rejection, check_json_content_type, describe_json, quoted};
use super::{ApiError, AppState};
use crate::auth::Caller;

/// The body of a signal delivery; an empty body sends `null`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"payload": {"approved": true, "by": "ana"}}))]
pub(crate) struct SignalRequest {
    #[serde(default)]
    payload: Value,
}

pub(crate) async fn send(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Delivered>), ApiError> {
    let body = body.map_err(body_rejection)?;
    let Path((id, name)) = path.map_err(|_| {
        ApiError::BadRequest(
            "the run id or signal name in the path is not valid UTF-8 once percent-decoded"
                .to_owned(),
        )
    })?;
    let id: Uuid = id.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "{} is not a run id; run ids are UUIDs such as 01934a6e-7b1c-7d2e-8f90-123456789abc",
            quoted(&id)
        ))
    })?;
    let request: SignalRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SignalRequest::default()
    } else {
        check_json_content_type(headers.get(axum::http::header::CONTENT_TYPE))?;
        let value: Value = serde_json::from_slice(&body).map_err(|_| {
            ApiError::BadRequest(
                "the signal body is not valid JSON; send {\"payload\": <any JSON>} or an empty body".to_owned(),
            )
        })?;
        let fits = value
            .as_object()
            .is_some_and(|object| object.keys().all(|key| key == "payload"));
        if !fits {
            return Err(ApiError::BadRequest(format!(
                "the signal body is {}; send an object with only the field `payload`, such as {{\"payload\": {{\"approved\": true}}}}, or an empty body",
                describe_json(&value)
            )));
        }
        serde_json::from_value(value).unwrap_or_default()
    };
    caller.require_run(&state.store, id).await?;
    caller.require_editor("sending a signal")?;
    let delivered = state.store.send_signal(id, &name, request.payload).await?;
    Ok((StatusCode::CREATED, Json(delivered)))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
) -> Result<Json<Vec<SignalView>>, ApiError> {
    caller.require_run(&state.store, id).await?;
    Ok(Json(state.store.signals(id).await?))
}
