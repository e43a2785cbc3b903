//! Submitting runs: resolve the workflow, validate it, and store the run with its task runs
//! in one transaction.

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use std::collections::HashSet;
use uuid::Uuid;

use super::claim::ClaimedTask;
use super::{READY_CHANNEL, Store};
use crate::error::{Error, Result};
use crate::spec::{Dag, WorkflowSpec, check_name};

/// The project of runs submitted without naming one, created by the first migration.
pub const DEFAULT_PROJECT: &str = "default";

/// Maximum length of an idempotency key.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// Workflow that a submission runs.
#[derive(Debug, Clone)]
pub enum Submission {
    /// The latest stored version of a registered workflow.
    Workflow(String),
    /// A spec given inline; it is stored as a workflow version of its own.
    Spec(WorkflowSpec),
}

/// The run a submission created, or found under the same idempotency key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Submitted {
    pub id: Uuid,
    pub status: String,
    /// False when an earlier run with the same idempotency key was returned.
    pub created: bool,
}

impl Store {
    /// Stores a new run in the project [`DEFAULT_PROJECT`]; see [`Store::submit_in`].
    pub async fn submit(
        &self,
        submission: Submission,
        input: Value,
        idempotency_key: Option<String>,
    ) -> Result<Submitted> {
        self.submit_in(DEFAULT_PROJECT, submission, input, idempotency_key)
            .await
    }

    /// Stores a new run of `project`, or returns the run an earlier submission of the same
    /// workflow with the same idempotency key created in that project, also when both
    /// submissions race. A key that belongs to a run of another workflow is rejected with
    /// [`Error::IdempotencyKeyReused`]. Idempotency keys, like workflow specs, are scoped to
    /// the project.
    pub async fn submit_in(
        &self,
        project: &str,
        submission: Submission,
        input: Value,
        idempotency_key: Option<String>,
    ) -> Result<Submitted> {
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN)
        {
            return Err(Error::InvalidInput(format!(
                "idempotency_key has {} characters; use 1 to {MAX_IDEMPOTENCY_KEY_LEN}",
                key.len()
            )));
        }
        let requested_workflow = match &submission {
            Submission::Workflow(name) => name.as_str(),
            Submission::Spec(spec) => spec.name.as_str(),
        };
        if let Some(key) = &idempotency_key
            && let Some(existing) = self.run_by_idempotency_key(project, key).await?
        {
            return existing.reuse(key, requested_workflow);
        }

        let (dag, version) = match submission {
            Submission::Spec(spec) => {
                let dag = self.compile(&spec).await?;
                (dag, self.store_spec(project, &spec).await?)
            }
            Submission::Workflow(name) => {
                let (spec, version) = self.latest_workflow_in(project, &name).await?;
                (self.compile(&spec).await?, version)
            }
        };
        self.insert_run(project, &dag, &version, input, idempotency_key)
            .await
    }

    async fn run_by_idempotency_key(&self, project: &str, key: &str) -> Result<Option<KeyedRun>> {
        Ok(sqlx::query_as(
            "SELECT id, status, workflow FROM runs WHERE project = $1 AND idempotency_key = $2",
        )
        .bind(project)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn insert_run(
        &self,
        project: &str,
        dag: &Dag,
        version: &str,
        input: Value,
        idempotency_key: Option<String>,
    ) -> Result<Submitted> {
        let run_id = Uuid::now_v7();
        let columns = TaskColumns::from_dag(dag, &input)?;
        let mut ready_queues = root_queues(dag);

        // A single root task may start at once on an idle worker of this process.
        let mut roots = dag
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.parents.is_empty());
        let eager = match (roots.next(), roots.next()) {
            // A task with a concurrency key must be admitted through its key first.
            (Some((idx, root)), None) if root.concurrency.is_none() => self
                .local_workers
                .pick(&root.queue)
                .map(|pick| (idx, root, pick)),
            _ => None,
        };
        if eager.is_some() {
            ready_queues.clear();
        }
        let claim = eager
            .as_ref()
            .map_or(EagerClaim::NONE, |(idx, _, pick)| EagerClaim {
                idx: *idx as i32,
                attempt_id: Some(pick.attempt_id),
                worker_id: Some(pick.worker_id),
                lease_ms: pick.lease.as_millis() as f64,
            });
        let inserted = insert_run_rows(
            &self.pool,
            RunRows {
                run_id,
                project,
                dag,
                version,
                input: &input,
                idempotency_key: idempotency_key.as_deref(),
                columns: &columns,
                ready_queues: &ready_queues,
                eager: claim,
            },
        )
        .await?;
        if inserted.is_none() {
            let key = idempotency_key.unwrap_or_default();
            return self
                .run_by_idempotency_key(project, &key)
                .await?
                .ok_or_else(|| Error::Conflict(format!(
                    "a run with idempotency_key `{key}` was being created and then rolled back; submit again"
                )))?
                .reuse(&key, &dag.name);
        }

        if !ready_queues.is_empty() {
            self.local_ready.notify_waiters();
        }
        if let Some((idx, root, pick)) = eager {
            let task = ClaimedTask {
                run_id,
                idx: idx as i32,
                name: root.name.clone(),
                kind: root.kind.clone(),
                input: root.input.clone(),
                parents: Vec::new(),
                attempt: 1,
                attempt_id: pick.attempt_id,
                attempt_limit: columns.max_attempts[idx],
                max_attempts: columns.max_attempts[idx],
                initial_backoff_ms: columns.initial_backoff_ms[idx],
                max_backoff_ms: columns.max_backoff_ms[idx],
                timeout_ms: columns.timeout_ms[idx],
                waits: Value::Object(Default::default()),
                run_input: input,
            };
            if pick.tasks.send(task).is_err() {
                tracing::warn!(run.id = %run_id, worker.id = %pick.worker_id, "the worker picked for eager dispatch stopped; the task runs once its lease lapses");
            }
        }
        tracing::debug!(run.id = %run_id, workflow = %dag.name, tasks = dag.nodes.len(), "run submitted");
        Ok(Submitted {
            id: run_id,
            status: "queued".to_owned(),
            created: true,
        })
    }

    /// Stores a run that a schedule started, in the caller's transaction, and returns its id
    /// and whether it is new: a run under the same idempotency key is returned instead. The
    /// root tasks are not dispatched eagerly, because the rows are not committed yet; workers
    /// learn of them from the notification sent at commit.
    pub(crate) async fn insert_scheduled_run(
        &self,
        conn: &mut PgConnection,
        project: &str,
        dag: &Dag,
        version: &str,
        input: &Value,
        idempotency_key: &str,
    ) -> Result<(Uuid, bool)> {
        let run_id = Uuid::now_v7();
        let columns = TaskColumns::from_dag(dag, input)?;
        let ready_queues = root_queues(dag);
        let inserted = insert_run_rows(
            &mut *conn,
            RunRows {
                run_id,
                project,
                dag,
                version,
                input,
                idempotency_key: Some(idempotency_key),
                columns: &columns,
                ready_queues: &ready_queues,
                eager: EagerClaim::NONE,
            },
        )
        .await?;
        if inserted.is_some() {
            return Ok((run_id, true));
        }
        let existing: Option<(Uuid,)> =
            sqlx::query_as("SELECT id FROM runs WHERE project = $1 AND idempotency_key = $2")
                .bind(project)
                .bind(idempotency_key)
                .fetch_optional(&mut *conn)
                .await?;
        let (id,) = existing.ok_or_else(|| {
            Error::Conflict(format!(
                "a run with idempotency_key `{idempotency_key}` was being created and then rolled back; the next scheduler pass starts it again"
            ))
        })?;
        Ok((id, false))
    }
}

/// Returns the distinct queues of the DAG's root tasks, which are ready as soon as the run
/// is stored.
fn root_queues(dag: &Dag) -> Vec<&str> {
    let queues: HashSet<&str> = dag
        .nodes
        .iter()
        .filter(|node| node.parents.is_empty())
        .map(|node| node.queue.as_str())
        .collect();
    queues.into_iter().collect()
}

/// A single root task stored as already claimed by a worker of this process.
struct EagerClaim {
    /// Index of the task, or -1 when no task is claimed.
    idx: i32,
    attempt_id: Option<Uuid>,
    worker_id: Option<Uuid>,
    lease_ms: f64,
}

impl EagerClaim {
    const NONE: Self = Self {
        idx: -1,
        attempt_id: None,
        worker_id: None,
        lease_ms: 0.0,
    };
}

/// Everything one run insert writes.
struct RunRows<'a> {
    run_id: Uuid,
    project: &'a str,
    dag: &'a Dag,
    version: &'a str,
    input: &'a Value,
    idempotency_key: Option<&'a str>,
    columns: &'a TaskColumns,
    /// Queues to notify of ready tasks when the insert commits.
    ready_queues: &'a [&'a str],
    eager: EagerClaim,
}

/// Inserts a run with its task runs and first events, and notifies the queues of its ready
/// tasks. Returns `None`, and inserts nothing, when a run with the idempotency key exists.
async fn insert_run_rows<'e>(
    executor: impl PgExecutor<'e>,
    rows: RunRows<'_>,
) -> Result<Option<Uuid>> {
    let RunRows {
        run_id,
        project,
        dag,
        version,
        input,
        idempotency_key,
        columns,
        ready_queues,
        eager,
    } = rows;

    // One statement, so the run, its tasks, its first event and the wake-up of workers
    // commit together in a single round trip. ON CONFLICT waits for a concurrent insert
    // of the same idempotency key to commit and then inserts nothing, so racing
    // submissions all see the first run.
    let inserted: Option<(Uuid,)> = sqlx::query_as(
        "WITH run AS (
            INSERT INTO runs (id, workflow, workflow_version, status, input, idempotency_key,
                              tasks_total, project)
            VALUES ($1, $2, $3, 'queued', $4, $5, $6, $29)
            ON CONFLICT (project, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING id
        ),
        tasks AS (
            INSERT INTO task_runs (run_id, idx, name, kind, status, queue, priority, pending_parents,
                                   parents, children, input, max_attempts, initial_backoff_ms,
                                   max_backoff_ms, timeout_ms, attempt_limit, attempt,
                                   attempt_id, worker_id, lease_expires_at, started_at,
                                   concurrency_key, concurrency_limit)
            SELECT $1, t.idx, t.name, t.kind,
                   CASE WHEN t.idx = $23 THEN 'running' ELSE t.status END,
                   t.queue, t.priority, t.pending,
                   t.parents::int4[], t.children::int4[], t.input, t.max_attempts,
                   t.initial_backoff_ms, t.max_backoff_ms, t.timeout_ms, t.max_attempts,
                   CASE WHEN t.idx = $23 THEN 1 ELSE 0 END,
                   CASE WHEN t.idx = $23 THEN $24::uuid END,
                   CASE WHEN t.idx = $23 THEN $25::uuid END,
                   CASE WHEN t.idx = $23 THEN now() + $26 * interval '1 millisecond' END,
                   CASE WHEN t.idx = $23 THEN now() END,
                   t.concurrency_key, t.concurrency_limit
            FROM unnest($7::int4[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int2[],
                        $13::int4[], $14::text[], $15::text[], $16::jsonb[], $17::int4[], $18::int4[],
                        $19::int4[], $20::int4[], $27::text[], $28::int4[])
                 AS t(idx, name, kind, status, queue, priority, pending, parents, children, input,
                      max_attempts, initial_backoff_ms, max_backoff_ms, timeout_ms,
                      concurrency_key, concurrency_limit)
            WHERE EXISTS (SELECT 1 FROM run)
        ),
        keys AS (
            INSERT INTO concurrency_keys (key)
            SELECT DISTINCT k FROM unnest($27::text[]) AS k
            WHERE k IS NOT NULL AND EXISTS (SELECT 1 FROM run)
            ON CONFLICT (key) DO NOTHING
        ),
        event AS (
            INSERT INTO events (run_id, kind, task_idx, attempt)
            SELECT id, 'run.queued', NULL::int4, NULL::int4 FROM run
            UNION ALL
            SELECT id, 'task.running', $23, 1 FROM run WHERE $23 >= 0
        ),
        woken AS (
            SELECT count(pg_notify($21, queue)) AS queues
            FROM unnest($22::text[]) AS queue
            WHERE EXISTS (SELECT 1 FROM run)
        )
        SELECT run.id FROM run, woken",
    )
    .bind(run_id)
    .bind(&dag.name)
    .bind(version)
    .bind(input)
    .bind(idempotency_key)
    .bind(dag.nodes.len() as i32)
    .bind(&columns.idx)
    .bind(&columns.name)
    .bind(&columns.kind)
    .bind(&columns.status)
    .bind(&columns.queue)
    .bind(&columns.priority)
    .bind(&columns.pending)
    .bind(&columns.parents)
    .bind(&columns.children)
    .bind(&columns.input)
    .bind(&columns.max_attempts)
    .bind(&columns.initial_backoff_ms)
    .bind(&columns.max_backoff_ms)
    .bind(&columns.timeout_ms)
    .bind(READY_CHANNEL)
    .bind(ready_queues)
    .bind(eager.idx)
    .bind(eager.attempt_id)
    .bind(eager.worker_id)
    .bind(eager.lease_ms)
    .bind(&columns.concurrency_key)
    .bind(&columns.concurrency_limit)
    .bind(project)
    .fetch_optional(executor)
    .await?;
    Ok(inserted.map(|(id,)| id))
}

/// The run that an idempotency key already belongs to.
#[derive(sqlx::FromRow)]
struct KeyedRun {
    id: Uuid,
    status: String,
    workflow: String,
}

impl KeyedRun {
    /// Returns this run for a repeated submission of the same workflow. A key reused for
    /// another workflow is rejected, since returning this run would hide that the requested
    /// workflow never ran.
    fn reuse(self, key: &str, requested_workflow: &str) -> Result<Submitted> {
        if self.workflow != requested_workflow {
            return Err(Error::IdempotencyKeyReused {
                key: key.to_owned(),
                run_id: self.id,
                existing_workflow: self.workflow,
                requested_workflow: requested_workflow.to_owned(),
            });
        }
        Ok(Submitted {
            id: self.id,
            status: self.status,
            created: false,
        })
    }
}

/// The task runs of a DAG as one array per column, for a single `INSERT ... SELECT unnest`.
struct TaskColumns {
    idx: Vec<i32>,
    name: Vec<String>,
    kind: Vec<String>,
    status: Vec<&'static str>,
    queue: Vec<String>,
    priority: Vec<i16>,
    pending: Vec<i32>,
    parents: Vec<String>,
    children: Vec<String>,
    input: Vec<Value>,
    max_attempts: Vec<i32>,
    initial_backoff_ms: Vec<i32>,
    max_backoff_ms: Vec<i32>,
    timeout_ms: Vec<Option<i32>>,
    concurrency_key: Vec<Option<String>>,
    concurrency_limit: Vec<Option<i32>>,
}

impl TaskColumns {
    /// Lays out the DAG's nodes; fails when a concurrency key names a field that the run
    /// input lacks.
    fn from_dag(dag: &Dag, input: &Value) -> Result<Self> {
        let n = dag.nodes.len();
        let mut columns = Self {
            idx: Vec::with_capacity(n),
            name: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            queue: Vec::with_capacity(n),
            priority: Vec::with_capacity(n),
            pending: Vec::with_capacity(n),
            parents: Vec::with_capacity(n),
            children: Vec::with_capacity(n),
            input: Vec::with_capacity(n),
            max_attempts: Vec::with_capacity(n),
            initial_backoff_ms: Vec::with_capacity(n),
            max_backoff_ms: Vec::with_capacity(n),
            timeout_ms: Vec::with_capacity(n),
            concurrency_key: Vec::with_capacity(n),
            concurrency_limit: Vec::with_capacity(n),
        };
        let field = |name: &str| match input.get(name) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Number(number)) => Some(number.to_string()),
            _ => None,
        };
        for (idx, node) in dag.nodes.iter().enumerate() {
            columns.idx.push(idx as i32);
            columns.name.push(node.name.clone());
            columns.kind.push(node.kind.clone());
            columns.status.push(if node.parents.is_empty() {
                "ready"
            } else {
                "blocked"
            });
            columns.queue.push(node.queue.clone());
            columns.priority.push(node.priority);
            columns.pending.push(node.parents.len() as i32);
            columns.parents.push(int_array_literal(&node.parents));
            columns.children.push(int_array_literal(&node.children));
            columns.input.push(node.input.clone());
            columns.max_attempts.push(node.retry.max_attempts as i32);
            columns
                .initial_backoff_ms
                .push(seconds_to_ms(node.retry.initial_backoff_seconds));
            columns
                .max_backoff_ms
                .push(seconds_to_ms(node.retry.max_backoff_seconds));
            columns.timeout_ms.push(
                node.timeout
                    .map(|t| t.as_millis().min(i32::MAX as u128) as i32),
            );
            match &node.concurrency {
                Some(concurrency) => {
                    let key = concurrency
                        .resolve(&field)
                        .and_then(|key| check_name("concurrency key", &key).map(|()| key))
                        .map_err(|message| {
                            Error::InvalidInput(format!("task `{}`: {message}", node.name))
                        })?;
                    columns.concurrency_key.push(Some(key));
                    columns
                        .concurrency_limit
                        .push(Some(concurrency.limit.min(i32::MAX as u32) as i32));
                }
                None => {
                    columns.concurrency_key.push(None);
                    columns.concurrency_limit.push(None);
                }
            }
        }
        Ok(columns)
    }
}

fn seconds_to_ms(seconds: f64) -> i32 {
    (seconds * 1000.0).round().clamp(0.0, f64::from(i32::MAX)) as i32
}

/// Formats indexes as a Postgres array literal such as `{1,2,3}`; the edges of a node have
/// different lengths, which a two-dimensional array parameter cannot carry.
fn int_array_literal(values: &[u32]) -> String {
    let mut literal = String::with_capacity(2 + values.len() * 6);
    literal.push('{');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        literal.push_str(&value.to_string());
    }
    literal.push('}');
    literal
}
