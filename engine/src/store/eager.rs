//! Eager dispatch: a run submitted in a process that also runs an idle worker on the task's
//! queue starts its single root task on that worker directly. The submission stores the task
//! as already claimed, so the worker skips the notification and the claim query. The
//! claimed attempt has a lease like any other, so a worker that dies before starting it
//! loses nothing: the reaper rescues the task when the lease lapses.

use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::claim::ClaimedTask;

/// What the store needs to know of a worker in the same process.
pub(crate) trait LocalWorker: Send + Sync {
    fn id(&self) -> Uuid;
    fn queue(&self) -> &str;
    fn lease(&self) -> Duration;
    /// Returns whether a slot is free and nothing is waiting for one.
    fn is_idle(&self) -> bool;
}

/// A worker that accepts eagerly dispatched tasks.
pub(crate) struct Registration {
    pub(crate) worker: Weak<dyn LocalWorker>,
    pub(crate) tasks: mpsc::UnboundedSender<ClaimedTask>,
}

/// The workers of this process that accept eagerly dispatched tasks.
#[derive(Default)]
pub(crate) struct LocalWorkers {
    workers: Mutex<Vec<Registration>>,
}

impl std::fmt::Debug for LocalWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalWorkers")
    }
}

/// A worker picked to start a task, with the attempt it will run.
pub(crate) struct Pick {
    pub(crate) worker_id: Uuid,
    pub(crate) lease: Duration,
    pub(crate) attempt_id: Uuid,
    pub(crate) tasks: mpsc::UnboundedSender<ClaimedTask>,
}

impl LocalWorkers {
    pub(crate) fn register(&self, registration: Registration) {
        self.lock().push(registration);
    }

    /// Returns an idle worker on `queue`, dropping registrations of stopped workers.
    pub(crate) fn pick(&self, queue: &str) -> Option<Pick> {
        let mut workers = self.lock();
        workers.retain(|r| !r.tasks.is_closed() && r.worker.strong_count() > 0);
        workers.iter().find_map(|registration| {
            let worker = registration.worker.upgrade()?;
            (worker.queue() == queue && worker.is_idle()).then(|| Pick {
                worker_id: worker.id(),
                lease: worker.lease(),
                attempt_id: Uuid::new_v4(),
                tasks: registration.tasks.clone(),
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Registration>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
