//! Small reads for views that refresh often: a run's progress, its tasks' states, status
//! counts over many runs, and one task's output.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::Store;
use super::query::{EventView, RunFilter, first_id_at};
use crate::error::{Error, Result};

/// A run's status and counts, with the id of its newest event. Every state change of a
/// run or task appends an event, so an unchanged event id means nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RunProgress {
    pub status: String,
    pub tasks_total: i32,
    pub tasks_succeeded: i32,
    pub tasks_failed: i32,
    pub tasks_skipped: i32,
    pub tasks_cancelled: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_event_id: i64,
}

/// A task's state without its input and output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TaskProgress {
    /// Position of the task in the run's spec.
    pub idx: i32,
    pub status: String,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The error's first [`MAX_ERROR_CHARS`] characters.
    pub error: Option<String>,
}

/// The start of a task's output as JSON text.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OutputPreview {
    pub idx: i32,
    pub text: String,
    /// True when `text` is shorter than the whole output.
    pub truncated: bool,
}

/// Maximum characters of an error that [`TaskProgress`] carries.
pub const MAX_ERROR_CHARS: i32 = 500;

impl Store {
    /// Returns a run's status, counts and newest event id.
    pub async fn run_progress(&self, run_id: Uuid) -> Result<RunProgress> {
        sqlx::query_as(
            "SELECT status, tasks_total, tasks_succeeded, tasks_failed, tasks_skipped,
                    tasks_cancelled, started_at, finished_at,
                    coalesce((SELECT max(e.id) FROM events e WHERE e.run_id = r.id), 0) AS last_event_id
             FROM runs r WHERE id = $1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::run_not_found(run_id))
    }

    /// Returns the state of every task of a run, in spec order.
    pub async fn task_progress(&self, run_id: Uuid) -> Result<Vec<TaskProgress>> {
        Ok(sqlx::query_as(
            "SELECT idx, status, attempt AS attempts, started_at, finished_at,
                    left(error, $2) AS error
             FROM task_runs WHERE run_id = $1 ORDER BY idx",
        )
        .bind(run_id)
        .bind(MAX_ERROR_CHARS)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Returns the first `max_chars` characters of the outputs of the tasks at `indexes`
    /// that have an output.
    pub async fn output_previews(
        &self,
        run_id: Uuid,
        indexes: &[i32],
        max_chars: i32,
    ) -> Result<Vec<OutputPreview>> {
        Ok(sqlx::query_as(
            "SELECT idx, left(output::text, $3) AS text, length(output::text) > $3 AS truncated
             FROM task_runs
             WHERE run_id = $1 AND idx = ANY($2) AND output IS NOT NULL
             ORDER BY idx",
        )
        .bind(run_id)
        .bind(indexes)
        .bind(max_chars)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Returns the output of the task `task` of a run: `None` when it has none yet.
    pub async fn task_output(&self, run_id: Uuid, task: &str) -> Result<Option<Value>> {
        let row: Option<(Option<Value>,)> =
            sqlx::query_as("SELECT output FROM task_runs WHERE run_id = $1 AND name = $2")
                .bind(run_id)
                .bind(task)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some((output,)) => Ok(output),
            None => {
                // Tell a missing run from a missing task.
                self.run_summary(run_id).await?;
                Err(Error::NotFound {
                    what: "task",
                    id: format!("{task}` of run `{run_id}"),
                })
            }
        }
    }

    /// Returns the newest `limit` events of a run, newest first.
    pub async fn recent_events(&self, run_id: Uuid, limit: u32) -> Result<Vec<EventView>> {
        Ok(sqlx::query_as(
            "SELECT e.id, e.kind, t.name AS task, e.attempt, e.at, e.detail
             FROM events e
             LEFT JOIN task_runs t ON t.run_id = e.run_id AND t.idx = e.task_idx
             WHERE e.run_id = $1
             ORDER BY e.id DESC
             LIMIT $2",
        )
        .bind(run_id)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Counts runs by status in one grouped query. It applies the filter's workflow and
    /// creation times, and ignores its status, cursor and limit.
    pub async fn count_runs_by_status(&self, filter: &RunFilter) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT status, count(*) FROM runs
             WHERE ($1::text IS NULL OR workflow = $1)
               AND ($2::uuid IS NULL OR id >= $2)
               AND ($3::uuid IS NULL OR id < $3)
             GROUP BY status",
        )
        .bind(&filter.workflow)
        .bind(filter.created_since.map(first_id_at))
        .bind(filter.created_until.map(first_id_at))
        .fetch_all(&self.pool)
        .await?)
    }
}
