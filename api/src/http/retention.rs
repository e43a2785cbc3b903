//! Handlers for per-workflow retention.

use axum::Json;
use axum::extract::{Path, State};
use caraml_engine::WorkflowRetention;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::extract::{JsonBody, body_as};
use super::{ApiError, AppState};
use crate::auth::{Caller, Role};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"retention": "30d"}))]
pub(crate) struct RetentionRequest {
    /// A duration such as "30d", "off" to keep runs forever, or null for the default.
    #[schema(value_type = Option<String>, required = true)]
    retention: Value,
}

pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let retention = state
        .store
        .workflow_retention(&caller.project, &name)
        .await?;
    Ok(Json(
        json!({"workflow": name, "retention": retention.to_text()}),
    ))
}

pub(crate) async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin, "setting a workflow's retention")?;
    let request: RetentionRequest = body_as(body, r#"{"retention": "30d" or "off" or null}"#)?;
    let retention = match &request.retention {
        Value::Null => WorkflowRetention::Default,
        Value::String(text) => WorkflowRetention::parse(Some(text.as_str()))?,
        other => {
            return Err(ApiError::BadRequest(format!(
                "retention is {other}; send a duration string such as \"30d\" or \"12h\", \"off\" to keep runs forever, or null to use the server's default"
            )));
        }
    };
    state
        .store
        .set_workflow_retention(&caller.project, &name, retention)
        .await?;
    Ok(Json(
        json!({"workflow": name, "retention": retention.to_text()}),
    ))
}
