//! Live updates of a run page as server-sent events.
//!
//! Each connection polls the store every [`POLL_INTERVAL`]: one cheap query for the run's
//! status, counts and newest event id, and, only when that changed, the states of its
//! tasks. It sends a `state` event with the run and the tasks that changed (all of them in
//! the first event), then a `done` event once the run has finished and its final state
//! was sent, and ends. The stream also ends when the client goes away (the response body
//! is dropped, and with it the polling), when the server shuts down, and after
//! [`MAX_STREAM`], after which the browser reconnects and gets a fresh full state.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use caraml_engine::{RunProgress, Store, TaskProgress};
use chrono::Utc;
use futures::Stream;
use serde::Serialize;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::data;
use super::format;
use super::page::PageError;
use crate::auth::Caller;

/// Time between two polls of the store by one connection.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Maximum lifetime of one stream.
const MAX_STREAM: Duration = Duration::from_secs(30 * 60);

/// Characters of a task's output that an update carries.
pub(super) const OUTPUT_PREVIEW_CHARS: i32 = 120;

#[derive(Serialize)]
struct RunState<'a> {
    status: &'a str,
    total: i32,
    succeeded: i32,
    failed: i32,
    skipped: i32,
    cancelled: i32,
    duration: String,
    finished_at: String,
    finished: bool,
}

#[derive(Serialize)]
struct TaskState<'a> {
    i: i32,
    status: &'a str,
    attempts: i32,
    start: String,
    duration: String,
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Preview>,
}

#[derive(Serialize)]
struct Preview {
    text: String,
    truncated: bool,
}

#[derive(Serialize)]
struct Update<'a> {
    run: RunState<'a>,
    tasks: Vec<TaskState<'a>>,
}

/// Returns true for the statuses a run ends in.
pub(super) fn is_finished(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

/// The polling state of one connection.
struct Watch {
    store: Store,
    caller: Caller,
    run_id: Uuid,
    shutdown: CancellationToken,
    deadline: Instant,
    ticker: tokio::time::Interval,
    last_run: Option<RunProgress>,
    last_tasks: Vec<TaskProgress>,
    /// Set once the final state was sent: the next event is `done`.
    final_sent: bool,
    ended: bool,
}

impl Watch {
    async fn next_event(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        if self.final_sent {
            self.ended = true;
            return Some(Event::default().event("done").data("{}"));
        }
        loop {
            tokio::select! {
                _ = self.ticker.tick() => {}
                () = self.shutdown.cancelled() => return None,
            }
            if Instant::now() >= self.deadline {
                return None;
            }
            match self.poll().await {
                Ok(Some(event)) => return Some(event),
                Ok(None) => {}
                Err(err) => {
                    self.ended = true;
                    let described = err.0.describe();
                    if described.status.is_server_error() {
                        tracing::warn!(run.id = %self.run_id, error = %described.message, "live updates stopped");
                    } else {
                        tracing::debug!(run.id = %self.run_id, error = %described.message, "live updates stopped");
                    }
                    return Some(Event::default().event("failed").data(described.message));
                }
            }
        }
    }

    /// Reads the run's state and returns the update, or `None` when nothing changed.
    async fn poll(&mut self) -> Result<Option<Event>, PageError> {
        let progress = data::run_progress(&self.store, &self.caller, self.run_id).await?;
        if self.last_run.as_ref() == Some(&progress) {
            return Ok(None);
        }
        let tasks = data::task_progress(&self.store, &self.caller, self.run_id).await?;
        let changed: Vec<&TaskProgress> = tasks
            .iter()
            .filter(|task| {
                self.last_tasks
                    .get(task.idx as usize)
                    .is_none_or(|before| before != *task)
            })
            .collect();
        let with_output: Vec<i32> = changed
            .iter()
            .filter(|task| task.status == "succeeded")
            .map(|task| task.idx)
            .collect();
        let mut previews = if with_output.is_empty() {
            Vec::new()
        } else {
            data::output_previews(
                &self.store,
                &self.caller,
                self.run_id,
                &with_output,
                OUTPUT_PREVIEW_CHARS,
            )
            .await?
        };

        let now = Utc::now();
        let update = Update {
            run: RunState {
                status: &progress.status,
                total: progress.tasks_total,
                succeeded: progress.tasks_succeeded,
                failed: progress.tasks_failed,
                skipped: progress.tasks_skipped,
                cancelled: progress.tasks_cancelled,
                duration: format::duration(progress.started_at, progress.finished_at, now),
                finished_at: format::maybe_time(progress.finished_at),
                finished: is_finished(&progress.status),
            },
            tasks: changed
                .iter()
                .map(|task| TaskState {
                    i: task.idx,
                    status: &task.status,
                    attempts: task.attempts,
                    start: format::maybe_time(task.started_at),
                    duration: format::duration(task.started_at, task.finished_at, now),
                    error: task.error.as_deref(),
                    output: previews
                        .iter_mut()
                        .find(|preview| preview.idx == task.idx)
                        .map(|preview| Preview {
                            text: std::mem::take(&mut preview.text),
                            truncated: preview.truncated,
                        }),
                })
                .collect(),
        };
        let data = serde_json::to_string(&update).map_err(|err| {
            PageError::from(crate::http::ApiError::Internal(format!(
                "could not encode a live update: {err}"
            )))
        })?;
        let finished = update.run.finished;
        drop(update);
        self.final_sent = finished;
        self.last_tasks = tasks;
        self.last_run = Some(progress);
        Ok(Some(Event::default().event("state").data(data)))
    }
}

/// Opens the event stream of a run, after checking that the run exists.
pub(super) async fn stream(
    store: Store,
    caller: Caller,
    run_id: Uuid,
    shutdown: CancellationToken,
) -> Result<Response, PageError> {
    data::run_progress(&store, &caller, run_id).await?;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watch = Watch {
        store,
        caller,
        run_id,
        shutdown,
        deadline: Instant::now() + MAX_STREAM,
        ticker,
        last_run: None,
        last_tasks: Vec::new(),
        final_sent: false,
        ended: false,
    };
    Ok(Sse::new(events(watch))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn events(watch: Watch) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(watch, |mut watch| async move {
        let event = watch.next_event().await?;
        Some((Ok(event), watch))
    })
}
