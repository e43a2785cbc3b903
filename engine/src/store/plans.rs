//! Query plans over a table of many finished tasks.
//!
//! Guarantees checked here:
//! - the claim walks the index of ready tasks and never scans `task_runs`, and the
//!   retention and dead-letter indexes play no part in it;
//! - the retention sweep finds expired runs through `runs_retention`, and reaches task runs,
//!   events and log lines through their primary keys, never by scanning those tables;
//! - a page of a run's log lines reads `task_logs` through its primary key, and a page of
//!   one task's lines through `task_logs_task`.

use serde_json::Value;

use super::claim::CLAIM;
use super::logs::{RUN_LINES, TASK_LINES};
use super::retention::DELETE_EXPIRED;
use crate::retention::SWEEP_LOCK_KEY;
use crate::testing::TestDatabase;

/// Id of the queued run that [`fill`] stores.
const QUEUED_RUN: &str = "00000000-0000-7000-8000-000000000001";

/// Fills the tables with 2,000 finished runs of 50 tasks each, spread over 20 workflows and
/// a month, with a log line per task, plus one queued run with 100 ready tasks.
async fn fill(pool: &sqlx::PgPool) {
    let statements = [
        "INSERT INTO workflows (name, version, spec, source)
         SELECT 'w' || i, 'v', '{}', 'spec' FROM generate_series(1, 20) i",
        "INSERT INTO runs (id, workflow, workflow_version, status, tasks_total, tasks_succeeded,
                           created_at, started_at, finished_at)
         SELECT gen_random_uuid(), 'w' || (i % 20 + 1), 'v', 'succeeded', 50, 50,
                now() - interval '30 days' + i * interval '20 minutes',
                now() - interval '30 days' + i * interval '20 minutes',
                now() - interval '30 days' + i * interval '20 minutes' + interval '1 minute'
         FROM generate_series(1, 2000) i",
        "INSERT INTO task_runs (run_id, idx, name, kind, status, pending_parents, parents,
                                children, max_attempts, initial_backoff_ms, max_backoff_ms,
                                attempt_limit, attempt, started_at, finished_at, output)
         SELECT r.id, i, 't' || i, 'noop', 'succeeded', 0, '{}', '{}', 3, 1000, 60000, 3, 1,
                r.started_at, r.finished_at, '{\"ok\": true}'
         FROM runs r, generate_series(0, 49) i",
        "INSERT INTO events (run_id, task_idx, kind, attempt, at)
         SELECT run_id, idx, 'task.succeeded', 1, finished_at FROM task_runs",
        "INSERT INTO task_logs (run_id, task_idx, attempt, level, at, message)
         SELECT run_id, idx, 1, 'info', finished_at, 'done' FROM task_runs",
        "INSERT INTO runs (id, workflow, workflow_version, status, tasks_total)
         VALUES ('00000000-0000-7000-8000-000000000001', 'w1', 'v', 'queued', 100)",
        "INSERT INTO task_runs (run_id, idx, name, kind, status, pending_parents, parents,
                                children, max_attempts, initial_backoff_ms, max_backoff_ms,
                                attempt_limit)
         SELECT '00000000-0000-7000-8000-000000000001', i, 'r' || i, 'noop', 'ready', 0, '{}',
                '{}', 3, 1000, 60000, 3
         FROM generate_series(0, 99) i",
        "ANALYZE",
    ];
    for statement in statements {
        sqlx::query(statement)
            .execute(pool)
            .await
            .unwrap_or_else(|err| panic!("fill failed at {statement}: {err}"));
    }
}

/// Returns (node type, relation, index) for every node of an `EXPLAIN (FORMAT JSON)` plan.
fn nodes(plan: &Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![&plan[0]["Plan"]];
    while let Some(node) = stack.pop() {
        let text = |key: &str| node[key].as_str().unwrap_or_default().to_owned();
        found.push((text("Node Type"), text("Relation Name"), text("Index Name")));
        if let Some(children) = node["Plans"].as_array() {
            stack.extend(children);
        }
    }
    found
}

fn seq_scans<'a>(nodes: &'a [(String, String, String)], table: &str) -> Vec<&'a str> {
    nodes
        .iter()
        .filter(|(kind, relation, _)| kind == "Seq Scan" && relation == table)
        .map(|(kind, _, _)| kind.as_str())
        .collect()
}

fn uses_index(nodes: &[(String, String, String)], index: &str) -> bool {
    nodes.iter().any(|(_, _, name)| name == index)
}

#[tokio::test]
async fn claim_and_sweep_plans_use_their_indexes() {
    let db = TestDatabase::create().await;
    let pool = db.store.pool();
    fill(pool).await;

    let (claim,): (Value,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) {CLAIM}"
    )))
    .bind("default")
    .bind(100_i64)
    .bind(uuid::Uuid::new_v4())
    .bind(15_000.0_f64)
    .bind(chrono::Utc::now())
    .fetch_one(pool)
    .await
    .expect("explain the claim");
    let claim = nodes(&claim);
    assert!(
        uses_index(&claim, "task_runs_ready"),
        "the claim walks task_runs_ready: {claim:?}"
    );
    assert!(
        seq_scans(&claim, "task_runs").is_empty(),
        "the claim never scans task_runs: {claim:?}"
    );
    for index in ["runs_retention", "task_runs_failed"] {
        assert!(
            !uses_index(&claim, index),
            "the claim does not use {index}: {claim:?}"
        );
    }

    let (sweep,): (Value,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) {DELETE_EXPIRED}"
    )))
    .bind(chrono::Utc::now())
    .bind(7_i64 * 86_400)
    .bind(1_000_i64)
    .bind(20_000_i64)
    .bind(SWEEP_LOCK_KEY)
    .fetch_one(pool)
    .await
    .expect("explain the sweep");
    let sweep = nodes(&sweep);
    assert!(
        uses_index(&sweep, "runs_retention"),
        "the sweep finds old runs through runs_retention: {sweep:?}"
    );
    for table in ["runs", "task_runs", "events", "task_logs"] {
        assert!(
            seq_scans(&sweep, table).is_empty(),
            "the sweep never scans {table}: {sweep:?}"
        );
    }
}

#[tokio::test]
async fn log_pages_use_their_indexes() {
    let db = TestDatabase::create().await;
    let pool = db.store.pool();
    fill(pool).await;
    // The queued run's 100 tasks log 1,000 lines each, over two attempts.
    let run_id = uuid::Uuid::parse_str(QUEUED_RUN).expect("a run id");
    sqlx::query(
        "INSERT INTO task_logs (run_id, task_idx, attempt, level, at, message)
         SELECT $1, idx, 1 + n / 500, 'info', now(), 'line ' || n
         FROM task_runs, generate_series(0, 999) n WHERE run_id = $1",
    )
    .bind(run_id)
    .execute(pool)
    .await
    .expect("log lines of the queued run");
    sqlx::query("ANALYZE task_logs")
        .execute(pool)
        .await
        .expect("analyze task_logs");

    let (run_page,): (Value,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) {RUN_LINES}"
    )))
    .bind(run_id)
    .bind(0_i64)
    .bind(None::<i32>)
    .bind(1_001_i64)
    .fetch_one(pool)
    .await
    .expect("explain a page of the run's lines");
    let run_page = nodes(&run_page);
    assert!(
        uses_index(&run_page, "task_logs_pkey"),
        "a run's lines are read through the primary key: {run_page:?}"
    );

    let (task_page,): (Value,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) {TASK_LINES}"
    )))
    .bind(run_id)
    .bind(7_i32)
    .bind(0_i64)
    .bind(Some(2_i32))
    .bind(1_001_i64)
    .fetch_one(pool)
    .await
    .expect("explain a page of one task's lines");
    let task_page = nodes(&task_page);
    assert!(
        uses_index(&task_page, "task_logs_task"),
        "one task's lines are read through task_logs_task: {task_page:?}"
    );

    for (label, plan) in [("run page", &run_page), ("task page", &task_page)] {
        for table in ["task_logs", "task_runs"] {
            assert!(
                seq_scans(plan, table).is_empty(),
                "the {label} never scans {table}: {plan:?}"
            );
        }
    }
}
