//! Durable waits: timers, signals and child runs that a task waits for without holding a
//! worker slot.
//!
//! A wait method that cannot return yet records what the task waits for and returns an
//! error of kind [`ErrorKind::Suspended`], which the task passes on with `?`. The worker
//! stores the wait and gives the slot back. Once the timer fires, the signal arrives or the
//! child run ends, the task runs again from the start with the records of its earlier
//! waits, so each wait it reaches again returns at once. Task code therefore reaches its
//! waits with the same keys on every run, waits for one thing at a time, and makes any side
//! effect before a wait idempotent (see [`TaskContext::idempotency_key`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::clock::{Clock, after};
use crate::spec::check_name;
use crate::store::{ChildState, Store};
use crate::task::{ErrorKind, TaskContext, TaskError};

/// Records that earlier attempts of a task kept about its waits, by key, stored with the
/// task run as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Waits {
    /// Deadlines of timers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) timers: BTreeMap<String, DateTime<Utc>>,
    /// When the wait for each signal times out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) signals: BTreeMap<String, DateTime<Utc>>,
    /// Child runs this task started.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) children: BTreeMap<String, Uuid>,
}

/// The wait that suspended an attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    /// When the task must run again even if nothing woke it; `None` waits until woken.
    pub(crate) until: Option<DateTime<Utc>>,
    /// The signal whose delivery wakes the task.
    pub(crate) signal: Option<String>,
    /// Description of the wait for the event history.
    pub(crate) reason: String,
}

/// A wait to store: the task's wait records and the wait that suspended it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Suspension {
    pub(crate) waits: Value,
    pub(crate) pending: Pending,
}

#[derive(Debug, Default)]
pub(crate) struct WaitState {
    pub(crate) waits: Waits,
    pub(crate) pending: Option<Pending>,
}

/// State that a task's context needs for durable waits.
#[derive(Debug)]
pub(crate) struct Durable {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) task_idx: i32,
    pub(crate) state: Mutex<WaitState>,
}

impl Durable {
    pub(crate) fn new(store: Store, clock: Arc<dyn Clock>, task_idx: i32, waits: &Value) -> Self {
        // Records that do not parse are dropped rather than failing the task: the waits
        // then start over, which is what a task running for the first time does.
        let waits = serde_json::from_value(waits.clone()).unwrap_or_default();
        Self {
            store,
            clock,
            task_idx,
            state: Mutex::new(WaitState {
                waits,
                pending: None,
            }),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, WaitState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Returns the wait to store, when the task suspended itself.
    pub(crate) fn suspension(&self) -> Option<Suspension> {
        let state = self.state();
        let pending = state.pending.clone()?;
        Some(Suspension {
            waits: serde_json::to_value(&state.waits).unwrap_or(Value::Null),
            pending,
        })
    }
}

impl TaskContext {
    /// Waits `duration` from the first time this task reached the timer `key`, without
    /// holding a worker slot. Returns at once when the timer has fired.
    pub async fn sleep_for(&self, key: &str, duration: Duration) -> Result<(), TaskError> {
        let durable = self.durable("sleep_for")?;
        let deadline = {
            let mut state = durable.state();
            *state
                .waits
                .timers
                .entry(key.to_owned())
                .or_insert_with(|| after(durable.clock.as_ref(), duration))
        };
        self.wait_for_deadline(durable, key, deadline)
    }

    /// Waits until `at` without holding a worker slot. The first deadline recorded under
    /// `key` holds on later runs of the task.
    pub async fn sleep_until(&self, key: &str, at: DateTime<Utc>) -> Result<(), TaskError> {
        let durable = self.durable("sleep_until")?;
        let deadline = {
            let mut state = durable.state();
            *state.waits.timers.entry(key.to_owned()).or_insert(at)
        };
        self.wait_for_deadline(durable, key, deadline)
    }

    fn wait_for_deadline(
        &self,
        durable: &Durable,
        key: &str,
        deadline: DateTime<Utc>,
    ) -> Result<(), TaskError> {
        if durable.clock.now() >= deadline {
            return Ok(());
        }
        Err(suspend(
            durable,
            Pending {
                until: Some(deadline),
                signal: None,
                reason: format!("timer `{key}` until {}", deadline.to_rfc3339()),
            },
        ))
    }

    /// Waits for the signal `name` sent to this task's run, for at most `timeout` from the
    /// first time the task waited for it. Returns the signal's payload, or `None` when the
    /// wait timed out. A signal sent before the task waits is kept and returned at once; of
    /// several signals with one name, the first sent is returned.
    pub async fn signal(&self, name: &str, timeout: Duration) -> Result<Option<Value>, TaskError> {
        let durable = self.durable("signal")?;
        check_name("signal name", name).map_err(TaskError::permanent)?;
        let delivered = durable
            .store
            .signal_payload(self.run_id(), name)
            .await
            .map_err(|err| TaskError::retryable(format!("could not read signals: {err}")))?;
        if let Some(payload) = delivered {
            return Ok(Some(payload));
        }
        let deadline = {
            let mut state = durable.state();
            *state
                .waits
                .signals
                .entry(name.to_owned())
                .or_insert_with(|| after(durable.clock.as_ref(), timeout))
        };
        if durable.clock.now() >= deadline {
            return Ok(None);
        }
        Err(suspend(
            durable,
            Pending {
                until: Some(deadline),
                signal: Some(name.to_owned()),
                reason: format!(
                    "signal `{name}` until {}; send it with `caraml run signal {} {name}`",
                    deadline.to_rfc3339(),
                    self.run_id()
                ),
            },
        ))
    }

    /// Starts a run of `workflow` as a child of this task, once per `key`, and waits for
    /// it without holding a worker slot. Returns the outputs of the child run's final
    /// tasks (those no other task depends on), by task name. A failed or cancelled child
    /// fails this task with an error that is not retried.
    pub async fn child(&self, key: &str, workflow: &str, input: Value) -> Result<Value, TaskError> {
        let durable = self.durable("child")?;
        let recorded = durable.state().waits.children.get(key).copied();
        let child_id = match recorded {
            Some(id) => id,
            None => {
                let id = durable
                    .store
                    .submit_child(
                        self.run_id(),
                        durable.task_idx,
                        self.task_name(),
                        key,
                        workflow,
                        input,
                    )
                    .await
                    .map_err(|err| match err {
                        crate::Error::InvalidInput(_)
                        | crate::Error::NotFound { .. }
                        | crate::Error::Conflict(_)
                        | crate::Error::InvalidSpec(_) => TaskError::permanent(format!(
                            "could not start child run `{key}` of workflow `{workflow}`: {err}"
                        )),
                        other => TaskError::retryable(format!(
                            "could not start child run `{key}` of workflow `{workflow}`: {other}"
                        )),
                    })?;
                durable.state().waits.children.insert(key.to_owned(), id);
                id
            }
        };
        let state = durable.store.child_state(child_id).await.map_err(|err| {
            TaskError::retryable(format!("could not read child run {child_id}: {err}"))
        })?;
        match state {
            ChildState::Succeeded(outputs) => Ok(outputs),
            ChildState::Ended { status, error } => Err(TaskError::permanent(format!(
                "child run {child_id} of workflow `{workflow}` ended `{status}`{}",
                error.map(|e| format!(": {e}")).unwrap_or_default()
            ))),
            ChildState::Open => Err(suspend(
                durable,
                Pending {
                    until: None,
                    signal: None,
                    reason: format!("child run {child_id} of workflow `{workflow}`"),
                },
            )),
        }
    }

    fn durable(&self, method: &str) -> Result<&Durable, TaskError> {
        self.inner.durable.as_deref().ok_or_else(|| {
            TaskError::permanent(format!(
                "`{method}` needs a context from a worker; a detached context cannot wait durably"
            ))
        })
    }
}

fn suspend(durable: &Durable, pending: Pending) -> TaskError {
    let message = format!("waiting for {}", pending.reason);
    durable.state().pending = Some(pending);
    TaskError {
        kind: ErrorKind::Suspended,
        message,
    }
}
