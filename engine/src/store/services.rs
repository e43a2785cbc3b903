//! Long-lived services: create, replace with no gap, restart, stop, and list them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{Store, Submission};
use crate::error::{Error, Result};
use crate::spec::{WorkflowSpec, check_name};

/// A service as the API shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ServiceView {
    pub project: String,
    pub name: String,
    /// `starting`, `ready`, `restarting`, `stopped`, `exited` or `failed`.
    pub status: String,
    /// The address clients reach the service at: that of the run serving now.
    pub address: Option<String>,
    pub ready_at: Option<DateTime<Utc>>,
    pub run_id: Uuid,
    pub workflow: String,
    /// The service task of the run.
    pub task: Option<String>,
    /// Times the service task was started again after a failure or a lost worker.
    pub restarts: i32,
    pub last_error: Option<String>,
    /// A run replacing the current one, until it is ready.
    pub candidate_run_id: Option<Uuid>,
    pub generation: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SERVICE_VIEW: &str = "
SELECT s.project, s.name,
       CASE WHEN s.stopped OR r.status = 'cancelled' THEN 'stopped'
            WHEN r.status = 'failed' THEN 'failed'
            WHEN r.status = 'succeeded' THEN 'exited'
            WHEN t.status = 'running' AND t.ready_at IS NOT NULL THEN 'ready'
            WHEN t.attempt > 0 AND t.status = 'ready' THEN 'restarting'
            ELSE 'starting' END AS status,
       CASE WHEN t.status = 'running' AND NOT s.stopped AND r.status IN ('queued', 'running')
            THEN t.address END AS address,
       CASE WHEN t.status = 'running' AND NOT s.stopped AND r.status IN ('queued', 'running')
            THEN t.ready_at END AS ready_at,
       s.run_id, r.workflow, t.name AS task,
       greatest(coalesce(t.attempt, 0) - 1, 0) AS restarts,
       t.error AS last_error, s.candidate_run_id, s.generation, s.created_at, s.updated_at
FROM services s
JOIN runs r ON r.id = s.run_id
LEFT JOIN LATERAL (
    SELECT t.name, t.status, t.address, t.ready_at, t.attempt, t.error
    FROM task_runs t JOIN task_kinds k ON k.kind = t.kind AND k.service
    WHERE t.run_id = s.run_id
    ORDER BY t.idx LIMIT 1
) t ON true";

/// Maximum time a replaced run keeps serving after the switch: ten minutes.
const MAX_DRAIN: Duration = Duration::from_secs(600);

impl Store {
    /// Returns the name of the service a run serves, is replacing or is draining for, if any.
    pub async fn service_of_run(&self, run_id: Uuid) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM services
             WHERE run_id = $1 OR candidate_run_id = $1 OR retiring_run_id = $1 LIMIT 1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(name,)| name))
    }

    /// Rejects retrying or cancelling a service's run by hand: its service controls it, and
    /// a run retried behind a stopped service would serve with no way to stop it by name.
    pub async fn check_not_service_run(&self, run_id: Uuid, action: &str) -> Result<()> {
        match self.service_of_run(run_id).await? {
            None => Ok(()),
            Some(name) => Err(Error::Conflict(format!(
                "run {run_id} belongs to service `{name}`, so it cannot be {action} on its own; control it through the service: `caraml service restart {name}` starts it again, `caraml service stop {name}` stops it (or use the Services page of the dashboard)"
            ))),
        }
    }

    /// Lists the services of `project` by name.
    pub async fn list_services(&self, project: &str) -> Result<Vec<ServiceView>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SERVICE_VIEW} WHERE s.project = $1 ORDER BY s.name LIMIT 1000"
        )))
        .bind(project)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_service(&self, project: &str, name: &str) -> Result<ServiceView> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SERVICE_VIEW} WHERE s.project = $1 AND s.name = $2"
        )))
        .bind(project)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| service_not_found(name))
    }

    /// Starts a service: a run of a workflow with exactly one service task. A stopped
    /// service of the same name is started anew.
    pub async fn create_service(
        &self,
        project: &str,
        name: &str,
        submission: Submission,
        input: Value,
        drain: Duration,
    ) -> Result<ServiceView> {
        check_name("service name", name).map_err(Error::InvalidInput)?;
        check_drain(drain)?;
        let existing: Option<(bool, i32)> = sqlx::query_as(
            "SELECT stopped, generation FROM services WHERE project = $1 AND name = $2",
        )
        .bind(project)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((false, _)) = existing {
            return Err(Error::Conflict(format!(
                "service `{name}` already exists; replace it with `caraml service replace {name}` or stop it first"
            )));
        }
        let generation = existing.map_or(1, |(_, generation)| generation + 1);
        self.check_service_workflow(project, &submission).await?;
        let run = self
            .submit_in(
                project,
                submission,
                input,
                Some(format!("service:{name}:{generation}")),
            )
            .await?;
        sqlx::query(
            "INSERT INTO services (name, run_id, drain_ms, generation, project)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (project, name) DO UPDATE
             SET run_id = $2, drain_ms = $3, generation = $4, stopped = false,
                 candidate_run_id = NULL, retiring_run_id = NULL, retire_at = NULL,
                 updated_at = now()",
        )
        .bind(name)
        .bind(run.id)
        .bind(drain.as_millis() as i32)
        .bind(generation)
        .bind(project)
        .execute(&self.pool)
        .await?;
        tracing::info!(project, service = name, run.id = %run.id, "service started");
        self.get_service(project, name).await
    }

    /// Replaces a service by a new version. The new run starts beside the current one and
    /// takes over once its service task is ready. The old run keeps serving for the drain
    /// time after the switch, then stops.
    pub async fn replace_service(
        &self,
        project: &str,
        name: &str,
        submission: Submission,
        input: Value,
    ) -> Result<ServiceView> {
        let row: Option<(bool, i32, Option<Uuid>)> = sqlx::query_as(
            "SELECT stopped, generation, candidate_run_id FROM services
             WHERE project = $1 AND name = $2",
        )
        .bind(project)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let (stopped, generation, candidate) = row.ok_or_else(|| service_not_found(name))?;
        if stopped {
            return Err(Error::Conflict(format!(
                "service `{name}` is stopped; start it with `caraml service restart {name}`"
            )));
        }
        self.check_service_workflow(project, &submission).await?;
        let generation = generation + 1;
        let run = self
            .submit_in(
                project,
                submission,
                input,
                Some(format!("service:{name}:{generation}")),
            )
            .await?;
        let updated = sqlx::query(
            "UPDATE services SET candidate_run_id = $2, generation = $3, updated_at = now()
             WHERE name = $1 AND generation = $3 - 1 AND project = $4",
        )
        .bind(name)
        .bind(run.id)
        .bind(generation)
        .bind(project)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            let _ = self.cancel_run(run.id).await;
            return Err(Error::Conflict(format!(
                "service `{name}` changed while it was being replaced; try again"
            )));
        }
        // A newer replacement wins over one that is still starting.
        if let Some(candidate) = candidate {
            let _ = self.cancel_run(candidate).await;
        }
        let (ready,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM task_runs
                            WHERE run_id = $1 AND status = 'running' AND ready_at IS NOT NULL)",
        )
        .bind(run.id)
        .fetch_one(&self.pool)
        .await?;
        if ready {
            self.take_over(run.id).await?;
        }
        tracing::info!(project, service = name, run.id = %run.id, generation, "service replacement started");
        self.get_service(project, name).await
    }

    /// Restarts a service with no gap: a new run of the same workflow and input replaces
    /// the current one. A stopped service starts again.
    pub async fn restart_service(&self, project: &str, name: &str) -> Result<ServiceView> {
        let row: Option<(bool, String, Value, i32)> = sqlx::query_as(
            "SELECT s.stopped, r.workflow, r.input, s.drain_ms
             FROM services s JOIN runs r ON r.id = s.run_id
             WHERE s.project = $1 AND s.name = $2",
        )
        .bind(project)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let (stopped, workflow, input, drain_ms) = row.ok_or_else(|| service_not_found(name))?;
        let submission = Submission::Workflow(workflow);
        if stopped {
            let drain = Duration::from_millis(drain_ms.max(0) as u64);
            return self
                .create_service(project, name, submission, input, drain)
                .await;
        }
        self.replace_service(project, name, submission, input).await
    }

    /// Stops a service: its runs are cancelled, which cancels the service task.
    pub async fn stop_service(&self, project: &str, name: &str) -> Result<ServiceView> {
        let row: Option<(Uuid, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
            "UPDATE services SET stopped = true, updated_at = now()
             WHERE project = $1 AND name = $2
             RETURNING run_id, candidate_run_id, retiring_run_id",
        )
        .bind(project)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let (run, candidate, retiring) = row.ok_or_else(|| service_not_found(name))?;
        for id in [Some(run), candidate, retiring].into_iter().flatten() {
            match self.cancel_run(id).await {
                Ok(_) | Err(Error::Conflict(_)) => {}
                Err(err) => return Err(err),
            }
        }
        tracing::info!(project, service = name, "service stopped");
        self.get_service(project, name).await
    }

    /// Records that an attempt of a service task is ready at `address`. When its run
    /// replaces a service, it takes over now, and the run it replaces is stopped after the
    /// drain time. Returns false when the task has moved on to another attempt.
    pub(crate) async fn service_ready(
        &self,
        run_id: Uuid,
        idx: i32,
        attempt_id: Uuid,
        address: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE task_runs SET address = $4, ready_at = now()
             WHERE run_id = $1 AND idx = $2 AND attempt_id = $3 AND status = 'running'",
        )
        .bind(run_id)
        .bind(idx)
        .bind(attempt_id)
        .bind(address)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        tx.commit().await?;
        tracing::info!(run.id = %run_id, task.idx = idx, attempt.id = %attempt_id, address, "service ready");
        self.take_over(run_id).await?;
        Ok(true)
    }

    /// Makes `run_id` the current run of the service it replaces, if any, and stops the
    /// run it replaces after the drain time. Called when its service task reports ready,
    /// and after a replacement is recorded, since the task may have been ready first.
    async fn take_over(&self, run_id: Uuid) -> Result<()> {
        let switched: Option<(String, Option<Uuid>, i32)> = sqlx::query_as(
            "WITH old AS (
                SELECT project, name, run_id, retiring_run_id FROM services
                WHERE candidate_run_id = $1 FOR UPDATE
            )
            UPDATE services s
            SET run_id = $1, candidate_run_id = NULL, retiring_run_id = old.run_id,
                retire_at = now() + s.drain_ms * interval '1 millisecond', updated_at = now()
            FROM old WHERE s.project = old.project AND s.name = old.name
            RETURNING s.name, old.retiring_run_id, s.drain_ms",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;

        if let Some((name, earlier, drain_ms)) = switched {
            tracing::info!(service = %name, run.id = %run_id, "service switched to the new run");
            // A run still draining from an earlier switch stops now.
            if let Some(earlier) = earlier {
                let _ = self.cancel_run(earlier).await;
            }
            let store = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(drain_ms.max(0) as u64)).await;
                if let Err(err) = store.retire_due_services().await {
                    tracing::warn!(service = %name, error = %err, "could not stop the replaced run; a worker retries within a minute");
                }
            });
        }
        Ok(())
    }

    /// Stops runs that a replacement took over from once their drain time has passed.
    /// Every worker calls this now and then, so a crash after a switch delays the stop but
    /// does not lose it.
    pub(crate) async fn retire_due_services(&self) -> Result<()> {
        let due: Vec<(String, Uuid)> = sqlx::query_as(
            "UPDATE services s SET retiring_run_id = NULL, retire_at = NULL
             FROM (SELECT project, name, retiring_run_id FROM services
                   WHERE retiring_run_id IS NOT NULL AND retire_at <= now()
                   FOR UPDATE SKIP LOCKED) d
             WHERE s.project = d.project AND s.name = d.name
             RETURNING s.name, d.retiring_run_id",
        )
        .fetch_all(&self.pool)
        .await?;
        for (name, run) in due {
            match self.cancel_run(run).await {
                Ok(_) | Err(Error::Conflict(_)) | Err(Error::NotFound { .. }) => {
                    tracing::info!(service = %name, run.id = %run, "replaced service run stopped");
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Checks that a workflow has exactly one task of a service kind.
    async fn check_service_workflow(&self, project: &str, submission: &Submission) -> Result<()> {
        let spec: WorkflowSpec = match submission {
            Submission::Spec(spec) => spec.clone(),
            Submission::Workflow(name) => self.latest_workflow_in(project, name).await?.0,
        };
        let kinds: Vec<(String,)> = sqlx::query_as("SELECT kind FROM task_kinds WHERE service")
            .fetch_all(&self.pool)
            .await?;
        let services: Vec<&str> = spec
            .tasks
            .iter()
            .filter(|task| kinds.iter().any(|(kind,)| *kind == task.kind))
            .map(|task| task.name.as_str())
            .collect();
        match services.len() {
            1 => Ok(()),
            0 => Err(Error::InvalidInput(format!(
                "workflow `{}` has no task of a service kind; add one, such as a task of kind `http.serve`",
                spec.name
            ))),
            _ => Err(Error::InvalidInput(format!(
                "workflow `{}` has {} service tasks ({}); a service runs exactly one",
                spec.name,
                services.len(),
                services.join(", ")
            ))),
        }
    }
}

fn check_drain(drain: Duration) -> Result<()> {
    if drain > MAX_DRAIN {
        return Err(Error::InvalidInput(format!(
            "drain is {} s; use at most {} s",
            drain.as_secs_f64(),
            MAX_DRAIN.as_secs()
        )));
    }
    Ok(())
}

fn service_not_found(name: &str) -> Error {
    Error::NotFound {
        what: "service",
        id: name.to_owned(),
    }
}
