//! Leases: heartbeats that keep attempts alive, and finding attempts whose lease lapsed.

use std::time::Duration;

use uuid::Uuid;

use super::Store;
use super::claim::ClaimedTask;
use crate::error::Result;

/// State of one held attempt, as a heartbeat found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// The lease was renewed.
    Renewed,
    /// The lease was renewed, and the run has been cancelled.
    RunCancelled,
    /// The attempt no longer holds the task: its lease lapsed or another attempt took over.
    Lost,
}

impl Store {
    /// Renews the leases of the attempts a worker holds and records the worker's heartbeat.
    ///
    /// Returns the state of each attempt, in the order given. Like claims, heartbeats commit
    /// asynchronously: losing one in a database crash only shortens a lease.
    pub(crate) async fn heartbeat(
        &self,
        worker_id: Uuid,
        held: &[(Uuid, i32, Uuid)],
        lease: Duration,
    ) -> Result<Vec<LeaseState>> {
        let run_ids: Vec<Uuid> = held.iter().map(|h| h.0).collect();
        let idxs: Vec<i32> = held.iter().map(|h| h.1).collect();
        let attempt_ids: Vec<Uuid> = held.iter().map(|h| h.2).collect();
        // Rows locked by a result being written are skipped rather than waited for: waiting
        // could deadlock with that transaction, and its write ends the lease anyway.
        let rows: Vec<(Uuid, i32, Option<bool>)> = sqlx::query_as(
            "WITH settings AS (
                SELECT set_config('synchronous_commit', 'off', true)
            ),
            worker AS (
                UPDATE workers SET heartbeat_at = now() WHERE id = $4
            ),
            held AS (
                SELECT t.ctid, t.run_id, t.idx
                FROM unnest($1::uuid[], $2::int4[], $3::uuid[]) AS c(run_id, idx, attempt_id)
                JOIN task_runs t ON t.run_id = c.run_id AND t.idx = c.idx
                WHERE t.attempt_id = c.attempt_id AND t.status = 'running'
                  AND t.lease_expires_at > now()
            ),
            locked AS (
                SELECT t.ctid FROM task_runs t
                WHERE t.ctid = ANY (ARRAY(SELECT ctid FROM held))
                FOR UPDATE SKIP LOCKED
            ),
            renewed AS (
                UPDATE task_runs t SET lease_expires_at = now() + $5 * interval '1 millisecond'
                WHERE t.ctid = ANY (ARRAY(SELECT ctid FROM locked))
                RETURNING t.run_id, t.idx
            )
            SELECT held.run_id, held.idx,
                   (SELECT r.status = 'cancelled' FROM runs r WHERE r.id = held.run_id)
                     AND EXISTS (SELECT 1 FROM renewed WHERE renewed.run_id = held.run_id
                                                      AND renewed.idx = held.idx)
            FROM held, settings",
        )
        .bind(&run_ids)
        .bind(&idxs)
        .bind(&attempt_ids)
        .bind(worker_id)
        .bind(lease.as_millis() as f64)
        .fetch_all(&self.pool)
        .await?;
        let states = held
            .iter()
            .map(|(run_id, idx, _)| {
                match rows.iter().find(|row| row.0 == *run_id && row.1 == *idx) {
                    Some((_, _, Some(true))) => LeaseState::RunCancelled,
                    Some(_) => LeaseState::Renewed,
                    None => LeaseState::Lost,
                }
            })
            .collect();
        Ok(states)
    }

    /// Returns up to `limit` attempts whose lease lapsed, with what deciding their outcome
    /// needs. The caller applies the decisions with the expired-lease fence, which checks the
    /// lease again, so an attempt that renewed in between is left alone.
    pub(crate) async fn expired_attempts(&self, limit: usize) -> Result<Vec<ClaimedTask>> {
        Ok(sqlx::query_as(
            "SELECT run_id, idx, name, kind, input, parents, attempt, attempt_id, attempt_limit,
                    max_attempts, initial_backoff_ms, max_backoff_ms, timeout_ms,
                    waits, 'null'::jsonb AS run_input
             FROM task_runs
             WHERE status = 'running' AND lease_expires_at <= now()
             ORDER BY lease_expires_at
             LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Returns whether these runs were cancelled, for attempts whose lease lapsed.
    pub(crate) async fn cancelled_runs(&self, run_ids: &[Uuid]) -> Result<Vec<Uuid>> {
        let rows: Vec<(Uuid,)> =
            sqlx::query_as("SELECT id FROM runs WHERE id = ANY($1) AND status = 'cancelled'")
                .bind(run_ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
