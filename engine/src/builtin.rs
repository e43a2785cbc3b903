//! Task kinds built into the engine.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::task::{Task, TaskContext, TaskError};

/// `sleep`: waits for `seconds`, or until the attempt is cancelled.
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

impl Task for Sleep {
    type Input = Option<SleepInput>;
    type Output = SleepOutput;
    const KIND: &'static str = "sleep";

    async fn run(&self, ctx: TaskContext, input: Self::Input) -> Result<SleepOutput, TaskError> {
        let seconds = input.map_or(0.0, |input| input.seconds);
        if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
            return Err(TaskError::permanent(format!(
                "sleep.seconds is {seconds}; use a number of seconds from 0 to 86400"
            )));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {}
            () = ctx.cancellation().cancelled() => {
                return Err(TaskError::retryable("sleep was cancelled"));
            }
        }
        Ok(SleepOutput {
            slept_seconds: seconds,
        })
    }
}
