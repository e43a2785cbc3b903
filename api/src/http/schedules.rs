//! Handlers for cron schedules.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use caraml_engine::{MissedTicks, NewSchedule, ScheduleView};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::JsonBody;
use super::{ApiError, AppState};
use crate::auth::Caller;

/// Routes of the schedule endpoints, merged into the API's router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/schedules", post(create).get(list))
        .route("/v1/schedules/{name}", get(get_one).delete(delete))
        .route("/v1/schedules/{name}/pause", post(pause))
        .route("/v1/schedules/{name}/resume", post(resume))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    cron: String,
    workflow: String,
    timezone: Option<String>,
    #[serde(default)]
    input: Value,
    /// Parsed here rather than by serde, so that an invalid value gets a message with the
    /// accepted values.
    missed: Option<String>,
    #[serde(default)]
    paused: bool,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    caller.require_editor("creating a schedule")?;
    let request: CreateRequest = serde_json::from_value(body).map_err(|err| {
        ApiError::BadRequest(format!(
            "the schedule is not valid: {err}; send {{\"name\": NAME, \"cron\": \"0 * * * *\", \"workflow\": NAME, \"timezone\": \"Europe/Berlin\", \"input\": {{...}}, \"missed\": \"skip\" or \"run_once\"}}"
        ))
    })?;
    let missed = match request.missed {
        Some(text) => text.parse::<MissedTicks>()?,
        None => MissedTicks::default(),
    };
    let mut schedule = NewSchedule::new(request.name, request.cron, request.workflow)
        .input(request.input)
        .missed(missed)
        .paused(request.paused);
    if let Some(timezone) = request.timezone {
        schedule = schedule.timezone(timezone);
    }
    let created = state
        .store
        .create_schedule(&caller.project, schedule)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"schedules": state.store.list_schedules(&caller.project).await?}),
    ))
}

async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(
        state.store.get_schedule(&caller.project, &name).await?,
    ))
}

async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    change(&state, &caller, &name, "pausing a schedule").await?;
    Ok(Json(
        state.store.pause_schedule(&caller.project, &name).await?,
    ))
}

async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    change(&state, &caller, &name, "resuming a schedule").await?;
    Ok(Json(
        state.store.resume_schedule(&caller.project, &name).await?,
    ))
}

async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    change(&state, &caller, &name, "deleting a schedule").await?;
    Ok(Json(
        state.store.delete_schedule(&caller.project, &name).await?,
    ))
}

/// Checks that the schedule exists in the caller's project before the role, so that a
/// viewer learns nothing of other projects' schedules from a 403.
async fn change(
    state: &AppState,
    caller: &Caller,
    name: &str,
    action: &str,
) -> Result<(), ApiError> {
    state.store.get_schedule(&caller.project, name).await?;
    caller.require_editor(action)
}
