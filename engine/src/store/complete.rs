//! Applying the decisions about finished attempts: store outputs, schedule retries, fail
//! and skip downstream tasks, and finish runs, all in one transaction per batch.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
// Dynamic SQL here is assembled from the constant fence conditions and assignments of this
// module only; every value travels as a bind parameter.
use sqlx::{AssertSqlSafe, Postgres, Transaction};
use uuid::Uuid;

use super::{READY_CHANNEL, Store};
use crate::clock::far_future;
use crate::error::Result;
use crate::retry::Decision;

/// A decision about one attempt, ready to be applied.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub(crate) run_id: Uuid,
    pub(crate) idx: i32,
    pub(crate) attempt_id: Uuid,
    pub(crate) decision: Decision,
}

/// Condition an attempt must meet for its decision to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fence {
    /// The attempt's own worker, while its lease is live.
    Owner,
    /// The reaper, once the lease has lapsed.
    Expired,
}

impl Fence {
    fn condition(self) -> &'static str {
        match self {
            // `coalesce` (a no-op, as `status` is NOT NULL) keeps the planner off the partial
            // index of running tasks. Statistics taken while few tasks ran estimate one row
            // there, and the plan then loops over the whole batch for every running task,
            // which grows slow as history grows. The primary key finds each row at once.
            Fence::Owner => {
                "t.attempt_id = c.attempt_id AND coalesce(t.status, '') = 'running' AND t.lease_expires_at > now()"
            }
            Fence::Expired => {
                "t.attempt_id = c.attempt_id AND t.status = 'running' AND t.lease_expires_at <= now()"
            }
        }
    }
}

/// Changes made by applying a batch.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Attempts whose decision was applied; the others were stale and rejected.
    pub(crate) accepted: Vec<(Uuid, i32)>,
    /// Whether some task became ready at once, so a claim may find work.
    pub(crate) woke_tasks: bool,
    /// Runs that reached a final status in this batch.
    pub(crate) finished_runs: Vec<(Uuid, String)>,
}

#[derive(Debug, Default, Clone, Copy)]
struct RunDelta {
    succeeded: i32,
    failed: i32,
    skipped: i32,
    cancelled: i32,
}

impl Store {
    /// Applies a batch of decisions in one transaction.
    pub(crate) async fn finish(&self, batch: &[Finished], fence: Fence) -> Result<Applied> {
        let mut applied = Applied::default();
        if batch.is_empty() {
            return Ok(applied);
        }
        let mut run_ids: Vec<Uuid> = batch.iter().map(|f| f.run_id).collect();
        run_ids.sort_unstable();
        run_ids.dedup();

        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT id FROM runs WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&run_ids)
            .execute(&mut *tx)
            .await?;

        let mut deltas: BTreeMap<Uuid, RunDelta> = BTreeMap::new();

        let successes: Vec<&Finished> = batch
            .iter()
            .filter(|f| matches!(f.decision, Decision::Succeed(_)))
            .collect();
        if !successes.is_empty() {
            let (accepted, woke) = apply_successes(&mut tx, &successes, fence).await?;
            applied.woke_tasks |= woke;
            for key in &accepted {
                deltas.entry(key.0).or_default().succeeded += 1;
            }
            applied.accepted.extend(accepted);
        }

        let retries: Vec<&Finished> = batch
            .iter()
            .filter(|f| matches!(f.decision, Decision::Retry { .. }))
            .collect();
        if !retries.is_empty() {
            let (accepted, woke) = apply_retries(&mut tx, &retries, fence).await?;
            applied.woke_tasks |= woke;
            applied.accepted.extend(accepted);
        }

        let failures: Vec<&Finished> = batch
            .iter()
            .filter(|f| matches!(f.decision, Decision::Fail { .. }))
            .collect();
        if !failures.is_empty() {
            let accepted = apply_failures(&mut tx, &failures, fence).await?;
            for key in &accepted {
                deltas.entry(key.0).or_default().failed += 1;
            }
            for (run_id, skipped) in skip_downstream(&mut tx, &accepted).await? {
                deltas.entry(run_id).or_default().skipped += skipped;
            }
            applied.accepted.extend(accepted);
        }

        let cancels: Vec<&Finished> = batch
            .iter()
            .filter(|f| matches!(f.decision, Decision::Cancel))
            .collect();
        if !cancels.is_empty() {
            let accepted = apply_simple(&mut tx, &cancels, fence, CANCEL).await?;
            for key in &accepted {
                deltas.entry(key.0).or_default().cancelled += 1;
            }
            applied.accepted.extend(accepted);
        }

        let releases: Vec<&Finished> = batch
            .iter()
            .filter(|f| matches!(f.decision, Decision::Release))
            .collect();
        if !releases.is_empty() {
            let accepted = apply_simple(&mut tx, &releases, fence, RELEASE).await?;
            applied.woke_tasks |= !accepted.is_empty();
            applied.accepted.extend(accepted);
        }

        let waits: Vec<&Finished> = batch
            .iter()
            .filter(|f| matches!(f.decision, Decision::Wait(_)))
            .collect();
        if !waits.is_empty() {
            let (accepted, woke) = apply_waits(&mut tx, &waits, fence).await?;
            applied.woke_tasks |= woke;
            applied.accepted.extend(accepted);
        }

        if !deltas.is_empty() {
            applied.finished_runs = apply_run_deltas(&mut tx, &deltas).await?;
        }
        tx.commit().await?;
        Ok(applied)
    }
}

fn keys(batch: &[&Finished]) -> (Vec<Uuid>, Vec<i32>, Vec<Uuid>) {
    (
        batch.iter().map(|f| f.run_id).collect(),
        batch.iter().map(|f| f.idx).collect(),
        batch.iter().map(|f| f.attempt_id).collect(),
    )
}

async fn apply_successes(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[&Finished],
    fence: Fence,
) -> Result<(Vec<(Uuid, i32)>, bool)> {
    let (run_ids, idxs, attempt_ids) = keys(batch);
    let outputs: Vec<&Value> = batch
        .iter()
        .map(|f| match &f.decision {
            Decision::Succeed(output) => output,
            _ => &Value::Null,
        })
        .collect();
    let sql = format!(
        "WITH done AS (
            UPDATE task_runs t
            SET status = 'succeeded', output = c.output, finished_at = now(),
                lease_expires_at = NULL, error = NULL
            FROM unnest($1::uuid[], $2::int4[], $3::uuid[], $4::jsonb[]) AS c(run_id, idx, attempt_id, output)
            WHERE t.run_id = c.run_id AND t.idx = c.idx AND {fence}
            RETURNING t.run_id, t.idx, t.attempt, t.children, t.queue, t.concurrency_key
        ),
        {release},
        edges AS (
            SELECT d.run_id, child, count(*)::int4 AS n
            FROM done d CROSS JOIN LATERAL unnest(d.children) AS child
            GROUP BY d.run_id, child
        ),
        unblocked AS (
            UPDATE task_runs t
            SET pending_parents = t.pending_parents - e.n,
                status = CASE WHEN t.status = 'blocked' AND t.pending_parents = e.n
                              THEN 'ready' ELSE t.status END,
                run_at = CASE WHEN t.status = 'blocked' AND t.pending_parents = e.n
                              THEN now() ELSE t.run_at END
            FROM edges e
            WHERE t.run_id = e.run_id AND t.idx = e.child
            RETURNING t.run_id, t.idx, t.status, t.queue
        ),
        events AS (
            INSERT INTO events (run_id, task_idx, kind, attempt)
            SELECT run_id, idx, 'task.succeeded', attempt FROM done
            UNION ALL
            SELECT run_id, idx, 'task.ready', NULL FROM unblocked WHERE status = 'ready'
        ),
        woken AS (
            SELECT count(pg_notify('{READY_CHANNEL}', queue)) AS queues
            FROM (SELECT queue FROM unblocked WHERE status = 'ready'
                  UNION SELECT queue FROM done WHERE concurrency_key IS NOT NULL) q
        )
        SELECT done.run_id, done.idx, woken.queues FROM done, woken",
        fence = fence.condition(),
        release = release_keys("done"),
    );
    let rows: Vec<(Uuid, i32, i64)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(&run_ids)
        .bind(&idxs)
        .bind(&attempt_ids)
        .bind(&outputs)
        .fetch_all(&mut **tx)
        .await?;
    let woke = rows.iter().any(|row| row.2 > 0);
    Ok((rows.into_iter().map(|(r, i, _)| (r, i)).collect(), woke))
}

/// Returns the statement parts that give back the concurrency keys of the tasks in the
/// common table expression `from`. Key rows are locked in key order, as claims lock them.
fn release_keys(from: &str) -> String {
    format!(
        "key_rows AS (
            SELECT key FROM concurrency_keys
            WHERE key IN (SELECT concurrency_key FROM {from})
            ORDER BY key
            FOR UPDATE
        ),
        released AS (
            UPDATE concurrency_keys k SET holders = greatest(k.holders - r.n, 0)
            FROM (SELECT concurrency_key AS key, count(*)::int4 AS n FROM {from}
                  WHERE concurrency_key IS NOT NULL GROUP BY concurrency_key) r, key_rows kr
            WHERE k.key = r.key AND kr.key = r.key
        )"
    )
}

/// Parks tasks that wait for a timer, a signal or a child run. A task that something woke
/// after its attempt started resumes at once, since what it waits for may be there already.
async fn apply_waits(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[&Finished],
    fence: Fence,
) -> Result<(Vec<(Uuid, i32)>, bool)> {
    let (run_ids, idxs, attempt_ids) = keys(batch);
    let mut waits: Vec<&Value> = Vec::with_capacity(batch.len());
    let mut untils: Vec<DateTime<Utc>> = Vec::with_capacity(batch.len());
    let mut signals: Vec<Option<&str>> = Vec::with_capacity(batch.len());
    let mut reasons: Vec<&str> = Vec::with_capacity(batch.len());
    for finished in batch {
        if let Decision::Wait(suspension) = &finished.decision {
            waits.push(&suspension.waits);
            untils.push(suspension.pending.until.unwrap_or_else(far_future));
            signals.push(suspension.pending.signal.as_deref());
            reasons.push(&suspension.pending.reason);
        }
    }
    let sql = format!(
        "WITH waited AS (
            UPDATE task_runs t
            SET status = 'waiting', waits = c.waits,
                waiting_for = CASE WHEN c.signal IS NULL THEN NULL ELSE ARRAY[c.signal] END,
                run_at = CASE WHEN t.woken_at >= t.started_at THEN now() ELSE c.until END,
                attempt_id = NULL, worker_id = NULL, lease_expires_at = NULL
            FROM unnest($1::uuid[], $2::int4[], $3::uuid[], $4::jsonb[], $5::timestamptz[],
                        $6::text[], $7::text[])
                 AS c(run_id, idx, attempt_id, waits, until, signal, reason)
            WHERE t.run_id = c.run_id AND t.idx = c.idx AND {fence}
            RETURNING t.run_id, t.idx, t.attempt, t.queue, t.run_at, c.reason
        ),
        events AS (
            INSERT INTO events (run_id, task_idx, kind, attempt, detail)
            SELECT run_id, idx, 'task.waiting', attempt,
                   jsonb_build_object('for', reason, 'until', run_at)
            FROM waited
        ),
        woken AS (
            SELECT count(pg_notify('{READY_CHANNEL}',
                         queue || '@' || (extract(epoch FROM due) * 1000)::int8)) AS queues
            FROM (SELECT queue, min(run_at) AS due FROM waited
                  WHERE run_at < now() + interval '1 day' GROUP BY queue) q
        )
        SELECT waited.run_id, waited.idx, waited.run_at <= now() FROM waited, woken",
        fence = fence.condition()
    );
    let rows: Vec<(Uuid, i32, bool)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(&run_ids)
        .bind(&idxs)
        .bind(&attempt_ids)
        .bind(&waits)
        .bind(&untils)
        .bind(&signals)
        .bind(&reasons)
        .fetch_all(&mut **tx)
        .await?;
    let due_now = rows.iter().any(|row| row.2);
    Ok((rows.into_iter().map(|(r, i, _)| (r, i)).collect(), due_now))
}

async fn apply_retries(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[&Finished],
    fence: Fence,
) -> Result<(Vec<(Uuid, i32)>, bool)> {
    let (run_ids, idxs, attempt_ids) = keys(batch);
    let mut delays_ms: Vec<i64> = Vec::with_capacity(batch.len());
    let mut errors: Vec<&str> = Vec::with_capacity(batch.len());
    for finished in batch {
        if let Decision::Retry { delay, error } = &finished.decision {
            delays_ms.push(duration_ms(*delay));
            errors.push(error);
        }
    }
    let sql = format!(
        "WITH retried AS (
            UPDATE task_runs t
            SET status = 'ready', run_at = now() + c.delay_ms * interval '1 millisecond',
                error = c.error, attempt_id = NULL, worker_id = NULL, lease_expires_at = NULL,
                attempt_limit = greatest(t.attempt_limit, t.attempt + 1),
                address = NULL, ready_at = NULL
            FROM unnest($1::uuid[], $2::int4[], $3::uuid[], $4::int8[], $5::text[])
                 AS c(run_id, idx, attempt_id, delay_ms, error)
            WHERE t.run_id = c.run_id AND t.idx = c.idx AND {fence}
            RETURNING t.run_id, t.idx, t.attempt, t.queue, t.run_at, c.error, t.concurrency_key
        ),
        {release},
        events AS (
            INSERT INTO events (run_id, task_idx, kind, attempt, detail)
            SELECT run_id, idx, 'task.retrying', attempt,
                   jsonb_build_object('error', error, 'retry_at', run_at)
            FROM retried
        ),
        woken AS (
            SELECT count(pg_notify('{READY_CHANNEL}',
                         queue || '@' || (extract(epoch FROM due) * 1000)::int8)) AS queues
            FROM (SELECT queue, min(run_at) AS due FROM retried GROUP BY queue) q
        )
        SELECT retried.run_id, retried.idx, retried.run_at <= now() FROM retried, woken",
        fence = fence.condition(),
        release = release_keys("retried"),
    );
    let rows: Vec<(Uuid, i32, bool)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(&run_ids)
        .bind(&idxs)
        .bind(&attempt_ids)
        .bind(&delays_ms)
        .bind(&errors)
        .fetch_all(&mut **tx)
        .await?;
    let due_now = rows.iter().any(|row| row.2);
    Ok((rows.into_iter().map(|(r, i, _)| (r, i)).collect(), due_now))
}

async fn apply_failures(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[&Finished],
    fence: Fence,
) -> Result<Vec<(Uuid, i32)>> {
    let (run_ids, idxs, attempt_ids) = keys(batch);
    let errors: Vec<&str> = batch
        .iter()
        .map(|f| match &f.decision {
            Decision::Fail { error } => error.as_str(),
            _ => "",
        })
        .collect();
    let sql = format!(
        "WITH failed AS (
            UPDATE task_runs t
            SET status = 'failed', error = c.error, finished_at = now(), lease_expires_at = NULL
            FROM unnest($1::uuid[], $2::int4[], $3::uuid[], $4::text[]) AS c(run_id, idx, attempt_id, error)
            WHERE t.run_id = c.run_id AND t.idx = c.idx AND {fence}
            RETURNING t.run_id, t.idx, t.attempt, c.error, t.queue, t.concurrency_key
        ),
        {release},
        events AS (
            INSERT INTO events (run_id, task_idx, kind, attempt, detail)
            SELECT run_id, idx, 'task.failed', attempt, jsonb_build_object('error', error)
            FROM failed
        ),
        woken AS (
            SELECT count(pg_notify('{READY_CHANNEL}', queue)) AS queues
            FROM (SELECT DISTINCT queue FROM failed WHERE concurrency_key IS NOT NULL) q
        )
        SELECT run_id, idx FROM failed, woken",
        fence = fence.condition(),
        release = release_keys("failed"),
    );
    Ok(sqlx::query_as(AssertSqlSafe(sql))
        .bind(&run_ids)
        .bind(&idxs)
        .bind(&attempt_ids)
        .bind(&errors)
        .fetch_all(&mut **tx)
        .await?)
}

/// Marks every task downstream of the failed ones as skipped; returns the count per run.
pub(super) async fn skip_downstream(
    tx: &mut Transaction<'_, Postgres>,
    failed: &[(Uuid, i32)],
) -> Result<Vec<(Uuid, i32)>> {
    if failed.is_empty() {
        return Ok(Vec::new());
    }
    let run_ids: Vec<Uuid> = failed.iter().map(|k| k.0).collect();
    let idxs: Vec<i32> = failed.iter().map(|k| k.1).collect();
    Ok(sqlx::query_as(
        "WITH skipped AS (
            UPDATE task_runs t SET status = 'skipped', finished_at = now()
            FROM (
                WITH RECURSIVE down(run_id, idx) AS (
                    SELECT t.run_id, child
                    FROM unnest($1::uuid[], $2::int4[]) AS f(run_id, idx)
                    JOIN task_runs t ON t.run_id = f.run_id AND t.idx = f.idx
                    CROSS JOIN LATERAL unnest(t.children) AS child
                  UNION
                    SELECT t.run_id, child
                    FROM down d
                    JOIN task_runs t ON t.run_id = d.run_id AND t.idx = d.idx
                    CROSS JOIN LATERAL unnest(t.children) AS child
                )
                SELECT run_id, idx FROM down
            ) d
            WHERE t.run_id = d.run_id AND t.idx = d.idx AND t.status = 'blocked'
            RETURNING t.run_id, t.idx
        ),
        events AS (
            INSERT INTO events (run_id, task_idx, kind)
            SELECT run_id, idx, 'task.skipped' FROM skipped
        )
        SELECT run_id, count(*)::int4 FROM skipped GROUP BY run_id",
    )
    .bind(&run_ids)
    .bind(&idxs)
    .fetch_all(&mut **tx)
    .await?)
}

/// Ends attempts of cancelled runs.
const CANCEL: (&str, &str) = (
    "status = 'cancelled', finished_at = now(), lease_expires_at = NULL",
    "task.cancelled",
);

/// Hands tasks back unfinished without spending an attempt, when a worker shuts down.
const RELEASE: (&str, &str) = (
    "status = 'ready', run_at = now(), attempt_limit = t.attempt_limit + 1, attempt_id = NULL,
     worker_id = NULL, lease_expires_at = NULL",
    "task.released",
);

async fn apply_simple(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[&Finished],
    fence: Fence,
    (assignments, event): (&str, &str),
) -> Result<Vec<(Uuid, i32)>> {
    let (run_ids, idxs, attempt_ids) = keys(batch);
    let sql = format!(
        "WITH changed AS (
            UPDATE task_runs t SET {assignments}
            FROM unnest($1::uuid[], $2::int4[], $3::uuid[]) AS c(run_id, idx, attempt_id)
            WHERE t.run_id = c.run_id AND t.idx = c.idx AND {fence}
            RETURNING t.run_id, t.idx, t.attempt, t.queue, t.status, t.concurrency_key
        ),
        {release},
        events AS (
            INSERT INTO events (run_id, task_idx, kind, attempt)
            SELECT run_id, idx, '{event}', attempt FROM changed
        ),
        woken AS (
            SELECT count(pg_notify('{READY_CHANNEL}', queue)) AS queues
            FROM (SELECT DISTINCT queue FROM changed
                  WHERE status = 'ready' OR concurrency_key IS NOT NULL) q
        )
        SELECT changed.run_id, changed.idx FROM changed, woken",
        fence = fence.condition(),
        release = release_keys("changed"),
    );
    Ok(sqlx::query_as(AssertSqlSafe(sql))
        .bind(&run_ids)
        .bind(&idxs)
        .bind(&attempt_ids)
        .fetch_all(&mut **tx)
        .await?)
}

/// Adds task counts to runs and finishes the runs whose last task ended.
async fn apply_run_deltas(
    tx: &mut Transaction<'_, Postgres>,
    deltas: &BTreeMap<Uuid, RunDelta>,
) -> Result<Vec<(Uuid, String)>> {
    let run_ids: Vec<Uuid> = deltas.keys().copied().collect();
    let succeeded: Vec<i32> = deltas.values().map(|d| d.succeeded).collect();
    let failed: Vec<i32> = deltas.values().map(|d| d.failed).collect();
    let skipped: Vec<i32> = deltas.values().map(|d| d.skipped).collect();
    let cancelled: Vec<i32> = deltas.values().map(|d| d.cancelled).collect();
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "WITH delta AS (
            SELECT * FROM unnest($1::uuid[], $2::int4[], $3::int4[], $4::int4[], $5::int4[])
                AS d(run_id, succeeded, failed, skipped, cancelled)
        ),
        counted AS (
            SELECT d.*, o.status AS old_status,
                   o.tasks_succeeded + d.succeeded AS new_succeeded,
                   o.tasks_succeeded + d.succeeded + o.tasks_failed + d.failed
                     + o.tasks_skipped + d.skipped + o.tasks_cancelled + d.cancelled
                     >= o.tasks_total AS all_done,
                   o.tasks_total
            FROM delta d JOIN runs o ON o.id = d.run_id
        ),
        updated AS (
            UPDATE runs r
            SET tasks_succeeded = c.new_succeeded,
                tasks_failed = r.tasks_failed + c.failed,
                tasks_skipped = r.tasks_skipped + c.skipped,
                tasks_cancelled = r.tasks_cancelled + c.cancelled,
                status = CASE
                    WHEN r.status NOT IN ('queued', 'running') THEN r.status
                    WHEN c.all_done AND c.new_succeeded >= c.tasks_total THEN 'succeeded'
                    WHEN c.all_done THEN 'failed'
                    ELSE 'running' END,
                started_at = coalesce(r.started_at, now()),
                finished_at = CASE WHEN c.all_done AND r.status IN ('queued', 'running')
                                   THEN now() ELSE r.finished_at END
            FROM counted c
            WHERE r.id = c.run_id
            RETURNING r.id, c.old_status, r.status
        ),
        events AS (
            INSERT INTO events (run_id, kind)
            SELECT id, 'run.running' FROM updated WHERE old_status = 'queued'
            UNION ALL
            SELECT id, 'run.' || status FROM updated
            WHERE status <> old_status AND status IN ('succeeded', 'failed')
        ),
        parents AS (
            UPDATE task_runs p
            SET woken_at = clock_timestamp(),
                run_at = CASE WHEN p.status = 'waiting' THEN now() ELSE p.run_at END
            FROM updated u JOIN runs child ON child.id = u.id
            WHERE u.status <> u.old_status AND u.status IN ('succeeded', 'failed')
              AND p.run_id = child.parent_run_id AND p.idx = child.parent_task_idx
              AND p.status IN ('running', 'waiting')
            RETURNING p.queue, p.status
        ),
        woken AS (
            SELECT count(pg_notify($6, queue)) AS queues
            FROM (SELECT DISTINCT queue FROM parents WHERE status = 'waiting') q
        )
        SELECT id, old_status, status FROM updated, woken",
    )
    .bind(&run_ids)
    .bind(&succeeded)
    .bind(&failed)
    .bind(&skipped)
    .bind(&cancelled)
    .bind(READY_CHANNEL)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, old, new)| old != new && (new == "succeeded" || new == "failed"))
        .map(|(id, _, new)| (id, new))
        .collect())
}

fn duration_ms(duration: Duration) -> i64 {
    duration.as_millis().min(i64::MAX as u128) as i64
}
