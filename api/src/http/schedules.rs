//! Handlers for cron schedules.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use caraml_engine::{MissedTicks, NewSchedule, ScheduleView};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::extract::JsonBody;
use super::routes::Routes;
use super::{ApiError, AppState};
use crate::auth::Caller;

/// Adds the schedule endpoints to the route table.
pub(crate) fn routes(table: Routes) -> Routes {
    table
        .post("/v1/schedules", create)
        .get("/v1/schedules", list)
        .get("/v1/schedules/{name}", get_one)
        .delete("/v1/schedules/{name}", delete)
        .post("/v1/schedules/{name}/pause", pause)
        .post("/v1/schedules/{name}/resume", resume)
}

/// A schedule to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateScheduleRequest, example = json!({"name": "nightly-flights", "cron": "0 2 * * *", "workflow": "flights", "timezone": "Europe/Berlin"}))]
pub(crate) struct CreateRequest {
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    name: String,
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first.
    cron: String,
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    workflow: String,
    /// An IANA time zone; `UTC` when left out.
    #[schema(required = false)]
    timezone: Option<String>,
    #[serde(default)]
    input: Value,
    /// Parsed here rather than by serde, so that an invalid value gets a message with the
    /// accepted values.
    #[schema(value_type = Option<MissedTicks>, required = false)]
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
