//! Handlers for bulk retry and cancel.

use axum::Json;
use axum::extract::State;
use caraml_engine::{BulkFilter, BulkOutcome};
use serde::Deserialize;

use super::extract::{JsonBody, body_as};
use super::{ApiError, AppState, parse_time};
use crate::auth::Caller;

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
    fn into_filter(self, project: String) -> Result<BulkFilter, ApiError> {
        let time = |name: &str, value: Option<String>| {
            value.as_deref().map(|t| parse_time(name, t)).transpose()
        };
        Ok(BulkFilter {
            project: Some(project),
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

const BULK_SHAPE: &str = r#"{"workflow": NAME, "status": STATUS, "created_since": TIME, "created_until": TIME, "finished_since": TIME, "finished_until": TIME, "all": false, "limit": 1000}"#;

pub(crate) async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<BulkOutcome>, ApiError> {
    caller.require_editor("retrying runs")?;
    let request: BulkRequest = body_as(body, BULK_SHAPE)?;
    let filter = request.into_filter(caller.project)?;
    Ok(Json(state.store.bulk_retry(&filter).await?))
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<BulkOutcome>, ApiError> {
    caller.require_editor("cancelling runs")?;
    let request: BulkRequest = body_as(body, BULK_SHAPE)?;
    let filter = request.into_filter(caller.project)?;
    Ok(Json(state.store.bulk_cancel(&filter).await?))
}
