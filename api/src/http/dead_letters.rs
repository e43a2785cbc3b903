//! Handler for the dead-letter list.

use axum::Json;
use axum::extract::State;
use caraml_engine::{DeadLetterFilter, DeadLetterPage};

use super::extract::QueryParams;
use super::{ApiError, AppState, parse_time};

/// Largest page of dead letters one request returns.
const MAX_DEAD_LETTER_PAGE: u32 = 500;

pub(crate) async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<DeadLetterPage>, ApiError> {
    query.allow_only(
        "GET /v1/dead-letters",
        &["workflow", "since", "until", "cursor", "limit"],
    )?;
    let time = |name: &str| -> Result<_, ApiError> {
        query
            .text(
                name,
                "give an RFC 3339 time such as 2026-12-05T10:00:00Z, or leave it out",
            )?
            .as_deref()
            .map(|t| parse_time(name, t))
            .transpose()
    };
    let filter = DeadLetterFilter {
        workflow: query.text(
            "workflow",
            "give a workflow name, or leave the parameter out to list every workflow",
        )?,
        since: time("since")?,
        until: time("until")?,
        cursor: query.text("cursor", "give the next_cursor of the previous page")?,
        limit: query
            .whole_number("limit", 1, MAX_DEAD_LETTER_PAGE)?
            .unwrap_or(50),
    };
    Ok(Json(state.store.list_dead_letters(&filter).await?))
}
