//! Handlers for bulk retry and cancel.

use axum::Json;
use axum::extract::State;
use caraml_engine::{BulkFilter, BulkOutcome};
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{JsonBody, body_as};
use super::{ApiError, AppState, parse_time};
use crate::auth::Caller;

/// The filter of a bulk action. Times are RFC 3339; each range includes `since` and excludes
/// `until`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"workflow": "flights", "status": "failed", "created_since": "2026-12-01T00:00:00Z"}))]
pub(crate) struct BulkRequest {
    #[schema(required = false, pattern = "^[A-Za-z0-9_.:-]{1,200}$")]
    workflow: Option<String>,
    /// A run status: `failed` or `cancelled` for retry, `queued` or `running` for cancel.
    #[schema(value_type = Option<crate::http::openapi::RunStatus>, required = false)]
    status: Option<String>,
    #[schema(required = false, format = DateTime)]
    created_since: Option<String>,
    #[schema(required = false, format = DateTime)]
    created_until: Option<String>,
    #[schema(required = false, format = DateTime)]
    finished_since: Option<String>,
    #[schema(required = false, format = DateTime)]
    finished_until: Option<String>,
    /// Selects every run the action applies to; an empty filter is rejected without it.
    #[serde(default)]
    all: bool,
    /// Maximum runs to act on: up to 10,000, which is also the default.
    #[schema(required = false, minimum = 1, maximum = 10_000)]
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
