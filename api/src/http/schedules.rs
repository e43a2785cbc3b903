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
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
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
    let created = state.store.create_schedule(schedule).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        json!({"schedules": state.store.list_schedules().await?}),
    ))
}

async fn get_one(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.store.get_schedule(&name).await?))
}

async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.store.pause_schedule(&name).await?))
}

async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.store.resume_schedule(&name).await?))
}

async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(state.store.delete_schedule(&name).await?))
}
