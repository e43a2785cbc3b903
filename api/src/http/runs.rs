//! Handlers for runs, workflows and workers.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use caraml_engine::{
    EventView, RunFilter, RunPage, RunView, Submission, WorkflowSpec, WorkflowView,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitRequest {
    workflow: Option<String>,
    spec: Option<Value>,
    #[serde(default)]
    input: Value,
    idempotency_key: Option<String>,
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(request) = body?;
    let submission = match (request.workflow, request.spec) {
        (Some(name), None) => Submission::Workflow(name),
        (None, Some(spec)) => Submission::Spec(parse_spec(spec)?),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "the request names both `workflow` and `spec`; send one of them".to_owned(),
            ));
        }
        (None, None) => {
            return Err(ApiError::BadRequest(
                "the request names neither `workflow` nor `spec`; send `{\"workflow\": NAME}` for a registered workflow or `{\"spec\": {...}}` for an inline one".to_owned(),
            ));
        }
    };
    let submitted = state
        .store
        .submit(submission, request.input, request.idempotency_key)
        .await?;
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"id": submitted.id, "status": submitted.status, "created": submitted.created})),
    ))
}

/// Accepts a spec as a JSON object, or as JSON or YAML text.
pub(crate) fn parse_spec(spec: Value) -> Result<WorkflowSpec, ApiError> {
    let parsed = match spec {
        Value::String(text) => WorkflowSpec::parse(&text),
        other => serde_json::from_value(other).map_err(|err| caraml_engine::SpecError {
            problems: vec![caraml_engine::SpecProblem {
                code: "parse",
                message: format!("the spec does not have the shape of a workflow: {err}"),
                tasks: Vec::new(),
            }],
        }),
    };
    parsed.map_err(|err| ApiError::InvalidSpec(err.problems))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: Option<String>,
    workflow: Option<String>,
    cursor: Option<Uuid>,
    limit: Option<u32>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RunPage>, ApiError> {
    let Query(query) = query?;
    let page = state
        .store
        .list_runs(&RunFilter {
            status: query.status,
            workflow: query.workflow,
            before: query.cursor,
            limit: query.limit.unwrap_or(50),
        })
        .await?;
    Ok(Json(page))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(state.store.get_run(parse_run_id(&id)?).await?))
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_run_id(&id)?;
    let status = state.store.cancel_run(id).await?;
    Ok(Json(json!({"id": id, "status": status})))
}

pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_run_id(&id)?;
    let status = state.store.retry_run(id).await?;
    Ok(Json(json!({"id": id, "status": status})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

pub(crate) async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let events: Vec<EventView> = state
        .store
        .run_events(parse_run_id(&id)?, query.after.unwrap_or(0), limit)
        .await?;

    // A full page may have more after it: `next_after` is the `after` of the next page.
    let next_after = (events.len() == limit as usize)
        .then(|| events.last().map(|event| event.id))
        .flatten();
    Ok(Json(json!({"events": events, "next_after": next_after})))
}

pub(crate) async fn workflows(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let workflows: Vec<WorkflowView> = state.store.list_workflows().await?;
    let mut kinds: Vec<String> = state.store.known_kinds().await?.into_iter().collect();
    kinds.sort();
    Ok(Json(json!({"workflows": workflows, "kinds": kinds})))
}

pub(crate) async fn workers(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"workers": state.store.list_workers().await?})))
}

pub(crate) fn parse_run_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "`{}` is not a run id; run ids are UUIDs such as 01934a6e-7b1c-7d2e-8f90-123456789abc",
            id.escape_debug()
        ))
    })
}
