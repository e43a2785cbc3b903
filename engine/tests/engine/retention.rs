//! Retention: which finished runs a sweep deletes, and with what.
//!
//! Guarantees checked here:
//! - a sweep deletes the succeeded, failed and cancelled runs that finished before their
//!   workflow's cutoff, with their task runs and events, and nothing else;
//! - an unfinished run is kept however old it is, and so is a cancelled run whose
//!   attempts are still stopping;
//! - a workflow's own retention overrides the default, and `off` keeps its runs forever;
//! - a batch deletes at most `batch_runs` runs, and stops adding runs once it contains
//!   `batch_tasks` task runs;
//! - a sweep deletes nothing while another session holds the sweep lock;
//! - a worker's background loop sweeps by itself.
//!
//! Sweeps take "now" as a parameter, so the tests move time forward instead of waiting.

use std::time::Duration;

use caraml_engine::retention::SWEEP_LOCK_KEY;
use caraml_engine::testing::TestDatabase;
use caraml_engine::{
    Error, Registry, RetentionOptions, Store, Worker, WorkerOptions, WorkflowRetention,
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::support::{Harness, TOGGLE_BROKEN, idle_database};
use super::{spec, submit};

const DAY: Duration = Duration::from_secs(86_400);

fn options() -> RetentionOptions {
    RetentionOptions {
        pause: Duration::ZERO,
        ..RetentionOptions::default()
    }
}

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

async fn rows(store: &Store, table: &str, run_id: Uuid) -> i64 {
    let column = if table == "runs" { "id" } else { "run_id" };
    let (count,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE {column} = $1"
    )))
    .bind(run_id)
    .fetch_one(store.pool())
    .await
    .expect("count rows");
    count
}

/// Asserts that the run and every row that belongs to it are gone, or all still there.
async fn assert_kept(store: &Store, run_id: Uuid, kept: bool, label: &str) {
    for table in ["runs", "task_runs", "events"] {
        let count = rows(store, table, run_id).await;
        if kept {
            assert!(count > 0, "{label}: {table} rows of the run are kept");
        } else {
            assert_eq!(count, 0, "{label}: {table} rows of the run are deleted");
        }
    }
}

async fn latest_finish(store: &Store) -> DateTime<Utc> {
    let (latest,): (Option<DateTime<Utc>>,) = sqlx::query_as("SELECT max(finished_at) FROM runs")
        .fetch_one(store.pool())
        .await
        .expect("latest finish");
    latest.expect("some run has finished")
}

fn two_tasks(name: &str) -> caraml_engine::WorkflowSpec {
    spec(json!({"name": name, "tasks": [
        {"name": "a", "kind": "test.echo"},
        {"name": "b", "kind": "test.echo", "depends_on": ["a"]},
    ]}))
}

#[tokio::test]
async fn sweep_deletes_only_expired_finished_runs() {
    let harness = Harness::start().await;
    let store = &harness.store;

    let succeeded = submit(store, two_tasks("keep-default"), Value::Null).await;
    let key = Uuid::new_v4().to_string();
    TOGGLE_BROKEN.lock().expect("toggle lock").push(key.clone());
    let failed = submit(
        store,
        spec(json!({"name": "keep-default", "tasks": [
            {"name": "a", "kind": "test.touch", "input": {"key": key}},
            {"name": "b", "kind": "test.toggle", "input": {"key": key}, "depends_on": ["a"], "retry": {"max_attempts": 1}},
            {"name": "c", "kind": "test.echo", "depends_on": ["b"]},
        ]})),
        Value::Null,
    )
    .await;
    let long = submit(store, two_tasks("keep-month"), Value::Null).await;
    let forever = submit(store, two_tasks("keep-forever"), Value::Null).await;
    for run_id in [succeeded, failed, long, forever] {
        harness.wait(run_id).await;
    }
    assert_eq!(harness.wait(failed).await.status, "failed");
    let cancelled = submit(
        store,
        spec(json!({"name": "keep-default", "tasks": [
            {"name": "s", "kind": "sleep", "input": {"seconds": 60}},
            {"name": "t", "kind": "test.echo", "depends_on": ["s"]},
        ]})),
        Value::Null,
    )
    .await;
    harness.wait_task_status(cancelled, "s", "running").await;
    store.cancel_run(cancelled).await.expect("cancel accepted");
    harness.wait(cancelled).await;
    let unfinished = submit(
        store,
        spec(json!({"name": "keep-default", "tasks": [
            {"name": "s", "kind": "sleep", "input": {"seconds": 600}},
        ]})),
        Value::Null,
    )
    .await;
    harness.wait_task_status(unfinished, "s", "running").await;

    store
        .set_workflow_retention("default", "keep-month", WorkflowRetention::After(30 * DAY))
        .await
        .expect("set a month");
    store
        .set_workflow_retention("default", "keep-forever", WorkflowRetention::Forever)
        .await
        .expect("set forever");
    let finished = latest_finish(store).await;

    let early = store
        .sweep_expired_runs(&options(), finished + days(6))
        .await
        .expect("sweep after 6 days");
    assert_eq!(early.runs, 0, "nothing is past 7 days yet");

    let week = store
        .sweep_expired_runs(&options(), finished + days(8))
        .await
        .expect("sweep after 8 days");
    assert_eq!(
        week.runs, 3,
        "the succeeded, failed and cancelled default runs"
    );
    assert!(week.tasks >= 7, "their task runs are counted: {week:?}");
    assert!(
        week.events > week.tasks,
        "their events are counted: {week:?}"
    );
    assert!(!week.contended);
    for (run_id, label) in [
        (succeeded, "succeeded"),
        (failed, "failed"),
        (cancelled, "cancelled"),
    ] {
        assert_kept(store, run_id, false, label).await;
    }
    assert_kept(store, long, true, "30-day workflow after 8 days").await;
    assert_kept(store, forever, true, "kept-forever workflow").await;
    assert_kept(store, unfinished, true, "unfinished run").await;

    let month = store
        .sweep_expired_runs(&options(), finished + days(31))
        .await
        .expect("sweep after 31 days");
    assert_eq!(month.runs, 1, "only the 30-day workflow's run");
    assert_kept(store, long, false, "30-day workflow after 31 days").await;
    assert_kept(store, forever, true, "kept-forever workflow").await;

    let years = store
        .sweep_expired_runs(&options(), finished + days(3_650))
        .await
        .expect("sweep after 10 years");
    assert_eq!(years.runs, 0, "off keeps runs, and unfinished runs stay");
    assert_kept(store, unfinished, true, "unfinished run after 10 years").await;

    store
        .set_workflow_retention("default", "keep-forever", WorkflowRetention::Default)
        .await
        .expect("back to the default");
    let default = store
        .sweep_expired_runs(&options(), finished + days(8))
        .await
        .expect("sweep with the default again");
    assert_eq!(default.runs, 1, "the workflow follows the default again");
    assert_kept(store, forever, false, "workflow back on the default").await;

    let off = RetentionOptions {
        default: None,
        ..options()
    };
    store.cancel_run(unfinished).await.expect("cancel");
    harness.wait(unfinished).await;
    let kept = store
        .sweep_expired_runs(&off, finished + days(3_650))
        .await
        .expect("sweep with the default off");
    assert_eq!(kept.runs, 0, "with the default off, runs are kept");
    assert_kept(store, unfinished, true, "default off").await;
}

#[tokio::test]
async fn sweep_deletes_in_bounded_batches() {
    let db = idle_database().await;
    let store = &db.store;
    let three = spec(json!({"name": "batched", "tasks": [
        {"name": "a", "kind": "sleep"},
        {"name": "b", "kind": "sleep"},
        {"name": "c", "kind": "sleep"},
    ]}));
    let mut run_ids = Vec::new();
    for _ in 0..7 {
        let run_id = submit(store, three.clone(), Value::Null).await;
        store.cancel_run(run_id).await.expect("cancel a queued run");
        run_ids.push(run_id);
    }
    let later = latest_finish(store).await + days(8);

    let by_runs = RetentionOptions {
        batch_runs: 3,
        ..options()
    };
    let first = store
        .delete_expired_runs(&by_runs, later)
        .await
        .expect("one batch");
    assert_eq!(first.runs, 3, "a batch stops at batch_runs");
    assert_eq!(first.tasks, 9);
    assert_eq!(first.batches, 1);

    let by_tasks = RetentionOptions {
        batch_runs: 100,
        batch_tasks: 4,
        ..options()
    };
    let second = store
        .delete_expired_runs(&by_tasks, later)
        .await
        .expect("one batch");
    assert_eq!(
        second.runs, 2,
        "a batch takes runs until it holds batch_tasks task runs"
    );

    let one_task = RetentionOptions {
        batch_runs: 100,
        batch_tasks: 1,
        ..options()
    };
    let third = store
        .delete_expired_runs(&one_task, later)
        .await
        .expect("one batch");
    assert_eq!(third.runs, 1, "a run larger than batch_tasks goes alone");

    let rest = store
        .sweep_expired_runs(&by_runs, later)
        .await
        .expect("sweep");
    assert_eq!(rest.runs, 1);
    assert_eq!(rest.batches, 1);
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM runs")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(left, 0, "every expired run is deleted");
}

#[tokio::test]
async fn sweep_keeps_runs_still_stopping() {
    let db = idle_database().await;
    let store = &db.store;
    let run_id = submit(
        store,
        spec(json!({"name": "stopping", "tasks": [{"name": "a", "kind": "sleep"}]})),
        Value::Null,
    )
    .await;
    store.cancel_run(run_id).await.expect("cancel");
    // A cancelled run keeps an attempt that started before the cancellation running until
    // the attempt stops; the task row then says `running`.
    sqlx::query("UPDATE task_runs SET status = 'running' WHERE run_id = $1")
        .bind(run_id)
        .execute(store.pool())
        .await
        .expect("mark the task running");
    let later = latest_finish(store).await + days(8);

    let kept = store
        .sweep_expired_runs(&options(), later)
        .await
        .expect("sweep");
    assert_eq!(kept.runs, 0, "a run with a running task is kept");
    assert_kept(store, run_id, true, "attempt still stopping").await;

    sqlx::query("UPDATE task_runs SET status = 'cancelled' WHERE run_id = $1")
        .bind(run_id)
        .execute(store.pool())
        .await
        .expect("mark the task cancelled");
    let swept = store
        .sweep_expired_runs(&options(), later)
        .await
        .expect("sweep");
    assert_eq!(swept.runs, 1, "the run is deleted once its attempt stopped");
}

#[tokio::test]
async fn sweep_yields_to_held_lock() {
    let db = idle_database().await;
    let store = &db.store;
    let run_id = submit(
        store,
        spec(json!({"name": "locked", "tasks": [{"name": "a", "kind": "sleep"}]})),
        Value::Null,
    )
    .await;
    store.cancel_run(run_id).await.expect("cancel");
    let later = latest_finish(store).await + days(8);

    let mut holder = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(SWEEP_LOCK_KEY)
        .execute(&mut holder)
        .await
        .expect("hold the sweep lock");
    let blocked = store
        .sweep_expired_runs(&options(), later)
        .await
        .expect("sweep");
    assert!(blocked.contended, "the sweep saw the lock held");
    assert_eq!(blocked.runs, 0, "nothing is deleted while the lock is held");
    assert_kept(store, run_id, true, "lock held").await;

    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(SWEEP_LOCK_KEY)
        .execute(&mut holder)
        .await
        .expect("release the sweep lock");
    let swept = store
        .sweep_expired_runs(&options(), later)
        .await
        .expect("sweep");
    assert!(!swept.contended);
    assert_eq!(swept.runs, 1, "the run is deleted once the lock is free");
}

#[tokio::test]
async fn worker_loop_sweeps_by_itself() {
    let db = TestDatabase::create().await;
    let store = db.store.clone();
    let worker = Worker::builder(store.clone(), Registry::with_builtins())
        .options(WorkerOptions {
            grace: Duration::from_secs(1),
            retention: RetentionOptions {
                default: Some(Duration::from_secs(1)),
                interval: Duration::from_millis(200),
                ..RetentionOptions::default()
            },
            ..WorkerOptions::default()
        })
        .build();
    store
        .register_kinds(["sleep"].into_iter())
        .await
        .expect("register kinds");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    let run_id = submit(
        &store,
        spec(json!({"name": "swept", "tasks": [{"name": "a", "kind": "sleep"}]})),
        Value::Null,
    )
    .await;

    // The run must finish and then age past one second before a sweep may take it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match store.run_summary(run_id).await {
            Err(Error::NotFound { .. }) => break,
            Ok(run) => assert!(
                tokio::time::Instant::now() < deadline,
                "the worker's sweep did not delete run {run_id} within 20 s; status {}",
                run.status
            ),
            Err(err) => panic!("reading run {run_id} failed: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows(&store, "task_runs", run_id).await, 0);
    assert_eq!(rows(&store, "events", run_id).await, 0);
    shutdown.cancel();
    let _ = handle.await;
}

#[tokio::test]
async fn workflow_retention_is_checked() {
    let db = idle_database().await;
    let store = &db.store;
    submit(
        store,
        spec(json!({"name": "configured", "tasks": [{"name": "a", "kind": "sleep"}]})),
        Value::Null,
    )
    .await;

    let missing = store
        .set_workflow_retention("default", "no-such-workflow", WorkflowRetention::After(DAY))
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "an unknown workflow is not found: {missing:?}"
    );
    let zero = store
        .set_workflow_retention(
            "default",
            "configured",
            WorkflowRetention::After(Duration::ZERO),
        )
        .await;
    assert!(
        matches!(zero, Err(Error::InvalidInput(_))),
        "a zero age is rejected: {zero:?}"
    );
    let huge = store
        .set_workflow_retention(
            "default",
            "configured",
            WorkflowRetention::After(DAY * 40_000),
        )
        .await;
    assert!(
        matches!(huge, Err(Error::InvalidInput(_))),
        "an age past the maximum is rejected: {huge:?}"
    );

    assert_eq!(
        store.workflow_retention("default", "configured").await.ok(),
        Some(WorkflowRetention::Default)
    );
    store
        .set_workflow_retention("default", "configured", WorkflowRetention::After(DAY * 30))
        .await
        .expect("set");
    assert_eq!(
        store.workflow_retention("default", "configured").await.ok(),
        Some(WorkflowRetention::After(DAY * 30))
    );
    store
        .set_workflow_retention("default", "configured", WorkflowRetention::Forever)
        .await
        .expect("set");
    assert_eq!(
        store.workflow_retention("default", "configured").await.ok(),
        Some(WorkflowRetention::Forever)
    );
}
