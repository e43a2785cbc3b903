//! Running one attempt: build its context, run the task with its timeout and cancellation,
//! and turn what happened into an outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{AttemptLog, Shared, StopReason};
use crate::retry::{AttemptState, Outcome};
use crate::store::ClaimedTask;
use crate::task::{ContextInner, ErrorKind, TaskContext, TaskError};
use crate::waits::Durable;

/// An attempt that ended, waiting for its result to be written.
pub(super) struct Completed {
    pub(super) run_id: Uuid,
    pub(super) idx: i32,
    pub(super) attempt_id: Uuid,
    pub(super) state: AttemptState,
    pub(super) outcome: Outcome,
}

/// Run inputs and upstream outputs for a batch of claimed tasks.
#[derive(Clone, Default)]
pub(super) struct BatchContext {
    run_inputs: Arc<HashMap<Uuid, Arc<Value>>>,
    outputs: Arc<HashMap<(Uuid, i32), (String, Value)>>,
    /// Set when loading failed: every task of the batch fails with it and is retried.
    error: Option<String>,
}

/// Loads the run inputs and upstream outputs the claimed tasks need.
pub(super) async fn load_context(shared: &Shared, tasks: &[ClaimedTask]) -> BatchContext {
    // Tasks of one run share one copy of its input.
    let mut run_inputs: HashMap<Uuid, Arc<Value>> = HashMap::new();
    for task in tasks {
        run_inputs
            .entry(task.run_id)
            .or_insert_with(|| Arc::new(task.run_input.clone()));
    }

    let mut parents: Vec<(Uuid, i32)> = tasks
        .iter()
        .flat_map(|t| t.parents.iter().map(move |&p| (t.run_id, p)))
        .collect();
    parents.sort_unstable();
    parents.dedup();
    let outputs = if parents.is_empty() {
        HashMap::new()
    } else {
        match shared.store.outputs(&parents).await {
            Ok(outputs) => outputs,
            Err(err) => return failed_context(&err),
        }
    };
    BatchContext {
        run_inputs: Arc::new(run_inputs),
        outputs: Arc::new(outputs),
        error: None,
    }
}

fn failed_context(err: &crate::error::Error) -> BatchContext {
    BatchContext {
        error: Some(format!("could not load the task's input: {err}")),
        ..BatchContext::default()
    }
}

/// Runs one attempt in a slot. Returns `None` when the attempt lost its lease, since its
/// result must not be written.
pub(super) async fn run_attempt(
    shared: &Arc<Shared>,
    task: ClaimedTask,
    cancel: CancellationToken,
    context: &BatchContext,
) -> Option<Completed> {
    let state = AttemptState {
        attempt: task.attempt.max(0) as u32,
        attempt_limit: task.attempt_limit.max(0) as u32,
        max_attempts: task.max_attempts.max(1) as u32,
        initial_backoff: Duration::from_millis(task.initial_backoff_ms.max(0) as u64),
        max_backoff: Duration::from_millis(task.max_backoff_ms.max(0) as u64),
        service: shared.registry.is_service(&task.kind),
    };
    let key = (task.run_id, task.idx);
    let span = tracing::info_span!(
        "attempt",
        run.id = %task.run_id,
        task.name = %task.name,
        task.kind = %task.kind,
        attempt.id = %task.attempt_id,
        attempt.number = task.attempt,
    );

    let log = Arc::new(AttemptLog::new(
        Arc::clone(&shared.logs),
        task.run_id,
        task.idx,
        task.attempt,
        shared.options.log_limit_bytes,
    ));

    let permit = tokio::select! {
        permit = Arc::clone(&shared.slots).acquire_owned() => permit.ok(),
        () = cancel.cancelled() => None,
    };
    let mut took = Duration::ZERO;
    let outcome = match permit {
        None => stopped_outcome(shared, key),
        Some(_permit) => {
            let started = std::time::Instant::now();
            let outcome = if let Some(error) = &context.error {
                Some(Outcome::Failed(TaskError::retryable(error.clone())))
            } else {
                execute(shared, &task, cancel, context, Arc::clone(&log))
                    .instrument(span.clone())
                    .await
            };
            took = started.elapsed();
            outcome
        }
    };
    shared.attempt_ended(took);
    // The closing note is buffered before the result goes to the writer, which flushes
    // the buffer before it writes results.
    log.finish();
    let Some(outcome) = outcome else {
        span.in_scope(|| tracing::warn!("attempt lost its lease; its result is discarded"));
        shared.held().remove(&key);
        return None;
    };
    if let Some(held) = shared.held().get_mut(&key) {
        held.ended = true;
    }
    span.in_scope(|| match &outcome {
        Outcome::Succeeded(_) => tracing::debug!("attempt succeeded"),
        Outcome::Failed(err) => tracing::debug!(error = %err, "attempt failed"),
        other => tracing::debug!(outcome = ?other, "attempt ended"),
    });
    Some(Completed {
        run_id: task.run_id,
        idx: task.idx,
        attempt_id: task.attempt_id,
        state,
        outcome,
    })
}

/// Runs the task's code; `None` means the lease was lost.
async fn execute(
    shared: &Arc<Shared>,
    task: &ClaimedTask,
    cancel: CancellationToken,
    context: &BatchContext,
    log: Arc<AttemptLog>,
) -> Option<Outcome> {
    let key = (task.run_id, task.idx);
    let Some(handler) = shared.registry.handler(&task.kind) else {
        return Some(Outcome::Failed(TaskError::permanent(format!(
            "kind `{}` is not registered in this worker; start a worker that registers it",
            task.kind
        ))));
    };
    let upstream: HashMap<String, Value> = task
        .parents
        .iter()
        .filter_map(|&p| context.outputs.get(&(task.run_id, p)).cloned())
        .collect();
    let durable = Arc::new(Durable::new(
        shared.store.clone(),
        Arc::clone(shared.store.clock()),
        task.idx,
        &task.waits,
    ));
    let ctx = TaskContext {
        inner: Arc::new(ContextInner {
            run_id: task.run_id,
            task_name: task.name.clone(),
            kind: task.kind.clone(),
            attempt: task.attempt.max(0) as u32,
            attempt_id: task.attempt_id,
            run_input: context
                .run_inputs
                .get(&task.run_id)
                .cloned()
                .unwrap_or_else(|| Arc::new(Value::Null)),
            upstream,
            cancel: cancel.clone(),
            durable: Some(Arc::clone(&durable)),
            log: Some(log),
        }),
    };

    // The task runs in its own tokio task so that a panic becomes a failed attempt instead
    // of taking the worker down.
    let mut handle = tokio::spawn(
        handler
            .call(ctx, task.input.clone())
            .instrument(tracing::Span::current()),
    );
    let timeout = task
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.max(1) as u64));
    let sleep_for = timeout.unwrap_or(Duration::from_secs(u64::from(u32::MAX)));

    tokio::select! {
        joined = &mut handle => Some(suspended(joined_outcome(joined), &durable)),
        () = tokio::time::sleep(sleep_for) => {
            cancel.cancel();
            handle.abort();
            Some(Outcome::TimedOut(timeout.unwrap_or_default()))
        }
        () = cancel.cancelled() => {
            // Give the task the grace period to notice the token and return.
            let joined = tokio::time::timeout(shared.options.grace, &mut handle).await;
            handle.abort();
            match (stopped_outcome(shared, key), joined) {
                (None, _) => None,
                (Some(_), Ok(Ok(Ok(output)))) => Some(Outcome::Succeeded(output)),
                (Some(outcome), _) => Some(outcome),
            }
        }
    }
}

fn joined_outcome(joined: Result<Result<Value, TaskError>, tokio::task::JoinError>) -> Outcome {
    match joined {
        Ok(Ok(output)) => Outcome::Succeeded(output),
        Ok(Err(err)) => Outcome::Failed(err),
        Err(err) if err.is_panic() => {
            let payload = err.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            Outcome::Failed(TaskError::retryable(format!("task panicked: {message}")))
        }
        Err(_) => Outcome::Failed(TaskError::retryable("task was aborted")),
    }
}

/// Turns a suspension into the wait to store.
fn suspended(outcome: Outcome, durable: &Durable) -> Outcome {
    match outcome {
        Outcome::Failed(err) if err.kind == ErrorKind::Suspended => match durable.suspension() {
            Some(suspension) => Outcome::Suspended(suspension),
            None => Outcome::Failed(err),
        },
        other => other,
    }
}

/// Returns the outcome of an attempt the worker stopped, or `None` when it lost its lease.
fn stopped_outcome(shared: &Shared, key: (Uuid, i32)) -> Option<Outcome> {
    let reason = shared.held().get(&key).and_then(|held| held.stop);
    match reason {
        Some(StopReason::LeaseLost) => None,
        Some(StopReason::RunCancelled) => Some(Outcome::Cancelled),
        Some(StopReason::Shutdown) | None => Some(Outcome::Released),
    }
}
