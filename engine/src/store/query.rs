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

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RunView {
    pub id: Uuid,
    pub project: String,
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
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ChildView {
    pub id: Uuid,
    pub workflow: String,
    pub status: String,
    /// The parent task that started it.
    pub task: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EventView {
    pub id: i64,
    pub kind: String,
    pub task: Option<String>,
    pub attempt: Option<i32>,
    pub at: DateTime<Utc>,
    pub detail: Option<Value>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
    /// Every API caller lists one project; `None` lists all projects.
    pub project: Option<String>,
    pub status: Option<String>,
    pub workflow: Option<String>,
    /// Runs created at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Runs created before this time.
    pub to: Option<DateTime<Utc>>,
    pub before: Option<Uuid>,
    pub limit: u32,
}

/// Runs of one project per status, as the dashboard's header shows them.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RunCounts {
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunPage {
    pub runs: Vec<RunView>,
    pub next_cursor: Option<Uuid>,
}

const RUN_COLUMNS: &str = "id, project, workflow, workflow_version, status, input, idempotency_key, tasks_total,
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

    /// Returns the project a run belongs to.
    pub async fn run_project(&self, run_id: Uuid) -> Result<String> {
        let row: Option<(String,)> = sqlx::query_as("SELECT project FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(project,)| project)
            .ok_or_else(|| Error::run_not_found(run_id))
    }

    /// Lists runs, newest first.
    ///
    /// Run ids are UUIDv7, so a time range becomes a range of ids and every filter walks one
    /// of the `(project, ..., id DESC)` indexes in order. The statement holds only the
    /// conditions the filter sets: a prepared statement with `$n IS NULL OR ...` branches can
    /// fall back to a generic plan that no longer uses the index of the filter given.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage> {
        check_status(filter.status.as_deref())?;
        check_range(filter)?;
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let (sql, bounds) = run_conditions(filter);
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs {sql} ORDER BY id DESC LIMIT $7");
        let mut runs: Vec<RunView> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(&filter.project)
            .bind(&filter.status)
            .bind(&filter.workflow)
            .bind(bounds.0)
            .bind(bounds.1)
            .bind(filter.before)
            .bind(i64::from(limit) + 1)
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

    /// Counts the runs a filter selects, per status; the filter's status, cursor and limit
    /// are ignored.
    pub async fn count_runs(&self, filter: &RunFilter) -> Result<RunCounts> {
        check_range(filter)?;
        let filter = RunFilter {
            status: None,
            before: None,
            ..filter.clone()
        };
        let (sql, bounds) = run_conditions(&filter);
        let sql = format!("SELECT status, count(*) FROM runs {sql} GROUP BY status");
        let rows: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(&filter.project)
            .bind(None::<String>)
            .bind(&filter.workflow)
            .bind(bounds.0)
            .bind(bounds.1)
            .bind(None::<Uuid>)
            .fetch_all(&self.pool)
            .await?;
        let mut counts = RunCounts::default();
        for (status, count) in rows {
            match status.as_str() {
                "queued" => counts.queued = count,
                "running" => counts.running = count,
                "succeeded" => counts.succeeded = count,
                "failed" => counts.failed = count,
                "cancelled" => counts.cancelled = count,
                _ => {}
            }
        }
        Ok(counts)
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

    /// Lists the newest version of every workflow `project` can run: those defined in Rust
    /// and the specs submitted to the project.
    pub async fn list_workflows(&self, project: &str) -> Result<Vec<WorkflowView>> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT ON (name) name, version, source, created_at, spec
             FROM workflows WHERE project IN ('', $1) ORDER BY name, created_at DESC",
        )
        .bind(project)
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

fn check_range(filter: &RunFilter) -> Result<()> {
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from >= to
    {
        return Err(Error::InvalidInput(format!(
            "from ({from}) is not before to ({to}); give a time range that starts before it ends"
        )));
    }
    Ok(())
}

fn check_status(status: Option<&str>) -> Result<()> {
    if let Some(status) = status
        && !RUN_STATUSES.contains(&status)
    {
        return Err(Error::InvalidInput(format!(
            "status `{status}` is not a run status; use one of {}",
            RUN_STATUSES.join(", ")
        )));
    }
    Ok(())
}

/// Builds the WHERE clause of a run filter over the parameters $1 project, $2 status,
/// $3 workflow, $4 and $5 the id bounds of the time range, $6 the cursor. Only the
/// conditions the filter sets are written; the others keep their parameter numbers.
fn run_conditions(filter: &RunFilter) -> (String, (Option<Uuid>, Option<Uuid>)) {
    let bounds = (filter.from.map(first_id_at), filter.to.map(first_id_at));
    let mut conditions = vec!["true"];
    if filter.project.is_some() {
        conditions.push("project = $1");
    }
    if filter.status.is_some() {
        conditions.push("status = $2");
    }
    if filter.workflow.is_some() {
        conditions.push("workflow = $3");
    }
    if bounds.0.is_some() {
        conditions.push("id >= $4");
    }
    if bounds.1.is_some() {
        conditions.push("id < $5");
    }
    if filter.before.is_some() {
        conditions.push("id < $6");
    }
    // Parameters the filter leaves unset still need a type, and a use PostgreSQL accepts.
    let unused = "AND ($1::text IS NULL OR true) AND ($2::text IS NULL OR true)
        AND ($3::text IS NULL OR true) AND ($4::uuid IS NULL OR true)
        AND ($5::uuid IS NULL OR true) AND ($6::uuid IS NULL OR true)";
    (
        format!("WHERE {} {unused}", conditions.join(" AND ")),
        bounds,
    )
}

/// Returns the smallest UUIDv7 of the millisecond `time`: every run created at or after
/// `time` has an id at least this large.
pub(crate) fn first_id_at(time: DateTime<Utc>) -> Uuid {
    let millis = time.timestamp_millis().clamp(0, (1 << 48) - 1) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}
