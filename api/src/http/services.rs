//! Handlers for long-lived services.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use caraml_engine::{ServiceView, Submission};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::JsonBody;
use super::runs::parse_spec;
use super::{ApiError, AppState};
use crate::auth::Caller;

/// Default time a replaced run keeps serving after the switch.
const DEFAULT_DRAIN_SECONDS: f64 = 2.0;

/// A service to create, from a registered workflow or a spec: exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateServiceRequest, example = json!({"name": "web", "spec": {"name": "web", "tasks": [{"name": "serve", "kind": "http.serve", "input": {"body": {"version": 1}}}]}}))]
pub(crate) struct CreateRequest {
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    name: String,
    #[schema(required = false, pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    workflow: Option<String>,
    #[schema(value_type = Option<crate::http::openapi::SpecDocument>, required = false)]
    spec: Option<Value>,
    #[serde(default)]
    input: Value,
    /// Seconds a replaced run keeps serving after the switch: 0 to 600, default 2.
    #[schema(required = false, minimum = 0, maximum = 600)]
    drain_seconds: Option<f64>,
}

/// The new version of a service: exactly one of `workflow` and `spec`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReplaceServiceRequest, example = json!({"workflow": "web"}))]
pub(crate) struct ReplaceRequest {
    #[schema(required = false, pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    workflow: Option<String>,
    #[schema(value_type = Option<crate::http::openapi::SpecDocument>, required = false)]
    spec: Option<Value>,
    #[serde(default)]
    input: Value,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ServiceView>>, ApiError> {
    Ok(Json(state.store.list_services(&caller.project).await?))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    Ok(Json(state.store.get_service(&caller.project, &name).await?))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<ServiceView>), ApiError> {
    caller.require_editor("creating a service")?;
    let request: CreateRequest = parse_body(body, CREATE_SHAPE)?;
    let drain = request.drain_seconds.unwrap_or(DEFAULT_DRAIN_SECONDS);
    if !drain.is_finite() || !(0.0..=600.0).contains(&drain) {
        return Err(ApiError::BadRequest(format!(
            "drain_seconds is {drain}; use a number of seconds from 0 to 600"
        )));
    }
    let submission = submission(request.workflow, request.spec)?;
    let service = state
        .store
        .create_service(
            &caller.project,
            &request.name,
            submission,
            request.input,
            Duration::from_secs_f64(drain),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(service)))
}

pub(crate) async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<ServiceView>, ApiError> {
    caller.require_editor("replacing a service")?;
    let request: ReplaceRequest = parse_body(body, REPLACE_SHAPE)?;
    let submission = submission(request.workflow, request.spec)?;
    Ok(Json(
        state
            .store
            .replace_service(&caller.project, &name, submission, request.input)
            .await?,
    ))
}

pub(crate) async fn restart(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    // The existence check comes first, so that a viewer of another project gets a 404.
    state.store.get_service(&caller.project, &name).await?;
    caller.require_editor("restarting a service")?;
    Ok(Json(
        state.store.restart_service(&caller.project, &name).await?,
    ))
}

pub(crate) async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    state.store.get_service(&caller.project, &name).await?;
    caller.require_editor("stopping a service")?;
    Ok(Json(
        state.store.stop_service(&caller.project, &name).await?,
    ))
}

const CREATE_SHAPE: &str =
    r#"{"name": NAME, "workflow": NAME or "spec": {...}, "input": {...}, "drain_seconds": 2}"#;
const REPLACE_SHAPE: &str = r#"{"workflow": NAME or "spec": {...}, "input": {...}}"#;

fn parse_body<T: DeserializeOwned>(body: Value, shape: &str) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|err| {
        ApiError::BadRequest(format!(
            "the request body is not valid: {err}; send JSON of the form {shape}"
        ))
    })
}

fn submission(workflow: Option<String>, spec: Option<Value>) -> Result<Submission, ApiError> {
    match (workflow, spec) {
        (Some(name), None) => Ok(Submission::Workflow(name)),
        (None, Some(spec)) => Ok(Submission::Spec(parse_spec(spec)?)),
        _ => Err(ApiError::BadRequest(
            "send exactly one of `workflow` (a registered workflow's name) and `spec` (a workflow spec)".to_owned(),
        )),
    }
}
