//! The scheduler loop: sleeps until the earliest next tick of any schedule, then starts the
//! runs of the ticks that are due.
//!
//! An idle scheduler reads the earliest tick once, and again only when a schedule changes
//! (announced by `NOTIFY`), when it wakes for a tick, or once
//! [`SchedulerOptions::recheck_interval`] has passed. With the default of 30 s, a process
//! without due schedules sends one statement every 30 s for schedules.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Fired;
use crate::error::Result;
use crate::store::{SCHEDULES_CHANNEL, Store};
use crate::worker::backoff;

/// How long to wait before looking again when a due schedule is locked by another
/// scheduler, which is then starting its run.
const LOCKED_PAUSE: Duration = Duration::from_millis(200);

/// Settings of a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Maximum sleep before reading the earliest tick again, in real time. It bounds the
    /// delay after a lost notification or a jump of the wall clock.
    pub recheck_interval: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            recheck_interval: Duration::from_secs(30),
        }
    }
}

/// Builds a [`Scheduler`].
pub struct SchedulerBuilder {
    store: Store,
    options: SchedulerOptions,
}

impl SchedulerBuilder {
    pub fn options(mut self, options: SchedulerOptions) -> Self {
        self.options = options;
        self
    }

    pub fn build(self) -> Scheduler {
        let mut options = self.options;
        options.recheck_interval = options.recheck_interval.max(Duration::from_millis(10));
        Scheduler {
            store: self.store,
            options,
        }
    }
}

/// Starts the runs of due schedule ticks. Any number may run against one database, in
/// any number of processes: each tick still starts one run. Time comes from the store's
/// [`Clock`](crate::Clock).
pub struct Scheduler {
    store: Store,
    options: SchedulerOptions,
}

impl Scheduler {
    pub fn builder(store: Store) -> SchedulerBuilder {
        SchedulerBuilder {
            store,
            options: SchedulerOptions::default(),
        }
    }

    /// Starts runs as ticks fall due, until `shutdown` is cancelled. Database failures are
    /// logged and retried with backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let changed = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            self.store.clone(),
            Arc::clone(&changed),
            shutdown.child_token(),
        ));
        tracing::debug!("scheduler started");

        let clock = Arc::clone(self.store.clock());
        let mut earliest: Option<DateTime<Utc>> = None;
        let mut refresh = true;
        let mut failures: u32 = 0;
        while !shutdown.is_cancelled() {
            if refresh {
                match self.store.earliest_tick().await {
                    Ok(tick) => {
                        earliest = tick;
                        refresh = false;
                        failures = 0;
                    }
                    Err(err) => {
                        failures += 1;
                        tracing::warn!(error = %err, "reading the earliest schedule tick failed; retrying");
                        pause(backoff(failures), &shutdown).await;
                        continue;
                    }
                }
            }

            if earliest.is_some_and(|tick| tick <= clock.now()) {
                refresh = true;
                match self.fire_due(&shutdown).await {
                    Ok(true) => failures = 0,
                    Ok(false) => {
                        failures = 0;
                        pause(LOCKED_PAUSE, &shutdown).await;
                    }
                    Err(err) => {
                        failures += 1;
                        tracing::warn!(error = %err, "starting scheduled runs failed; retrying");
                        pause(backoff(failures), &shutdown).await;
                    }
                }
                continue;
            }

            let next_tick = async {
                match earliest {
                    Some(tick) => clock.sleep_until(tick).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = next_tick => {}
                () = changed.notified() => refresh = true,
                () = tokio::time::sleep(self.options.recheck_interval) => refresh = true,
                () = shutdown.cancelled() => {}
            }
        }

        let _ = listener.await;
        tracing::debug!("scheduler stopped");
    }

    /// Takes steps until no due schedule is left, and returns whether any step was taken.
    async fn fire_due(&self, shutdown: &CancellationToken) -> Result<bool> {
        let mut fired_any = false;
        while !shutdown.is_cancelled() {
            let now = self.store.clock().now();
            match self.store.fire_due_schedule(now).await? {
                Some(fired) => {
                    log_fired(&fired);
                    fired_any = true;
                }
                None => break,
            }
        }
        Ok(fired_any)
    }
}

fn log_fired(fired: &Fired) {
    let tick = fired.tick.map(|tick| tick.to_rfc3339());
    if let Some(error) = &fired.error {
        tracing::warn!(
            schedule.name = %fired.schedule,
            schedule.tick = tick.as_deref(),
            error = %error,
            "scheduled run not started"
        );
        return;
    }
    if let Some((first, last)) = fired.missed {
        tracing::info!(
            schedule.name = %fired.schedule,
            missed.first = %first,
            missed.last = %last,
            run.id = fired.run_id.map(tracing::field::display),
            "schedule reached ticks that passed while no scheduler ran; {}",
            if fired.run_id.is_some() {
                "started one run for them"
            } else {
                "skipped them"
            }
        );
        return;
    }
    if let Some(run_id) = fired.run_id {
        tracing::debug!(
            schedule.name = %fired.schedule,
            schedule.tick = tick.as_deref(),
            run.id = %run_id,
            created = fired.created,
            "scheduled run started"
        );
    }
}

/// Waits for `duration` of real time, or until shutdown.
async fn pause(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = shutdown.cancelled() => {}
    }
}

/// Wakes the scheduler on every schedule change until `stop` is cancelled, and after each
/// (re)connection, since changes made while not listening were not announced.
async fn listen(store: Store, changed: Arc<Notify>, stop: CancellationToken) {
    let mut failures: u32 = 0;
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(store.pool()).await?;
            listener.listen(SCHEDULES_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            connected = connected => match connected {
                Ok(listener) => listener,
                Err(err) => {
                    failures += 1;
                    tracing::warn!(error = %err, "scheduler could not listen for schedule changes");
                    pause(backoff(failures), &stop).await;
                    if stop.is_cancelled() {
                        return;
                    }
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        changed.notify_one();
        failures = 0;
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = stop.cancelled() => return,
            };
            match received {
                Ok(_) => changed.notify_one(),
                Err(err) => {
                    failures += 1;
                    tracing::warn!(error = %err, "scheduler's notification connection failed");
                    changed.notify_one();
                    break;
                }
            }
        }
        pause(backoff(failures), &stop).await;
        if stop.is_cancelled() {
            return;
        }
    }
}
