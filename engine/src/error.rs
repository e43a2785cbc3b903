//! Errors of the engine's operations, classified by whose fault they are.

use uuid::Uuid;

use crate::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request names something that does not exist.
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },

    /// The request names a task that its run does not have. `tasks` contains the first of the
    /// run's `total` task names, in spec order.
    #[error(
        "run {run_id} has no task `{task}`; {}",
        describe_tasks(.tasks, *.total)
    )]
    TaskNotFound {
        run_id: Uuid,
        task: String,
        tasks: Vec<String>,
        total: usize,
    },

    /// The request is valid but conflicts with the current state, such as cancelling a run
    /// that already finished.
    #[error("{0}")]
    Conflict(String),

    /// A submission reused an idempotency key that belongs to a run of another workflow.
    #[error(
        "idempotency_key `{key}` already belongs to run {run_id} of workflow `{existing_workflow}`, but this request runs workflow `{requested_workflow}`; use a new idempotency_key for a different workflow"
    )]
    IdempotencyKeyReused {
        key: String,
        run_id: Uuid,
        existing_workflow: String,
        requested_workflow: String,
    },

    /// The submitted workflow spec is invalid.
    #[error(transparent)]
    InvalidSpec(#[from] SpecError),

    /// A value in the request is invalid. The message names it and how to fix it.
    #[error("{0}")]
    InvalidInput(String),

    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl Error {
    pub fn run_not_found(id: Uuid) -> Self {
        Self::NotFound {
            what: "run",
            id: id.to_string(),
        }
    }
}

/// Lists task names for a "task not found" message, with how many were left out.
fn describe_tasks(tasks: &[String], total: usize) -> String {
    let names: Vec<String> = tasks.iter().map(|name| format!("`{name}`")).collect();
    match total.saturating_sub(tasks.len()) {
        _ if tasks.is_empty() => "it has no tasks".to_owned(),
        0 => format!("use one of its tasks: {}", names.join(", ")),
        more => format!("use one of its tasks: {} and {more} more", names.join(", ")),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
