//! Handlers for runs, workflows and workers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use caraml_engine::{
    EventView, MAX_PAGE, RUN_STATUSES, RunCounts, RunFilter, RunPage, RunView, Submission,
    WorkflowSpec, WorkflowView,
};
use serde_json::{Map, Value, json};

use super::extract::{JsonBody, QueryParams, RunId, describe_json};
use super::{ApiError, AppState};
use crate::auth::Caller;

/// Runs per page of `GET /v1/runs` when the request sets no `limit`.
const DEFAULT_RUN_PAGE: u32 = 50;

/// Largest page of `GET /v1/runs/{id}/events`, also the page size when the request sets no
/// `limit`.
const MAX_EVENT_PAGE: u32 = 10_000;

const SUBMIT_FIELDS: &str = "`workflow`, `spec`, `input` and `idempotency_key`";

/// The body of `POST /v1/runs`.
#[derive(Debug)]
struct SubmitRequest {
    submission: Submission,
    input: Value,
    idempotency_key: Option<String>,
}

impl SubmitRequest {
    /// Checks the body's shape field by field, so that an error names the field at fault.
    fn from_json(body: Value) -> Result<Self, ApiError> {
        let Value::Object(mut fields) = body else {
            return Err(ApiError::BadRequest(format!(
                "the request body must be a JSON object such as {{\"workflow\": \"flights\"}} or {{\"spec\": {{...}}}}, got {}",
                describe_json(&body)
            )));
        };
        if let Some(unknown) = fields
            .keys()
            .find(|key| !["workflow", "spec", "input", "idempotency_key"].contains(&key.as_str()))
        {
            return Err(ApiError::BadRequest(format!(
                "unknown field `{}` in the request body; POST /v1/runs takes {SUBMIT_FIELDS}",
                unknown.escape_debug()
            )));
        }
        let workflow = take_string(&mut fields, "workflow", "the name of a registered workflow")?;
        let spec = match fields.remove("spec") {
            None | Some(Value::Null) => None,
            Some(spec @ (Value::Object(_) | Value::String(_))) => Some(spec),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "spec must be a workflow spec as a JSON object, or its JSON or YAML text as a string, got {}",
                    describe_json(&other)
                )));
            }
        };
        let idempotency_key = take_string(
            &mut fields,
            "idempotency_key",
            "a string that identifies this submission",
        )?;
        let input = fields.remove("input").unwrap_or(Value::Null);

        let submission = match (workflow, spec) {
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
        Ok(Self {
            submission,
            input,
            idempotency_key,
        })
    }
}

/// Removes an optional string field, treating null as absent.
fn take_string(
    fields: &mut Map<String, Value>,
    name: &str,
    meaning: &str,
) -> Result<Option<String>, ApiError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(ApiError::BadRequest(format!(
            "{name} must be {meaning} as a JSON string, got {}",
            describe_json(&other)
        ))),
    }
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_editor("submitting a run")?;
    let request = SubmitRequest::from_json(body)?;
    let submitted = state
        .store
        .submit_in(
            &caller.project,
            request.submission,
            request.input,
            request.idempotency_key,
        )
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

pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<RunPage>, ApiError> {
    query.allow_only(
        "GET /v1/runs",
        &["status", "workflow", "from", "to", "cursor", "limit"],
    )?;
    let filter = RunFilter {
        project: Some(caller.project),
        from: query.time("from")?,
        to: query.time("to")?,
        status: query.one_of("status", &RUN_STATUSES)?,
        workflow: query.text(
            "workflow",
            "give a workflow name, or leave the parameter out to list runs of every workflow",
        )?,
        before: query.run_id("cursor", "the next_cursor of the previous page")?,
        limit: query
            .whole_number("limit", 1, MAX_PAGE)?
            .unwrap_or(DEFAULT_RUN_PAGE),
    };
    Ok(Json(state.store.list_runs(&filter).await?))
}

/// Counts the project's runs per status, for a workflow and time range when given.
pub(crate) async fn counts(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<RunCounts>, ApiError> {
    query.allow_only("GET /v1/runs/counts", &["workflow", "from", "to"])?;
    let filter = RunFilter {
        project: Some(caller.project),
        workflow: query.text(
            "workflow",
            "give a workflow name, or leave the parameter out to count runs of every workflow",
        )?,
        from: query.time("from")?,
        to: query.time("to")?,
        ..RunFilter::default()
    };
    Ok(Json(state.store.count_runs(&filter).await?))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    query: QueryParams,
) -> Result<Json<RunView>, ApiError> {
    query.allow_only("GET /v1/runs/{id}", &["tasks"])?;
    caller.require_run(&state.store, id).await?;
    // `tasks=false` serves clients that poll a large run for its counts alone.
    let run = if query.flag("tasks")?.unwrap_or(true) {
        state.store.get_run(id).await?
    } else {
        state.store.run_summary(id).await?
    };
    Ok(Json(run))
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
) -> Result<Json<Value>, ApiError> {
    caller.require_run(&state.store, id).await?;
    caller.require_editor("cancelling a run")?;
    state.store.check_not_service_run(id, "cancelled").await?;
    let status = state.store.cancel_run(id).await?;
    Ok(Json(json!({"id": id, "status": status})))
}

pub(crate) async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
) -> Result<Json<Value>, ApiError> {
    caller.require_run(&state.store, id).await?;
    caller.require_editor("retrying a run")?;
    let status = state.store.retry_run(id).await?;
    Ok(Json(json!({"id": id, "status": status})))
}

pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    query: QueryParams,
) -> Result<Json<Value>, ApiError> {
    query.allow_only("GET /v1/runs/{id}/events", &["after", "limit"])?;
    caller.require_run(&state.store, id).await?;
    let after = query.event_id("after")?.unwrap_or(0);
    let limit = query
        .whole_number("limit", 1, MAX_EVENT_PAGE)?
        .unwrap_or(MAX_EVENT_PAGE);
    let events: Vec<EventView> = state.store.run_events(id, after, limit).await?;

    // A full page may have more after it: `next_after` is the `after` of the next page.
    let next_after = (events.len() == limit as usize)
        .then(|| events.last().map(|event| event.id))
        .flatten();
    Ok(Json(json!({"events": events, "next_after": next_after})))
}

pub(crate) async fn workflows(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let workflows: Vec<WorkflowView> = state.store.list_workflows(&caller.project).await?;
    let mut kinds: Vec<String> = state.store.known_kinds().await?.into_iter().collect();
    kinds.sort();
    Ok(Json(json!({"workflows": workflows, "kinds": kinds})))
}

/// Workers serve every project, so any valid token may list them.
pub(crate) async fn workers(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"workers": state.store.list_workers().await?})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(body: Value) -> String {
        match SubmitRequest::from_json(body) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn submit_body_shape_errors_name_the_field() {
        let cases = [
            (json!({"workflow": 5}), ["workflow", "5", "string"]),
            (json!([]), ["JSON object", "an array", "workflow"]),
            (json!("flights"), ["JSON object", "\"flights\"", "workflow"]),
            (json!({"spec": 7}), ["spec", "7", "YAML"]),
            (
                json!({"workflow": "flights", "idempotency_key": true}),
                ["idempotency_key", "true", "string"],
            ),
            (
                json!({"workflow": "flights", "inputs": {}}),
                ["`inputs`", "`input`", "takes"],
            ),
        ];
        for (body, expected) in cases {
            let message = rejection(body.clone());
            for part in expected {
                assert!(
                    message.contains(part),
                    "the error for {body} contains {part:?}: {message}"
                );
            }
        }
    }

    #[test]
    fn submit_body_accepts_null_as_absent() {
        let request = SubmitRequest::from_json(
            json!({"workflow": "flights", "spec": null, "idempotency_key": null}),
        )
        .expect("a valid body");
        assert!(matches!(request.submission, Submission::Workflow(name) if name == "flights"));
        assert_eq!(request.input, Value::Null);
        assert_eq!(request.idempotency_key, None);
    }
}
