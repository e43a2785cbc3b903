//! Signals sent to runs: deliver one, list them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use caraml_engine::{Delivered, SignalView};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::extract::{RunId, quoted};
use super::{ApiError, AppState};

/// The body of a signal delivery; an empty body sends `null`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalRequest {
    #[serde(default)]
    payload: Value,
}

pub(crate) async fn send(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    body: Bytes,
) -> Result<(StatusCode, Json<Delivered>), ApiError> {
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
        serde_json::from_slice(&body).map_err(|err| {
            ApiError::BadRequest(format!(
                "the signal body is not valid: {err}; send {{\"payload\": <any JSON>}} or an empty body"
            ))
        })?
    };
    let delivered = state.store.send_signal(id, &name, request.payload).await?;
    Ok((StatusCode::CREATED, Json(delivered)))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    RunId(id): RunId,
) -> Result<Json<Vec<SignalView>>, ApiError> {
    Ok(Json(state.store.signals(id).await?))
}
