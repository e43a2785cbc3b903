//! Read models for the API: runs with their tasks, run lists, events and workflows.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
// The only dynamic SQL here splices in the constant column list RUN_COLUMNS.
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::Store;
use crate::error::{Error, Result};

/// Statuses a run can have.
pub const RUN_STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

/// Largest page of runs one request returns.
pub const MAX_PAGE: u32 = 500;

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct RunView {
    pub id: Uuid,
    pub workflow: String,
    pub workflow_version: String,
    pub status: String,
    pub input: Value,
    pub idempotency_key: Option<String>,
    pub tasks_total: i32,
    pub tasks_succeeded: i32,
    pub tasks_failed: i32,
    pub tasks_skipped: i32,
    pub tasks_cancelled: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The run whose task started this one as a child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_task_idx: Option<i32>,
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskView>>,
    /// Runs that tasks of this run started as children.
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<ChildView>>,
}

/// A child run, as its parent run lists it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct ChildView {
    pub id: Uuid,
    pub workflow: String,
    pub status: String,
    /// The parent task that started it.
    pub task: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskView {
    pub name: String,
    pub kind: String,
    pub status: String,
    pub depends_on: Vec<String>,
    pub queue: String,
    /// Attempts started so far, across resumes.
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub run_at: DateTime<Utc>,
    pub error: Option<String>,
    pub output: Option<Value>,
    /// Records of the task's durable waits: timer deadlines, signal timeouts, child runs.
    #[serde(default, skip_serializing_if = "is_empty_object")]
    pub waits: Value,
    /// The signal a waiting task waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
}

fn is_empty_object(value: &Value) -> bool {
    value.as_object().is_none_or(serde_json::Map::is_empty)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventView {
    pub id: i64,
    pub kind: String,
    pub task: Option<String>,
    pub attempt: Option<i32>,
    pub at: DateTime<Utc>,
    pub detail: Option<Value>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WorkflowView {
    pub name: String,
    pub version: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub spec: Value,
}

/// Filter for listing runs. Pages go from newest to oldest, and `before` is the
/// `next_cursor` of the previous page. `created_since` is inclusive and `created_until`
/// exclusive.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// NOTE: runs carry no project yet, so the queries ignore this field.
    pub project: Option<String>,
    pub status: Option<String>,
    pub workflow: Option<String>,
    pub created_since: Option<DateTime<Utc>>,
    pub created_until: Option<DateTime<Utc>>,
    pub before: Option<Uuid>,
    pub limit: u32,
}

/// Returns the smallest UUIDv7 of the millisecond `time` falls in. Run ids are UUIDv7,
/// whose first 48 bits are the creation time in Unix milliseconds, so a range of creation
/// times is a range of ids, which the primary key serves without reading `created_at`.
pub(crate) fn first_id_at(time: DateTime<Utc>) -> Uuid {
    let millis = u128::try_from(time.timestamp_millis()).unwrap_or(0);
    Uuid::from_u128(millis.min((1 << 48) - 1) << 80)
}

#[derive(Debug, Clone, Serialize)]
pub struct RunPage {
    pub runs: Vec<RunView>,
    pub next_cursor: Option<Uuid>,
}

const RUN_COLUMNS: &str = "id, workflow, workflow_version, status, input, idempotency_key, tasks_total,
    tasks_succeeded, tasks_failed, tasks_skipped, tasks_cancelled, created_at, started_at, finished_at,
    parent_run_id, parent_task_idx";

type TaskRow = (
    i32,
    String,
    String,
    String,
    Vec<i32>,
    String,
    i32,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    Option<String>,
    Option<Value>,
    Value,
    Option<Vec<String>>,
    Option<String>,
);

impl Store {
    /// Returns a run with its tasks in spec order.
    pub async fn get_run(&self, run_id: Uuid) -> Result<RunView> {
        let mut run = self.run_summary(run_id).await?;

        let rows: Vec<TaskRow> = sqlx::query_as(
            "SELECT idx, name, kind, status, parents, queue, attempt, started_at, finished_at,
                    run_at, error, output, waits, waiting_for, concurrency_key
             FROM task_runs WHERE run_id = $1 ORDER BY idx",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        let names: Vec<String> = rows.iter().map(|row| row.1.clone()).collect();
        let tasks = rows
            .into_iter()
            .map(
                |(
                    _,
                    name,
                    kind,
                    status,
                    parents,
                    queue,
                    attempts,
                    started_at,
                    finished_at,
                    run_at,
                    error,
                    output,
                    waits,
                    waiting_for,
                    concurrency_key,
                )| {
                    TaskView {
                        depends_on: parents
                            .iter()
                            .filter_map(|&p| names.get(p as usize).cloned())
                            .collect(),
                        name,
                        kind,
                        status,
                        queue,
                        attempts,
                        started_at,
                        finished_at,
                        run_at,
                        error,
                        output,
                        waits,
                        waiting_for,
                        concurrency_key,
                    }
                },
            )
            .collect();
        run.tasks = Some(tasks);
        let children: Vec<ChildView> = sqlx::query_as(
            "SELECT c.id, c.workflow, c.status, coalesce(t.name, '') AS task
             FROM runs c LEFT JOIN task_runs t ON t.run_id = c.parent_run_id AND t.idx = c.parent_task_idx
             WHERE c.parent_run_id = $1 ORDER BY c.id LIMIT 1000",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        run.children = Some(children);
        Ok(run)
    }

    /// Returns the status of a run, without its tasks.
    pub async fn run_summary(&self, run_id: Uuid) -> Result<RunView> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"
        )))
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::run_not_found(run_id))
    }

    /// Lists runs, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage> {
        if let Some(status) = &filter.status
            && !RUN_STATUSES.contains(&status.as_str())
        {
            return Err(Error::InvalidInput(format!(
                "status `{status}` is not a run status; use one of {}",
                RUN_STATUSES.join(", ")
            )));
        }
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut runs: Vec<RunView> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::text IS NULL OR workflow = $2)
               AND ($3::uuid IS NULL OR id < $3)
               AND ($5::uuid IS NULL OR id >= $5)
               AND ($6::uuid IS NULL OR id < $6)
             ORDER BY id DESC
             LIMIT $4"
        )))
        .bind(&filter.status)
        .bind(&filter.workflow)
        .bind(filter.before)
        .bind(i64::from(limit) + 1)
        .bind(filter.created_since.map(first_id_at))
        .bind(filter.created_until.map(first_id_at))
        .fetch_all(&self.pool)
        .await?;
        let next_cursor = if runs.len() > limit as usize {
            runs.truncate(limit as usize);
            runs.last().map(|run| run.id)
        } else {
            None
        };
        Ok(RunPage { runs, next_cursor })
    }

    /// Returns the events of a run in order, after event id `after`.
    pub async fn run_events(&self, run_id: Uuid, after: i64, limit: u32) -> Result<Vec<EventView>> {
        self.run_summary(run_id).await?;
        Ok(sqlx::query_as(
            "SELECT e.id, e.kind, t.name AS task, e.attempt, e.at, e.detail
             FROM events e
             LEFT JOIN task_runs t ON t.run_id = e.run_id AND t.idx = e.task_idx
             WHERE e.run_id = $1 AND e.id > $2
             ORDER BY e.id
             LIMIT $3",
        )
        .bind(run_id)
        .bind(after)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Lists the newest version of every workflow.
    pub async fn list_workflows(&self) -> Result<Vec<WorkflowView>> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT ON (name) name, version, source, created_at, spec
             FROM workflows ORDER BY name, created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Counts ready tasks per queue that are due now.
    pub async fn queue_depths(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT queue, count(*) FROM task_runs
             WHERE status = 'ready' AND run_at <= now() GROUP BY queue",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
