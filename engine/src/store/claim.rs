//! Claiming ready tasks for a worker.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::Store;
use crate::error::Result;

/// A task run that a worker claimed, with the new attempt's id and lease.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ClaimedTask {
    pub(crate) run_id: Uuid,
    pub(crate) idx: i32,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) input: Value,
    pub(crate) parents: Vec<i32>,
    pub(crate) attempt: i32,
    pub(crate) attempt_id: Uuid,
    pub(crate) attempt_limit: i32,
    pub(crate) max_attempts: i32,
    pub(crate) initial_backoff_ms: i32,
    pub(crate) max_backoff_ms: i32,
    pub(crate) timeout_ms: Option<i32>,
    /// Records of the task's earlier waits.
    pub(crate) waits: Value,
    /// The input of the task's run.
    pub(crate) run_input: Value,
}

/// Claims up to `limit` due tasks of `queue` and starts an attempt of each. Waiting tasks
/// whose wait is over come first, then ready tasks in priority order, then ready tasks with
/// a concurrency key as far as their keys admit them.
///
/// The picked rows are updated by their tuple ids: they are locked, so the ids are stable
/// within the statement, and a TID scan costs the same however large the table grows.
///
/// A key admits tasks through its counter row: the update of that row waits for any other
/// claim of the same key and then reads its count, so concurrent claims never admit more
/// than the limit. Rows are locked in key order, so two claims cannot deadlock on them.
///
/// The statement commits with `synchronous_commit = off`: if Postgres crashes before the
/// commit reaches disk, the claim is lost and the task is simply ready again, while the
/// attempt id fence rejects whatever the lost attempt later reports.
pub(super) const CLAIM: &str = "
WITH settings AS (
    SELECT set_config('synchronous_commit', 'off', true)
),
due AS (
    SELECT ctid, run_id, idx FROM task_runs
    WHERE status = 'waiting' AND queue = $1 AND run_at <= $5
    ORDER BY run_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
picked AS (
    SELECT ctid FROM task_runs
    WHERE status = 'ready' AND concurrency_key IS NULL AND queue = $1 AND run_at <= $5
    ORDER BY priority DESC, run_at
    LIMIT greatest($2 - (SELECT count(*) FROM due), 0)
    FOR UPDATE SKIP LOCKED
),
keyed AS (
    SELECT ctid, concurrency_key AS key, concurrency_limit AS lim, priority, run_at FROM task_runs
    WHERE status = 'ready' AND concurrency_key IS NOT NULL AND queue = $1 AND run_at <= $5
    ORDER BY priority DESC, run_at
    LIMIT greatest($2 - (SELECT count(*) FROM due) - (SELECT count(*) FROM picked), 0)
    FOR UPDATE SKIP LOCKED
),
wanted AS (
    SELECT key, max(lim) AS lim, count(*)::int4 AS want FROM keyed GROUP BY key
),
key_rows AS (
    SELECT c.key FROM concurrency_keys c
    WHERE c.key IN (SELECT key FROM wanted)
    ORDER BY c.key
    FOR UPDATE
),
granted AS (
    UPDATE concurrency_keys c
    SET granted = least(w.want, w.lim - c.holders),
        holders = c.holders + least(w.want, w.lim - c.holders)
    FROM wanted w, key_rows k
    WHERE c.key = w.key AND k.key = w.key AND c.holders < w.lim
    RETURNING c.key, c.granted
),
admitted AS (
    SELECT k.ctid
    FROM (SELECT ctid, key, row_number() OVER (PARTITION BY key ORDER BY priority DESC, run_at) AS n
          FROM keyed) k
    JOIN granted g ON g.key = k.key
    WHERE k.n <= g.granted
),
claimed AS (
    UPDATE task_runs t
    SET status = 'running',
        attempt = t.attempt + CASE WHEN t.status = 'waiting' THEN 0 ELSE 1 END,
        attempt_id = gen_random_uuid(),
        worker_id = $3, lease_expires_at = now() + $4 * interval '1 millisecond',
        started_at = now(), finished_at = NULL
    WHERE t.ctid = ANY (ARRAY(SELECT ctid FROM due UNION ALL SELECT ctid FROM picked
                              UNION ALL SELECT ctid FROM admitted))
    RETURNING t.run_id, t.idx, t.name, t.kind, t.input, t.parents, t.attempt, t.attempt_id,
              t.attempt_limit, t.max_attempts, t.initial_backoff_ms, t.max_backoff_ms, t.timeout_ms,
              t.waits
),
events AS (
    INSERT INTO events (run_id, task_idx, kind, attempt)
    SELECT c.run_id, c.idx,
           CASE WHEN d.idx IS NULL THEN 'task.running' ELSE 'task.resumed' END, c.attempt
    FROM claimed c LEFT JOIN due d ON d.run_id = c.run_id AND d.idx = c.idx
)
SELECT claimed.*, (SELECT input FROM runs WHERE runs.id = claimed.run_id) AS run_input
FROM claimed, settings";

impl Store {
    pub(crate) async fn claim(
        &self,
        queue: &str,
        limit: usize,
        worker_id: Uuid,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedTask>> {
        Ok(sqlx::query_as(CLAIM)
            .bind(queue)
            .bind(limit as i64)
            .bind(worker_id)
            .bind(lease.as_millis() as f64)
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Marks runs whose first task just started as running. The rows are locked in id order
    /// like every other statement that touches several runs.
    pub(crate) async fn mark_runs_started(&self, run_ids: &[Uuid]) -> Result<()> {
        sqlx::query(
            "WITH locked AS (
                 SELECT id FROM runs WHERE id = ANY($1) AND status = 'queued' ORDER BY id FOR UPDATE
             ),
             started AS (
                 UPDATE runs r SET status = 'running', started_at = coalesce(r.started_at, now())
                 FROM locked WHERE r.id = locked.id AND r.status = 'queued'
                 RETURNING r.id
             )
             INSERT INTO events (run_id, kind) SELECT id, 'run.running' FROM started",
        )
        .bind(run_ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Loads the names and outputs of task runs, keyed by run id and node index.
    pub(crate) async fn outputs(
        &self,
        keys: &[(Uuid, i32)],
    ) -> Result<HashMap<(Uuid, i32), (String, Value)>> {
        let run_ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let idxs: Vec<i32> = keys.iter().map(|k| k.1).collect();
        let rows: Vec<(Uuid, i32, String, Option<Value>)> = sqlx::query_as(
            "SELECT t.run_id, t.idx, t.name, t.output
             FROM unnest($1::uuid[], $2::int4[]) AS k(run_id, idx)
             JOIN task_runs t ON t.run_id = k.run_id AND t.idx = k.idx",
        )
        .bind(&run_ids)
        .bind(&idxs)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(run_id, idx, name, output)| {
                ((run_id, idx), (name, output.unwrap_or(Value::Null)))
            })
            .collect())
    }
}
