//! The retention case (`CARAML_BENCH_ONLY=retention`): claims and drains with 1,000,000
//! finished task runs in the table, against the same on an empty database, and again while
//! the retention sweep deletes those task runs.
//!
//! Claim latency is the time sqlx reports for each claim statement, read from its
//! statement log through a tracing layer that keeps only claims. The log is on for every
//! condition alike.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use caraml_engine::{RetentionOptions, Store};
use serde_json::json;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, filter::Targets};

use super::{Report, drain, fresh_database, migrated, percentile};

/// Finished task runs put in the table before measuring.
const HISTORY_TASKS: i64 = 1_000_000;
/// Runs those task runs belong to.
const HISTORY_RUNS: i64 = 50;
/// Rounds of each condition; each figure is the median over rounds.
const ROUNDS: usize = 3;

/// Durations of claim statements in milliseconds, as sqlx logged them.
static CLAIMS: Mutex<Vec<f64>> = Mutex::new(Vec::new());

/// Records the duration of every claim statement that sqlx logs.
struct ClaimRecorder;

#[derive(Default)]
struct ClaimFields {
    is_claim: bool,
    elapsed_secs: Option<f64>,
}

impl tracing::field::Visit for ClaimFields {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        // The claim is the only statement that starts attempts with fresh attempt ids.
        if field.name() == "db.statement"
            && value.contains("SKIP LOCKED")
            && value.contains("gen_random_uuid()")
        {
            self.is_claim = true;
        }
    }

    fn record_debug(&mut self, _field: &tracing::field::Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> Layer<S> for ClaimRecorder {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        let mut fields = ClaimFields::default();
        event.record(&mut fields);
        if let (true, Some(seconds)) = (fields.is_claim, fields.elapsed_secs)
            && let Ok(mut claims) = CLAIMS.lock()
        {
            claims.push(seconds * 1000.0);
        }
    }
}

fn take_claims() -> Vec<f64> {
    CLAIMS
        .lock()
        .map(|mut claims| std::mem::take(&mut *claims))
        .unwrap_or_default()
}

/// One drain's figures.
struct Drained {
    tasks_per_second: f64,
    claims: Vec<f64>,
}

/// Drains with prefetch 0, whose many small claims give the latency samples, and with
/// prefetch 500 for the throughput that the other drain figures use.
async fn measure(store: &Store) -> (Drained, Drained) {
    take_claims();
    let small = drain(store, 0).await;
    let small = Drained {
        tasks_per_second: small,
        claims: take_claims(),
    };
    let large = drain(store, 500).await;
    let large = Drained {
        tasks_per_second: large,
        claims: take_claims(),
    };
    (small, large)
}

/// Figures of one condition over its rounds.
#[derive(Default)]
struct Condition {
    rates_prefetch_0: Vec<f64>,
    rates_prefetch_500: Vec<f64>,
    claims: Vec<f64>,
}

impl Condition {
    fn add(&mut self, (small, large): (Drained, Drained)) {
        self.rates_prefetch_0.push(small.tasks_per_second);
        self.rates_prefetch_500.push(large.tasks_per_second);
        self.claims.extend(small.claims);
    }

    fn summary(&mut self) -> (f64, f64, f64, f64, usize) {
        (
            percentile(&mut self.rates_prefetch_0, 0.5),
            percentile(&mut self.rates_prefetch_500, 0.5),
            percentile(&mut self.claims, 0.5),
            percentile(&mut self.claims, 0.99),
            self.claims.len(),
        )
    }
}

pub(super) async fn run(server: &str, empty_url: &str, report: &mut Report) {
    let recorder = tracing_subscriber::registry().with(
        ClaimRecorder.with_filter(Targets::new().with_target("sqlx::query", tracing::Level::DEBUG)),
    );
    if tracing::subscriber::set_global_default(recorder).is_err() {
        eprintln!(
            "retention: a tracing subscriber is already set; claim latencies are not recorded"
        );
    }

    let filled_url = fresh_database(server, "caraml_bench_retention").await;
    let filled = migrated(&filled_url).await;
    let started = Instant::now();
    fill_history(&filled).await;
    println!(
        "  filled {HISTORY_TASKS} finished task runs in {HISTORY_RUNS} runs with their events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut empty = Condition::default();
    let mut full = Condition::default();
    for _ in 0..ROUNDS {
        let store = migrated(empty_url).await;
        empty.add(measure(&store).await);
        forget_drains(&filled).await;
        full.add(measure(&filled).await);
    }

    // The sweep deletes the history while a worker drains. It runs with the default batch
    // bounds and pause, and everything it deletes finished ten days before `now`.
    forget_drains(&filled).await;
    let options = RetentionOptions {
        default: Some(Duration::from_secs(86_400)),
        ..RetentionOptions::default()
    };
    let sweeper_store = filled.clone();
    let sweep_started = Instant::now();
    let sweep = tokio::spawn(async move {
        let outcome = sweeper_store
            .sweep_expired_runs(&options, chrono::Utc::now())
            .await;
        (outcome, sweep_started.elapsed())
    });
    let mut sweeping = Condition::default();
    sweeping.add(measure(&filled).await);
    let sweep_still_running = !sweep.is_finished();
    let (outcome, sweep_took) = match sweep.await {
        Ok((Ok(outcome), took)) => (outcome, took),
        Ok((Err(err), _)) => panic!("the retention sweep failed: {err}"),
        Err(err) => panic!("the retention sweep panicked: {err}"),
    };

    let (empty_0, empty_500, empty_p50, empty_p99, empty_n) = empty.summary();
    let (full_0, full_500, full_p50, full_p99, full_n) = full.summary();
    let (sweep_0, sweep_500, sweep_p50, sweep_p99, sweep_n) = sweeping.summary();
    let rows = [
        (
            "retention_empty",
            "empty database",
            empty_0,
            empty_500,
            empty_p50,
            empty_p99,
            empty_n,
        ),
        (
            "retention_history",
            "1,000,000 finished task runs",
            full_0,
            full_500,
            full_p50,
            full_p99,
            full_n,
        ),
        (
            "retention_sweeping",
            "the same while the sweep deletes them",
            sweep_0,
            sweep_500,
            sweep_p50,
            sweep_p99,
            sweep_n,
        ),
    ];
    for (key, label, rate_0, rate_500, p50, p99, samples) in rows {
        report.add(
            key,
            &format!("(r) drain {} no-op tasks, {label}", super::DRAIN_TASKS),
            format!(
                "{rate_500:.0} tasks/s prefetch 500, {rate_0:.0} tasks/s prefetch 0; claim p50 {p50:.2} ms, p99 {p99:.2} ms ({samples} claims)"
            ),
            json!({
                "tasks_per_second_prefetch_500": rate_500,
                "tasks_per_second_prefetch_0": rate_0,
                "claim_p50_ms": p50,
                "claim_p99_ms": p99,
                "claims": samples,
                "rounds": if key == "retention_sweeping" { 1 } else { ROUNDS },
            }),
        );
    }
    report.add(
        "retention_sweep",
        "(r) sweep of that history, default batches",
        format!(
            "{} runs, {} task runs, {} events in {:.1} s ({} batches){}",
            outcome.runs,
            outcome.tasks,
            outcome.events,
            sweep_took.as_secs_f64(),
            outcome.batches,
            if sweep_still_running {
                ""
            } else {
                "; NOTE: it ended before the drains did"
            }
        ),
        json!({
            "runs": outcome.runs,
            "tasks": outcome.tasks,
            "events": outcome.events,
            "seconds": sweep_took.as_secs_f64(),
            "batches": outcome.batches,
            "overlapped_the_drains": sweep_still_running,
        }),
    );

    println!();
    println!(
        "retention ratios, 1,000,000 finished task runs / empty (target within 1.2x): drain time prefetch 500 {:.2}x, prefetch 0 {:.2}x; claim p50 {:.2}x, p99 {:.2}x",
        empty_500 / full_500,
        empty_0 / full_0,
        full_p50 / empty_p50,
        full_p99 / empty_p99,
    );
    println!(
        "retention ratios, during the sweep / empty: drain time prefetch 500 {:.2}x, prefetch 0 {:.2}x; claim p50 {:.2}x, p99 {:.2}x",
        empty_500 / sweep_500,
        empty_0 / sweep_0,
        sweep_p50 / empty_p50,
        sweep_p99 / empty_p99,
    );
}

/// Inserts the history in a few statements: `HISTORY_RUNS` finished runs, ten days old, of
/// a 20,000-task workflow in layers of 100. One run in ten failed at one task per thousand.
/// Each run has the events a real run leaves: run queued, running and finished, and each
/// task running and finished.
async fn fill_history(store: &Store) {
    let tasks_per_run = HISTORY_TASKS / HISTORY_RUNS;
    let statements = [
        "INSERT INTO workflows (name, version, spec, source)
         VALUES ('history', 'v1', '{\"name\": \"history\", \"tasks\": []}', 'spec')"
            .to_owned(),
        format!(
            "INSERT INTO runs (id, workflow, workflow_version, status, input, tasks_total,
                               tasks_succeeded, tasks_failed, created_at, started_at, finished_at)
             SELECT gen_random_uuid(), 'history', 'v1',
                    CASE WHEN r % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
                    jsonb_build_object('partition', r, 'source', 's3://lake/events/day=' || r),
                    {tasks_per_run},
                    CASE WHEN r % 10 = 0 THEN {tasks_per_run} - {tasks_per_run} / 1000 ELSE {tasks_per_run} END,
                    CASE WHEN r % 10 = 0 THEN {tasks_per_run} / 1000 ELSE 0 END,
                    now() - interval '10 days' + r * interval '10 minutes',
                    now() - interval '10 days' + r * interval '10 minutes' + interval '1 second',
                    now() - interval '10 days' + r * interval '10 minutes' + interval '5 minutes'
             FROM generate_series(1, {HISTORY_RUNS}) r"
        ),
        format!(
            "INSERT INTO task_runs (run_id, idx, name, kind, status, run_at, pending_parents,
                                    parents, children, input, max_attempts, initial_backoff_ms,
                                    max_backoff_ms, timeout_ms, attempt, attempt_limit,
                                    attempt_id, worker_id, started_at, finished_at, output, error)
             SELECT r.id, i, 'shard_' || i, 'bench.noop',
                    CASE WHEN r.status = 'failed' AND i % 1000 = 999 THEN 'failed' ELSE 'succeeded' END,
                    r.started_at, 0,
                    CASE WHEN i >= 100 THEN ARRAY[i - 100] ELSE '{{}}'::int4[] END,
                    CASE WHEN i + 100 < {tasks_per_run} THEN ARRAY[i + 100] ELSE '{{}}'::int4[] END,
                    jsonb_build_object('shard', i, 'path', 's3://lake/events/part-' || i || '.parquet'),
                    3, 1000, 60000, 300000, 1, 3, gen_random_uuid(),
                    '00000000-0000-7000-8000-00000000beef',
                    r.started_at + (i % 3000) * interval '100 milliseconds',
                    r.started_at + (i % 3000) * interval '100 milliseconds' + interval '40 milliseconds',
                    CASE WHEN r.status = 'failed' AND i % 1000 = 999 THEN NULL
                         ELSE jsonb_build_object('rows', (i * 7919) % 100000,
                                                 'path', 's3://lake/out/part-' || i || '.parquet') END,
                    CASE WHEN r.status = 'failed' AND i % 1000 = 999
                         THEN 'connection reset by peer while reading part-' || i END
             FROM runs r, generate_series(0, {tasks_per_run} - 1) i
             WHERE r.workflow = 'history'"
        ),
        "INSERT INTO events (run_id, task_idx, kind, attempt, at, detail)
         SELECT id, NULL::int4, 'run.queued', NULL::int4, created_at, NULL::jsonb
         FROM runs WHERE workflow = 'history'
         UNION ALL
         SELECT id, NULL, 'run.running', NULL, started_at, NULL FROM runs WHERE workflow = 'history'
         UNION ALL
         SELECT t.run_id, t.idx, 'task.running', 1, t.started_at, NULL
         FROM task_runs t JOIN runs r ON r.id = t.run_id WHERE r.workflow = 'history'
         UNION ALL
         SELECT t.run_id, t.idx, 'task.' || t.status, 1, t.finished_at,
                CASE WHEN t.error IS NOT NULL THEN jsonb_build_object('error', t.error) END
         FROM task_runs t JOIN runs r ON r.id = t.run_id WHERE r.workflow = 'history'
         UNION ALL
         SELECT id, NULL, 'run.' || status, NULL, finished_at, NULL FROM runs WHERE workflow = 'history'"
            .to_owned(),
        "VACUUM ANALYZE".to_owned(),
    ];
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(store.pool())
            .await
            .unwrap_or_else(|err| panic!("filling the history failed: {err}\n{statement}"));
    }
}

/// Deletes the runs that earlier drains left in the filled database, so every round starts
/// from the same history, and vacuums as autovacuum would have.
async fn forget_drains(store: &Store) {
    for statement in [
        "DELETE FROM events WHERE run_id IN (SELECT id FROM runs WHERE workflow <> 'history')",
        "DELETE FROM task_runs WHERE run_id IN (SELECT id FROM runs WHERE workflow <> 'history')",
        "DELETE FROM runs WHERE workflow <> 'history'",
        "DELETE FROM workers",
        "VACUUM ANALYZE",
    ] {
        sqlx::query(statement)
            .execute(store.pool())
            .await
            .unwrap_or_else(|err| panic!("resetting the filled database failed: {err}"));
    }
}
