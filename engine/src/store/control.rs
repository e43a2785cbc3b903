//! Operator actions on runs: cancel and resume.

use uuid::Uuid;

use super::{CANCEL_CHANNEL, READY_CHANNEL, Store};
use crate::error::{Error, Result};

impl Store {
    /// Cancels a run: tasks that have not started are cancelled now, and running attempts
    /// are cancelled through their cancellation token. Cancelling a cancelled run changes nothing.
    pub async fn cancel_run(&self, run_id: Uuid) -> Result<String> {
        let mut tx = self.pool.begin().await?;
        let status: Option<(String,)> =
            sqlx::query_as("SELECT status FROM runs WHERE id = $1 FOR UPDATE")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (status,) = status.ok_or_else(|| Error::run_not_found(run_id))?;
        match status.as_str() {
            "cancelled" => return Ok(status),
            "succeeded" | "failed" => {
                return Err(Error::Conflict(format!(
                    "run {run_id} already finished with status `{status}`; only queued or running runs can be cancelled"
                )));
            }
            _ => {}
        }

        // Waiting tasks hold no slot, so they are cancelled here rather than by a worker,
        // and give their concurrency keys back.
        let (cancelled,): (i64,) = sqlx::query_as(
            "WITH waiting_keyed AS (
                SELECT idx, concurrency_key, queue FROM task_runs
                WHERE run_id = $1 AND status = 'waiting' AND concurrency_key IS NOT NULL
            ),
            cancelled AS (
                UPDATE task_runs SET status = 'cancelled', finished_at = now()
                WHERE run_id = $1 AND status IN ('blocked', 'ready', 'waiting')
                RETURNING idx
            ),
            holders AS (
                SELECT w.concurrency_key AS key, count(*)::int4 AS n
                FROM waiting_keyed w JOIN cancelled c ON c.idx = w.idx
                GROUP BY w.concurrency_key
            ),
            key_rows AS (
                SELECT key FROM concurrency_keys WHERE key IN (SELECT key FROM holders)
                ORDER BY key FOR UPDATE
            ),
            released AS (
                UPDATE concurrency_keys k SET holders = greatest(k.holders - h.n, 0)
                FROM holders h, key_rows kr
                WHERE k.key = h.key AND kr.key = h.key
                RETURNING k.key
            ),
            woken AS (
                SELECT count(pg_notify($2, queue)) AS queues
                FROM (SELECT DISTINCT w.queue FROM waiting_keyed w
                      JOIN cancelled c ON c.idx = w.idx) q
            ),
            events AS (
                INSERT INTO events (run_id, task_idx, kind)
                SELECT $1, idx, 'task.cancelled' FROM cancelled
            )
            SELECT count(*) FROM cancelled, woken",
        )
        .bind(run_id)
        .bind(READY_CHANNEL)
        .fetch_one(&mut *tx)
        .await?;

        // The task that started this run, if any, learns of the end of its child.
        sqlx::query(
            "WITH parent AS (
                UPDATE task_runs p
                SET woken_at = now(),
                    run_at = CASE WHEN p.status = 'waiting' THEN now() ELSE p.run_at END
                FROM runs child
                WHERE child.id = $1 AND p.run_id = child.parent_run_id
                  AND p.idx = child.parent_task_idx AND p.status IN ('running', 'waiting')
                RETURNING p.queue, p.status
            )
            SELECT count(pg_notify($2, queue)) FROM parent WHERE status = 'waiting'",
        )
        .bind(run_id)
        .bind(READY_CHANNEL)
        .execute(&mut *tx)
        .await?;

        sqlx::query(
            "WITH updated AS (
                UPDATE runs SET status = 'cancelled', finished_at = now(),
                                tasks_cancelled = tasks_cancelled + $2
                WHERE id = $1
            ),
            events AS (
                INSERT INTO events (run_id, kind) VALUES ($1, 'run.cancelled')
            )
            SELECT pg_notify($3, $1::text)",
        )
        .bind(run_id)
        .bind(cancelled as i32)
        .bind(CANCEL_CHANNEL)
        .execute(&mut *tx)
        .await?;
        let children: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM runs WHERE parent_run_id = $1 AND status IN ('queued', 'running')",
        )
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(run.id = %run_id, tasks.cancelled = cancelled, "run cancelled");

        // Child runs are cancelled after the parent's transaction, each in its own, so a
        // deep tree never holds all its locks at once. A crash in between leaves children
        // running; cancelling the parent again reaches them.
        for (child,) in children {
            if let Err(err) = Box::pin(self.cancel_run(child)).await {
                tracing::warn!(run.id = %run_id, child.id = %child, error = %err, "could not cancel a child run");
            }
        }
        Ok("cancelled".to_owned())
    }

    /// Resumes a failed or cancelled run: its failed, cancelled and skipped tasks run again,
    /// each with a fresh set of attempts, and the tasks that succeeded keep their outputs.
    pub async fn retry_run(&self, run_id: Uuid) -> Result<String> {
        let mut tx = self.pool.begin().await?;
        let status: Option<(String,)> =
            sqlx::query_as("SELECT status FROM runs WHERE id = $1 FOR UPDATE")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (status,) = status.ok_or_else(|| Error::run_not_found(run_id))?;
        if status != "failed" && status != "cancelled" {
            return Err(Error::Conflict(format!(
                "run {run_id} has status `{status}`; only failed or cancelled runs can be retried"
            )));
        }
        let (running,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM task_runs WHERE run_id = $1 AND status = 'running'",
        )
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await?;
        if running > 0 {
            return Err(Error::Conflict(format!(
                "run {run_id} still has {running} running task(s) stopping after its cancellation; retry once they have stopped"
            )));
        }

        // A run cancelled after its last task succeeded has nothing to reset and finishes
        // as succeeded below.
        // Parents are counted from the statuses before this statement, which is right: every
        // parent that had not succeeded is among the tasks being reset.
        let (reset, ready): (i64, i64) = sqlx::query_as(
            "WITH pending AS (
                SELECT c.idx,
                       (SELECT count(*) FROM unnest(c.parents) AS p(idx)
                        JOIN task_runs pt ON pt.run_id = c.run_id AND pt.idx = p.idx
                        WHERE pt.status <> 'succeeded')::int4 AS parents_left
                FROM task_runs c
                WHERE c.run_id = $1 AND c.status IN ('failed', 'cancelled', 'skipped')
            ),
            reset AS (
                UPDATE task_runs t
                SET status = CASE WHEN p.parents_left = 0 THEN 'ready' ELSE 'blocked' END,
                    pending_parents = p.parents_left,
                    attempt_limit = t.attempt + t.max_attempts,
                    attempt_id = NULL, worker_id = NULL, lease_expires_at = NULL,
                    run_at = now(), started_at = NULL, finished_at = NULL,
                    output = NULL, error = NULL
                FROM pending p
                WHERE t.run_id = $1 AND t.idx = p.idx
                RETURNING t.idx, t.status, t.queue
            ),
            events AS (
                INSERT INTO events (run_id, task_idx, kind)
                SELECT $1, idx, 'task.' || status FROM reset
            ),
            woken AS (
                SELECT count(pg_notify($2, queue)) AS queues
                FROM (SELECT DISTINCT queue FROM reset WHERE status = 'ready') q
            )
            SELECT (SELECT count(*) FROM reset), (SELECT count(*) FROM reset WHERE status = 'ready')
            FROM woken",
        )
        .bind(run_id)
        .bind(READY_CHANNEL)
        .fetch_one(&mut *tx)
        .await?;

        let (new_status,): (String,) = sqlx::query_as(
            "WITH updated AS (
                UPDATE runs
                SET status = CASE WHEN $2 = 0 THEN 'succeeded'
                                  WHEN started_at IS NULL THEN 'queued'
                                  ELSE 'running' END,
                    finished_at = CASE WHEN $2 = 0 THEN now() END,
                    tasks_failed = 0, tasks_skipped = 0, tasks_cancelled = 0
                WHERE id = $1
                RETURNING status
            ),
            events AS (
                INSERT INTO events (run_id, kind, detail)
                VALUES ($1, 'run.resumed', jsonb_build_object('tasks_reset', $2::int8))
            )
            SELECT status FROM updated",
        )
        .bind(run_id)
        .bind(reset)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(run.id = %run_id, tasks.reset = reset, tasks.ready = ready, "run resumed");
        Ok(new_status)
    }
}
