//! The worker: claims ready tasks, runs them in slots, heartbeats their leases, writes their
//! results in batches, and rescues tasks whose worker died.
//!
//! Build one with [`Worker::builder`], then call [`Worker::run`] with a shutdown token.

mod execute;
mod flush;
mod leases;
mod listen;
mod logs;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::Result;
use crate::metrics;
use crate::registry::Registry;
use crate::retention::{self, RetentionOptions};
use crate::schedule::Scheduler;
use crate::spec::DEFAULT_QUEUE;
use crate::store::{ClaimedTask, LocalWorker, Registration, Store, WorkerRecord};

pub(crate) use logs::AttemptLog;
pub use logs::{DEFAULT_LOG_LIMIT_BYTES, MAX_LINE_BYTES};

/// Average attempt duration below which a worker claims ahead of its free slots.
pub const PREFETCH_BELOW: Duration = Duration::from_millis(10);

/// Settings of a worker. The defaults reclaim a dead worker's tasks within 25 seconds and
/// cost an idle worker under one query per second.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub queue: String,
    /// Tasks run at the same time.
    pub slots: usize,
    /// Tasks claimed ahead of free slots, to keep slots busy when tasks are short. Applied
    /// only while recent attempts took under [`PREFETCH_BELOW`] on average, so that a
    /// worker never hoards slow tasks that idle workers could run.
    pub prefetch: usize,
    /// How long an attempt's lease lasts without a heartbeat.
    pub lease: Duration,
    pub heartbeat_interval: Duration,
    /// How often to look for attempts whose lease lapsed.
    pub reap_interval: Duration,
    /// How often to claim when no notification arrives.
    pub poll_interval: Duration,
    /// Most tasks claimed or completed in one statement.
    pub max_batch: usize,
    /// How long running tasks may take to stop after shutdown or cancellation before they
    /// are abandoned.
    pub grace: Duration,
    /// Whether runs submitted through the same [`Store`] in this process may start their
    /// single root task on this worker directly while it is idle, skipping the claim.
    pub eager: bool,
    /// Whether the worker also runs a [`Scheduler`] that starts the runs of due schedule
    /// ticks, on any queue.
    pub schedules: bool,
    /// Deleting finished runs past their retention, which every worker does once a minute.
    pub retention: RetentionOptions,
    /// Maximum bytes of log messages stored per attempt. The first line over it and every
    /// later line of the attempt are dropped, and one note at the end counts them.
    pub log_limit_bytes: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            queue: DEFAULT_QUEUE.to_owned(),
            slots: 8,
            prefetch: 256,
            lease: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(5),
            reap_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(2),
            max_batch: 500,
            grace: Duration::from_secs(10),
            eager: true,
            schedules: true,
            retention: RetentionOptions::default(),
            log_limit_bytes: DEFAULT_LOG_LIMIT_BYTES,
        }
    }
}

/// Builds a [`Worker`].
pub struct WorkerBuilder {
    store: Store,
    registry: Registry,
    options: WorkerOptions,
}

impl WorkerBuilder {
    pub fn options(mut self, options: WorkerOptions) -> Self {
        self.options = options;
        self
    }

    pub fn slots(mut self, slots: usize) -> Self {
        self.options.slots = slots;
        self
    }

    pub fn build(self) -> Worker {
        let mut options = self.options;
        options.slots = options.slots.max(1);
        options.max_batch = options.max_batch.max(1);
        Worker {
            store: self.store,
            registry: self.registry,
            options,
            id: Uuid::now_v7(),
        }
    }
}

/// A worker process's engine loop.
pub struct Worker {
    store: Store,
    registry: Registry,
    options: WorkerOptions,
    id: Uuid,
}

/// Reason the worker cancelled a running attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    RunCancelled,
    LeaseLost,
    Shutdown,
}

/// An attempt this worker holds: claimed, and its result not yet written.
struct Held {
    attempt_id: Uuid,
    cancel: CancellationToken,
    stop: Option<StopReason>,
    /// Set once the attempt ended and its result went to the writer.
    ended: bool,
}

/// State shared by the worker's loops.
struct Shared {
    store: Store,
    registry: Registry,
    options: WorkerOptions,
    worker_id: Uuid,
    held: Mutex<HashMap<(Uuid, i32), Held>>,
    /// Wakes the claim loop: a notification arrived, or a flush freed room.
    wake: Notify,
    /// When a task that is not due yet becomes due, learned from notifications.
    next_due: Mutex<Option<Instant>>,
    slots: Arc<Semaphore>,
    /// Attempts claimed and not yet ended; results waiting to be written do not count.
    in_flight: AtomicUsize,
    /// Moving average of attempt durations in microseconds; `u64::MAX` until the first
    /// attempt ends.
    average_micros: AtomicU64,
    started_runs: Mutex<HashSet<Uuid>>,
    /// Log lines of this worker's attempts that are not stored yet.
    logs: Arc<logs::LogBuffer>,
}

impl Shared {
    fn held(&self) -> MutexGuard<'_, HashMap<(Uuid, i32), Held>> {
        // A poisoned lock means a loop panicked while holding it. The map is still
        // consistent, because every critical section only inserts or removes whole entries.
        self.held
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Cancels held attempts matching `filter`, recording why.
    fn stop_where(&self, reason: StopReason, filter: impl Fn(&(Uuid, i32), &Held) -> bool) {
        for (key, held) in self.held().iter_mut() {
            if held.stop.is_none() && filter(key, held) {
                held.stop = Some(reason);
                held.cancel.cancel();
            }
        }
    }

    /// Records how long an attempt took, for the prefetch decision.
    fn attempt_ended(&self, took: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let sample = took.as_micros().min(u128::from(u64::MAX - 1)) as u64;
        let average = self.average_micros.load(Ordering::Relaxed);
        let updated = if average == u64::MAX {
            sample
        } else {
            average - average / 8 + sample / 8
        };
        self.average_micros.store(updated, Ordering::Relaxed);
    }

    /// Returns how many tasks the claim loop may take now.
    fn room(&self) -> usize {
        let options = &self.options;
        let short_tasks =
            self.average_micros.load(Ordering::Relaxed) < PREFETCH_BELOW.as_micros() as u64;
        let prefetch = if short_tasks { options.prefetch } else { 0 };
        let running_room =
            (options.slots + prefetch).saturating_sub(self.in_flight.load(Ordering::Relaxed));
        // Results waiting to be written are bounded too, so a database outage cannot make
        // the worker claim without limit.
        let unwritten_limit = options.slots + prefetch + 2 * options.max_batch;
        let unwritten_room = unwritten_limit.saturating_sub(self.held().len());
        running_room.min(unwritten_room).min(options.max_batch)
    }

    fn set_due(&self, due: Instant) {
        let mut next = self.next_due.lock().unwrap_or_else(|p| p.into_inner());
        if next.is_none_or(|current| due < current) {
            *next = Some(due);
        }
    }
}

impl Worker {
    pub fn builder(store: Store, registry: Registry) -> WorkerBuilder {
        WorkerBuilder {
            store,
            registry,
            options: WorkerOptions::default(),
        }
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Registers the worker's kinds and workflows, then claims and runs tasks until
    /// `shutdown` is cancelled. On shutdown, running tasks get the grace period to finish;
    /// the rest are handed back to the queue.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        self.register().await?;

        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            registry: self.registry,
            worker_id: self.id,
            held: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            next_due: Mutex::new(None),
            slots: Arc::new(Semaphore::new(self.options.slots)),
            in_flight: AtomicUsize::new(0),
            average_micros: AtomicU64::new(u64::MAX),
            started_runs: Mutex::new(HashSet::new()),
            logs: Arc::default(),
            options: self.options,
        });
        tracing::info!(
            worker.id = %self.id,
            queue = %shared.options.queue,
            slots = shared.options.slots,
            "worker started"
        );

        let background = CancellationToken::new();
        let listener = tokio::spawn(listen::run(Arc::clone(&shared), background.clone()));
        let heartbeat = tokio::spawn(leases::heartbeat(Arc::clone(&shared), background.clone()));
        let reaper = tokio::spawn(leases::reap(Arc::clone(&shared), background.clone()));
        let sweeper = tokio::spawn(retention::run(
            shared.store.clone(),
            shared.options.retention.clone(),
            background.clone(),
        ));
        let flusher = tokio::spawn(flush::run(Arc::clone(&shared), outcomes_rx));
        let log_flusher = tokio::spawn(logs::run(Arc::clone(&shared), background.clone()));
        let scheduler = shared.options.schedules.then(|| {
            tokio::spawn(
                Scheduler::builder(shared.store.clone())
                    .build()
                    .run(shutdown.clone()),
            )
        });
        let eager = shared.options.eager.then(|| {
            let (tasks_tx, tasks_rx) = mpsc::unbounded_channel();
            let as_local: Arc<dyn LocalWorker> = Arc::clone(&shared) as Arc<dyn LocalWorker>;
            shared.store.register_local_worker(Registration {
                worker: Arc::downgrade(&as_local),
                tasks: tasks_tx,
            });
            tokio::spawn(receive_eager(
                Arc::clone(&shared),
                tasks_rx,
                outcomes_tx.clone(),
                shutdown.clone(),
            ))
        });

        claim_loop(&shared, &outcomes_tx, &shutdown).await;
        if let Some(eager) = eager {
            let _ = eager.await;
        }

        // Give running attempts the grace period, then stop them; their outcomes release
        // the tasks back to the queue.
        let deadline = tokio::time::Instant::now() + shared.options.grace;
        while !shared.held().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shared.stop_where(StopReason::Shutdown, |_, _| true);
        drop(outcomes_tx);
        if flusher.await.is_err() {
            tracing::error!(worker.id = %shared.worker_id, "result writer panicked during shutdown");
        }
        background.cancel();
        for handle in [listener, heartbeat, reaper, sweeper, log_flusher]
            .into_iter()
            .chain(scheduler)
        {
            let _ = handle.await;
        }
        if let Err(err) = shared.store.stop_worker(shared.worker_id).await {
            tracing::warn!(worker.id = %shared.worker_id, error = %err, "could not record the worker's stop");
        }
        tracing::info!(worker.id = %shared.worker_id, "worker stopped");
        Ok(())
    }

    async fn register(&self) -> Result<()> {
        self.store.register(&self.registry).await?;
        let hostname = std::fs::read_to_string("/etc/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        self.store
            .register_worker(&WorkerRecord {
                id: self.id,
                hostname,
                pid: std::process::id() as i32,
                queue: self.options.queue.clone(),
                slots: self.options.slots as i32,
                started_at: chrono::Utc::now(),
                heartbeat_at: chrono::Utc::now(),
                stopped_at: None,
            })
            .await
    }
}

impl LocalWorker for Shared {
    fn id(&self) -> Uuid {
        self.worker_id
    }

    fn queue(&self) -> &str {
        &self.options.queue
    }

    fn lease(&self) -> Duration {
        self.options.lease
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) < self.options.slots
    }
}

/// Starts tasks that submissions in this process dispatched to this worker, until shutdown.
async fn receive_eager(
    shared: Arc<Shared>,
    mut tasks: mpsc::UnboundedReceiver<ClaimedTask>,
    outcomes: mpsc::UnboundedSender<execute::Completed>,
    shutdown: CancellationToken,
) {
    loop {
        let task = tokio::select! {
            task = tasks.recv() => task,
            () = shutdown.cancelled() => None,
        };
        let Some(task) = task else { return };
        metrics::CLAIMED.add(1);
        start_tasks(&shared, vec![task], &outcomes).await;
    }
}

/// Claims tasks while there is room and starts them, until shutdown.
async fn claim_loop(
    shared: &Arc<Shared>,
    outcomes: &mpsc::UnboundedSender<execute::Completed>,
    shutdown: &CancellationToken,
) {
    let options = &shared.options;
    let mut failures: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let room = shared.room();
        let mut claimed_full = false;
        if room > 0 {
            let started = Instant::now();
            match shared
                .store
                .claim(
                    &options.queue,
                    room,
                    shared.worker_id,
                    options.lease,
                    shared.store.clock().now(),
                )
                .await
            {
                Ok(tasks) => {
                    failures = 0;
                    metrics::CLAIM_LATENCY.observe(started.elapsed());
                    metrics::CLAIMED.add(tasks.len() as u64);
                    claimed_full = tasks.len() == room;
                    if !tasks.is_empty() {
                        start_tasks(shared, tasks, outcomes).await;
                    }
                }
                Err(err) => {
                    failures += 1;
                    let pause = backoff(failures);
                    tracing::warn!(worker.id = %shared.worker_id, error = %err, retry_in_ms = pause.as_millis() as u64, "claim failed");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => return,
                    }
                    continue;
                }
            }
        }
        if claimed_full {
            continue;
        }

        let now = Instant::now();
        let mut wait = options.poll_interval;
        {
            let mut due = shared.next_due.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = *due {
                if at <= now {
                    *due = None;
                    continue;
                }
                wait = wait.min(at - now);
            }
        }
        tokio::select! {
            () = shared.wake.notified() => {}
            () = shared.store.local_ready() => {}
            () = tokio::time::sleep(wait) => {
                let mut due = shared.next_due.lock().unwrap_or_else(|p| p.into_inner());
                if due.is_some_and(|at| at <= Instant::now()) {
                    *due = None;
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// Loads what the claimed tasks need and starts each in a slot.
async fn start_tasks(
    shared: &Arc<Shared>,
    tasks: Vec<ClaimedTask>,
    outcomes: &mpsc::UnboundedSender<execute::Completed>,
) {
    let mut tokens = Vec::with_capacity(tasks.len());
    shared.in_flight.fetch_add(tasks.len(), Ordering::Relaxed);
    {
        let mut held = shared.held();
        for task in &tasks {
            let cancel = CancellationToken::new();
            tokens.push(cancel.clone());
            held.insert(
                (task.run_id, task.idx),
                Held {
                    attempt_id: task.attempt_id,
                    cancel,
                    stop: None,
                    ended: false,
                },
            );
        }
    }

    mark_runs_started(shared, &tasks);
    let context = execute::load_context(shared, &tasks).await;
    for (task, cancel) in tasks.into_iter().zip(tokens) {
        let shared = Arc::clone(shared);
        let outcomes = outcomes.clone();
        let context = context.clone();
        tokio::spawn(async move {
            let completed = execute::run_attempt(&shared, task, cancel, &context).await;
            if let Some(completed) = completed {
                // The writer receives until every sender is dropped, so a send fails only
                // after the writer panicked. The task is then rescued when its lease lapses.
                if outcomes.send(completed).is_err() {
                    tracing::error!(worker.id = %shared.worker_id, "the result writer has stopped; the result is dropped and the task will be rescued");
                }
            }
        });
    }
}

/// Records that runs have started, off the claim path: the statement waits for run locks.
fn mark_runs_started(shared: &Arc<Shared>, tasks: &[ClaimedTask]) {
    let mut new_runs: Vec<Uuid> = Vec::new();
    {
        let mut started = shared
            .started_runs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if started.len() > 100_000 {
            started.clear();
        }
        for task in tasks {
            if started.insert(task.run_id) {
                new_runs.push(task.run_id);
            }
        }
    }
    if new_runs.is_empty() {
        return;
    }
    new_runs.sort_unstable();
    let store = shared.store.clone();
    tokio::spawn(async move {
        if let Err(err) = store.mark_runs_started(&new_runs).await {
            tracing::debug!(error = %err, "could not mark runs as running; their first completion will");
        }
    });
}

/// Exponential pause after repeated failures: 100 ms doubling up to 5 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    let millis = 100u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
    Duration::from_millis(millis.min(5_000))
}
