//! Durable timers, signals, child runs and concurrency keys, with workers that tests start,
//! stop and restart, and a clock that tests move instead of sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caraml_engine::testing::TestDatabase;
use caraml_engine::{
    OffsetClock, Registry, RunView, Store, Submission, Task, TaskContext, TaskError, Worker,
    WorkerOptions, WorkflowSpec,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// When an attempt started and ended.
type Span = (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);

/// How often each `test.timer` task got past its timer, by run.
static FIRED: Mutex<Vec<Uuid>> = Mutex::new(Vec::new());

/// `test.timer`: waits 2 s on a durable timer, then records that it fired.
struct Timer;

impl Task for Timer {
    type Input = Value;
    type Output = Value;
    const KIND: &'static str = "test.timer";

    async fn run(&self, ctx: TaskContext, _input: Value) -> Result<Value, TaskError> {
        ctx.sleep_for("cooldown", Duration::from_secs(2)).await?;
        if let Ok(mut fired) = FIRED.lock() {
            fired.push(ctx.run_id());
        }
        Ok(json!({"fired": true}))
    }
}

/// `test.hold`: keeps its slot busy for 40 ms.
struct Hold;

impl Task for Hold {
    type Input = Value;
    type Output = Value;
    const KIND: &'static str = "test.hold";

    async fn run(&self, _ctx: TaskContext, _input: Value) -> Result<Value, TaskError> {
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok(Value::Null)
    }
}

/// `test.parent`: starts the workflow named in its input as a child and returns the
/// child's outputs.
struct Parent;

impl Task for Parent {
    type Input = Value;
    type Output = Value;
    const KIND: &'static str = "test.parent";

    async fn run(&self, ctx: TaskContext, input: Value) -> Result<Value, TaskError> {
        let workflow = input["workflow"].as_str().unwrap_or("missing");
        ctx.child("only", workflow, json!({"from": "parent"})).await
    }
}

const KINDS: [&str; 8] = [
    "sleep",
    "timer",
    "workflow.run",
    "approval",
    "test.timer",
    "test.hold",
    "test.parent",
    "test.echo",
];

struct Echo;

impl Task for Echo {
    type Input = Value;
    type Output = Value;
    const KIND: &'static str = "test.echo";

    async fn run(&self, ctx: TaskContext, input: Value) -> Result<Value, TaskError> {
        Ok(json!({"input": input, "run_input": ctx.run_input()}))
    }
}

fn registry() -> Registry {
    let mut registry = Registry::with_builtins();
    registry.task(Timer).task(Hold).task(Parent).task(Echo);
    registry
}

/// A running worker that a test can stop.
struct RunningWorker {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl RunningWorker {
    fn start(store: &Store, clock: &OffsetClock) -> Self {
        let store = store.clone().with_clock(Arc::new(clock.clone()));
        let worker = Worker::builder(store, registry())
            .options(WorkerOptions {
                slots: 4,
                grace: Duration::from_secs(1),
                poll_interval: Duration::from_millis(100),
                eager: false,
                ..WorkerOptions::default()
            })
            .build();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            if let Err(err) = worker.run(token).await {
                panic!("worker failed: {err}");
            }
        });
        Self { stop, handle }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

async fn database() -> TestDatabase {
    let db = TestDatabase::create().await;
    db.store
        .register_kinds(KINDS.into_iter())
        .await
        .expect("register kinds");
    db
}

async fn submit(store: &Store, spec: Value, input: Value) -> Uuid {
    let spec: WorkflowSpec = serde_json::from_value(spec).expect("test spec parses");
    store
        .submit(Submission::Spec(spec), input, None)
        .await
        .expect("submit")
        .id
}

async fn task_status(store: &Store, run_id: Uuid, name: &str) -> Option<String> {
    let run = store.get_run(run_id).await.expect("run exists");
    run.tasks?
        .into_iter()
        .find(|t| t.name == name)
        .map(|t| t.status)
}

async fn wait_task_status(store: &Store, run_id: Uuid, name: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let current = task_status(store, run_id, name).await;
        if current.as_deref() == Some(status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {name} of run {run_id} never reached {status}; it is {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_finished(store: &Store, run_id: Uuid) -> RunView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let run = store.get_run(run_id).await.expect("run exists");
        if run.finished_at.is_some() {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run_id} did not finish; status {}",
            run.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn event_kinds(store: &Store, run_id: Uuid) -> Vec<String> {
    store
        .run_events(run_id, 0, 10_000)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test]
async fn timer_survives_worker_restart_and_fires_once() {
    let db = database().await;
    let clock = OffsetClock::new();
    let first = RunningWorker::start(&db.store, &clock);
    let run = submit(
        &db.store,
        json!({"name": "cooldown", "tasks": [{"name": "wait", "kind": "test.timer"}]}),
        Value::Null,
    )
    .await;
    wait_task_status(&db.store, run, "wait", "waiting").await;
    first.stop().await;

    // A new worker does not fire the timer early.
    let second = RunningWorker::start(&db.store, &clock);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        task_status(&db.store, run, "wait").await.as_deref(),
        Some("waiting")
    );

    clock.advance(Duration::from_secs(2));
    let finished = wait_finished(&db.store, run).await;
    second.stop().await;
    assert_eq!(finished.status, "succeeded");
    let fired = FIRED
        .lock()
        .map(|fired| fired.iter().filter(|id| **id == run).count())
        .unwrap_or(0);
    assert_eq!(fired, 1, "the timer fired {fired} times");
    let kinds = event_kinds(&db.store, run).await;
    assert_eq!(kinds.iter().filter(|k| *k == "task.waiting").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "task.resumed").count(), 1);
    let task = &finished.tasks.expect("tasks")[0];
    assert_eq!(task.attempts, 1, "a wait is not an attempt");
}

#[tokio::test]
async fn waiting_task_gives_its_slot_back() {
    let db = database().await;
    let clock = OffsetClock::new();
    let worker = RunningWorker::start(&db.store, &clock);
    // Four slots, six waiting timers: an echo task after them still runs.
    let mut waiting = Vec::new();
    for _ in 0..6 {
        waiting.push(
            submit(
                &db.store,
                json!({"name": "cooldown", "tasks": [{"name": "wait", "kind": "test.timer"}]}),
                Value::Null,
            )
            .await,
        );
    }
    for run in &waiting {
        wait_task_status(&db.store, *run, "wait", "waiting").await;
    }
    let echo = submit(
        &db.store,
        json!({"name": "echo", "tasks": [{"name": "e", "kind": "test.echo"}]}),
        Value::Null,
    )
    .await;
    assert_eq!(wait_finished(&db.store, echo).await.status, "succeeded");
    clock.advance(Duration::from_secs(2));
    for run in waiting {
        assert_eq!(wait_finished(&db.store, run).await.status, "succeeded");
    }
    worker.stop().await;
}

#[tokio::test]
async fn signal_sent_after_the_wait_wakes_the_task() {
    let db = database().await;
    let clock = OffsetClock::new();
    let worker = RunningWorker::start(&db.store, &clock);
    let run = submit(
        &db.store,
        json!({"name": "gate", "tasks": [{"name": "approve", "kind": "approval"}]}),
        Value::Null,
    )
    .await;
    wait_task_status(&db.store, run, "approve", "waiting").await;
    let delivered = db
        .store
        .send_signal(run, "approval", json!({"approved": true, "by": "ana"}))
        .await
        .expect("signal");
    assert_eq!(delivered.woke_tasks, 1);
    let finished = wait_finished(&db.store, run).await;
    worker.stop().await;
    assert_eq!(finished.status, "succeeded");
    let output = finished.tasks.expect("tasks")[0].output.clone();
    assert_eq!(output, Some(json!({"approved": true, "by": "ana"})));
}

#[tokio::test]
async fn signal_sent_before_the_wait_is_kept() {
    let db = database().await;
    let clock = OffsetClock::new();
    let run = submit(
        &db.store,
        json!({"name": "gate", "tasks": [
            {"name": "build", "kind": "test.hold"},
            {"name": "approve", "kind": "approval", "depends_on": ["build"]}
        ]}),
        Value::Null,
    )
    .await;
    // No worker runs yet, so the gate cannot be waiting.
    db.store
        .send_signal(run, "approval", json!({"approved": true}))
        .await
        .expect("signal");
    let worker = RunningWorker::start(&db.store, &clock);
    let finished = wait_finished(&db.store, run).await;
    worker.stop().await;
    assert_eq!(finished.status, "succeeded");
    let kinds = event_kinds(&db.store, run).await;
    assert!(
        !kinds.contains(&"task.waiting".to_owned()),
        "the gate waited although its signal was there: {kinds:?}"
    );
}

#[tokio::test]
async fn rejected_approval_fails_the_gate() {
    let db = database().await;
    let clock = OffsetClock::new();
    let worker = RunningWorker::start(&db.store, &clock);
    let run = submit(
        &db.store,
        json!({"name": "gate", "tasks": [{"name": "approve", "kind": "approval"}]}),
        Value::Null,
    )
    .await;
    wait_task_status(&db.store, run, "approve", "waiting").await;
    db.store
        .send_signal(
            run,
            "approval",
            json!({"approved": false, "by": "bo", "comment": "too risky"}),
        )
        .await
        .expect("signal");
    let finished = wait_finished(&db.store, run).await;
    worker.stop().await;
    assert_eq!(finished.status, "failed");
    let error = finished.tasks.expect("tasks")[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(error.contains("rejected by bo: too risky"), "{error}");
}

#[tokio::test]
async fn signal_wait_times_out() {
    let db = database().await;
    let clock = OffsetClock::new();
    let worker = RunningWorker::start(&db.store, &clock);
    let run = submit(
        &db.store,
        json!({"name": "gate", "tasks": [
            {"name": "approve", "kind": "approval", "input": {"timeout_seconds": 60}}
        ]}),
        Value::Null,
    )
    .await;
    wait_task_status(&db.store, run, "approve", "waiting").await;
    clock.advance(Duration::from_secs(61));
    let finished = wait_finished(&db.store, run).await;
    worker.stop().await;
    assert_eq!(finished.status, "failed");
    let error = finished.tasks.expect("tasks")[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("no decision arrived on signal `approval`"),
        "{error}"
    );
}

#[tokio::test]
async fn signals_to_unknown_or_finished_runs_are_refused() {
    let db = database().await;
    let missing = db
        .store
        .send_signal(Uuid::now_v7(), "approval", Value::Null)
        .await;
    assert!(matches!(
        missing,
        Err(caraml_engine::Error::NotFound { .. })
    ));
    let run = submit(
        &db.store,
        json!({"name": "echo", "tasks": [{"name": "e", "kind": "test.echo"}]}),
        Value::Null,
    )
    .await;
    let bad_name = db.store.send_signal(run, "no spaces", Value::Null).await;
    assert!(matches!(
        bad_name,
        Err(caraml_engine::Error::InvalidInput(_))
    ));
    db.store.cancel_run(run).await.expect("cancel");
    let finished = db.store.send_signal(run, "approval", Value::Null).await;
    assert!(matches!(finished, Err(caraml_engine::Error::Conflict(_))));
}

#[tokio::test]
async fn concurrency_limit_holds_under_four_workers() {
    let db = database().await;
    let clock = OffsetClock::new();
    let spec = json!({"name": "deploy", "tasks": [
        {"name": "roll", "kind": "test.hold",
         "concurrency": {"key": "deploy:{endpoint}", "limit": 1}}
    ]});
    let mut runs = Vec::new();
    for i in 0..24 {
        let endpoint = if i % 3 == 0 { "search" } else { "fraud" };
        runs.push((
            submit(&db.store, spec.clone(), json!({"endpoint": endpoint})).await,
            endpoint,
        ));
    }
    let workers: Vec<RunningWorker> = (0..4)
        .map(|_| RunningWorker::start(&db.store, &clock))
        .collect();
    for (run, _) in &runs {
        assert_eq!(wait_finished(&db.store, *run).await.status, "succeeded");
    }
    for worker in workers {
        worker.stop().await;
    }

    // From the event history: no two attempts with one key overlap.
    let mut spans: HashMap<&str, Vec<Span>> = HashMap::new();
    for (run, endpoint) in &runs {
        let events = db.store.run_events(*run, 0, 100).await.expect("events");
        let start = events
            .iter()
            .find(|e| e.kind == "task.running")
            .map(|e| e.at);
        let end = events
            .iter()
            .find(|e| e.kind == "task.succeeded")
            .map(|e| e.at);
        let (Some(start), Some(end)) = (start, end) else {
            panic!("run {run} lacks start or end events");
        };
        spans.entry(endpoint).or_default().push((start, end));
    }
    for (endpoint, mut list) in spans {
        list.sort();
        for pair in list.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "two deployments of {endpoint} overlapped: {pair:?}"
            );
        }
    }
    let (holders,): (i64,) =
        sqlx::query_as("SELECT coalesce(sum(holders), 0) FROM concurrency_keys")
            .fetch_one(db.store.pool())
            .await
            .expect("holders");
    assert_eq!(holders, 0, "finished tasks still hold their keys");
}

#[tokio::test]
async fn concurrency_key_must_resolve_from_the_run_input() {
    let db = database().await;
    let spec: WorkflowSpec = serde_json::from_value(json!({"name": "deploy", "tasks": [
        {"name": "roll", "kind": "test.hold", "concurrency": {"key": "deploy:{endpoint}"}}
    ]}))
    .expect("spec");
    let err = db
        .store
        .submit(Submission::Spec(spec.clone()), json!({"model": "x"}), None)
        .await
        .expect_err("a key without its field is refused");
    assert!(
        err.to_string()
            .contains("needs the run input field `endpoint`"),
        "{err}"
    );

    let bad: Result<WorkflowSpec, _> = serde_json::from_value(json!({"name": "deploy", "tasks": [
        {"name": "roll", "kind": "test.hold", "concurrency": {"key": "deploy:{end point}", "limit": 0}}
    ]}));
    let bad = bad.expect("parses");
    let problems = bad
        .compile(&|_| true)
        .expect_err("invalid concurrency is refused")
        .problems;
    assert!(
        problems.iter().any(|p| p.code == "invalid_concurrency"),
        "{problems:?}"
    );
}

#[tokio::test]
async fn child_run_result_reaches_the_parent() {
    let db = database().await;
    let clock = OffsetClock::new();
    let child: WorkflowSpec = serde_json::from_value(json!({"name": "child_echo", "tasks": [
        {"name": "e", "kind": "test.echo", "input": {"n": 1}}
    ]}))
    .expect("spec");
    db.store
        .store_workflow(&child, "spec")
        .await
        .expect("store child");
    let worker = RunningWorker::start(&db.store, &clock);
    let run = submit(
        &db.store,
        json!({"name": "parent", "tasks": [
            {"name": "p", "kind": "test.parent", "input": {"workflow": "child_echo"}}
        ]}),
        Value::Null,
    )
    .await;
    let finished = wait_finished(&db.store, run).await;
    worker.stop().await;
    assert_eq!(finished.status, "succeeded");
    let output = finished.tasks.expect("tasks")[0]
        .output
        .clone()
        .expect("output");
    assert_eq!(output["e"]["input"], json!({"n": 1}));
    assert_eq!(output["e"]["run_input"], json!({"from": "parent"}));
    let children = finished.children.expect("children");
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].task, "p");
    let child = db.store.run_summary(children[0].id).await.expect("child");
    assert_eq!(child.parent_run_id, Some(run));
}

#[tokio::test]
async fn cancelling_the_parent_cancels_the_child() {
    let db = database().await;
    let clock = OffsetClock::new();
    let child: WorkflowSpec = serde_json::from_value(json!({"name": "child_sleep", "tasks": [
        {"name": "s", "kind": "timer", "input": {"seconds": 3600}}
    ]}))
    .expect("spec");
    db.store
        .store_workflow(&child, "spec")
        .await
        .expect("store child");
    let worker = RunningWorker::start(&db.store, &clock);
    let run = submit(
        &db.store,
        json!({"name": "parent", "tasks": [
            {"name": "p", "kind": "test.parent", "input": {"workflow": "child_sleep"}}
        ]}),
        Value::Null,
    )
    .await;
    wait_task_status(&db.store, run, "p", "waiting").await;
    let children = db
        .store
        .get_run(run)
        .await
        .expect("run")
        .children
        .expect("children");
    assert_eq!(children.len(), 1);
    let child_id = children[0].id;
    wait_task_status(&db.store, child_id, "s", "waiting").await;

    db.store.cancel_run(run).await.expect("cancel");
    let parent = wait_finished(&db.store, run).await;
    let child = wait_finished(&db.store, child_id).await;
    worker.stop().await;
    assert_eq!(parent.status, "cancelled");
    assert_eq!(child.status, "cancelled");
    assert_eq!(child.tasks.expect("tasks")[0].status, "cancelled");
}

#[tokio::test]
async fn child_run_from_a_spec() {
    let db = database().await;
    let clock = OffsetClock::new();
    let child: WorkflowSpec = serde_json::from_value(json!({"name": "child_echo", "tasks": [
        {"name": "e", "kind": "test.echo", "input": {"n": 2}}
    ]}))
    .expect("spec");
    db.store
        .store_workflow(&child, "spec")
        .await
        .expect("store child");
    let worker = RunningWorker::start(&db.store, &clock);
    let run = submit(
        &db.store,
        json!({"name": "parent", "tasks": [
            {"name": "p", "kind": "workflow.run",
             "input": {"workflow": "child_echo", "input": {"from": "spec"}}}
        ]}),
        Value::Null,
    )
    .await;
    let finished = wait_finished(&db.store, run).await;
    worker.stop().await;
    assert_eq!(finished.status, "succeeded");
    let output = finished.tasks.expect("tasks")[0]
        .output
        .clone()
        .expect("output");
    assert_eq!(output["e"]["run_input"], json!({"from": "spec"}));
}

#[tokio::test]
async fn approval_without_a_decision_fails_clearly() {
    let db = database().await;
    let clock = OffsetClock::new();
    let worker = RunningWorker::start(&db.store, &clock);
    let run = submit(
        &db.store,
        json!({"name": "gate", "tasks": [{"name": "approve", "kind": "approval"}]}),
        Value::Null,
    )
    .await;
    db.store
        .send_signal(run, "approval", json!({}))
        .await
        .expect("signal");
    let finished = wait_finished(&db.store, run).await;
    worker.stop().await;
    assert_eq!(finished.status, "failed");
    let error = finished.tasks.expect("tasks")[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(error.contains("is {}, which is not a decision"), "{error}");
}

#[tokio::test]
async fn self_starting_workflow_stops_at_the_depth_limit() {
    let db = database().await;
    let clock = OffsetClock::new();
    let looping: WorkflowSpec = serde_json::from_value(json!({"name": "looping", "tasks": [
        {"name": "again", "kind": "workflow.run", "input": {"workflow": "looping"}}
    ]}))
    .expect("spec");
    db.store
        .store_workflow(&looping, "spec")
        .await
        .expect("store");
    let worker = RunningWorker::start(&db.store, &clock);
    let root = db
        .store
        .submit(
            Submission::Workflow("looping".to_owned()),
            Value::Null,
            None,
        )
        .await
        .expect("submit")
        .id;
    let finished = wait_finished(&db.store, root).await;
    assert_eq!(finished.status, "failed");
    let (runs,): (i64,) = sqlx::query_as("SELECT count(*) FROM runs")
        .fetch_one(db.store.pool())
        .await
        .expect("count");
    assert!(runs <= 32, "{runs} runs were started");
    let error = finished.tasks.expect("tasks")[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(error.contains("ended `failed`"), "{error}");

    // Cancelling a deep chain goes level by level: start another and cancel it while it grows.
    let second = db
        .store
        .submit(
            Submission::Workflow("looping".to_owned()),
            Value::Null,
            None,
        )
        .await
        .expect("submit")
        .id;
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.store.cancel_run(second).await.expect("cancel");
    worker.stop().await;
    let (open,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM runs WHERE status IN ('queued', 'running') AND id >= $1",
    )
    .bind(second)
    .fetch_one(db.store.pool())
    .await
    .expect("count");
    assert!(
        open <= 1,
        "{open} runs of the cancelled chain are still open"
    );
}
