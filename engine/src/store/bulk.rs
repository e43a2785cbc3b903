//! Bulk actions: cancel or resume every run that a filter selects, in short transactions of
//! [`BULK_BATCH`] runs, so that a large selection never keeps one long transaction open.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::Store;
use super::control::Acted;
use super::query::RUN_STATUSES;
use crate::error::{Error, Result};

/// Maximum runs one bulk call acts on. A call that matched more sets `truncated`, and the
/// caller calls again for the rest. Runs already acted on no longer match, because their
/// status changed.
pub const MAX_BULK: u32 = 10_000;

/// Runs per transaction of a bulk action.
const BULK_BATCH: usize = 100;

/// Selects runs for a bulk action. Time ranges include `since` and exclude `until`. A filter
/// that sets nothing must set `all`, so that acting on every run is always asked for by name.
/// Runs of services are selected but left alone, and listed as skipped, because their
/// services control them.
#[derive(Debug, Clone, Default)]
pub struct BulkFilter {
    /// Every API caller acts on one project; `None` selects runs of all projects.
    pub project: Option<String>,
    pub workflow: Option<String>,
    /// One status the action applies to; by default, every such status.
    pub status: Option<String>,
    pub created_since: Option<DateTime<Utc>>,
    pub created_until: Option<DateTime<Utc>>,
    pub finished_since: Option<DateTime<Utc>>,
    pub finished_until: Option<DateTime<Utc>>,
    /// Acts on every run the action applies to when nothing else is set.
    pub all: bool,
    /// Maximum runs to act on, up to [`MAX_BULK`], which is also the default.
    pub limit: Option<u32>,
}

impl BulkFilter {
    fn is_empty(&self) -> bool {
        self.workflow.is_none()
            && self.status.is_none()
            && self.created_since.is_none()
            && self.created_until.is_none()
            && self.finished_since.is_none()
            && self.finished_until.is_none()
    }
}

/// A bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    /// Resume failed and cancelled runs, as [`Store::retry_run`] does.
    Retry,
    /// Cancel queued and running runs, as [`Store::cancel_run`] does.
    Cancel,
}

impl BulkAction {
    fn name(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Cancel => "cancel",
        }
    }

    /// Statuses of the runs the action applies to.
    fn statuses(self) -> &'static [&'static str] {
        match self {
            Self::Retry => &["failed", "cancelled"],
            Self::Cancel => &["queued", "running"],
        }
    }
}

/// A selected run that the action left unchanged, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SkippedRun {
    pub id: Uuid,
    pub reason: String,
}

/// Result of a bulk action.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BulkOutcome {
    pub action: &'static str,
    /// Runs the action changed.
    pub affected: usize,
    /// Ids of the runs the action changed, oldest first.
    pub run_ids: Vec<Uuid>,
    /// Selected runs the action left alone, with the reason: they belong to a service, their
    /// status changed after the selection, or (for retry) some of their tasks are still
    /// stopping.
    pub skipped: Vec<SkippedRun>,
    /// Whether more runs matched than `limit`; the rest are left for another call.
    pub truncated: bool,
    pub limit: u32,
    /// Message with the next step, set when `truncated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Store {
    /// Resumes the failed and cancelled runs that `filter` selects, oldest first.
    pub async fn bulk_retry(&self, filter: &BulkFilter) -> Result<BulkOutcome> {
        self.bulk(BulkAction::Retry, filter).await
    }

    /// Cancels the queued and running runs that `filter` selects, oldest first.
    pub async fn bulk_cancel(&self, filter: &BulkFilter) -> Result<BulkOutcome> {
        self.bulk(BulkAction::Cancel, filter).await
    }

    async fn bulk(&self, action: BulkAction, filter: &BulkFilter) -> Result<BulkOutcome> {
        let (statuses, limit) = check_filter(action, filter)?;
        let mut selected: Vec<(Uuid, Option<String>)> = sqlx::query_as(
            "SELECT id,
                    (SELECT s.name FROM services s
                     WHERE runs.id IN (s.run_id, s.candidate_run_id, s.retiring_run_id)
                     LIMIT 1) AS service
             FROM runs
             WHERE status = ANY($1)
               AND ($2::text IS NULL OR workflow = $2)
               AND ($8::text IS NULL OR project = $8)
               AND ($3::timestamptz IS NULL OR created_at >= $3)
               AND ($4::timestamptz IS NULL OR created_at < $4)
               AND ($5::timestamptz IS NULL OR finished_at >= $5)
               AND ($6::timestamptz IS NULL OR finished_at < $6)
             ORDER BY id
             LIMIT $7",
        )
        .bind(&statuses)
        .bind(&filter.workflow)
        .bind(filter.created_since)
        .bind(filter.created_until)
        .bind(filter.finished_since)
        .bind(filter.finished_until)
        .bind(i64::from(limit) + 1)
        .bind(&filter.project)
        .fetch_all(&self.pool)
        .await?;
        let truncated = selected.len() > limit as usize;
        selected.truncate(limit as usize);

        let mut outcome = BulkOutcome {
            action: action.name(),
            affected: 0,
            run_ids: Vec::new(),
            skipped: Vec::new(),
            truncated,
            limit,
            message: truncated.then(|| {
                format!(
                    "more than {limit} runs matched; this call acted on the oldest {limit}, call again to act on the rest"
                )
            }),
        };
        // A service's runs follow their service: a run retried behind a stopped service
        // would serve with no way to stop it by name.
        let mut run_ids = Vec::with_capacity(selected.len());
        for (id, service) in selected {
            match service {
                None => run_ids.push(id),
                Some(name) => outcome.skipped.push(SkippedRun {
                    id,
                    reason: format!(
                        "run {id} belongs to service `{name}`; control it with `caraml service restart {name}` or `caraml service stop {name}`"
                    ),
                }),
            }
        }
        for batch in run_ids.chunks(BULK_BATCH) {
            let acted = match action {
                BulkAction::Retry => self.retry_batch(batch).await?,
                BulkAction::Cancel => self.cancel_batch(batch).await?,
            };
            for (run_id, acted) in acted {
                match acted {
                    Acted::Changed { tasks, .. } => {
                        tracing::debug!(run.id = %run_id, action = action.name(), tasks, "bulk action applied");
                        outcome.run_ids.push(run_id);
                    }
                    Acted::Unchanged(status) => outcome.skipped.push(SkippedRun {
                        id: run_id,
                        reason: format!("run {run_id} already has status `{status}`"),
                    }),
                    Acted::Rejected(err) => outcome.skipped.push(SkippedRun {
                        id: run_id,
                        reason: err.to_string(),
                    }),
                }
            }
        }
        outcome.affected = outcome.run_ids.len();
        tracing::info!(
            action = action.name(),
            runs.affected = outcome.affected,
            runs.skipped = outcome.skipped.len(),
            truncated,
            "bulk action finished"
        );
        Ok(outcome)
    }
}

/// Checks a filter for `action`; returns the statuses to select and the limit.
fn check_filter(action: BulkAction, filter: &BulkFilter) -> Result<(Vec<String>, u32)> {
    let name = action.name();
    if filter.is_empty() && !filter.all {
        return Err(Error::InvalidInput(format!(
            "the filter is empty, so it would {name} every run; select runs by workflow, status or time range, or set \"all\": true (--all on the command line) to {name} all of them"
        )));
    }
    let applies_to = action.statuses();
    let statuses = match &filter.status {
        None => applies_to.iter().map(|s| (*s).to_owned()).collect(),
        Some(status) if !RUN_STATUSES.contains(&status.as_str()) => {
            return Err(Error::InvalidInput(format!(
                "status `{}` is not a run status; use one of {}",
                status.escape_debug(),
                RUN_STATUSES.join(", ")
            )));
        }
        Some(status) if !applies_to.contains(&status.as_str()) => {
            return Err(Error::InvalidInput(format!(
                "runs with status `{status}` cannot be {}; use status {}",
                match action {
                    BulkAction::Retry => "retried",
                    BulkAction::Cancel => "cancelled",
                },
                applies_to.join(" or ")
            )));
        }
        Some(status) => vec![status.clone()],
    };
    if action == BulkAction::Cancel
        && (filter.finished_since.is_some() || filter.finished_until.is_some())
    {
        return Err(Error::InvalidInput(
            "runs that can be cancelled have not finished, so a finished time range selects none; select them by created time instead".to_owned(),
        ));
    }
    check_range("created", filter.created_since, filter.created_until)?;
    check_range("finished", filter.finished_since, filter.finished_until)?;
    let limit = filter.limit.unwrap_or(MAX_BULK);
    if limit == 0 || limit > MAX_BULK {
        return Err(Error::InvalidInput(format!(
            "limit is {limit}; use 1 to {MAX_BULK}"
        )));
    }
    Ok((statuses, limit))
}

fn check_range(
    what: &str,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<()> {
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        return Err(Error::InvalidInput(format!(
            "{what} since ({since}) is not before {what} until ({until}); give a time range that starts before it ends"
        )));
    }
    Ok(())
}
