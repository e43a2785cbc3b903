//! The engine's state in PostgreSQL: every read and write of runs, task runs, workers and
//! events goes through [`Store`].
//!
//! Guarantees kept here:
//! - Claiming takes ready tasks in batches with `FOR UPDATE SKIP LOCKED` in one short
//!   statement; no transaction stays open while task code runs.
//! - Every heartbeat and completion is fenced by the attempt id and a live lease, so the
//!   late result of an attempt that lost its lease is rejected, never applied.
//! - A completion stores the output, unblocks downstream tasks and finishes the run in one
//!   transaction.
//! - Transactions that touch several runs lock the run rows first, in id order, so
//!   concurrent completions cannot deadlock on shared rows.
//! - A scheduled run is stored in the transaction that claims its schedule with
//!   `FOR UPDATE SKIP LOCKED` and moves the schedule past the tick.

mod bulk;
mod catalog;
mod claim;
mod complete;
mod control;
mod dead_letters;
mod eager;
mod lease;
mod logs;
#[cfg(test)]
mod plans;
mod progress;
mod query;
mod retention;
mod schedules;
mod services;
mod submit;
#[cfg(test)]
mod tests;
mod waits;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use bulk::{BulkAction, BulkFilter, BulkOutcome, MAX_BULK, SkippedRun};
pub use catalog::WorkerRecord;
pub(crate) use claim::ClaimedTask;
pub(crate) use complete::{Fence, Finished};
pub use dead_letters::{DeadLetter, DeadLetterFilter, DeadLetterPage};
pub(crate) use eager::{LocalWorker, Registration};
pub(crate) use lease::LeaseState;
pub use logs::{LogFilter, LogLine, LogPage, MAX_LOG_PAGE};
pub(crate) use logs::{LogLevel, NewLogLine};
pub use progress::{MAX_ERROR_CHARS, OutputPreview, RunProgress, TaskProgress};
pub use query::{
    ChildView, EventView, MAX_PAGE, RUN_STATUSES, RunCounts, RunFilter, RunPage, RunView, TaskView,
    WorkflowView,
};
pub use services::ServiceView;
pub use submit::{DEFAULT_PROJECT, Submission, Submitted};
pub(crate) use waits::ChildState;
pub use waits::{Delivered, SignalView};

use crate::clock::{Clock, SystemClock};
use crate::error::Result;

/// Channel on which the engine announces tasks that became ready. The payload is the queue
/// name, followed by `@` and a Unix time in milliseconds when the task is due later.
pub const READY_CHANNEL: &str = "caraml_ready";

/// Channel on which the engine announces cancelled runs; the payload is the run id.
pub const CANCEL_CHANNEL: &str = "caraml_cancel";

/// Channel on which the engine announces created, paused, resumed and deleted schedules;
/// the payload is the schedule name.
pub const SCHEDULES_CHANNEL: &str = "caraml_schedules";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Handle to the engine's tables. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    cache: Arc<catalog::Cache>,
    local_ready: Arc<tokio::sync::Notify>,
    local_workers: Arc<eager::LocalWorkers>,
    clock: Arc<dyn Clock>,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: Arc::default(),
            local_ready: Arc::default(),
            local_workers: Arc::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the clock that decides when schedules are due, which is the system clock
    /// unless a test sets another.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Connects with a pool of at most `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("caraml");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self::new(pool))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Registers a worker of this process for eager dispatch.
    pub(crate) fn register_local_worker(&self, registration: Registration) {
        self.local_workers.register(registration);
    }

    /// Completes when a run submitted through this handle, or a clone of it, has tasks ready
    /// now. Workers in the same process wait on it as well as on `LISTEN/NOTIFY`, which saves
    /// them the notification's trip through the database.
    pub(crate) async fn local_ready(&self) {
        self.local_ready.notified().await;
    }

    /// Applies pending migrations. sqlx holds a Postgres advisory lock while it migrates, so
    /// processes that start together apply each migration once.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
}
