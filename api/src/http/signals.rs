//! Signals sent to runs: deliver one, list them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use caraml_engine::{Delivered, SignalView};
use serde::Deserialize;
use serde_json::Value;

use super::runs::parse_run_id;
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
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Delivered>), ApiError> {
    let id = parse_run_id(&id)?;
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
    Path(id): Path<String>,
) -> Result<Json<Vec<SignalView>>, ApiError> {
    Ok(Json(state.store.signals(parse_run_id(&id)?).await?))
}
