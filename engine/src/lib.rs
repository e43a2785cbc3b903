//! The durable task-graph engine of CaraML.
//!
//! Workflows are DAGs of tasks. A run of a workflow lives in PostgreSQL and nowhere else:
//! workers claim ready tasks, hold a lease on each attempt that they renew by heartbeat, and
//! write each result in a transaction that also unblocks downstream tasks. A worker may die
//! at any instruction. Its attempts are rescued when their leases lapse, and the attempt id
//! fence rejects anything a dead attempt reports late. Execution is at least once.
//!
//! - Define tasks with [`Task`] and workflows with [`WorkflowBuilder`], or write a
//!   [`WorkflowSpec`] in JSON or YAML.
//! - Store runs and act on them through [`Store`].
//! - Run tasks with a [`Worker`]. Workers also delete finished runs past their retention
//!   (see [`retention`]).
//! - Read what tasks wrote through [`TaskContext::logger`] with [`Store::run_logs`]; the
//!   worker stores the lines per attempt.
//! - Start runs on cron schedules with [`Store::create_schedule`]; every worker runs a
//!   [`Scheduler`] that starts them.

mod builtin;
mod clock;
mod error;
pub mod metrics;
pub mod postgres;
mod registry;
pub mod retention;
mod retry;
mod schedule;
mod service;
pub mod spec;
mod store;
mod task;
pub mod testing;
mod waits;
mod worker;
mod workflow;

pub use builtin::{
    Approval, ApprovalDecision, ApprovalInput, RunWorkflow, RunWorkflowInput, Sleep, SleepInput,
    Timer, TimerInput,
};
pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use error::{Error, Result};
pub use registry::Registry;
pub use retention::{RetentionOptions, SweepOutcome, WorkflowRetention};
pub use retry::MAX_INLINE_OUTPUT_BYTES;
pub use schedule::{
    Fired, MISSED_TICK_GRACE, MissedTicks, NewSchedule, ScheduleView, Scheduler, SchedulerBuilder,
    SchedulerOptions, tick_key,
};
pub use service::{HttpServe, HttpServeInput};
pub use spec::{Concurrency, RetryPolicy, SpecError, SpecProblem, TaskSpec, WorkflowSpec};
pub use store::{
    BulkAction, BulkFilter, BulkOutcome, CANCEL_CHANNEL, ChildView, DEFAULT_PROJECT, DeadLetter,
    DeadLetterFilter, DeadLetterPage, Delivered, EventView, LogFilter, LogLine, LogPage, MAX_BULK,
    MAX_ERROR_CHARS, MAX_LOG_PAGE, MAX_PAGE, OutputPreview, READY_CHANNEL, RUN_STATUSES, RunCounts,
    RunFilter, RunPage, RunProgress, RunView, SCHEDULES_CHANNEL, ServiceView, SignalView,
    SkippedRun, Store, Submission, Submitted, TaskProgress, TaskView, WorkerRecord, WorkflowView,
};
pub use task::{ErrorKind, Task, TaskContext, TaskError, TaskLogger};
pub use worker::{
    DEFAULT_LOG_LIMIT_BYTES, MAX_LINE_BYTES, PREFETCH_BELOW, Worker, WorkerBuilder, WorkerOptions,
};
pub use workflow::{Node, WorkflowBuilder};
