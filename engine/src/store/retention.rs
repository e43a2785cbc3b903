//! Deleting finished runs past their retention, and the per-workflow retention settings.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Store;
use crate::error::{Error, Result};
use crate::retention::{
    MAX_RETENTION, RetentionOptions, SWEEP_LOCK_KEY, SweepOutcome, WorkflowRetention,
};

/// Deletes one batch of finished runs past their retention, with their task runs, events
/// and log lines, in one statement.
///
/// Each workflow's runs are found through `runs_retention` below that workflow's cutoff, so
/// runs that a longer retention keeps are never read. Runs are locked in id order with
/// `SKIP LOCKED` and checked again under the lock, so a run being resumed or completed is
/// left for a later sweep. The `id = ANY` condition repeats the join to `chosen` so that the
/// planner reaches the runs through their primary key whatever its estimate of `chosen`. A run that still has unfinished tasks (a cancelled run whose
/// attempts are stopping) is left alone too.
///
/// NOTE: batches are sized by task runs, not by log lines, so a batch whose attempts logged
/// up to their limit (1 MiB each by default) deletes all those lines in this statement.
///
/// Parameters: $1 now, $2 default retention in seconds (NULL keeps runs), $3 most runs,
/// $4 most task runs, $5 the advisory lock key.
pub(super) const DELETE_EXPIRED: &str = "
WITH sweep_lock AS (
    SELECT pg_try_advisory_xact_lock($5) AS held
),
policies AS (
    SELECT p.name AS project, names.name AS workflow,
           CASE WHEN o.workflow IS NULL THEN $2::int8 ELSE o.retention_seconds END AS seconds
    FROM projects p
    JOIN (SELECT DISTINCT project, name FROM workflows) names ON names.project IN ('', p.name)
    LEFT JOIN workflow_retention o ON o.project = p.name AND o.workflow = names.name
    WHERE (SELECT held FROM sweep_lock)
),
candidates AS (
    SELECT r.id, r.tasks_total, r.cutoff
    FROM policies p
    CROSS JOIN LATERAL (
        SELECT id, tasks_total, $1::timestamptz - p.seconds * interval '1 second' AS cutoff
        FROM runs
        WHERE runs.project = p.project AND runs.workflow = p.workflow
          AND finished_at IS NOT NULL
          AND finished_at < $1::timestamptz - p.seconds * interval '1 second'
        ORDER BY finished_at
        LIMIT $3
    ) r
    WHERE p.seconds IS NOT NULL
    LIMIT $3
),
chosen AS (
    SELECT id, cutoff
    FROM (SELECT id, cutoff, sum(tasks_total) OVER (ORDER BY id) - tasks_total AS tasks_before
          FROM candidates) c
    WHERE tasks_before < $4
),
locked AS (
    SELECT r.id
    FROM runs r
    JOIN chosen c ON c.id = r.id
    WHERE r.id = ANY (ARRAY(SELECT id FROM chosen))
      AND r.status IN ('succeeded', 'failed', 'cancelled')
      AND r.finished_at < c.cutoff
      AND NOT EXISTS (SELECT 1 FROM task_runs t
                      WHERE t.run_id = r.id AND t.status IN ('blocked', 'ready', 'running'))
    ORDER BY r.id
    FOR UPDATE OF r SKIP LOCKED
),
tasks AS (
    DELETE FROM task_runs WHERE run_id = ANY (ARRAY(SELECT id FROM locked))
    RETURNING 1
),
history AS (
    DELETE FROM events WHERE run_id = ANY (ARRAY(SELECT id FROM locked))
    RETURNING 1
),
logs AS (
    DELETE FROM task_logs WHERE run_id = ANY (ARRAY(SELECT id FROM locked))
    RETURNING 1
),
deleted AS (
    DELETE FROM runs WHERE id = ANY (ARRAY(SELECT id FROM locked))
    RETURNING id
)
SELECT (SELECT held FROM sweep_lock),
       ARRAY(SELECT id FROM deleted),
       (SELECT count(*) FROM tasks),
       (SELECT count(*) FROM history),
       (SELECT count(*) FROM logs)";

impl Store {
    /// Deletes one batch of finished runs whose `finished_at` is older than their
    /// workflow's retention at `now`, with their task runs, events and log lines.
    pub async fn delete_expired_runs(
        &self,
        options: &RetentionOptions,
        now: DateTime<Utc>,
    ) -> Result<SweepOutcome> {
        let default_seconds = options.default.map(retention_seconds);
        let (held, run_ids, tasks, events, logs): (bool, Vec<Uuid>, i64, i64, i64) =
            sqlx::query_as(DELETE_EXPIRED)
                .bind(now)
                .bind(default_seconds)
                .bind(i64::from(options.batch_runs.max(1)))
                .bind(i64::from(options.batch_tasks.max(1)))
                .bind(SWEEP_LOCK_KEY)
                .fetch_one(&self.pool)
                .await?;
        if !run_ids.is_empty() {
            tracing::debug!(runs = ?run_ids, tasks, events, logs, "deleted finished runs past their retention");
        }
        Ok(SweepOutcome {
            runs: run_ids.len() as u64,
            tasks: tasks.max(0) as u64,
            events: events.max(0) as u64,
            logs: logs.max(0) as u64,
            batches: u32::from(!run_ids.is_empty()),
            contended: !held,
        })
    }

    /// Deletes finished runs past their retention at `now`, batch after batch, until a batch
    /// finds none or another process holds the sweep lock. Between batches it pauses for
    /// [`RetentionOptions::pause`] or the time the last batch took, whichever is longer.
    pub async fn sweep_expired_runs(
        &self,
        options: &RetentionOptions,
        now: DateTime<Utc>,
    ) -> Result<SweepOutcome> {
        let mut total = SweepOutcome::default();
        loop {
            let started = Instant::now();
            let batch = self.delete_expired_runs(options, now).await?;
            total.add(&batch);
            if batch.runs == 0 || batch.contended {
                return Ok(total);
            }
            tokio::time::sleep(options.pause.max(started.elapsed())).await;
        }
    }

    /// Sets how long finished runs of `workflow` in `project` are kept.
    pub async fn set_workflow_retention(
        &self,
        project: &str,
        workflow: &str,
        retention: WorkflowRetention,
    ) -> Result<()> {
        let seconds = match retention {
            WorkflowRetention::After(age) if age.as_secs() == 0 || age > MAX_RETENTION => {
                return Err(Error::InvalidInput(format!(
                    "retention of {} s for workflow `{workflow}` is out of range; use 1 s to {} s, or `off` to keep runs forever",
                    age.as_secs(),
                    MAX_RETENTION.as_secs()
                )));
            }
            WorkflowRetention::After(age) => Some(retention_seconds(age)),
            WorkflowRetention::Forever | WorkflowRetention::Default => None,
        };
        self.require_workflow(project, workflow).await?;
        if retention == WorkflowRetention::Default {
            sqlx::query("DELETE FROM workflow_retention WHERE project = $2 AND workflow = $1")
                .bind(workflow)
                .bind(project)
                .execute(&self.pool)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO workflow_retention (workflow, retention_seconds, project)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (project, workflow) DO UPDATE
                 SET retention_seconds = EXCLUDED.retention_seconds, updated_at = now()",
            )
            .bind(workflow)
            .bind(seconds)
            .bind(project)
            .execute(&self.pool)
            .await?;
        }
        tracing::info!(project, workflow, retention = ?retention.to_text(), "workflow retention set");
        Ok(())
    }

    /// Returns the retention `workflow` sets for its finished runs.
    pub async fn workflow_retention(
        &self,
        project: &str,
        workflow: &str,
    ) -> Result<WorkflowRetention> {
        self.require_workflow(project, workflow).await?;
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT retention_seconds FROM workflow_retention WHERE project = $2 AND workflow = $1",
        )
        .bind(workflow)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => WorkflowRetention::Default,
            Some((None,)) => WorkflowRetention::Forever,
            Some((Some(seconds),)) => {
                WorkflowRetention::After(Duration::from_secs(seconds.max(1) as u64))
            }
        })
    }

    async fn require_workflow(&self, project: &str, workflow: &str) -> Result<()> {
        let found: Option<(i32,)> = sqlx::query_as(
            "SELECT 1 FROM workflows WHERE name = $1 AND project IN ('', $2) LIMIT 1",
        )
        .bind(workflow)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        if found.is_none() {
            return Err(Error::NotFound {
                what: "workflow",
                id: workflow.to_owned(),
            });
        }
        Ok(())
    }
}

fn retention_seconds(age: Duration) -> i64 {
    age.min(MAX_RETENTION).as_secs().max(1) as i64
}
