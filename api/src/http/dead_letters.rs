//! Handler for the dead-letter list.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use caraml_engine::{DeadLetterFilter, DeadLetterPage};
use serde::Deserialize;

use super::{ApiError, AppState, parse_time};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadLetterQuery {
    workflow: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let Query(query) = query?;
    let filter = DeadLetterFilter {
        workflow: query.workflow,
        since: query
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
        cursor: query.cursor,
        limit: query.limit.unwrap_or(50),
    };
    Ok(Json(state.store.list_dead_letters(&filter).await?))
}
