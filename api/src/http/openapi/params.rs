//! Query and path parameters of the endpoints. The handlers read them with
//! [`QueryParams`](super::super::extract::QueryParams), which rejects any parameter not
//! listed here with a 400.

#![allow(dead_code)]

use utoipa::IntoParams;
use uuid::Uuid;

/// Query parameters of `GET /v1/runs`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunListQuery {
    /// Only runs with this status.
    #[param(inline)]
    status: Option<RunStatus>,
    /// Only runs of this workflow.
    #[param(min_length = 1)]
    workflow: Option<String>,
    /// Only runs created at or after this RFC 3339 time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Only runs created before this RFC 3339 time.
    #[param(format = DateTime)]
    to: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<Uuid>,
    /// Runs per page: 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The status of a run.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// Query parameters of `GET /v1/runs/{id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunQuery {
    /// `false` leaves the tasks out, for clients that poll a large run for its counts.
    tasks: Option<bool>,
}

/// Query parameters of `GET /v1/runs/counts`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunCountQuery {
    /// Only runs of this workflow.
    #[param(min_length = 1)]
    workflow: Option<String>,
    /// Only runs created at or after this RFC 3339 time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Only runs created before this RFC 3339 time.
    #[param(format = DateTime)]
    to: Option<String>,
}

/// Query parameters of `GET /v1/runs/{id}/logs`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// Only the lines of the task with this name.
    #[param(min_length = 1)]
    task: Option<String>,
    /// Only the lines of this attempt number.
    #[param(minimum = 1)]
    attempt: Option<i32>,
    /// The `next_after` of the previous page; 0, the default, starts at the first line.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Lines per page: 1 to 10,000, default 1,000.
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
}

/// Query parameters of `GET /v1/runs/{id}/events`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventQuery {
    /// The `next_after` of the previous page; 0, the default, starts at the first event.
    #[param(minimum = 0)]
    after: Option<i64>,
    /// Events per page: 1 to 10,000, default 10,000.
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<u32>,
}

/// Query parameters of `GET /v1/dead-letters`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeadLetterQuery {
    /// Only tasks of runs of this workflow.
    #[param(min_length = 1)]
    workflow: Option<String>,
    /// Only tasks that failed at or after this RFC 3339 time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only tasks that failed before this RFC 3339 time.
    #[param(format = DateTime)]
    until: Option<String>,
    /// The `next_cursor` of the previous page, passed unchanged.
    #[param(min_length = 1)]
    cursor: Option<String>,
    /// Dead letters per page: 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The run id in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RunPath {
    /// A run id, a UUID such as `01934a6e-7b1c-7d2e-8f90-123456789abc`.
    id: Uuid,
}
