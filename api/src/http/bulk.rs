//! Handlers for bulk retry and cancel.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use caraml_engine::{BulkFilter, BulkOutcome};
use serde::Deserialize;

use super::{ApiError, AppState, parse_time};

/// The filter of a bulk action. Times are RFC 3339; each range includes `since` and excludes
/// `until`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkRequest {
    workflow: Option<String>,
    status: Option<String>,
    created_since: Option<String>,
    created_until: Option<String>,
    finished_since: Option<String>,
    finished_until: Option<String>,
    #[serde(default)]
    all: bool,
    limit: Option<u32>,
}

impl BulkRequest {
    fn into_filter(self) -> Result<BulkFilter, ApiError> {
        let time = |name: &str, value: Option<String>| {
            value.as_deref().map(|t| parse_time(name, t)).transpose()
        };
        Ok(BulkFilter {
            created_since: time("created_since", self.created_since)?,
            created_until: time("created_until", self.created_until)?,
            finished_since: time("finished_since", self.finished_since)?,
            finished_until: time("finished_until", self.finished_until)?,
            workflow: self.workflow,
            status: self.status,
            all: self.all,
            limit: self.limit,
        })
    }
}

pub(crate) async fn retry(
    State(state): State<AppState>,
    body: Result<Json<BulkRequest>, JsonRejection>,
) -> Result<Json<BulkOutcome>, ApiError> {
    let Json(request) = body?;
    let filter = request.into_filter()?;
    Ok(Json(state.store.bulk_retry(&filter).await?))
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    body: Result<Json<BulkRequest>, JsonRejection>,
) -> Result<Json<BulkOutcome>, ApiError> {
    let Json(request) = body?;
    let filter = request.into_filter()?;
    Ok(Json(state.store.bulk_cancel(&filter).await?))
}
