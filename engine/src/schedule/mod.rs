//! Cron schedules that start runs of registered workflows.
//!
//! A schedule names a workflow, an input, a cron expression and the time zone it is read
//! in. Every worker process, and `caraml server`, runs a [`Scheduler`] that starts the
//! schedule's runs as ticks fall due.
//!
//! Guarantees kept here and in the store:
//! - One run per tick however many schedulers run: a scheduler claims a due schedule with
//!   `FOR UPDATE SKIP LOCKED` and, in the same transaction, stores the run under the
//!   idempotency key `schedule:{name}:{tick}` and moves `next_tick_at` past the tick. The
//!   key also rejects a second run for the tick should two steps ever reach it.
//! - Ticks missed while no scheduler ran (reached more than [`MISSED_TICK_GRACE`] late)
//!   follow the schedule's [`MissedTicks`] policy: `skip` starts no run for them and
//!   `run_once` starts one.
//! - A paused schedule starts nothing. Resuming it waits for the next tick after the
//!   resume, and the ticks that passed while it was paused start no runs.
//! - Due ticks are decided by the [`Clock`](crate::Clock) of the store, passed to SQL as a
//!   parameter, so tests step through ticks with a manual clock.

mod cron;
mod plan;
mod scheduler;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::Error;

pub(crate) use cron::CronSchedule;
pub use plan::MISSED_TICK_GRACE;
pub(crate) use plan::{TickPlan, plan_tick};
pub use scheduler::{Scheduler, SchedulerBuilder, SchedulerOptions};

/// Policy for ticks that passed while no scheduler was running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissedTicks {
    /// Start no run for missed ticks and wait for the next tick.
    #[default]
    Skip,
    /// Start one run for all missed ticks together, keyed by the last of them.
    RunOnce,
}

impl MissedTicks {
    pub fn as_str(self) -> &'static str {
        match self {
            MissedTicks::Skip => "skip",
            MissedTicks::RunOnce => "run_once",
        }
    }
}

impl fmt::Display for MissedTicks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MissedTicks {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "skip" => Ok(MissedTicks::Skip),
            "run_once" => Ok(MissedTicks::RunOnce),
            other => Err(Error::InvalidInput(format!(
                "missed-tick policy `{}` is invalid; use `skip` or `run_once`",
                other.escape_debug()
            ))),
        }
    }
}

impl TryFrom<String> for MissedTicks {
    type Error = Error;

    fn try_from(text: String) -> Result<Self, Error> {
        text.parse()
    }
}

/// A schedule to create.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// Unique name: 1 to 200 letters, digits, `_`, `-`, `.` and `:`.
    pub name: String,
    /// Cron expression of 5 fields, or 6 with seconds first.
    pub cron: String,
    /// IANA time zone the cron fields are read in.
    pub timezone: String,
    /// Registered workflow each tick runs.
    pub workflow: String,
    /// Input of each run.
    pub input: Value,
    pub missed: MissedTicks,
    /// Whether the schedule starts paused.
    pub paused: bool,
}

impl NewSchedule {
    /// Returns a schedule in UTC with a `null` input that skips missed ticks.
    pub fn new(
        name: impl Into<String>,
        cron: impl Into<String>,
        workflow: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            cron: cron.into(),
            timezone: "UTC".to_owned(),
            workflow: workflow.into(),
            input: Value::Null,
            missed: MissedTicks::Skip,
            paused: false,
        }
    }

    pub fn timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = timezone.into();
        self
    }

    pub fn input(mut self, input: Value) -> Self {
        self.input = input;
        self
    }

    pub fn missed(mut self, missed: MissedTicks) -> Self {
        self.missed = missed;
        self
    }

    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }
}

/// A stored schedule.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ScheduleView {
    pub project: String,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub workflow: String,
    pub input: Value,
    #[sqlx(try_from = "String")]
    pub missed: MissedTicks,
    pub paused: bool,
    /// The next tick to handle. For a paused schedule, the tick it was waiting for when it
    /// was paused.
    pub next_tick_at: DateTime<Utc>,
    /// The tick of the last run started.
    pub last_tick_at: Option<DateTime<Utc>>,
    pub last_run_id: Option<Uuid>,
    /// Reason the last tick started no run, such as a workflow that is no longer stored.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Outcome of one scheduler step for a due schedule.
#[derive(Debug, Clone, Serialize)]
pub struct Fired {
    pub schedule: String,
    /// The tick whose run the step started, found already started, or failed to start.
    pub tick: Option<DateTime<Utc>>,
    pub run_id: Option<Uuid>,
    /// False when the run already existed under the tick's idempotency key.
    pub created: bool,
    /// The first and last ticks reached too late, after downtime.
    pub missed: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The tick the schedule waits for now; `None` when the step paused it.
    pub next_tick_at: Option<DateTime<Utc>>,
    /// Reason the step started no run.
    pub error: Option<String>,
}

/// Returns the idempotency key of the run for `tick` of schedule `name`.
pub fn tick_key(name: &str, tick: DateTime<Utc>) -> String {
    format!(
        "schedule:{name}:{}",
        tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Parses an RFC 3339 time for the unit tests of this module.
#[cfg(test)]
fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test time is RFC 3339")
        .with_timezone(&Utc)
}
