//! A builder for workflows defined in Rust.
//!
//! ```ignore
//! let spec = WorkflowBuilder::new("report")
//!     .task(Node::of::<Load>("load").input(json!({"path": "flights.csv"})))
//!     .task(Node::of::<Summarize>("summarize").after(["load"]))
//!     .build()?;
//! ```

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::spec::{Concurrency, RetryPolicy, SpecError, SpecProblem, TaskSpec, WorkflowSpec};
use crate::task::Task;

/// Collects the nodes of a workflow.
#[derive(Debug, Clone)]
pub struct WorkflowBuilder {
    spec: WorkflowSpec,
    problems: Vec<SpecProblem>,
}

impl WorkflowBuilder {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            spec: WorkflowSpec {
                name: name.into(),
                description: None,
                tasks: Vec::new(),
            },
            problems: Vec::new(),
        }
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.spec.description = Some(description.into());
        self
    }

    pub fn task(mut self, node: Node) -> Self {
        match node.input_error {
            Some(message) => self.problems.push(SpecProblem {
                code: "invalid_input",
                message,
                tasks: vec![node.spec.name.clone()],
            }),
            None => self.spec.tasks.push(node.spec),
        }
        self
    }

    /// Returns the spec, or the problems found while adding nodes. The spec is checked
    /// against the registered kinds when a worker stores it.
    pub fn build(self) -> Result<WorkflowSpec, SpecError> {
        if self.problems.is_empty() {
            Ok(self.spec)
        } else {
            Err(SpecError {
                problems: self.problems,
            })
        }
    }
}

/// One node of a workflow under construction.
#[derive(Debug, Clone)]
pub struct Node {
    spec: TaskSpec,
    input_error: Option<String>,
}

impl Node {
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            spec: TaskSpec {
                name: name.into(),
                kind: kind.into(),
                input: Value::Null,
                depends_on: Vec::new(),
                retry: None,
                timeout_seconds: None,
                queue: None,
                priority: None,
                concurrency: None,
            },
            input_error: None,
        }
    }

    /// Starts a node that runs task type `T`.
    pub fn of<T: Task>(name: impl Into<String>) -> Self {
        Self::new(name, T::KIND)
    }

    /// Sets the node's input from any serializable value.
    pub fn input(mut self, input: impl Serialize) -> Self {
        match serde_json::to_value(input) {
            Ok(value) => self.spec.input = value,
            Err(err) => {
                self.input_error = Some(format!(
                    "the input of task `{}` could not be encoded as JSON: {err}",
                    self.spec.name
                ));
            }
        }
        self
    }

    /// Makes the node wait for the named nodes and receive their outputs.
    pub fn after<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spec
            .depends_on
            .extend(names.into_iter().map(Into::into));
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.spec.retry = Some(policy);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.spec.timeout_seconds = Some(timeout.as_secs_f64());
        self
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.spec.queue = Some(queue.into());
        self
    }

    pub fn priority(mut self, priority: i16) -> Self {
        self.spec.priority = Some(priority);
        self
    }

    /// Lets at most `limit` tasks with this key run or wait at once; see [`Concurrency`].
    pub fn concurrency(mut self, key: impl Into<String>, limit: u32) -> Self {
        self.spec.concurrency = Some(Concurrency {
            key: key.into(),
            limit,
        });
        self
    }
}
