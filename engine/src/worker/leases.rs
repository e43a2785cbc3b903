//! The heartbeat that renews this worker's leases, and the reaper that ends attempts whose
//! lease lapsed on any worker.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Shared, StopReason};
use crate::metrics;
use crate::retry::{AttemptState, Decision, Outcome, decide};
use crate::store::{Fence, Finished, LeaseState};

/// Renews the leases of held attempts; stops attempts whose lease was lost or whose run was
/// cancelled (a fallback for a missed cancellation notice).
pub(super) async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let mut interval = tokio::time::interval(shared.options.heartbeat_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        let held: Vec<(Uuid, i32, Uuid)> = shared
            .held()
            .iter()
            .filter(|(_, held)| held.stop.is_none())
            .map(|(key, held)| (key.0, key.1, held.attempt_id))
            .collect();
        let states = match shared
            .store
            .heartbeat(shared.worker_id, &held, shared.options.lease)
            .await
        {
            Ok(states) => states,
            Err(err) => {
                tracing::warn!(worker.id = %shared.worker_id, error = %err, attempts = held.len(), "heartbeat failed");
                continue;
            }
        };
        for ((run_id, idx, attempt_id), state) in held.iter().zip(states) {
            let reason = match state {
                LeaseState::Renewed => continue,
                LeaseState::RunCancelled => StopReason::RunCancelled,
                LeaseState::Lost => {
                    // The result may have been written between the snapshot and the
                    // heartbeat, which also ends the lease, so only an attempt that is still
                    // running has lost it.
                    let still_held = shared
                        .held()
                        .get(&(*run_id, *idx))
                        .is_some_and(|held| held.attempt_id == *attempt_id && !held.ended);
                    if !still_held {
                        continue;
                    }
                    tracing::warn!(run.id = %run_id, task.idx = idx, attempt.id = %attempt_id, "lease lost; stopping the attempt");
                    StopReason::LeaseLost
                }
            };
            shared.stop_where(reason, |key, held| {
                key.0 == *run_id && key.1 == *idx && held.attempt_id == *attempt_id
            });
        }
    }
}

/// How often each worker looks for replaced service runs left running.
const RETIRE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Ends attempts whose lease lapsed: each counts as a failed, retryable attempt, or as
/// cancelled when its run was cancelled.
pub(super) async fn reap(shared: Arc<Shared>, stop: CancellationToken) {
    // Start at a random point of the interval so that workers started together spread
    // their reaper queries.
    let offset = shared.options.reap_interval.mul_f64(fastrand::f64());
    tokio::select! {
        () = tokio::time::sleep(offset) => {}
        () = stop.cancelled() => return,
    }
    let mut interval = tokio::time::interval(shared.options.reap_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retire = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Err(err) = reap_once(&shared).await {
            tracing::warn!(worker.id = %shared.worker_id, error = %err, "reaping expired leases failed");
        }
        // Replaced service runs are normally stopped by a timer in the process that made
        // the switch. This catches those whose process died, at one statement a minute.
        if last_retire.elapsed() >= RETIRE_CHECK_INTERVAL {
            last_retire = tokio::time::Instant::now();
            if let Err(err) = shared.store.retire_due_services().await {
                tracing::warn!(worker.id = %shared.worker_id, error = %err, "stopping replaced service runs failed");
            }
        }
    }
}

async fn reap_once(shared: &Shared) -> crate::error::Result<()> {
    let expired = shared
        .store
        .expired_attempts(shared.options.max_batch)
        .await?;
    if expired.is_empty() {
        return Ok(());
    }
    let mut run_ids: Vec<Uuid> = expired.iter().map(|t| t.run_id).collect();
    run_ids.sort_unstable();
    run_ids.dedup();
    let cancelled = shared.store.cancelled_runs(&run_ids).await?;
    let finished: Vec<Finished> = expired
        .iter()
        .map(|task| {
            let outcome = if cancelled.contains(&task.run_id) {
                Outcome::Cancelled
            } else {
                Outcome::LeaseExpired
            };
            let state = AttemptState {
                attempt: task.attempt.max(0) as u32,
                attempt_limit: task.attempt_limit.max(0) as u32,
                max_attempts: task.max_attempts.max(1) as u32,
                initial_backoff: std::time::Duration::from_millis(
                    task.initial_backoff_ms.max(0) as u64
                ),
                max_backoff: std::time::Duration::from_millis(task.max_backoff_ms.max(0) as u64),
                service: shared.registry.is_service(&task.kind),
            };
            Finished {
                run_id: task.run_id,
                idx: task.idx,
                attempt_id: task.attempt_id,
                // An expired lease is no fault of the task itself, so the retry runs at
                // once instead of after the backoff.
                decision: match decide(outcome, state, 0.0) {
                    Decision::Retry { error, .. } => Decision::Retry {
                        delay: std::time::Duration::ZERO,
                        error,
                    },
                    other => other,
                },
            }
        })
        .collect();
    let applied = shared.store.finish(&finished, Fence::Expired).await?;
    metrics::RESCUED.add(applied.accepted.len() as u64);
    if !applied.accepted.is_empty() {
        tracing::info!(worker.id = %shared.worker_id, attempts = applied.accepted.len(), "rescued attempts whose lease lapsed");
        shared.wake.notify_one();
    }
    Ok(())
}
