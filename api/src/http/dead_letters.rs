//! Handler for the dead-letter list.

use axum::Json;
use axum::extract::State;
use caraml_engine::{DeadLetterFilter, DeadLetterPage};

use super::extract::QueryParams;
use super::{ApiError, AppState};
use crate::auth::Caller;

/// Largest page of dead letters one request returns.
const MAX_DEAD_LETTER_PAGE: u32 = 500;

pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> Result<Json<DeadLetterPage>, ApiError> {
    query.allow_only(
        "GET /v1/dead-letters",
        &["workflow", "since", "until", "cursor", "limit"],
    )?;
    let filter = DeadLetterFilter {
        project: Some(caller.project),
        workflow: query.text(
            "workflow",
            "give a workflow name, or leave the parameter out to list every workflow",
        )?,
        since: query.time("since")?,
        until: query.time("until")?,
        cursor: query.text("cursor", "give the next_cursor of the previous page")?,
        limit: query
            .whole_number("limit", 1, MAX_DEAD_LETTER_PAGE)?
            .unwrap_or(50),
    };
    Ok(Json(state.store.list_dead_letters(&filter).await?))
}
