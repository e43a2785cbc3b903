//! The task trait that users implement, the context a task runs with, and task errors.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::LogLevel;
use crate::worker::AttemptLog;

/// A unit of work that the engine runs as one node of a DAG.
///
/// `Input` is decoded from the node's `input` in the workflow. A node without one decodes
/// from JSON `null`, so `()` or an `Option` fits tasks that take none. Outputs of upstream
/// nodes and the run's input come through the [`TaskContext`].
///
/// Execution is at least once: a task may run again after a worker crash, so side effects
/// should key on [`TaskContext::idempotency_key`].
pub trait Task: Send + Sync + 'static {
    type Input: DeserializeOwned + Send;
    type Output: Serialize + Send;

    /// The kind name that specs use to refer to this task, such as `flights.load`.
    const KIND: &'static str;

    /// Whether the task is a long-lived service. A service runs until its run is cancelled
    /// or its service is stopped, and reports its address through [`TaskContext::ready`].
    /// It is started again with backoff and no attempt limit whenever it ends with an
    /// error or its worker dies.
    const SERVICE: bool = false;

    fn run(
        &self,
        ctx: TaskContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, TaskError>> + Send;
}

/// Whether a failed attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A transient fault: the attempt is retried while the retry policy allows.
    Retryable,
    /// A fault that another attempt cannot fix, such as invalid input: the task fails now.
    Permanent,
    /// Not a fault: the task waits for a timer, a signal or a child run and gives its slot
    /// back meanwhile. Only the context's wait methods return it; pass it on with `?`.
    Suspended,
}

/// The error a task returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub kind: ErrorKind,
    pub message: String,
}

impl TaskError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }
}

/// Information a task attempt has about itself and the run around it.
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) inner: Arc<ContextInner>,
}

#[derive(Clone)]
pub(crate) struct ContextInner {
    pub(crate) run_id: Uuid,
    pub(crate) task_name: String,
    pub(crate) kind: String,
    pub(crate) attempt: u32,
    pub(crate) attempt_id: Uuid,
    pub(crate) run_input: Arc<Value>,
    pub(crate) upstream: HashMap<String, Value>,
    pub(crate) cancel: CancellationToken,
    /// Durable waits; absent in a detached context.
    pub(crate) durable: Option<Arc<crate::waits::Durable>>,
    /// The attempt's stored log; absent in a detached context, whose logger only emits
    /// tracing records.
    pub(crate) log: Option<Arc<AttemptLog>>,
}

impl TaskContext {
    /// Returns a context outside any worker, for running a task's body directly in tests
    /// and tools: attempt 1 of a fresh run id, with no upstream outputs and a `null` run
    /// input until set.
    pub fn detached(task_name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(ContextInner {
                run_id: Uuid::now_v7(),
                task_name: task_name.into(),
                kind: kind.into(),
                attempt: 1,
                attempt_id: Uuid::new_v4(),
                run_input: Arc::new(Value::Null),
                upstream: HashMap::new(),
                cancel: CancellationToken::new(),
                durable: None,
                log: None,
            }),
        }
    }

    /// Sets the run input of a detached context.
    pub fn with_run_input(mut self, input: Value) -> Self {
        Arc::make_mut(&mut self.inner).run_input = Arc::new(input);
        self
    }

    /// Adds an upstream output to a detached context.
    pub fn with_upstream(mut self, name: impl Into<String>, output: Value) -> Self {
        Arc::make_mut(&mut self.inner)
            .upstream
            .insert(name.into(), output);
        self
    }

    pub fn run_id(&self) -> Uuid {
        self.inner.run_id
    }

    pub fn task_name(&self) -> &str {
        &self.inner.task_name
    }

    pub fn kind(&self) -> &str {
        &self.inner.kind
    }

    /// Returns the attempt number, counting from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Returns the unique id of this attempt. The engine accepts results only from the
    /// attempt that has the task's lease.
    pub fn attempt_id(&self) -> Uuid {
        self.inner.attempt_id
    }

    /// Returns a key that is the same for every attempt of this task in this run, for making
    /// side effects safe to repeat (`{run id}/{task name}`).
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.inner.run_id, self.inner.task_name)
    }

    /// Cancelled when the run is cancelled, the attempt times out or its lease is lost.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Returns the input the run was submitted with.
    pub fn run_input(&self) -> &Value {
        &self.inner.run_input
    }

    /// Decodes the run's input into `T`.
    pub fn run_input_as<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        T::deserialize(self.inner.run_input.as_ref()).map_err(|err| {
            TaskError::permanent(format!(
                "the run input does not fit task `{}` of kind `{}`: {err}",
                self.inner.task_name, self.inner.kind
            ))
        })
    }

    /// Returns the outputs of the upstream nodes, by node name.
    pub fn upstream(&self) -> &HashMap<String, Value> {
        &self.inner.upstream
    }

    /// Decodes the output of upstream node `name` into `T`.
    pub fn upstream_as<T: DeserializeOwned>(&self, name: &str) -> Result<T, TaskError> {
        let Some(output) = self.inner.upstream.get(name) else {
            let mut names: Vec<&str> = self.inner.upstream.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(TaskError::permanent(format!(
                "task `{}` has no upstream node `{name}`; its upstream nodes are [{}]",
                self.inner.task_name,
                names.join(", ")
            )));
        };
        T::deserialize(output).map_err(|err| {
            TaskError::permanent(format!(
                "the output of upstream node `{name}` does not fit task `{}`: {err}",
                self.inner.task_name
            ))
        })
    }

    /// Returns a logger whose records carry the run, task and attempt ids. In a worker,
    /// the logger also stores each line with the attempt, for `GET /v1/runs/{id}/logs`.
    pub fn logger(&self) -> TaskLogger {
        TaskLogger {
            span: tracing::info_span!(
                "task",
                run.id = %self.inner.run_id,
                task.name = %self.inner.task_name,
                attempt.id = %self.inner.attempt_id,
                attempt.number = self.inner.attempt,
            ),
            log: self.inner.log.clone(),
        }
    }
}

/// Writes log lines for one task attempt: as tracing records with target `caraml::task`,
/// and, in a worker, to the attempt's stored log.
///
/// Writing never waits for the database and never fails. The worker stores at most
/// [`WorkerOptions::log_limit_bytes`](crate::WorkerOptions::log_limit_bytes) of messages per
/// attempt and cuts each line to [`MAX_LINE_BYTES`](crate::MAX_LINE_BYTES).
pub struct TaskLogger {
    span: tracing::Span,
    log: Option<Arc<AttemptLog>>,
}

impl TaskLogger {
    pub fn info(&self, message: &str) {
        self.span
            .in_scope(|| tracing::info!(target: "caraml::task", "{message}"));
        self.store(LogLevel::Info, message);
    }

    pub fn warn(&self, message: &str) {
        self.span
            .in_scope(|| tracing::warn!(target: "caraml::task", "{message}"));
        self.store(LogLevel::Warn, message);
    }

    pub fn error(&self, message: &str) {
        self.span
            .in_scope(|| tracing::error!(target: "caraml::task", "{message}"));
        self.store(LogLevel::Error, message);
    }

    fn store(&self, level: LogLevel, message: &str) {
        if let Some(log) = &self.log {
            log.write(level, message);
        }
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A task with its types erased, so the registry can hold tasks of every kind.
pub(crate) trait ErasedTask: Send + Sync {
    fn call(&self, ctx: TaskContext, input: Value) -> BoxFuture<Result<Value, TaskError>>;

    fn is_service(&self) -> bool;
}

pub(crate) struct Erased<T>(pub(crate) Arc<T>);

impl<T: Task> ErasedTask for Erased<T> {
    fn is_service(&self) -> bool {
        T::SERVICE
    }

    fn call(&self, ctx: TaskContext, input: Value) -> BoxFuture<Result<Value, TaskError>> {
        let task = Arc::clone(&self.0);
        Box::pin(async move {
            let input = serde_json::from_value::<T::Input>(input).map_err(|err| {
                TaskError::permanent(format!(
                    "the input of task `{}` does not fit kind `{}`: {err}",
                    ctx.task_name(),
                    T::KIND
                ))
            })?;
            let output = task.run(ctx, input).await?;
            serde_json::to_value(output).map_err(|err| {
                TaskError::permanent(format!(
                    "the output of kind `{}` could not be encoded as JSON: {err}",
                    T::KIND
                ))
            })
        })
    }
}
