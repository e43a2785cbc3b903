//! Engine behaviour against a real PostgreSQL, with workers running in this process.
//!
//! Guarantees checked here:
//! - a task starts only after every upstream task succeeded, and receives their outputs;
//! - retryable failures are retried with backoff, permanent ones fail the task at once and
//!   skip everything downstream while independent branches finish;
//! - an attempt that exceeds its timeout fails;
//! - cancelling a run reaches running tasks;
//! - resuming a failed run reruns only what did not succeed and reuses stored outputs;
//! - concurrent submissions with one idempotency key create one run;
//! - an idempotency key reused for another workflow is rejected, naming both workflows.
//!
//! Retention, dead letters, bulk actions and task logs have modules of their own.

mod bulk;
mod dead_letters;
mod logs;
mod retention;
mod schedules;
mod services;
mod support;
mod waits;

use std::time::Duration;

use caraml_engine::{Store, Submission, WorkflowSpec};
use serde_json::{Value, json};
use support::{Harness, TOGGLE_BROKEN};

fn spec(value: Value) -> WorkflowSpec {
    serde_json::from_value(value).expect("test spec is valid JSON for a workflow")
}

async fn submit(store: &Store, spec: WorkflowSpec, input: Value) -> uuid::Uuid {
    store
        .submit(Submission::Spec(spec), input, None)
        .await
        .expect("submission is accepted")
        .id
}

fn task<'a>(run: &'a caraml_engine::RunView, name: &str) -> &'a caraml_engine::TaskView {
    run.tasks
        .as_ref()
        .and_then(|tasks| tasks.iter().find(|t| t.name == name))
        .unwrap_or_else(|| panic!("run has no task {name}"))
}

#[tokio::test]
async fn diamond_passes_outputs_downstream() {
    let harness = Harness::start().await;
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "diamond", "tasks": [
            {"name": "a", "kind": "test.echo", "input": {"value": 1}},
            {"name": "b", "kind": "test.echo", "input": {"value": 2}, "depends_on": ["a"]},
            {"name": "c", "kind": "test.echo", "input": {"value": 3}, "depends_on": ["a"]},
            {"name": "d", "kind": "test.echo", "input": {"value": 4}, "depends_on": ["b", "c"]},
        ]})),
        json!({"who": "diamond"}),
    )
    .await;
    let run = harness.wait(run_id).await;
    assert_eq!(run.status, "succeeded");

    let d = task(&run, "d").output.clone().expect("d has an output");
    assert_eq!(d["input"], json!({"value": 4}));
    assert_eq!(d["run_input"], json!({"who": "diamond"}));
    assert_eq!(
        d["upstream"]["b"]["input"],
        json!({"value": 2}),
        "d sees b's output"
    );
    assert_eq!(
        d["upstream"]["c"]["input"],
        json!({"value": 3}),
        "d sees c's output"
    );
    assert!(
        d["upstream"].get("a").is_none(),
        "only direct parents are passed"
    );

    let order = harness.event_order(run_id).await;
    let at = |kind: &str, name: &str| {
        order
            .iter()
            .position(|(k, n)| k == kind && n.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no {kind} event for {name}"))
    };
    assert!(at("task.running", "d") > at("task.succeeded", "b"));
    assert!(at("task.running", "d") > at("task.succeeded", "c"));
    assert!(at("task.running", "b") > at("task.succeeded", "a"));
}

#[tokio::test]
async fn fan_out_and_fan_in() {
    let harness = Harness::start().await;
    let mut tasks = vec![json!({"name": "root", "kind": "test.echo"})];
    let leaves: Vec<String> = (0..200).map(|i| format!("leaf_{i}")).collect();
    for (i, leaf) in leaves.iter().enumerate() {
        tasks.push(
            json!({"name": leaf, "kind": "test.echo", "input": {"i": i}, "depends_on": ["root"]}),
        );
    }
    tasks.push(json!({"name": "sink", "kind": "test.echo", "depends_on": leaves}));
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "fan", "tasks": tasks})),
        Value::Null,
    )
    .await;
    let run = harness.wait(run_id).await;
    assert_eq!(run.status, "succeeded");
    assert_eq!(run.tasks_succeeded, 202);
    let sink = task(&run, "sink").output.clone().expect("sink output");
    let upstream = sink["upstream"].as_object().expect("upstream map");
    assert_eq!(upstream.len(), 200, "the fan-in node sees every leaf");
    assert_eq!(upstream["leaf_7"]["input"], json!({"i": 7}));
}

#[tokio::test]
async fn retry_backs_off_then_succeeds() {
    let harness = Harness::start().await;
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "flaky", "tasks": [{
            "name": "f", "kind": "test.flaky", "input": {"succeed_on": 3},
            "retry": {"max_attempts": 5, "initial_backoff_seconds": 0.2, "max_backoff_seconds": 1}
        }]})),
        Value::Null,
    )
    .await;
    let run = harness.wait(run_id).await;
    assert_eq!(run.status, "succeeded");
    let f = task(&run, "f");
    assert_eq!(f.attempts, 3, "two failures then a success");
    assert_eq!(f.output, Some(json!({"attempt": 3})));

    let starts = harness.event_times(run_id, "task.running").await;
    assert_eq!(starts.len(), 3);
    let first_gap = starts[1] - starts[0];
    let second_gap = starts[2] - starts[1];
    assert!(
        first_gap >= chrono::Duration::milliseconds(200),
        "second attempt waited the initial backoff, waited {first_gap}"
    );
    assert!(
        second_gap >= chrono::Duration::milliseconds(400),
        "third attempt waited twice the backoff, waited {second_gap}"
    );
}

#[tokio::test]
async fn permanent_failure_skips_downstream_only() {
    let harness = Harness::start().await;
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "broken", "tasks": [
            {"name": "bad", "kind": "test.fail", "retry": {"max_attempts": 5}},
            {"name": "child", "kind": "test.echo", "depends_on": ["bad"]},
            {"name": "grandchild", "kind": "test.echo", "depends_on": ["child"]},
            {"name": "independent", "kind": "test.echo"},
        ]})),
        Value::Null,
    )
    .await;
    let run = harness.wait(run_id).await;
    assert_eq!(run.status, "failed");
    let bad = task(&run, "bad");
    assert_eq!(bad.status, "failed");
    assert_eq!(bad.attempts, 1, "a permanent error is not retried");
    assert!(bad.error.as_deref().unwrap_or("").contains("always fails"));
    assert_eq!(task(&run, "child").status, "skipped");
    assert_eq!(task(&run, "grandchild").status, "skipped");
    assert_eq!(task(&run, "independent").status, "succeeded");
    assert_eq!(
        (run.tasks_failed, run.tasks_skipped, run.tasks_succeeded),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn attempt_times_out() {
    let harness = Harness::start().await;
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "slow", "tasks": [{
            "name": "s", "kind": "sleep", "input": {"seconds": 30},
            "timeout_seconds": 0.3, "retry": {"max_attempts": 2, "initial_backoff_seconds": 0}
        }]})),
        Value::Null,
    )
    .await;
    let run = harness.wait(run_id).await;
    assert_eq!(run.status, "failed");
    let s = task(&run, "s");
    assert_eq!(s.attempts, 2, "each attempt timed out");
    assert!(
        s.error.as_deref().unwrap_or("").contains("timed out"),
        "{:?}",
        s.error
    );
}

#[tokio::test]
async fn cancel_reaches_running_task() {
    let harness = Harness::start().await;
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "long", "tasks": [
            {"name": "s", "kind": "sleep", "input": {"seconds": 60}},
            {"name": "after", "kind": "test.echo", "depends_on": ["s"]},
        ]})),
        Value::Null,
    )
    .await;
    harness.wait_task_status(run_id, "s", "running").await;
    let started = std::time::Instant::now();
    harness
        .store
        .cancel_run(run_id)
        .await
        .expect("cancel accepted");
    harness.wait_task_status(run_id, "s", "cancelled").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the running sleep stopped soon after the cancellation"
    );
    let run = harness.store.get_run(run_id).await.expect("run exists");
    assert_eq!(run.status, "cancelled");
    assert_eq!(task(&run, "after").status, "cancelled");
}

#[tokio::test]
async fn resume_reuses_succeeded_outputs() {
    let harness = Harness::start().await;
    let key = uuid::Uuid::new_v4().to_string();
    TOGGLE_BROKEN.lock().expect("toggle lock").push(key.clone());
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "resumable", "tasks": [
            {"name": "a", "kind": "test.touch", "input": {"key": key}},
            {"name": "b", "kind": "test.toggle", "input": {"key": key}, "depends_on": ["a"], "retry": {"max_attempts": 1}},
            {"name": "c", "kind": "test.echo", "depends_on": ["b"]},
        ]})),
        Value::Null,
    )
    .await;
    let run = harness.wait(run_id).await;
    assert_eq!(run.status, "failed");
    assert_eq!(task(&run, "c").status, "skipped");
    let a_output = task(&run, "a").output.clone();

    TOGGLE_BROKEN
        .lock()
        .expect("toggle lock")
        .retain(|k| k != &key);
    harness
        .store
        .retry_run(run_id)
        .await
        .expect("retry accepted");
    let run = harness.wait(run_id).await;
    assert_eq!(run.status, "succeeded");
    assert_eq!(task(&run, "a").attempts, 1, "a was not run again");
    assert_eq!(task(&run, "a").output, a_output, "a kept its stored output");
    assert_eq!(task(&run, "b").attempts, 2);
    let c = task(&run, "c").output.clone().expect("c output");
    assert_eq!(
        c["upstream"]["b"]["seen"],
        a_output.expect("a output")["touched"]
    );
}

#[tokio::test]
async fn idempotent_submission_under_concurrency() {
    let harness = Harness::start().await;
    let spec = spec(json!({"name": "once", "tasks": [{"name": "t", "kind": "test.echo"}]}));
    let key = format!("key-{}", uuid::Uuid::new_v4());
    let mut submissions = Vec::new();
    for _ in 0..8 {
        let store = harness.store.clone();
        let spec = spec.clone();
        let key = key.clone();
        submissions.push(tokio::spawn(async move {
            store
                .submit(Submission::Spec(spec), Value::Null, Some(key))
                .await
        }));
    }
    let mut ids = Vec::new();
    for submission in submissions {
        let submitted = submission
            .await
            .expect("submission task ran")
            .expect("submission accepted");
        ids.push(submitted.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all 8 requests got the same run");
    let (runs,): (i64,) = sqlx::query_as("SELECT count(*) FROM runs WHERE idempotency_key = $1")
        .bind(&key)
        .fetch_one(harness.store.pool())
        .await
        .expect("count runs");
    assert_eq!(runs, 1);
}

#[tokio::test]
async fn idempotency_key_reused_for_other_workflow() {
    let harness = Harness::start().await;
    let first = spec(json!({"name": "first", "tasks": [{"name": "t", "kind": "test.echo"}]}));
    let other = spec(json!({"name": "other", "tasks": [{"name": "t", "kind": "test.echo"}]}));
    let key = format!("key-{}", uuid::Uuid::new_v4());
    let submitted = harness
        .store
        .submit(
            Submission::Spec(first.clone()),
            Value::Null,
            Some(key.clone()),
        )
        .await
        .expect("the first submission is accepted");

    let err = harness
        .store
        .submit(Submission::Spec(other), Value::Null, Some(key.clone()))
        .await
        .expect_err("a key reused for another workflow is rejected");
    match &err {
        caraml_engine::Error::IdempotencyKeyReused {
            key: reused,
            run_id,
            existing_workflow,
            requested_workflow,
        } => {
            assert_eq!(reused, &key);
            assert_eq!(*run_id, submitted.id, "the error names the existing run");
            assert_eq!(existing_workflow, "first");
            assert_eq!(requested_workflow, "other");
        }
        other => panic!("expected IdempotencyKeyReused, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&key),
        "the message names the key: {message}"
    );
    assert!(
        message.contains("new idempotency_key"),
        "and the fix: {message}"
    );

    let err = harness
        .store
        .submit(
            Submission::Workflow("missing".to_owned()),
            Value::Null,
            Some(key.clone()),
        )
        .await
        .expect_err("a registered workflow name is compared too");
    assert!(
        matches!(err, caraml_engine::Error::IdempotencyKeyReused { .. }),
        "{err:?}"
    );

    let again = harness
        .store
        .submit(Submission::Spec(first), Value::Null, Some(key))
        .await
        .expect("the same workflow with the same key is accepted");
    assert_eq!(again.id, submitted.id, "and returns the first run");
    assert!(!again.created);
}

#[tokio::test]
async fn large_dag_submits_and_runs() {
    let harness = Harness::start().await;
    let mut tasks: Vec<Value> = (0..50_000)
        .map(|i| json!({"name": format!("n{i}"), "kind": "test.echo"}))
        .collect();
    tasks.push(json!({"name": "last", "kind": "test.echo", "depends_on": ["n0", "n49999"]}));
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "wide", "tasks": tasks})),
        Value::Null,
    )
    .await;
    let run = harness.wait_for(run_id, Duration::from_secs(240)).await;
    assert_eq!(run.status, "succeeded");
    assert_eq!(run.tasks_succeeded, 50_001);
}

#[tokio::test]
async fn oversized_output_fails_clearly() {
    let harness = Harness::start().await;
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "big", "tasks": [{"name": "b", "kind": "test.big", "input": {"bytes": 3_000_000}}]})),
        Value::Null,
    )
    .await;
    let run = harness.wait(run_id).await;
    let b = task(&run, "b");
    assert_eq!(b.status, "failed");
    assert!(
        b.error
            .as_deref()
            .unwrap_or("")
            .contains("limit for inline outputs"),
        "{:?}",
        b.error
    );
}

#[tokio::test]
async fn single_root_dispatched_eagerly() {
    let harness = Harness::start().await;
    // The worker registers for eager dispatch when it starts; wait until it is idle and
    // registered by submitting a first run.
    let first = submit(
        &harness.store,
        spec(json!({"name": "warm", "tasks": [{"name": "t", "kind": "test.echo"}]})),
        Value::Null,
    )
    .await;
    harness.wait(first).await;

    let run_id = submit(
        &harness.store,
        spec(json!({"name": "eager", "tasks": [{"name": "t", "kind": "test.echo"}]})),
        Value::Null,
    )
    .await;
    let run = harness.wait(run_id).await;
    assert_eq!(run.status, "succeeded");
    let events = harness
        .store
        .run_events(run_id, 0, 100)
        .await
        .expect("events");
    let queued = events
        .iter()
        .find(|e| e.kind == "run.queued")
        .expect("run.queued");
    let running = events
        .iter()
        .find(|e| e.kind == "task.running")
        .expect("task.running");
    assert_eq!(
        queued.at, running.at,
        "the task was claimed in the submitting transaction"
    );
}
