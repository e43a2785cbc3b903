//! Signals and child runs: what waiting tasks wait for, and waking them.

use serde_json::Value;
use uuid::Uuid;

use super::{READY_CHANNEL, Store, Submission};
use crate::error::{Error, Result};
use crate::spec::check_name;

/// State of a child run, as its parent task reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChildState {
    /// Queued or running.
    Open,
    /// Succeeded, with the outputs of its final tasks by name.
    Succeeded(Value),
    /// Failed or cancelled, with the first task error.
    Ended {
        status: String,
        error: Option<String>,
    },
}

/// A signal as stored.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SignalView {
    pub id: i64,
    pub name: String,
    pub payload: Value,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Result of a signal delivery.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Delivered {
    pub signal: SignalView,
    /// Tasks of the run that the signal woke.
    pub woke_tasks: i64,
}

/// Deepest nesting of child runs: a workflow that starts itself stops here.
pub(crate) const MAX_CHILD_DEPTH: i32 = 32;

impl Store {
    /// Delivers a signal to a run. It is kept, so a task that waits for it later finds it,
    /// and it wakes the run's tasks that wait for it now.
    pub async fn send_signal(&self, run_id: Uuid, name: &str, payload: Value) -> Result<Delivered> {
        check_name("signal name", name).map_err(Error::InvalidInput)?;
        let mut tx = self.pool.begin().await?;
        let status: Option<(String,)> =
            sqlx::query_as("SELECT status FROM runs WHERE id = $1 FOR UPDATE")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (status,) = status.ok_or_else(|| Error::run_not_found(run_id))?;
        if !matches!(status.as_str(), "queued" | "running") {
            return Err(Error::Conflict(format!(
                "run {run_id} already ended with status `{status}`; signals go to queued or running runs"
            )));
        }
        let signal: SignalView = sqlx::query_as(
            "INSERT INTO signals (run_id, name, payload) VALUES ($1, $2, $3)
             RETURNING id, name, payload, at",
        )
        .bind(run_id)
        .bind(name)
        .bind(&payload)
        .fetch_one(&mut *tx)
        .await?;

        // A running task may be about to wait for this very signal: marking it woken makes
        // that wait resume at once instead of missing the delivery. The mark is the clock
        // time of this statement, not of this transaction's start, so that it is later than
        // the start of an attempt claimed while this transaction was open. Tasks not yet
        // running are locked here until the signal commits, so a worker claims them only
        // once they can see it.
        let (woke_tasks,): (i64,) = sqlx::query_as(
            "WITH woken AS (
                UPDATE task_runs
                SET woken_at = clock_timestamp(),
                    run_at = CASE WHEN status = 'waiting' THEN now() ELSE run_at END
                WHERE run_id = $1
                  AND (status IN ('blocked', 'ready', 'running')
                       OR (status = 'waiting' AND $2 = ANY (waiting_for)))
                RETURNING idx, status, queue
            ),
            events AS (
                INSERT INTO events (run_id, task_idx, kind, detail)
                SELECT $1, NULL::int4, 'run.signal', jsonb_build_object('name', $2::text, 'id', $4::int8)
            ),
            notified AS (
                SELECT count(pg_notify($3, queue)) AS queues
                FROM (SELECT DISTINCT queue FROM woken WHERE status = 'waiting') q
            )
            SELECT count(*) FILTER (WHERE woken.status = 'waiting') FROM woken, notified",
        )
        .bind(run_id)
        .bind(name)
        .bind(READY_CHANNEL)
        .bind(signal.id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(run.id = %run_id, signal = name, tasks.woken = woke_tasks, "signal delivered");
        Ok(Delivered { signal, woke_tasks })
    }

    /// Lists the signals delivered to a run, oldest first.
    pub async fn signals(&self, run_id: Uuid) -> Result<Vec<SignalView>> {
        Ok(sqlx::query_as(
            "SELECT id, name, payload, at FROM signals WHERE run_id = $1 ORDER BY id LIMIT 1000",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Returns the payload of the first signal `name` delivered to a run.
    pub(crate) async fn signal_payload(&self, run_id: Uuid, name: &str) -> Result<Option<Value>> {
        let row: Option<(Value,)> = sqlx::query_as(
            "SELECT payload FROM signals WHERE run_id = $1 AND name = $2 ORDER BY id LIMIT 1",
        )
        .bind(run_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(payload,)| payload))
    }

    /// Starts a run of `workflow` as the child of a task, or finds the one it started
    /// before under the same key.
    pub(crate) async fn submit_child(
        &self,
        parent_run: Uuid,
        parent_idx: i32,
        parent_name: &str,
        key: &str,
        workflow: &str,
        input: Value,
    ) -> Result<Uuid> {
        check_name("child key", key).map_err(Error::InvalidInput)?;
        // A child may start before its link to the parent is written, so the parent is
        // also read from the idempotency key, which is stored with the run itself.
        let (depth, project): (i32, String) = sqlx::query_as(
            "WITH RECURSIVE up(id, parent, depth) AS (
                SELECT id, coalesce(parent_run_id, key_parent(idempotency_key)), 1
                FROM runs WHERE id = $1
                UNION ALL
                SELECT r.id, coalesce(r.parent_run_id, key_parent(r.idempotency_key)), up.depth + 1
                FROM runs r JOIN up ON r.id = up.parent
                WHERE up.depth <= $2
            )
            SELECT coalesce(max(depth), 1), (SELECT project FROM runs WHERE id = $1) FROM up",
        )
        .bind(parent_run)
        .bind(MAX_CHILD_DEPTH)
        .fetch_one(&self.pool)
        .await?;
        if depth >= MAX_CHILD_DEPTH {
            return Err(Error::InvalidInput(format!(
                "run {parent_run} is {depth} levels deep in child runs, the most allowed; check that workflow `{workflow}` does not start itself, directly or through another workflow"
            )));
        }
        // The parent's run id and node index name the task in fewer characters than its
        // name could, which keeps the key within the idempotency key's limit.
        let idempotency_key = format!("child:{parent_run}:{parent_idx}:{key}");
        // A child belongs to its parent's project, and runs a workflow that project can run.
        let submitted = self
            .submit_in(
                &project,
                Submission::Workflow(workflow.to_owned()),
                input,
                Some(idempotency_key),
            )
            .await?;

        // The link is written after the child exists. A child that ends before it has no
        // parent to wake, which is fine because the parent reads the child's state before
        // it waits.
        let (parent_status,): (String,) = sqlx::query_as(
            "WITH linked AS (
                UPDATE runs SET parent_run_id = $2, parent_task_idx = $3
                WHERE id = $1 AND parent_run_id IS NULL
            )
            SELECT status FROM runs WHERE id = $2",
        )
        .bind(submitted.id)
        .bind(parent_run)
        .bind(parent_idx)
        .fetch_one(&self.pool)
        .await?;
        tracing::info!(run.id = %parent_run, task.name = parent_name, child.id = %submitted.id, child.workflow = workflow, "child run started");
        if parent_status == "cancelled" {
            // The parent was cancelled while the child was being created.
            let _ = self.cancel_run(submitted.id).await;
        }
        Ok(submitted.id)
    }

    /// Reads the state of a child run.
    pub(crate) async fn child_state(&self, child: Uuid) -> Result<ChildState> {
        let row: Option<(String, Option<Value>, Option<String>)> = sqlx::query_as(
            "SELECT r.status,
                    CASE WHEN r.status = 'succeeded' THEN
                        (SELECT coalesce(jsonb_object_agg(t.name, coalesce(t.output, 'null')), '{}')
                         FROM task_runs t WHERE t.run_id = r.id AND cardinality(t.children) = 0)
                    END,
                    (SELECT t.name || ': ' || t.error FROM task_runs t
                     WHERE t.run_id = r.id AND t.status = 'failed'
                     ORDER BY t.finished_at LIMIT 1)
             FROM runs r WHERE r.id = $1",
        )
        .bind(child)
        .fetch_optional(&self.pool)
        .await?;
        let (status, outputs, error) = row.ok_or_else(|| Error::run_not_found(child))?;
        Ok(match status.as_str() {
            "queued" | "running" => ChildState::Open,
            "succeeded" => ChildState::Succeeded(outputs.unwrap_or(Value::Null)),
            _ => ChildState::Ended { status, error },
        })
    }
}
