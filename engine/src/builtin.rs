//! Task kinds built into the engine.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::task::{Task, TaskContext, TaskError};

/// `sleep`: waits for `seconds` in its worker slot, or until the attempt is cancelled. For
/// long waits use `timer`, which gives the slot back.
pub struct Sleep;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepInput {
    #[serde(default)]
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct SleepOutput {
    pub slept_seconds: f64,
}

/// Maximum wait of `sleep` and `timer`: 366 days.
const MAX_WAIT_SECONDS: f64 = 366.0 * 86_400.0;

impl Task for Sleep {
    type Input = Option<SleepInput>;
    type Output = SleepOutput;
    const KIND: &'static str = "sleep";

    async fn run(&self, ctx: TaskContext, input: Self::Input) -> Result<SleepOutput, TaskError> {
        let seconds = input.map_or(0.0, |input| input.seconds);
        check_seconds("sleep", seconds)?;
        let logger = ctx.logger();
        logger.info(&format!("sleeping for {seconds} s"));
        let started = std::time::Instant::now();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {}
            () = ctx.cancellation().cancelled() => {
                logger.warn(&format!(
                    "cancelled after {:.3} s of {seconds} s",
                    started.elapsed().as_secs_f64()
                ));
                return Err(TaskError::retryable("sleep was cancelled"));
            }
        }
        logger.info(&format!("slept {seconds} s"));
        Ok(SleepOutput {
            slept_seconds: seconds,
        })
    }
}

fn check_seconds(kind: &str, seconds: f64) -> Result<(), TaskError> {
    if !seconds.is_finite() || !(0.0..=MAX_WAIT_SECONDS).contains(&seconds) {
        return Err(TaskError::permanent(format!(
            "{kind}.seconds is {seconds}; use a number of seconds from 0 to {MAX_WAIT_SECONDS} (366 days)"
        )));
    }
    Ok(())
}

/// `timer`: a durable timer. Waits `seconds` from its first start, or until the RFC 3339
/// time `until`, without holding a worker slot; the wait survives restarts of every
/// process.
pub struct Timer;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerInput {
    #[serde(default)]
    pub seconds: Option<f64>,
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct TimerOutput {
    pub fired_at: DateTime<Utc>,
}

impl Task for Timer {
    type Input = TimerInput;
    type Output = TimerOutput;
    const KIND: &'static str = "timer";

    async fn run(&self, ctx: TaskContext, input: TimerInput) -> Result<TimerOutput, TaskError> {
        match (input.seconds, input.until) {
            (Some(seconds), None) => {
                check_seconds("timer", seconds)?;
                ctx.sleep_for("timer", Duration::from_secs_f64(seconds))
                    .await?;
            }
            (None, Some(until)) => ctx.sleep_until("timer", until).await?,
            _ => {
                return Err(TaskError::permanent(
                    "timer needs exactly one of `seconds` (a number) and `until` (an RFC 3339 time such as 2027-01-01T09:00:00Z)",
                ));
            }
        }
        Ok(TimerOutput {
            fired_at: chrono::Utc::now(),
        })
    }
}

/// `approval`: an approval gate. Waits for the signal `signal` (default `approval`) and
/// succeeds when its payload approves, fails when it rejects (`{"approved": false}`) or
/// when no decision arrives within `timeout_seconds` (default a week).
pub struct Approval;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    #[serde(default = "approval_signal")]
    pub signal: String,
    #[serde(default = "week")]
    pub timeout_seconds: f64,
}

fn approval_signal() -> String {
    "approval".to_owned()
}

fn week() -> f64 {
    7.0 * 86_400.0
}

/// The decision a signal to an approval gate carries; `approved` is required.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Task for Approval {
    type Input = Option<ApprovalInput>;
    type Output = ApprovalDecision;
    const KIND: &'static str = "approval";

    async fn run(
        &self,
        ctx: TaskContext,
        input: Self::Input,
    ) -> Result<ApprovalDecision, TaskError> {
        let input = input.unwrap_or(ApprovalInput {
            signal: approval_signal(),
            timeout_seconds: week(),
        });
        if !input.timeout_seconds.is_finite()
            || !(1.0..=MAX_WAIT_SECONDS).contains(&input.timeout_seconds)
        {
            return Err(TaskError::permanent(format!(
                "approval.timeout_seconds is {}; use a number of seconds from 1 to {MAX_WAIT_SECONDS} (366 days)",
                input.timeout_seconds
            )));
        }
        let timeout = Duration::from_secs_f64(input.timeout_seconds);
        let Some(payload) = ctx.signal(&input.signal, timeout).await? else {
            return Err(TaskError::permanent(format!(
                "no decision arrived on signal `{}` within {} s",
                input.signal, input.timeout_seconds
            )));
        };
        let decision: ApprovalDecision = serde_json::from_value(payload.clone()).map_err(|_| {
            TaskError::permanent(format!(
                "the payload of signal `{}` is {payload}, which is not a decision; send {{\"approved\": true or false, \"by\": \"name\", \"comment\": \"text\"}}",
                input.signal
            ))
        })?;
        if !decision.approved {
            return Err(TaskError::permanent(format!(
                "rejected{}{}",
                decision
                    .by
                    .as_deref()
                    .map(|by| format!(" by {by}"))
                    .unwrap_or_default(),
                decision
                    .comment
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            )));
        }
        Ok(decision)
    }
}

/// `workflow.run`: starts a run of `workflow` with `input` as a child of this task and
/// waits for it without holding a worker slot. Its output is the outputs of the child's
/// final tasks, by name; a failed or cancelled child fails it.
pub struct RunWorkflow;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunWorkflowInput {
    pub workflow: String,
    #[serde(default)]
    pub input: serde_json::Value,
}

impl Task for RunWorkflow {
    type Input = RunWorkflowInput;
    type Output = serde_json::Value;
    const KIND: &'static str = "workflow.run";

    async fn run(
        &self,
        ctx: TaskContext,
        input: RunWorkflowInput,
    ) -> Result<serde_json::Value, TaskError> {
        ctx.child("run", &input.workflow, input.input).await
    }
}
