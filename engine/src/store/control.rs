//! Operator actions on runs: cancel and resume. Each action works on a batch of runs in one
//! transaction; the single-run methods are batches of one.

use uuid::Uuid;

use super::{CANCEL_CHANNEL, READY_CHANNEL, Store};
use crate::error::{Error, Result};

/// Child runs cancelled in one transaction.
const CHILD_BATCH: usize = 500;

/// What an action did to one run of a batch.
#[derive(Debug)]
pub(super) enum Acted {
    /// The run changed to `status`; `tasks` of its tasks changed with it, of which `ready`
    /// can start now.
    Changed {
        status: String,
        tasks: i64,
        ready: i64,
    },
    /// The run already had the status the action leads to.
    Unchanged(String),
    /// The action does not apply to the run, for the reason given.
    Rejected(Error),
}

impl Store {
    /// Cancels a run: tasks that have not started are cancelled now, and running attempts
    /// are cancelled through their cancellation token. Cancelling a cancelled run changes nothing.
    pub async fn cancel_run(&self, run_id: Uuid) -> Result<String> {
        let acted = self.cancel_batch(&[run_id]).await?.pop();
        match acted.map(|(_, acted)| acted) {
            Some(Acted::Changed { status, tasks, .. }) => {
                tracing::info!(run.id = %run_id, tasks.cancelled = tasks, "run cancelled");
                Ok(status)
            }
            Some(Acted::Unchanged(status)) => Ok(status),
            Some(Acted::Rejected(err)) => Err(err),
            None => Err(Error::run_not_found(run_id)),
        }
    }

    /// Resumes a failed or cancelled run: its failed, cancelled and skipped tasks run again,
    /// each with a fresh set of attempts, and the tasks that succeeded keep their outputs.
    pub async fn retry_run(&self, run_id: Uuid) -> Result<String> {
        self.check_not_service_run(run_id, "retried").await?;
        let acted = self.retry_batch(&[run_id]).await?.pop();
        match acted.map(|(_, acted)| acted) {
            Some(Acted::Changed {
                status,
                tasks,
                ready,
            }) => {
                tracing::info!(run.id = %run_id, tasks.reset = tasks, tasks.ready = ready, "run resumed");
                Ok(status)
            }
            Some(Acted::Unchanged(status)) => Ok(status),
            Some(Acted::Rejected(err)) => Err(err),
            None => Err(Error::run_not_found(run_id)),
        }
    }

    /// Cancels a batch of runs in one transaction; returns what happened to each, in id order.
    pub(super) async fn cancel_batch(&self, run_ids: &[Uuid]) -> Result<Vec<(Uuid, Acted)>> {
        let (acted, mut descendants) = self.cancel_level(run_ids).await?;

        // Child runs are cancelled a level at a time after their parents' transaction, so
        // a deep chain of child runs needs neither recursion nor one huge transaction. A
        // crash in between leaves children running; cancelling the parent again reaches them.
        while !descendants.is_empty() {
            let take = descendants.len().min(CHILD_BATCH);
            let level: Vec<Uuid> = descendants.drain(..take).collect();
            match self.cancel_level(&level).await {
                Ok((_, children)) => descendants.extend(children),
                Err(err) => {
                    tracing::warn!(runs = level.len(), error = %err, "could not cancel child runs");
                    break;
                }
            }
        }
        Ok(acted)
    }

    /// Cancels a batch of runs in one transaction; returns what happened to each, in id
    /// order, and the child runs still open.
    async fn cancel_level(&self, run_ids: &[Uuid]) -> Result<(Vec<(Uuid, Acted)>, Vec<Uuid>)> {
        let mut tx = self.pool.begin().await?;
        let locked = lock_runs(&mut tx, run_ids).await?;
        let mut acted = Vec::with_capacity(locked.len());
        let mut eligible = Vec::new();
        for (run_id, status) in locked {
            match status.as_deref() {
                None => acted.push((run_id, Acted::Rejected(Error::run_not_found(run_id)))),
                Some("cancelled") => acted.push((run_id, Acted::Unchanged("cancelled".to_owned()))),
                Some(status @ ("succeeded" | "failed")) => acted.push((
                    run_id,
                    Acted::Rejected(Error::Conflict(format!(
                        "run {run_id} already finished with status `{status}`; only queued or running runs can be cancelled"
                    ))),
                )),
                Some(_) => eligible.push(run_id),
            }
        }
        if eligible.is_empty() {
            tx.commit().await?;
            return Ok((acted, Vec::new()));
        }

        // Waiting tasks hold no slot, so they are cancelled here rather than by a worker,
        // and give their concurrency keys back.
        let cancelled: Vec<(Uuid, i64)> = sqlx::query_as(
            "WITH waiting_keyed AS (
                SELECT run_id, idx, concurrency_key, queue FROM task_runs
                WHERE run_id = ANY($1) AND status = 'waiting' AND concurrency_key IS NOT NULL
            ),
            cancelled AS (
                UPDATE task_runs SET status = 'cancelled', finished_at = now()
                WHERE run_id = ANY($1) AND status IN ('blocked', 'ready', 'waiting')
                RETURNING run_id, idx
            ),
            holders AS (
                SELECT w.concurrency_key AS key, count(*)::int4 AS n
                FROM waiting_keyed w JOIN cancelled c ON c.run_id = w.run_id AND c.idx = w.idx
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
                      JOIN cancelled c ON c.run_id = w.run_id AND c.idx = w.idx) q
            ),
            events AS (
                INSERT INTO events (run_id, task_idx, kind)
                SELECT run_id, idx, 'task.cancelled' FROM cancelled
            )
            SELECT run_id, count(*) FROM cancelled, woken GROUP BY run_id",
        )
        .bind(&eligible)
        .bind(READY_CHANNEL)
        .fetch_all(&mut *tx)
        .await?;

        // The tasks that started these runs, if any, learn of the end of their children.
        sqlx::query(
            "WITH parent AS (
                UPDATE task_runs p
                SET woken_at = clock_timestamp(),
                    run_at = CASE WHEN p.status = 'waiting' THEN now() ELSE p.run_at END
                FROM runs child
                WHERE child.id = ANY($1) AND p.run_id = child.parent_run_id
                  AND p.idx = child.parent_task_idx AND p.status IN ('running', 'waiting')
                RETURNING p.queue, p.status
            )
            SELECT count(pg_notify($2, queue)) FROM parent WHERE status = 'waiting'",
        )
        .bind(&eligible)
        .bind(READY_CHANNEL)
        .execute(&mut *tx)
        .await?;
        let counts: Vec<i32> = eligible
            .iter()
            .map(|id| {
                cancelled
                    .iter()
                    .find(|(run_id, _)| run_id == id)
                    .map_or(0, |(_, n)| *n as i32)
            })
            .collect();

        sqlx::query(
            "WITH counts AS (
                SELECT * FROM unnest($1::uuid[], $2::int4[]) AS c(id, cancelled)
            ),
            updated AS (
                UPDATE runs r SET status = 'cancelled', finished_at = now(),
                                  tasks_cancelled = r.tasks_cancelled + c.cancelled
                FROM counts c
                WHERE r.id = c.id
                RETURNING r.id
            ),
            events AS (
                INSERT INTO events (run_id, kind) SELECT id, 'run.cancelled' FROM updated
            )
            SELECT count(pg_notify($3, id::text)) FROM updated",
        )
        .bind(&eligible)
        .bind(&counts)
        .bind(CANCEL_CHANNEL)
        .execute(&mut *tx)
        .await?;
        let children: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM runs WHERE parent_run_id = ANY($1) AND status IN ('queued', 'running')",
        )
        .bind(&eligible)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;

        for (run_id, tasks) in eligible.into_iter().zip(counts) {
            acted.push((
                run_id,
                Acted::Changed {
                    status: "cancelled".to_owned(),
                    tasks: i64::from(tasks),
                    ready: 0,
                },
            ));
        }
        acted.sort_by_key(|(id, _)| *id);
        Ok((acted, children.into_iter().map(|(id,)| id).collect()))
    }

    /// Resumes a batch of runs in one transaction; returns what happened to each, in id order.
    pub(super) async fn retry_batch(&self, run_ids: &[Uuid]) -> Result<Vec<(Uuid, Acted)>> {
        let mut tx = self.pool.begin().await?;
        let locked = lock_runs(&mut tx, run_ids).await?;
        let found: Vec<Uuid> = locked
            .iter()
            .filter(|(_, status)| status.is_some())
            .map(|(id, _)| *id)
            .collect();
        let running: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT run_id, count(*) FROM task_runs
             WHERE run_id = ANY($1) AND status = 'running' GROUP BY run_id",
        )
        .bind(&found)
        .fetch_all(&mut *tx)
        .await?;

        let mut acted = Vec::with_capacity(locked.len());
        let mut eligible = Vec::new();
        for (run_id, status) in locked {
            let Some(status) = status else {
                acted.push((run_id, Acted::Rejected(Error::run_not_found(run_id))));
                continue;
            };
            if status != "failed" && status != "cancelled" {
                acted.push((
                    run_id,
                    Acted::Rejected(Error::Conflict(format!(
                        "run {run_id} has status `{status}`; only failed or cancelled runs can be retried"
                    ))),
                ));
                continue;
            }
            if let Some((_, count)) = running.iter().find(|(id, _)| *id == run_id) {
                acted.push((
                    run_id,
                    Acted::Rejected(Error::Conflict(format!(
                        "run {run_id} still has {count} running task(s) stopping after its cancellation; retry once they have stopped"
                    ))),
                ));
                continue;
            }
            eligible.push(run_id);
        }
        if eligible.is_empty() {
            tx.commit().await?;
            return Ok(acted);
        }

        // A run cancelled after its last task succeeded has nothing to reset and finishes
        // as succeeded below.
        // Parents are counted from the statuses before this statement, which is right: every
        // parent that had not succeeded is among the tasks being reset.
        let reset: Vec<(Uuid, i64, i64)> = sqlx::query_as(
            "WITH pending AS (
                SELECT c.run_id, c.idx,
                       (SELECT count(*) FROM unnest(c.parents) AS p(idx)
                        JOIN task_runs pt ON pt.run_id = c.run_id AND pt.idx = p.idx
                        WHERE pt.status <> 'succeeded')::int4 AS parents_left
                FROM task_runs c
                WHERE c.run_id = ANY($1) AND c.status IN ('failed', 'cancelled', 'skipped')
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
                WHERE t.run_id = p.run_id AND t.idx = p.idx
                RETURNING t.run_id, t.idx, t.status, t.queue
            ),
            events AS (
                INSERT INTO events (run_id, task_idx, kind)
                SELECT run_id, idx, 'task.' || status FROM reset
            ),
            woken AS (
                SELECT count(pg_notify($2, queue)) AS queues
                FROM (SELECT DISTINCT queue FROM reset WHERE status = 'ready') q
            )
            SELECT reset.run_id, count(*), count(*) FILTER (WHERE reset.status = 'ready')
            FROM reset, woken
            GROUP BY reset.run_id",
        )
        .bind(&eligible)
        .bind(READY_CHANNEL)
        .fetch_all(&mut *tx)
        .await?;
        let (counts, ready): (Vec<i64>, Vec<i64>) = eligible
            .iter()
            .map(|id| {
                reset
                    .iter()
                    .find(|(run_id, _, _)| run_id == id)
                    .map_or((0, 0), |(_, n, ready)| (*n, *ready))
            })
            .unzip();

        let statuses: Vec<(Uuid, String)> = sqlx::query_as(
            "WITH counts AS (
                SELECT * FROM unnest($1::uuid[], $2::int8[]) AS c(id, reset)
            ),
            updated AS (
                UPDATE runs r
                SET status = CASE WHEN c.reset = 0 THEN 'succeeded'
                                  WHEN r.started_at IS NULL THEN 'queued'
                                  ELSE 'running' END,
                    finished_at = CASE WHEN c.reset = 0 THEN now() END,
                    tasks_failed = 0, tasks_skipped = 0, tasks_cancelled = 0
                FROM counts c
                WHERE r.id = c.id
                RETURNING r.id, r.status, c.reset
            ),
            events AS (
                INSERT INTO events (run_id, kind, detail)
                SELECT id, 'run.resumed', jsonb_build_object('tasks_reset', reset) FROM updated
            )
            SELECT id, status FROM updated",
        )
        .bind(&eligible)
        .bind(&counts)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;

        for ((run_id, tasks), ready) in eligible.into_iter().zip(counts).zip(ready) {
            let status = statuses
                .iter()
                .find(|(id, _)| *id == run_id)
                .map_or_else(|| "running".to_owned(), |(_, status)| status.clone());
            acted.push((
                run_id,
                Acted::Changed {
                    status,
                    tasks,
                    ready,
                },
            ));
        }
        acted.sort_by_key(|(id, _)| *id);
        Ok(acted)
    }
}

/// Locks the runs in id order, as every transaction that touches several runs does, and
/// returns each id with its status, or `None` for an id with no run.
async fn lock_runs(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    run_ids: &[Uuid],
) -> Result<Vec<(Uuid, Option<String>)>> {
    let mut ids = run_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM runs WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .fetch_all(&mut **tx)
            .await?;
    Ok(ids
        .into_iter()
        .map(|id| {
            let status = rows
                .iter()
                .find(|(run_id, _)| *run_id == id)
                .map(|(_, status)| status.clone());
            (id, status)
        })
        .collect())
}
