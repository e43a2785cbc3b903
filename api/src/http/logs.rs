//! The handler of `GET /v1/runs/{id}/logs`: the lines that a run's tasks wrote through their
//! logger, in the order they were stored.

use axum::Json;
use axum::extract::State;
use caraml_engine::{LogFilter, LogPage, MAX_LOG_PAGE};

use super::extract::{QueryParams, RunId};
use super::{ApiError, AppState};
use crate::auth::Caller;

/// Lines per page when the request sets no `limit`.
const DEFAULT_LOG_PAGE: u32 = 1_000;

pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    query: QueryParams,
) -> Result<Json<LogPage>, ApiError> {
    query.allow_only(
        "GET /v1/runs/{id}/logs",
        &["task", "attempt", "after", "limit"],
    )?;
    caller.require_run(&state.store, id).await?;
    let filter = LogFilter {
        task: query.text(
            "task",
            "give a task name of the run, or leave the parameter out for the lines of every task",
        )?,
        attempt: query.whole_number("attempt", 1, i32::MAX)?,
        after: query.log_line_id("after")?.unwrap_or(0),
        limit: query
            .whole_number("limit", 1, MAX_LOG_PAGE)?
            .unwrap_or(DEFAULT_LOG_PAGE),
    };
    Ok(Json(state.store.run_logs(id, &filter).await?))
}
