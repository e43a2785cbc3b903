//! Workflow specs: the JSON or YAML documents that describe a DAG of task nodes, and their
//! validation.
//!
//! A spec is checked as a whole before anything is stored: every problem found is reported
//! with the names involved, so a user can fix a spec in one round.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest DAG a single run may hold.
pub const MAX_TASKS: usize = 100_000;

/// Maximum per-attempt timeout a spec may set: one week.
const MAX_TIMEOUT_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// Most attempts a retry policy may allow.
const MAX_ATTEMPTS: u32 = 1_000;

/// A workflow as users write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub tasks: Vec<TaskSpec>,
}

/// One node of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
}

/// A limit on how many tasks sharing a key run at once. Tasks over the limit wait without
/// holding a worker slot; a task keeps its key while it runs or waits durably.
///
/// The key may name fields of the run input in braces: with the key `deploy:{endpoint}`,
/// a run with the input `{"endpoint": "fraud"}` takes the key `deploy:fraud`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    pub key: String,
    #[serde(default = "one")]
    pub limit: u32,
}

fn one() -> u32 {
    1
}

/// Highest concurrency limit a task may declare.
pub const MAX_CONCURRENCY_LIMIT: u32 = 100_000;

impl Concurrency {
    /// Checks the key template and the limit; returns what is wrong, naming the fix.
    pub fn check(&self) -> Result<(), String> {
        if self.limit == 0 || self.limit > MAX_CONCURRENCY_LIMIT {
            return Err(format!(
                "concurrency.limit is {}; it must be from 1 to {MAX_CONCURRENCY_LIMIT}",
                self.limit
            ));
        }
        let probe = self.resolve(&|_| Some("x".to_owned()))?;
        check_name("concurrency key", &probe)
            .map_err(|_| format!(
                "concurrency.key `{}` is invalid; use 1 to 200 characters from letters, digits, `_`, `-`, `.` and `:`, with run input fields in braces such as `deploy:{{endpoint}}`",
                self.key.escape_debug()
            ))
    }

    /// Fills the key's `{field}` placeholders with `field(name)`.
    pub fn resolve(&self, field: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut key = String::with_capacity(self.key.len());
        let mut rest = self.key.as_str();
        while let Some(open) = rest.find('{') {
            key.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!(
                    "concurrency.key `{}` has `{{` without a closing `}}`",
                    self.key.escape_debug()
                ));
            };
            let name = &after[..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "concurrency.key `{}` has the placeholder `{{{}}}`; name a run input field of letters, digits and `_`",
                    self.key.escape_debug(),
                    name.escape_debug()
                ));
            }
            let Some(value) = field(name) else {
                return Err(format!(
                    "concurrency.key `{}` needs the run input field `{name}`, which the input lacks or which is not a string or number; add it to the run input",
                    self.key.escape_debug()
                ));
            };
            key.push_str(&value);
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!(
                "concurrency.key `{}` has `}}` without an opening `{{`",
                self.key.escape_debug()
            ));
        }
        key.push_str(rest);
        Ok(key)
    }
}

/// How often and how far apart a failing task is tried again.
///
/// The delay before try `n + 1` is `initial_backoff_seconds * 2^(n - 1)`, capped at
/// `max_backoff_seconds`, with up to 25% random jitter added.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "RetryPolicy::default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "RetryPolicy::default_initial_backoff")]
    pub initial_backoff_seconds: f64,
    #[serde(default = "RetryPolicy::default_max_backoff")]
    pub max_backoff_seconds: f64,
}

impl RetryPolicy {
    fn default_max_attempts() -> u32 {
        Self::standard().max_attempts
    }

    fn default_initial_backoff() -> f64 {
        1.0
    }

    fn default_max_backoff() -> f64 {
        60.0
    }

    /// Returns the policy used when a task names none: three attempts, one second apart,
    /// doubling up to a minute.
    pub fn standard() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff_seconds: Self::default_initial_backoff(),
            max_backoff_seconds: Self::default_max_backoff(),
        }
    }

    /// Returns a policy that runs a task once and never retries it.
    pub fn no_retry() -> Self {
        Self {
            max_attempts: 1,
            ..Self::standard()
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::standard()
    }
}

/// One problem in a spec, naming the values involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SpecProblem {
    /// A stable code for the kind of problem, such as `cycle` or `unknown_kind`.
    pub code: &'static str,
    pub message: String,
    /// The task names the problem is about.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
}

/// Every problem found in a rejected spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub struct SpecError {
    pub problems: Vec<SpecProblem>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(f, "invalid workflow spec ({count} problem")?;
        if count != 1 {
            write!(f, "s")?;
        }
        write!(f, ")")?;
        for problem in &self.problems {
            write!(f, "; {}", problem.message)?;
        }
        Ok(())
    }
}

impl SpecError {
    fn single(code: &'static str, message: String) -> Self {
        Self {
            problems: vec![SpecProblem {
                code,
                message,
                tasks: Vec::new(),
            }],
        }
    }
}

impl WorkflowSpec {
    /// Parses a spec from JSON or YAML text. JSON is tried when the text starts with `{`.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            serde_json::from_str(trimmed).map_err(|err| {
                SpecError::single(
                    "parse",
                    format!("the spec is not valid JSON for a workflow: {err}"),
                )
            })
        } else {
            serde_yaml::from_str(text).map_err(|err| {
                SpecError::single(
                    "parse",
                    format!("the spec is not valid YAML for a workflow: {err}"),
                )
            })
        }
    }

    /// Checks the spec and orders it into a DAG.
    ///
    /// `known_kind` returns whether a task kind can run on some worker.
    pub fn compile(&self, known_kind: &dyn Fn(&str) -> bool) -> Result<Dag, SpecError> {
        let mut problems = Vec::new();
        check_workflow_fields(self, &mut problems);

        let mut index: HashMap<&str, usize> = HashMap::with_capacity(self.tasks.len());
        let mut duplicates: Vec<String> = Vec::new();
        for (position, task) in self.tasks.iter().enumerate() {
            check_task_fields(task, known_kind, &mut problems);
            if index.insert(task.name.as_str(), position).is_some()
                && !duplicates.contains(&task.name)
            {
                duplicates.push(task.name.clone());
            }
        }
        for name in duplicates {
            problems.push(SpecProblem {
                code: "duplicate_name",
                message: format!(
                    "task name `{name}` is used more than once; give each task a unique name"
                ),
                tasks: vec![name],
            });
        }

        let mut parents: Vec<Vec<u32>> = vec![Vec::new(); self.tasks.len()];
        for (position, task) in self.tasks.iter().enumerate() {
            let mut seen = HashSet::new();
            for dependency in &task.depends_on {
                if !seen.insert(dependency.as_str()) {
                    continue;
                }
                if dependency == &task.name {
                    problems.push(SpecProblem {
                        code: "self_dependency",
                        message: format!(
                            "task `{}` depends on itself; remove `{}` from its depends_on",
                            task.name, dependency
                        ),
                        tasks: vec![task.name.clone()],
                    });
                    continue;
                }
                match index.get(dependency.as_str()) {
                    Some(&parent) => parents[position].push(parent as u32),
                    None => problems.push(SpecProblem {
                        code: "dangling_dependency",
                        message: format!(
                            "task `{}` depends on `{}`, which is not a task of this workflow",
                            task.name, dependency
                        ),
                        tasks: vec![task.name.clone(), dependency.clone()],
                    }),
                }
            }
        }

        if let Some(cycle) = find_cycle(&parents) {
            let names: Vec<String> = cycle.iter().map(|&i| self.tasks[i].name.clone()).collect();
            let mut path = names.join(" -> ");
            path.push_str(" -> ");
            path.push_str(&names[0]);
            problems.push(SpecProblem {
                code: "cycle",
                message: format!(
                    "the dependencies form a cycle: {path}; remove one of these dependencies"
                ),
                tasks: names,
            });
        }

        if !problems.is_empty() {
            return Err(SpecError { problems });
        }

        let mut children: Vec<Vec<u32>> = vec![Vec::new(); self.tasks.len()];
        for (child, task_parents) in parents.iter().enumerate() {
            for &parent in task_parents {
                children[parent as usize].push(child as u32);
            }
        }
        let nodes = self
            .tasks
            .iter()
            .zip(parents)
            .zip(children)
            .map(|((task, parents), children)| DagNode {
                name: task.name.clone(),
                kind: task.kind.clone(),
                input: task.input.clone(),
                parents,
                children,
                retry: task.retry.unwrap_or_default(),
                timeout: task.timeout_seconds.map(Duration::from_secs_f64),
                queue: task
                    .queue
                    .clone()
                    .unwrap_or_else(|| DEFAULT_QUEUE.to_owned()),
                priority: task.priority.unwrap_or(0),
                concurrency: task.concurrency.clone(),
            })
            .collect();
        Ok(Dag {
            name: self.name.clone(),
            nodes,
        })
    }
}

/// Queue that tasks join when their spec names none.
pub const DEFAULT_QUEUE: &str = "default";

fn check_workflow_fields(spec: &WorkflowSpec, problems: &mut Vec<SpecProblem>) {
    if let Err(message) = check_name("workflow name", &spec.name) {
        problems.push(SpecProblem {
            code: "invalid_name",
            message,
            tasks: Vec::new(),
        });
    }
    if spec.tasks.is_empty() {
        problems.push(SpecProblem {
            code: "empty",
            message: format!(
                "workflow `{}` has no tasks; add at least one entry under `tasks`",
                spec.name
            ),
            tasks: Vec::new(),
        });
    }
    if spec.tasks.len() > MAX_TASKS {
        problems.push(SpecProblem {
            code: "too_large",
            message: format!(
                "workflow `{}` has {} tasks, more than the limit of {MAX_TASKS}; split it into several workflows",
                spec.name,
                spec.tasks.len()
            ),
            tasks: Vec::new(),
        });
    }
}

fn check_task_fields(
    task: &TaskSpec,
    known_kind: &dyn Fn(&str) -> bool,
    problems: &mut Vec<SpecProblem>,
) {
    let mut push = |code: &'static str, message: String| {
        problems.push(SpecProblem {
            code,
            message,
            tasks: vec![task.name.clone()],
        })
    };
    if let Err(message) = check_name("task name", &task.name) {
        push("invalid_name", message);
    }
    if !known_kind(&task.kind) {
        push(
            "unknown_kind",
            format!(
                "task `{}` has kind `{}`, which no worker has registered; use a built-in kind (see GET /v1/workflows) or start a worker that registers it",
                task.name, task.kind
            ),
        );
    }
    if let Some(retry) = &task.retry {
        if retry.max_attempts == 0 || retry.max_attempts > MAX_ATTEMPTS {
            push(
                "invalid_retry",
                format!(
                    "task `{}` has retry.max_attempts {}; it must be between 1 and {MAX_ATTEMPTS}",
                    task.name, retry.max_attempts
                ),
            );
        }
        let backoffs = [
            ("initial_backoff_seconds", retry.initial_backoff_seconds),
            ("max_backoff_seconds", retry.max_backoff_seconds),
        ];
        for (field, value) in backoffs {
            if !value.is_finite() || !(0.0..=MAX_TIMEOUT_SECONDS).contains(&value) {
                push(
                    "invalid_retry",
                    format!(
                        "task `{}` has retry.{field} {value}; it must be a number of seconds from 0 to {MAX_TIMEOUT_SECONDS}",
                        task.name
                    ),
                );
            }
        }
        if retry.max_backoff_seconds < retry.initial_backoff_seconds {
            push(
                "invalid_retry",
                format!(
                    "task `{}` has retry.max_backoff_seconds {} below initial_backoff_seconds {}; raise the maximum",
                    task.name, retry.max_backoff_seconds, retry.initial_backoff_seconds
                ),
            );
        }
    }
    if let Some(timeout) = task.timeout_seconds
        && (!timeout.is_finite() || timeout <= 0.0 || timeout > MAX_TIMEOUT_SECONDS)
    {
        push(
            "invalid_timeout",
            format!(
                "task `{}` has timeout_seconds {timeout}; it must be above 0 and at most {MAX_TIMEOUT_SECONDS} (one week)",
                task.name
            ),
        );
    }
    if let Some(queue) = &task.queue
        && let Err(message) = check_name("queue name", queue)
    {
        push("invalid_queue", message);
    }
    if let Some(concurrency) = &task.concurrency
        && let Err(message) = concurrency.check()
    {
        push(
            "invalid_concurrency",
            format!("task `{}`: {message}", task.name),
        );
    }
}

/// Checks that a name is 1 to 200 characters of letters, digits, `_`, `-`, `.` and `:`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if name.is_empty() || name.len() > 200 || !valid_chars {
        return Err(format!(
            "{what} `{}` is invalid; use 1 to 200 characters from letters, digits, `_`, `-`, `.` and `:`",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Returns the nodes of one cycle in `parents`, if the graph has any.
fn find_cycle(parents: &[Vec<u32>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }

    let mut marks = vec![Mark::New; parents.len()];
    for start in 0..parents.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // An explicit stack instead of recursion: a 50,000-node chain would overflow the
        // thread's stack otherwise.
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(&parent) = parents[node].get(*next) {
                *next += 1;
                let parent = parent as usize;
                match marks[parent] {
                    Mark::New => {
                        marks[parent] = Mark::OnPath;
                        path.push((parent, 0));
                    }
                    Mark::OnPath => {
                        let from = path.iter().position(|&(n, _)| n == parent)?;
                        // The path follows edges from child to parent; reverse it so the
                        // cycle reads in dependency order.
                        let mut cycle: Vec<usize> = path[from..].iter().map(|&(n, _)| n).collect();
                        cycle.reverse();
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}

/// A validated workflow: its nodes in spec order with their edges as indexes.
#[derive(Debug, Clone)]
pub struct Dag {
    pub name: String,
    pub nodes: Vec<DagNode>,
}

/// One node of a validated workflow.
#[derive(Debug, Clone)]
pub struct DagNode {
    pub name: String,
    pub kind: String,
    pub input: Value,
    pub parents: Vec<u32>,
    pub children: Vec<u32>,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub queue: String,
    pub priority: i16,
    pub concurrency: Option<Concurrency>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_retry_policy_takes_defaults() {
        let spec = spec(json!([
            {"name": "a", "kind": "sleep", "retry": {"initial_backoff_seconds": 2}},
            {"name": "b", "kind": "sleep", "retry": {}}
        ]));
        let dag = spec.compile(&|_| true).expect("valid spec");
        assert_eq!(dag.nodes[0].retry.max_attempts, 3);
        assert_eq!(dag.nodes[0].retry.initial_backoff_seconds, 2.0);
        assert_eq!(dag.nodes[1].retry, RetryPolicy::standard());
    }

    fn spec(tasks: Value) -> WorkflowSpec {
        serde_json::from_value(json!({"name": "w", "tasks": tasks})).expect("test spec parses")
    }

    fn problems(spec: &WorkflowSpec) -> Vec<SpecProblem> {
        match spec.compile(&|kind| kind != "nope") {
            Ok(_) => Vec::new(),
            Err(err) => err.problems,
        }
    }

    fn codes(spec: &WorkflowSpec) -> Vec<&'static str> {
        problems(spec).iter().map(|p| p.code).collect()
    }

    #[test]
    fn diamond_compiles_with_edges() {
        let spec = spec(json!([
            {"name": "a", "kind": "sleep"},
            {"name": "b", "kind": "sleep", "depends_on": ["a"]},
            {"name": "c", "kind": "sleep", "depends_on": ["a"]},
            {"name": "d", "kind": "sleep", "depends_on": ["b", "c"]},
        ]));
        let dag = spec.compile(&|_| true).expect("diamond is valid");
        assert_eq!(dag.nodes[0].children, vec![1, 2]);
        assert_eq!(dag.nodes[3].parents, vec![1, 2]);
    }

    #[test]
    fn cycle_names_its_nodes() {
        let spec = spec(json!([
            {"name": "root", "kind": "sleep"},
            {"name": "a", "kind": "sleep", "depends_on": ["root", "c"]},
            {"name": "b", "kind": "sleep", "depends_on": ["a"]},
            {"name": "c", "kind": "sleep", "depends_on": ["b"]},
        ]));
        let found = problems(&spec);
        assert_eq!(found.len(), 1, "one problem expected: {found:?}");
        assert_eq!(found[0].code, "cycle");
        let mut names = found[0].tasks.clone();
        names.sort();
        assert_eq!(names, ["a", "b", "c"], "the cycle lists exactly its nodes");
        assert!(!found[0].tasks.contains(&"root".to_owned()));
    }

    #[test]
    fn self_dependency_rejected() {
        let spec = spec(json!([{"name": "a", "kind": "sleep", "depends_on": ["a"]}]));
        assert_eq!(codes(&spec), ["self_dependency"]);
    }

    #[test]
    fn dangling_dependency_names_both() {
        let spec = spec(json!([{"name": "a", "kind": "sleep", "depends_on": ["ghost"]}]));
        let found = problems(&spec);
        assert_eq!(found[0].code, "dangling_dependency");
        assert_eq!(found[0].tasks, ["a", "ghost"]);
    }

    #[test]
    fn duplicate_name_rejected() {
        let spec = spec(json!([
            {"name": "a", "kind": "sleep"},
            {"name": "a", "kind": "sleep"},
        ]));
        assert_eq!(codes(&spec), ["duplicate_name"]);
    }

    #[test]
    fn unknown_kind_rejected() {
        let spec = spec(json!([{"name": "a", "kind": "nope"}]));
        let found = problems(&spec);
        assert_eq!(found[0].code, "unknown_kind");
        assert!(found[0].message.contains("`nope`"));
    }

    #[test]
    fn empty_task_list_rejected() {
        assert_eq!(codes(&spec(json!([]))), ["empty"]);
    }

    #[test]
    fn invalid_retry_and_timeout_rejected() {
        let spec = spec(json!([
            {"name": "a", "kind": "sleep", "retry": {"max_attempts": 0}},
            {"name": "b", "kind": "sleep", "retry": {"max_attempts": 2, "initial_backoff_seconds": -1}},
            {"name": "c", "kind": "sleep", "retry": {"max_attempts": 2, "initial_backoff_seconds": 5, "max_backoff_seconds": 1}},
            {"name": "d", "kind": "sleep", "timeout_seconds": 0},
        ]));
        assert_eq!(
            codes(&spec),
            [
                "invalid_retry",
                "invalid_retry",
                "invalid_retry",
                "invalid_timeout"
            ]
        );
    }

    #[test]
    fn unknown_field_rejected_at_parse() {
        let err = WorkflowSpec::parse(
            r#"{"name": "w", "tasks": [{"name": "a", "kind": "sleep", "dependson": []}]}"#,
        )
        .expect_err("a misspelt field is an error");
        assert!(err.to_string().contains("dependson"), "{err}");
    }

    #[test]
    fn yaml_parses() {
        let spec = WorkflowSpec::parse(
            "name: w\ntasks:\n  - name: a\n    kind: sleep\n    input: {seconds: 1}\n",
        )
        .expect("YAML spec parses");
        assert_eq!(spec.tasks[0].input, json!({"seconds": 1}));
    }

    #[test]
    fn long_chain_does_not_overflow() {
        let tasks: Vec<Value> = (0..60_000)
            .map(|i| {
                if i == 0 {
                    json!({"name": "t0", "kind": "sleep"})
                } else {
                    json!({"name": format!("t{i}"), "kind": "sleep", "depends_on": [format!("t{}", i - 1)]})
                }
            })
            .collect();
        let dag = spec(Value::Array(tasks))
            .compile(&|_| true)
            .expect("a long chain is valid");
        assert_eq!(dag.nodes.len(), 60_000);
    }
}
