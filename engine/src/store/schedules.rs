//! Schedules: creating and controlling them, and the scheduler's step that starts the run
//! of a due tick.

use chrono::{DateTime, Utc};
use serde_json::Value;
// The only dynamic SQL here splices in the constant column list SCHEDULE_COLUMNS.
use sqlx::AssertSqlSafe;

use super::{SCHEDULES_CHANNEL, Store};
use crate::error::{Error, Result};
use crate::schedule::{
    CronSchedule, Fired, MissedTicks, NewSchedule, ScheduleView, TickPlan, plan_tick, tick_key,
};
use crate::spec::check_name;

const SCHEDULE_COLUMNS: &str =
    "project, name, cron, timezone, workflow, input, missed, paused, next_tick_at,
    last_tick_at, last_run_id, last_error, created_at";

/// A due schedule as the scheduler claims it.
#[derive(sqlx::FromRow)]
struct DueSchedule {
    project: String,
    name: String,
    cron: String,
    timezone: String,
    workflow: String,
    input: Value,
    #[sqlx(try_from = "String")]
    missed: MissedTicks,
    next_tick_at: DateTime<Utc>,
}

impl Store {
    /// Validates and stores a schedule. Its first tick is the first one after the store
    /// clock's current time.
    pub async fn create_schedule(
        &self,
        project: &str,
        schedule: NewSchedule,
    ) -> Result<ScheduleView> {
        check_name("schedule name", &schedule.name).map_err(Error::InvalidInput)?;
        let cron = CronSchedule::parse(&schedule.cron, &schedule.timezone)?;
        check_name("workflow name", &schedule.workflow).map_err(Error::InvalidInput)?;
        let stored: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM workflows WHERE name = $1 AND project IN ('', $2) LIMIT 1",
        )
        .bind(&schedule.workflow)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        if stored.is_none() {
            return Err(Error::InvalidInput(format!(
                "workflow `{}` is not registered; start a worker that registers it, or submit a spec with that name once, then create the schedule",
                schedule.workflow
            )));
        }
        let now = self.clock.now();
        let first_tick = cron.next_after(now).ok_or_else(|| {
            Error::InvalidInput(format!(
                "cron expression `{}` matches no time after {now}; check the day-of-month and month fields, as in `0 0 30 2 *` (February 30)",
                schedule.cron.escape_debug()
            ))
        })?;

        let created: Option<ScheduleView> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH inserted AS (
                INSERT INTO schedules (name, cron, timezone, workflow, input, missed, paused,
                                       next_tick_at, project)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10)
                ON CONFLICT (project, name) DO NOTHING
                RETURNING {SCHEDULE_COLUMNS}
            ),
            woken AS (SELECT count(pg_notify($9, name)) FROM inserted)
            SELECT {SCHEDULE_COLUMNS} FROM inserted, woken"
        )))
        .bind(&schedule.name)
        .bind(schedule.cron.trim())
        .bind(&schedule.timezone)
        .bind(&schedule.workflow)
        .bind(&schedule.input)
        .bind(schedule.missed.as_str())
        .bind(schedule.paused)
        .bind(first_tick)
        .bind(SCHEDULES_CHANNEL)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        let created = created.ok_or_else(|| {
            Error::Conflict(format!(
                "schedule `{}` already exists; choose another name, or delete the existing schedule first",
                schedule.name
            ))
        })?;
        tracing::info!(
            project,
            schedule.name = %created.name,
            schedule.cron = %created.cron,
            schedule.timezone = %created.timezone,
            workflow = %created.workflow,
            next_tick_at = %created.next_tick_at,
            "schedule created"
        );
        Ok(created)
    }

    /// Lists the schedules of `project` by name.
    pub async fn list_schedules(&self, project: &str) -> Result<Vec<ScheduleView>> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE project = $1 ORDER BY name"
        )))
        .bind(project)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_schedule(&self, project: &str, name: &str) -> Result<ScheduleView> {
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE project = $2 AND name = $1"
        )))
        .bind(name)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| schedule_not_found(name))
    }

    /// Pauses a schedule: it starts no runs until resumed. Pausing a paused schedule
    /// changes nothing.
    pub async fn pause_schedule(&self, project: &str, name: &str) -> Result<ScheduleView> {
        let paused: Option<ScheduleView> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH updated AS (
                UPDATE schedules SET paused = true WHERE name = $1 AND project = $3
                RETURNING {SCHEDULE_COLUMNS}
            ),
            woken AS (SELECT count(pg_notify($2, name)) FROM updated)
            SELECT {SCHEDULE_COLUMNS} FROM updated, woken"
        )))
        .bind(name)
        .bind(SCHEDULES_CHANNEL)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        let paused = paused.ok_or_else(|| schedule_not_found(name))?;
        tracing::info!(schedule.name = %name, "schedule paused");
        Ok(paused)
    }

    /// Resumes a paused schedule from the first tick after the store clock's current time;
    /// the ticks that passed while it was paused start no runs. Resuming a schedule that is
    /// not paused changes nothing.
    pub async fn resume_schedule(&self, project: &str, name: &str) -> Result<ScheduleView> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, String, bool)> = sqlx::query_as(
            "SELECT cron, timezone, paused FROM schedules
             WHERE project = $1 AND name = $2 FOR UPDATE",
        )
        .bind(project)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let (expression, timezone, paused) = row.ok_or_else(|| schedule_not_found(name))?;
        if !paused {
            drop(tx);
            return self.get_schedule(project, name).await;
        }

        let now = self.clock.now();
        let next_tick = CronSchedule::parse(&expression, &timezone)?
            .next_after(now)
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "schedule `{name}` cannot resume: its cron expression `{expression}` matches no time after {now}; delete it and create it with another expression"
                ))
            })?;
        let resumed: ScheduleView = sqlx::query_as(AssertSqlSafe(format!(
            "WITH updated AS (
                UPDATE schedules SET paused = false, next_tick_at = $2
                WHERE name = $1 AND project = $4
                RETURNING {SCHEDULE_COLUMNS}
            ),
            woken AS (SELECT count(pg_notify($3, name)) FROM updated)
            SELECT {SCHEDULE_COLUMNS} FROM updated, woken"
        )))
        .bind(name)
        .bind(next_tick)
        .bind(SCHEDULES_CHANNEL)
        .bind(project)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(schedule.name = %name, next_tick_at = %next_tick, "schedule resumed");
        Ok(resumed)
    }

    /// Deletes a schedule and returns it as it was. Runs it started are kept.
    pub async fn delete_schedule(&self, project: &str, name: &str) -> Result<ScheduleView> {
        let deleted: Option<ScheduleView> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH deleted AS (
                DELETE FROM schedules WHERE name = $1 AND project = $3
                RETURNING {SCHEDULE_COLUMNS}
            ),
            woken AS (SELECT count(pg_notify($2, name)) FROM deleted)
            SELECT {SCHEDULE_COLUMNS} FROM deleted, woken"
        )))
        .bind(name)
        .bind(SCHEDULES_CHANNEL)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        let deleted = deleted.ok_or_else(|| schedule_not_found(name))?;
        tracing::info!(schedule.name = %name, "schedule deleted");
        Ok(deleted)
    }

    /// Returns the earliest next tick of the schedules that are not paused.
    pub async fn earliest_tick(&self) -> Result<Option<DateTime<Utc>>> {
        let (earliest,): (Option<DateTime<Utc>>,) =
            sqlx::query_as("SELECT min(next_tick_at) FROM schedules WHERE NOT paused")
                .fetch_one(&self.pool)
                .await?;
        Ok(earliest)
    }

    /// Takes one step for the schedule whose next tick is the earliest at or before `now`,
    /// and returns its outcome. Returns `None` when no schedule is due, apart from those
    /// that other schedulers hold locked.
    ///
    /// The step claims the schedule with `FOR UPDATE SKIP LOCKED`, then in one transaction
    /// stores the tick's run under the idempotency key `schedule:{name}:{tick}` and moves
    /// `next_tick_at` past the tick, so racing schedulers start one run per tick. Call it
    /// until it returns `None` to handle every due tick.
    pub async fn fire_due_schedule(&self, now: DateTime<Utc>) -> Result<Option<Fired>> {
        let mut tx = self.pool.begin().await?;
        let due: Option<DueSchedule> = sqlx::query_as(
            "SELECT project, name, cron, timezone, workflow, input, missed, next_tick_at
             FROM schedules
             WHERE NOT paused AND next_tick_at <= $1
             ORDER BY next_tick_at
             LIMIT 1
             FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(due) = due else {
            return Ok(None);
        };

        let plan = CronSchedule::parse(&due.cron, &due.timezone)
            .map_err(|err| err.to_string())
            .and_then(|cron| {
                plan_tick(&cron, due.next_tick_at, now, due.missed)
                    .ok_or_else(|| format!("cron expression `{}` matches no later time", due.cron))
            });
        let plan = match plan {
            Ok(plan) => plan,
            Err(reason) => {
                // Without a next tick the schedule would be due forever, so it is paused
                // with the reason for its owner to read.
                let error = format!(
                    "{reason}; the schedule was paused: delete it and create it with an expression that matches future times"
                );
                sqlx::query(
                    "UPDATE schedules SET paused = true, last_error = $2
                     WHERE name = $1 AND project = $3",
                )
                .bind(&due.name)
                .bind(&error)
                .bind(&due.project)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(Some(Fired {
                    schedule: due.name,
                    tick: None,
                    run_id: None,
                    created: false,
                    missed: None,
                    next_tick_at: None,
                    error: Some(error),
                }));
            }
        };

        let TickPlan { run, next, missed } = plan;
        let mut fired = Fired {
            schedule: due.name.clone(),
            tick: run,
            run_id: None,
            created: false,
            missed,
            next_tick_at: Some(next),
            error: None,
        };
        if let Some(tick) = run {
            match self.latest_compiled(&due.project, &due.workflow).await {
                Ok((dag, version)) => {
                    let key = tick_key(&due.name, tick);
                    let (run_id, created) = self
                        .insert_scheduled_run(
                            &mut tx,
                            &due.project,
                            &dag,
                            &version,
                            &due.input,
                            &key,
                        )
                        .await?;
                    fired.run_id = Some(run_id);
                    fired.created = created;
                }
                // The workflow was removed or no longer compiles. The tick is passed over
                // so that later ticks still run once the workflow is fixed.
                Err(err @ (Error::NotFound { .. } | Error::InvalidSpec(_))) => {
                    fired.error = Some(format!(
                        "the run for tick {tick} was not started: {err}; register workflow `{}` again, or delete the schedule",
                        due.workflow
                    ));
                }
                Err(err) => return Err(err),
            }
        }

        sqlx::query(
            "UPDATE schedules
             SET next_tick_at = $2,
                 last_tick_at = CASE WHEN $3::uuid IS NULL THEN last_tick_at ELSE $4 END,
                 last_run_id = coalesce($3, last_run_id),
                 last_error = $5
             WHERE name = $1 AND project = $6",
        )
        .bind(&due.name)
        .bind(next)
        .bind(fired.run_id)
        .bind(fired.tick)
        .bind(&fired.error)
        .bind(&due.project)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if fired.created {
            self.local_ready.notify_waiters();
        }
        Ok(Some(fired))
    }

    /// Returns the latest stored version of a workflow, compiled.
    async fn latest_compiled(
        &self,
        project: &str,
        workflow: &str,
    ) -> Result<(crate::spec::Dag, String)> {
        let (spec, version) = self.latest_workflow_in(project, workflow).await?;
        Ok((self.compile(&spec).await?, version))
    }
}

fn schedule_not_found(name: &str) -> Error {
    Error::NotFound {
        what: "schedule",
        id: name.to_owned(),
    }
}
