//! Writing attempt results in batches: whatever ended while the previous batch was being
//! written goes into the next transaction.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::execute::Completed;
use super::{Shared, backoff};
use crate::error::Error;
use crate::metrics;
use crate::retry::{Decision, decide};
use crate::store::{Fence, Finished};

/// Writes results until every sender is gone and the channel is drained.
pub(super) async fn run(shared: Arc<Shared>, mut outcomes: mpsc::UnboundedReceiver<Completed>) {
    let max_batch = shared.options.max_batch;
    let mut batch: Vec<Completed> = Vec::with_capacity(max_batch);
    while outcomes.recv_many(&mut batch, max_batch).await > 0 {
        // The ended attempts' log lines are stored first, so that a run never shows an
        // attempt as ended while its lines are still in memory.
        shared.logs.flush(&shared.store).await;
        let finished: Vec<Finished> = batch
            .drain(..)
            .map(|completed| Finished {
                run_id: completed.run_id,
                idx: completed.idx,
                attempt_id: completed.attempt_id,
                decision: decide(completed.outcome, completed.state, fastrand::f64()),
            })
            .collect();
        write(&shared, finished).await;
        shared.wake.notify_one();
    }
}

/// Writes one batch, retrying while the database is unreachable. A batch that the database
/// rejects for its data is split, so one bad output cannot block the others.
async fn write(shared: &Shared, finished: Vec<Finished>) {
    let mut failures: u32 = 0;
    let mut pending = vec![finished];
    while let Some(batch) = pending.pop() {
        match shared.store.finish(&batch, Fence::Owner).await {
            Ok(applied) => {
                failures = 0;
                record(shared, &batch, &applied.accepted);
                for (run_id, status) in &applied.finished_runs {
                    tracing::info!(run.id = %run_id, status = %status, "run finished");
                }
                let mut held = shared.held();
                for item in &batch {
                    held.remove(&(item.run_id, item.idx));
                }
            }
            Err(err) if is_data_error(&err) => {
                if batch.len() > 1 {
                    let mut batch = batch;
                    let half = batch.split_off(batch.len() / 2);
                    pending.push(batch);
                    pending.push(half);
                    continue;
                }
                let mut item = batch;
                if let Some(first) = item.first_mut()
                    && matches!(first.decision, Decision::Succeed(_))
                {
                    tracing::warn!(run.id = %first.run_id, error = %err, "the database rejected a task output; failing the task");
                    first.decision = Decision::Fail {
                        error: format!(
                            "the output could not be stored: {err}; return JSON without NUL characters"
                        ),
                    };
                    pending.push(item);
                } else {
                    tracing::error!(error = %err, "the database rejected a task result; it is dropped and the task will be rescued when its lease lapses");
                    let mut held = shared.held();
                    for item in &item {
                        held.remove(&(item.run_id, item.idx));
                    }
                }
            }
            Err(err) => {
                failures += 1;
                let pause = backoff(failures);
                tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, tasks = batch.len(), "writing task results failed; retrying");
                pending.push(batch);
                tokio::time::sleep(pause.min(Duration::from_secs(2))).await;
            }
        }
    }
}

/// Updates the counters and logs results that were rejected as stale.
fn record(shared: &Shared, batch: &[Finished], accepted: &[(uuid::Uuid, i32)]) {
    let accepted: HashSet<&(uuid::Uuid, i32)> = accepted.iter().collect();
    for item in batch {
        if !accepted.contains(&(item.run_id, item.idx)) {
            metrics::STALE_REJECTED.add(1);
            tracing::warn!(
                worker.id = %shared.worker_id,
                run.id = %item.run_id,
                task.idx = item.idx,
                attempt.id = %item.attempt_id,
                "stale result rejected: the attempt no longer holds the task's lease"
            );
            continue;
        }
        match &item.decision {
            Decision::Succeed(_) => metrics::SUCCEEDED.add(1),
            Decision::Retry { .. } => metrics::RETRIED.add(1),
            Decision::Fail { .. } => metrics::FAILED.add(1),
            Decision::Cancel | Decision::Release | Decision::Wait(_) => {}
        }
    }
}

/// Returns whether Postgres rejected the statement because of a value in it (SQLSTATE class 22),
/// as opposed to a connection or server fault that a retry can outlast.
fn is_data_error(err: &Error) -> bool {
    match err {
        Error::Database(sqlx::Error::Database(db)) => {
            db.code().is_some_and(|code| code.starts_with("22"))
        }
        _ => false,
    }
}
