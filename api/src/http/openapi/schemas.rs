//! Schemas for request bodies that handlers check field by field, and for response bodies
//! that handlers build with `json!`. The other schemas derive from the types the handlers
//! parse and return. Nothing constructs these types: they only describe JSON, and the
//! contract test against a live server checks that the responses match them.

#![allow(dead_code)]

use caraml_engine::{EventView, ScheduleView, WorkerRecord, WorkflowSpec, WorkflowView};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A workflow spec: a JSON object, or its JSON or YAML text as a string.
#[derive(ToSchema)]
#[serde(untagged)]
pub(crate) enum SpecDocument {
    Object(WorkflowSpec),
    Text(String),
}

/// A run to start: a registered workflow by name, or an inline spec. Exactly one of
/// `workflow` and `spec` is given.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"workflow": "flights", "input": {"out_dir": "/tmp/flights"}}))]
pub(crate) struct SubmitRunRequest {
    /// The name of a registered workflow; its latest stored version runs.
    #[schema(required = false, pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    workflow: Option<String>,
    /// An inline workflow spec, stored as a new version of the workflow it names.
    #[schema(required = false)]
    spec: Option<SpecDocument>,
    /// The run's input, passed to every task; `null` when left out.
    #[schema(required = false)]
    input: Value,
    /// A key that makes a repeated submission return the first run instead of a new one.
    #[schema(required = false)]
    idempotency_key: Option<String>,
}

/// A run as its submission left it.
#[derive(ToSchema)]
pub(crate) struct SubmittedRun {
    id: Uuid,
    status: String,
    /// False when the idempotency key returned an existing run.
    created: bool,
}

/// A run's status after a cancel or retry.
#[derive(ToSchema)]
pub(crate) struct RunStatusChange {
    id: Uuid,
    status: String,
}

/// A page of a run's events, oldest first.
#[derive(ToSchema)]
pub(crate) struct EventPage {
    events: Vec<EventView>,
    /// The `after` of the next page; null when this page is the last.
    next_after: Option<i64>,
}

/// Stored workflows and the task kinds that workers registered.
#[derive(ToSchema)]
pub(crate) struct WorkflowList {
    workflows: Vec<WorkflowView>,
    kinds: Vec<String>,
}

/// Workers that sent a heartbeat in the last minute or stopped in the last hour.
#[derive(ToSchema)]
pub(crate) struct WorkerList {
    workers: Vec<WorkerRecord>,
}

#[derive(ToSchema)]
pub(crate) struct ScheduleList {
    schedules: Vec<ScheduleView>,
}

/// A workflow's retention.
#[derive(ToSchema)]
pub(crate) struct RetentionSetting {
    workflow: String,
    /// A duration such as `30d`, `off` when runs are kept forever, or null when the
    /// processes' default applies.
    retention: Option<String>,
}
