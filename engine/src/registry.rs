//! The task kinds and Rust-defined workflows that a worker process can run.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::builtin::{Approval, RunWorkflow, Sleep, Timer};
use crate::service::HttpServe;
use crate::spec::WorkflowSpec;
use crate::task::{Erased, ErasedTask, Task};

/// Task kinds by name, and the workflows defined in Rust that a worker registers at start.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<String, Arc<dyn ErasedTask>>,
    workflows: Vec<WorkflowSpec>,
}

impl Registry {
    /// Returns a registry with the engine's built-in kinds (`sleep`).
    pub fn with_builtins() -> Self {
        let mut registry = Self::default();
        registry
            .task(Sleep)
            .task(Timer)
            .task(Approval)
            .task(RunWorkflow)
            .task(HttpServe);
        registry
    }

    /// Adds a task kind; a later task of the same kind replaces an earlier one.
    pub fn task<T: Task>(&mut self, task: T) -> &mut Self {
        self.kinds
            .insert(T::KIND.to_owned(), Arc::new(Erased(Arc::new(task))));
        self
    }

    /// Adds a workflow defined in Rust; workers store it when they start.
    pub fn workflow(&mut self, spec: WorkflowSpec) -> &mut Self {
        self.workflows.retain(|known| known.name != spec.name);
        self.workflows.push(spec);
        self
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    pub fn has_kind(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    pub fn workflows(&self) -> &[WorkflowSpec] {
        &self.workflows
    }

    /// Returns whether `kind` is registered as a service.
    pub fn is_service(&self, kind: &str) -> bool {
        self.kinds.get(kind).is_some_and(|task| task.is_service())
    }

    pub(crate) fn handler(&self, kind: &str) -> Option<Arc<dyn ErasedTask>> {
        self.kinds.get(kind).cloned()
    }
}
