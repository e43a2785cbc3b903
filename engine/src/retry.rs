//! Decisions about a finished attempt: keep its output, try again later, or give up.
//!
//! These are pure functions over the attempt's state, so every branch is tested without a
//! database; the store applies the decisions.

use std::time::Duration;

use serde_json::Value;

use crate::task::{ErrorKind, TaskError};
use crate::waits::Suspension;

/// Maximum size of an output stored inline with a task. A larger output fails the task with
/// an error that tells it to write the data to a file and return its path.
pub const MAX_INLINE_OUTPUT_BYTES: usize = 2 * 1024 * 1024;

/// Outcome of an attempt, as the worker saw it.
#[derive(Debug)]
pub(crate) enum Outcome {
    Succeeded(Value),
    Failed(TaskError),
    TimedOut(Duration),
    /// The run was cancelled while the attempt ran.
    Cancelled,
    /// The worker is shutting down and hands the task back unfinished.
    Released,
    /// The lease lapsed: the worker stopped heartbeating in time.
    LeaseExpired,
    /// The task waits for a timer, a signal or a child run.
    Suspended(Suspension),
}

/// Action the store takes for a finished attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Succeed(Value),
    Retry { delay: Duration, error: String },
    Fail { error: String },
    Cancel,
    Release,
    Wait(Suspension),
}

/// The retry state of a task run when its attempt ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptState {
    /// The number of the attempt that ended, counting from 1 over the task's whole life.
    pub(crate) attempt: u32,
    /// The last attempt number allowed in the current round; resuming a run starts a new round.
    pub(crate) attempt_limit: u32,
    pub(crate) max_attempts: u32,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    /// Whether the task is a service, which restarts after every failure.
    pub(crate) service: bool,
}

/// Backoff between restarts of a service: from 1 s, doubling up to a minute.
const SERVICE_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// Decides what to do with an attempt's outcome. `jitter` is a number in `[0, 1)`.
pub(crate) fn decide(outcome: Outcome, state: AttemptState, jitter: f64) -> Decision {
    let error = match outcome {
        Outcome::Succeeded(output) => return check_output_size(output),
        Outcome::Cancelled => return Decision::Cancel,
        Outcome::Released => return Decision::Release,
        Outcome::Suspended(suspension) => return Decision::Wait(suspension),
        Outcome::Failed(TaskError {
            kind: ErrorKind::Suspended,
            message,
        }) => {
            return Decision::Fail {
                error: format!(
                    "the task returned a suspension ({message}) without waiting; return the error of a context wait method such as `signal` or `sleep_for`"
                ),
            };
        }
        Outcome::Failed(TaskError {
            kind: ErrorKind::Permanent,
            message,
        }) if state.service => format!("permanent error: {message}"),
        Outcome::Failed(TaskError {
            kind: ErrorKind::Permanent,
            message,
        }) => {
            return Decision::Fail {
                error: format!("permanent error: {message}"),
            };
        }
        Outcome::Failed(TaskError {
            kind: ErrorKind::Retryable,
            message,
        }) => message,
        Outcome::TimedOut(limit) => format!(
            "attempt timed out after {:.3} s; raise timeout_seconds if the task needs longer",
            limit.as_secs_f64()
        ),
        Outcome::LeaseExpired => {
            "lease expired: the worker running this attempt stopped heartbeating (crashed, killed or cut off from the database)".to_owned()
        }
    };
    if state.service {
        // Restarts count from the last round, so a service that ran well for a day and then
        // failed starts again after a second, not after the cap.
        let restarts = state
            .attempt
            .saturating_sub(state.attempt_limit.saturating_sub(state.max_attempts))
            .max(1);
        let policy = AttemptState {
            initial_backoff: SERVICE_BACKOFF.0,
            max_backoff: SERVICE_BACKOFF.1,
            ..state
        };
        return Decision::Retry {
            delay: backoff(policy, restarts.min(7), jitter),
            error,
        };
    }
    if state.attempt >= state.attempt_limit {
        return Decision::Fail {
            error: format!(
                "{error} (attempt {} of {}, no attempts left)",
                state.attempt, state.max_attempts
            ),
        };
    }
    let round_start = state.attempt_limit.saturating_sub(state.max_attempts);
    let tries_in_round = state.attempt.saturating_sub(round_start).max(1);
    Decision::Retry {
        delay: backoff(state, tries_in_round, jitter),
        error,
    }
}

/// Returns the delay before the next try: exponential in the tries so far, capped, plus up to
/// 25% jitter so that tasks that failed together do not retry together.
pub(crate) fn backoff(state: AttemptState, tries_in_round: u32, jitter: f64) -> Duration {
    let exponent = tries_in_round.saturating_sub(1).min(30);
    let base = state.initial_backoff.as_secs_f64() * f64::from(1u32 << exponent);
    let capped = base.min(state.max_backoff.as_secs_f64());
    let jittered = capped * (1.0 + 0.25 * jitter.clamp(0.0, 1.0));
    Duration::from_secs_f64(jittered.min(state.max_backoff.as_secs_f64() * 1.25))
}

fn check_output_size(output: Value) -> Decision {
    // Serializing here costs one extra pass over the output. Outputs are small in the
    // common case, and the check keeps oversized rows out of the table.
    let size = serde_json::to_vec(&output).map_or(0, |bytes| bytes.len());
    if size > MAX_INLINE_OUTPUT_BYTES {
        return Decision::Fail {
            error: format!(
                "output is {size} bytes, over the {MAX_INLINE_OUTPUT_BYTES}-byte limit for inline outputs; write large results to a file and return its path"
            ),
        };
    }
    Decision::Succeed(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(attempt: u32, max_attempts: u32) -> AttemptState {
        AttemptState {
            attempt,
            attempt_limit: max_attempts,
            max_attempts,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            service: false,
        }
    }

    #[test]
    fn service_restarts_past_its_attempt_limit() {
        let service = AttemptState {
            service: true,
            ..state(9, 3)
        };
        let decision = decide(
            Outcome::Failed(TaskError::permanent("crashed")),
            service,
            0.0,
        );
        let Decision::Retry { delay, error } = decision else {
            panic!("a service is restarted, got {decision:?}");
        };
        assert!(delay >= Duration::from_secs(1), "{delay:?}");
        assert!(delay <= Duration::from_secs(75), "{delay:?}");
        assert!(error.contains("crashed"), "{error}");
    }

    #[test]
    fn retryable_error_retries_while_attempts_remain() {
        let decision = decide(
            Outcome::Failed(TaskError::retryable("flaky")),
            state(1, 3),
            0.0,
        );
        assert_eq!(
            decision,
            Decision::Retry {
                delay: Duration::from_secs(1),
                error: "flaky".into()
            }
        );
    }

    #[test]
    fn last_attempt_fails() {
        let decision = decide(
            Outcome::Failed(TaskError::retryable("flaky")),
            state(3, 3),
            0.0,
        );
        assert!(matches!(decision, Decision::Fail { .. }), "{decision:?}");
    }

    #[test]
    fn permanent_error_fails_at_once() {
        let decision = decide(
            Outcome::Failed(TaskError::permanent("bad input")),
            state(1, 5),
            0.0,
        );
        assert!(matches!(decision, Decision::Fail { ref error } if error.contains("bad input")));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let delays: Vec<u64> = (1..=6)
            .map(|tries| backoff(state(tries, 10), tries, 0.0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        let delay = backoff(state(1, 3), 1, 0.999);
        assert!(
            delay > Duration::from_millis(1200),
            "{delay:?} includes jitter"
        );
        assert!(
            delay <= Duration::from_millis(1250),
            "{delay:?} adds at most 25%"
        );
    }

    #[test]
    fn resumed_round_restarts_backoff() {
        // Attempts 1-3 failed in the first round; the resumed round allows attempts 4-6.
        let resumed = AttemptState {
            attempt: 4,
            attempt_limit: 6,
            ..state(4, 3)
        };
        let decision = decide(Outcome::Failed(TaskError::retryable("x")), resumed, 0.0);
        assert_eq!(
            decision,
            Decision::Retry {
                delay: Duration::from_secs(1),
                error: "x".into()
            }
        );
    }

    #[test]
    fn oversized_output_fails() {
        let big = json!("x".repeat(MAX_INLINE_OUTPUT_BYTES + 1));
        let decision = decide(Outcome::Succeeded(big), state(1, 3), 0.0);
        assert!(matches!(decision, Decision::Fail { ref error } if error.contains("limit")));
    }

    #[test]
    fn lease_expiry_counts_as_an_attempt() {
        assert!(matches!(
            decide(Outcome::LeaseExpired, state(3, 3), 0.0),
            Decision::Fail { .. }
        ));
        assert!(matches!(
            decide(Outcome::LeaseExpired, state(1, 3), 0.0),
            Decision::Retry { .. }
        ));
    }
}
