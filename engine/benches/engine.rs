//! The engine benchmark, side by side with graphile-worker and pg-boss on the same
//! PostgreSQL in one run.
//!
//! Run it with `cargo bench -p caraml-engine --bench engine`. It needs `DATABASE_URL` (or
//! PostgreSQL at 127.0.0.1:5432 with trust authentication) and, for the peers, npm; it
//! prints a table and writes `target/bench/engine.json`. Set `CARAML_BENCH_SKIP_PEERS=1` to
//! measure the engine alone, or `CARAML_BENCH_ONLY` to one of drain, single, fan, latency,
//! edge, postgres, idle, retention or peers to run one measurement.

// Cargo would build a file directly in benches/ as a benchmark of its own.
#[path = "engine/retention.rs"]
mod retention;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use caraml_engine::{
    Registry, RetentionOptions, Store, Submission, Task, TaskContext, TaskError, Worker,
    WorkerOptions, WorkflowSpec,
};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use tokio_util::sync::CancellationToken;

const DRAIN_TASKS: usize = 20_000;
const FAN_TASKS: usize = 2_000;
const LATENCY_SAMPLES: usize = 200;
const CHAIN_LENGTH: usize = 200;
const SLOTS: usize = 8;

/// When each probe task started and ended, by key.
static PROBES: OnceLock<Mutex<HashMap<String, (Instant, Instant)>>> = OnceLock::new();

fn probes() -> &'static Mutex<HashMap<String, (Instant, Instant)>> {
    PROBES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `bench.noop`: does nothing.
struct Noop;

impl Task for Noop {
    type Input = Value;
    type Output = ();
    const KIND: &'static str = "bench.noop";

    async fn run(&self, _ctx: TaskContext, _input: Value) -> Result<(), TaskError> {
        Ok(())
    }
}

/// `bench.probe`: records when it started and ended under the `key` of its input, or else
/// of its run's input.
struct Probe;

impl Task for Probe {
    type Input = Value;
    type Output = ();
    const KIND: &'static str = "bench.probe";

    async fn run(&self, ctx: TaskContext, input: Value) -> Result<(), TaskError> {
        let started = Instant::now();
        let key = input["key"]
            .as_str()
            .or_else(|| ctx.run_input()["key"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}/{}", ctx.run_id(), ctx.task_name()));
        if let Ok(mut probes) = probes().lock() {
            probes.insert(key, (started, Instant::now()));
        }
        Ok(())
    }
}

fn registry() -> Registry {
    let mut registry = Registry::with_builtins();
    registry.task(Noop).task(Probe);
    registry
}

#[derive(Default)]
struct Report {
    rows: Vec<(String, String, String)>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn add(&mut self, key: &str, label: &str, value: String, json: Value) {
        println!("  {label:<58} {value}");
        self.rows.push((key.to_owned(), label.to_owned(), value));
        self.json.insert(key.to_owned(), json);
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--idle-worker") {
        idle_worker_main();
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is expected.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    runtime.block_on(run());
}

async fn run() {
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let url = fresh_database(&server, "caraml_bench").await;
    let mut report = Report::default();
    println!(
        "CaraML engine benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let only = std::env::var("CARAML_BENCH_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|only| only == name);

    for prefetch in [0, 500] {
        if !wanted("drain") {
            continue;
        }
        let store = migrated(&url).await;
        let rate = drain(&store, prefetch).await;
        report.add(
            &format!("drain_prefetch_{prefetch}"),
            &format!("(a) drain {DRAIN_TASKS} no-op tasks, {SLOTS} slots, prefetch {prefetch}"),
            format!("{rate:.0} tasks/s"),
            json!({"tasks_per_second": rate, "tasks": DRAIN_TASKS, "slots": SLOTS, "prefetch": prefetch}),
        );
    }
    if wanted("single") {
        let store = migrated(&url).await;
        let rate = drain_single_runs(&store, 500).await;
        report.add(
            "drain_single_runs",
            &format!("(a') drain {DRAIN_TASKS} single-task runs, prefetch 500"),
            format!("{rate:.0} tasks/s"),
            json!({"tasks_per_second": rate, "runs": DRAIN_TASKS}),
        );
    }
    if wanted("fan") {
        let store = migrated(&url).await;
        let rate = fan_out_in(&store).await;
        report.add(
            "fan_out_in",
            &format!("(b) one {FAN_TASKS}-node fan-out/fan-in DAG, prefetch 500"),
            format!("{rate:.0} tasks/s"),
            json!({"tasks_per_second": rate, "tasks": FAN_TASKS}),
        );
    }
    if wanted("latency") {
        for eager in [true, false] {
            let store = migrated(&url).await;
            let (p50, p99, mean) = submit_latency(&store, eager).await;
            let (key, how) = if eager {
                ("submit_to_start", "worker in the submitting process")
            } else {
                (
                    "submit_to_start_notify",
                    "eager dispatch off, wake by NOTIFY",
                )
            };
            report.add(
                key,
                &format!("(c) submit-to-start, {LATENCY_SAMPLES} runs every 20 ms, {how}"),
                format!("p50 {p50:.2} ms, p99 {p99:.2} ms, mean {mean:.2} ms"),
                json!({"p50_ms": p50, "p99_ms": p99, "mean_ms": mean, "eager": eager}),
            );
        }
    }
    if wanted("edge") {
        let store = migrated(&url).await;
        let (p50, p99) = edge_latency(&store).await;
        report.add(
            "edge_latency",
            &format!("(d) DAG edge latency, chain of {CHAIN_LENGTH}"),
            format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
            json!({"p50_ms": p50, "p99_ms": p99}),
        );
    }
    if wanted("postgres") {
        let rate = insert_ceiling(&url).await;
        report.add(
            "postgres_insert_commit",
            "(e) PostgreSQL single-row INSERT+COMMIT, 8 connections",
            format!("{rate:.0} tx/s"),
            json!({"transactions_per_second": rate}),
        );
    }
    if wanted("idle") {
        // A database of its own, so that autovacuum of the tables the measurements above
        // filled does not count as the idle worker's load.
        let idle_url = fresh_database(&server, "caraml_bench_idle").await;
        migrated(&idle_url).await;
        let (rss_mb, queries) = idle_worker(&idle_url).await;
        report.add(
            "idle_worker",
            "idle worker with 8 slots: RSS, statements/s",
            format!("{rss_mb:.1} MB, {queries:.2} statements/s"),
            json!({"rss_mb": rss_mb, "statements_per_second": queries}),
        );
    }

    if wanted("retention") {
        retention::run(&server, &url, &mut report).await;
    }

    if std::env::var("CARAML_BENCH_SKIP_PEERS").is_err() && wanted("peers") {
        peers(&server, &mut report);
    }

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("engine.json");
    let document = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "results": Value::Object(report.json.clone()),
    });
    match std::fs::write(
        &path,
        serde_json::to_string_pretty(&document).unwrap_or_default(),
    ) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(err) => eprintln!("could not write {}: {err}", path.display()),
    }

    println!("\n| measurement | result |\n|---|---|");
    for (_, label, value) in &report.rows {
        println!("| {label} | {value} |");
    }
    ratios(&report.json);
}

fn ratios(results: &serde_json::Map<String, Value>) {
    let get = |key: &str, field: &str| results.get(key).and_then(|v| v[field].as_f64());
    println!();
    if let (Some(ours), Some(graphile)) = (
        get("drain_prefetch_500", "tasks_per_second"),
        get("peer_graphile_drain", "jobs_per_second"),
    ) {
        println!(
            "drain ratio, CaraML prefetch 500 / graphile-worker batch: {:.2}x",
            ours / graphile
        );
    }
    if let (Some(ours), Some(graphile)) = (
        get("drain_prefetch_0", "tasks_per_second"),
        get("peer_graphile_drain", "jobs_per_second"),
    ) {
        println!(
            "drain ratio, CaraML prefetch 0 / graphile-worker batch: {:.2}x",
            ours / graphile
        );
    }
    if let (Some(ours), Some(graphile)) = (
        get("submit_to_start", "p50_ms"),
        get("peer_graphile_latency", "p50_ms"),
    ) {
        println!(
            "latency p50, CaraML / graphile-worker: {:.2}",
            ours / graphile
        );
    }
    if let (Some(ours), Some(graphile)) = (
        get("submit_to_start", "p99_ms"),
        get("peer_graphile_latency", "p99_ms"),
    ) {
        println!(
            "latency p99, CaraML / graphile-worker: {:.2}",
            ours / graphile
        );
    }
}

async fn fresh_database(server: &str, name: &str) -> String {
    let mut admin = PgConnection::connect(server)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {server}: {err}; set DATABASE_URL"));
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await
        .expect("drop the benchmark database");
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create the benchmark database");
    caraml_engine::testing::with_database(server, name)
}

/// Connects and empties the engine's tables, so each measurement starts from the same state.
async fn migrated(url: &str) -> Store {
    let store = Store::connect(url, 20).await.expect("connect");
    store.migrate().await.expect("migrate");
    sqlx::query("TRUNCATE runs, task_runs, events, workers, workflows")
        .execute(store.pool())
        .await
        .expect("truncate");
    sqlx::query("VACUUM ANALYZE")
        .execute(store.pool())
        .await
        .ok();
    store.register(&registry()).await.expect("register kinds");
    store
}

fn start_worker(
    store: &Store,
    prefetch: usize,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    start_worker_with(store, prefetch, true)
}

fn start_worker_with(
    store: &Store,
    prefetch: usize,
    eager: bool,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let worker = Worker::builder(store.clone(), registry())
        .options(WorkerOptions {
            slots: SLOTS,
            prefetch,
            eager,
            // The retention case times drains over a history that a sweep would delete.
            retention: RetentionOptions {
                default: None,
                ..RetentionOptions::default()
            },
            ..WorkerOptions::default()
        })
        .build();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        if let Err(err) = worker.run(token).await {
            eprintln!("worker failed: {err}");
        }
    });
    (shutdown, handle)
}

async fn wait_finished(store: &Store, run_id: uuid::Uuid) {
    loop {
        let run = store.run_summary(run_id).await.expect("run");
        if run.finished_at.is_some() {
            assert_eq!(run.status, "succeeded", "benchmark run {run_id} failed");
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn spec(name: &str, tasks: Vec<Value>) -> WorkflowSpec {
    serde_json::from_value(json!({"name": name, "tasks": tasks})).expect("benchmark spec")
}

async fn drain(store: &Store, prefetch: usize) -> f64 {
    let tasks: Vec<Value> = (0..DRAIN_TASKS)
        .map(|i| json!({"name": format!("t{i}"), "kind": "bench.noop"}))
        .collect();
    let run = store
        .submit(Submission::Spec(spec("drain", tasks)), Value::Null, None)
        .await
        .expect("submit");
    let started = Instant::now();
    let (shutdown, handle) = start_worker(store, prefetch);
    wait_finished(store, run.id).await;
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = handle.await;
    if std::env::var("CARAML_BENCH_DEBUG").is_ok() {
        for line in caraml_engine::metrics::render(&[]).lines() {
            if line.starts_with("caraml_claim_duration_seconds_count")
                || line.starts_with("caraml_claim_duration_seconds_sum")
            {
                eprintln!("{line}");
            }
        }
    }
    DRAIN_TASKS as f64 / seconds
}

async fn drain_single_runs(store: &Store, prefetch: usize) -> f64 {
    let spec = spec("single", vec![json!({"name": "t", "kind": "bench.noop"})]);
    let mut last = None;
    for _ in 0..DRAIN_TASKS {
        last = Some(
            store
                .submit(Submission::Spec(spec.clone()), Value::Null, None)
                .await
                .expect("submit")
                .id,
        );
    }
    let started = Instant::now();
    let (shutdown, handle) = start_worker(store, prefetch);
    loop {
        let (open,): (i64,) = sqlx::query_as("SELECT count(*) FROM runs WHERE finished_at IS NULL")
            .fetch_one(store.pool())
            .await
            .expect("count");
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(last) = last {
        wait_finished(store, last).await;
    }
    shutdown.cancel();
    let _ = handle.await;
    DRAIN_TASKS as f64 / seconds
}

async fn fan_out_in(store: &Store) -> f64 {
    let mut tasks = vec![json!({"name": "root", "kind": "bench.noop"})];
    let middle: Vec<String> = (0..FAN_TASKS - 2).map(|i| format!("m{i}")).collect();
    for name in &middle {
        tasks.push(json!({"name": name, "kind": "bench.noop", "depends_on": ["root"]}));
    }
    tasks.push(json!({"name": "sink", "kind": "bench.noop", "depends_on": middle}));
    let (shutdown, handle) = start_worker(store, 500);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let run = store
        .submit(Submission::Spec(spec("fan", tasks)), Value::Null, None)
        .await
        .expect("submit");
    wait_finished(store, run.id).await;
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = handle.await;
    FAN_TASKS as f64 / seconds
}

async fn submit_latency(store: &Store, eager: bool) -> (f64, f64, f64) {
    let (shutdown, handle) = start_worker_with(store, 0, eager);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    let warmup = 20;
    // One workflow, and a payload per run in the run input, as the peers enqueue one job
    // kind with a payload per job.
    let spec = spec("latency", vec![json!({"name": "p", "kind": "bench.probe"})]);
    for i in 0..LATENCY_SAMPLES + warmup {
        let key = format!("latency-{eager}-{i}");
        let before = Instant::now();
        store
            .submit(Submission::Spec(spec.clone()), json!({"key": key}), None)
            .await
            .expect("submit");
        let deadline = Instant::now() + Duration::from_secs(5);
        let started = loop {
            if let Some((started, _)) = probes().lock().ok().and_then(|p| p.get(&key).copied()) {
                break started;
            }
            assert!(Instant::now() < deadline, "probe {key} never started");
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        if i >= warmup {
            samples.push(started.saturating_duration_since(before).as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let _ = handle.await;
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    (
        percentile(&mut samples, 0.50),
        percentile(&mut samples, 0.99),
        mean,
    )
}

async fn edge_latency(store: &Store) -> (f64, f64) {
    let run_key = uuid::Uuid::new_v4().to_string();
    let tasks: Vec<Value> = (0..CHAIN_LENGTH)
        .map(|i| {
            let mut task = json!({"name": format!("c{i}"), "kind": "bench.probe", "input": {"key": format!("{run_key}/{i}")}});
            if i > 0 {
                task["depends_on"] = json!([format!("c{}", i - 1)]);
            }
            task
        })
        .collect();
    let (shutdown, handle) = start_worker(store, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = store
        .submit(Submission::Spec(spec("chain", tasks)), Value::Null, None)
        .await
        .expect("submit");
    wait_finished(store, run.id).await;
    shutdown.cancel();
    let _ = handle.await;
    let probes = probes().lock().map(|p| p.clone()).unwrap_or_default();
    let mut gaps: Vec<f64> = (1..CHAIN_LENGTH)
        .filter_map(|i| {
            let (_, parent_end) = probes.get(&format!("{run_key}/{}", i - 1))?;
            let (child_start, _) = probes.get(&format!("{run_key}/{i}"))?;
            Some(
                child_start
                    .saturating_duration_since(*parent_end)
                    .as_secs_f64()
                    * 1000.0,
            )
        })
        .collect();
    (percentile(&mut gaps, 0.50), percentile(&mut gaps, 0.99))
}

async fn insert_ceiling(url: &str) -> f64 {
    let mut setup = PgConnection::connect(url).await.expect("connect");
    setup
        .execute("DROP TABLE IF EXISTS bench_insert; CREATE TABLE bench_insert (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
        .await
        .expect("create table");
    let duration = Duration::from_secs(5);
    let mut clients = Vec::new();
    for _ in 0..8 {
        let url = url.to_owned();
        clients.push(tokio::spawn(async move {
            let mut conn = PgConnection::connect(&url).await.expect("connect");
            let end = Instant::now() + duration;
            let mut count = 0u64;
            while Instant::now() < end {
                let mut tx = conn.begin().await.expect("begin");
                sqlx::query("INSERT INTO bench_insert DEFAULT VALUES")
                    .execute(&mut *tx)
                    .await
                    .expect("insert");
                tx.commit().await.expect("commit");
                count += 1;
            }
            count
        }));
    }
    let mut total = 0;
    for client in clients {
        total += client.await.unwrap_or(0);
    }
    total as f64 / duration.as_secs_f64()
}

/// Runs a worker alone in a child process and measures its memory and how many statements
/// it sends, counted from sqlx's statement log of the child.
async fn idle_worker(url: &str) -> (f64, f64) {
    let exe = std::env::current_exe().expect("own path");
    let log_path = std::env::temp_dir().join(format!("caraml-idle-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("create the statement log");
    let mut child = Command::new(exe)
        .arg("--idle-worker")
        .env("CARAML_BENCH_URL", url)
        .stderr(log)
        .spawn()
        .expect("spawn idle worker");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let statements = || {
        std::fs::read_to_string(&log_path)
            .map(|text| text.matches("summary=").count())
            .unwrap_or(0)
    };
    let window = Duration::from_secs(20);
    let before = statements();
    tokio::time::sleep(window).await;
    let after = statements();
    let rss_kb = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log_path);
    (
        rss_kb / 1024.0,
        (after - before) as f64 / window.as_secs_f64(),
    )
}

fn idle_worker_main() {
    let url = std::env::var("CARAML_BENCH_URL").expect("CARAML_BENCH_URL set by the parent");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("sqlx::query=debug"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    runtime.block_on(async move {
        let store = Store::connect(&url, 4).await.expect("connect");
        let worker = Worker::builder(store, registry()).slots(SLOTS).build();
        let _ = worker.run(CancellationToken::new()).await;
    });
}

fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((samples.len() as f64) * q).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Installs and runs graphile-worker and pg-boss on the same server.
fn peers(server: &str, report: &mut Report) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let install = Command::new("bash")
        .arg(root.join("bench/peers/install.sh"))
        .arg(root.join("target/bench-peers"))
        .output();
    let node = match install {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
        Ok(output) => {
            eprintln!(
                "peer install failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        Err(err) => {
            eprintln!("peer install failed: {err}");
            return;
        }
    };
    let peer_db = caraml_engine::testing::with_database(server, "caraml_peers");
    let runtime_setup = Command::new("psql")
        .args([server, "-c", "CREATE DATABASE caraml_peers"])
        .output();
    drop(runtime_setup);
    let cases = [
        (
            "peer_graphile_drain",
            "graphile",
            "drain",
            "(f) graphile-worker batch mode, drain",
        ),
        (
            "peer_graphile_default_drain",
            "graphile-default",
            "drain",
            "(f) graphile-worker default, drain",
        ),
        (
            "peer_pgboss_drain",
            "pgboss",
            "drain",
            "(f) pg-boss, batches of 100, drain",
        ),
        (
            "peer_graphile_latency",
            "graphile",
            "latency",
            "(f) graphile-worker submit-to-start",
        ),
        (
            "peer_pgboss_latency",
            "pgboss",
            "latency",
            "(f) pg-boss submit-to-start",
        ),
    ];
    for (key, system, mode, label) in cases {
        let output = Command::new(&node)
            .arg(root.join("bench/peers/peers.mjs"))
            .args([
                "--system",
                system,
                "--mode",
                mode,
                "--database-url",
                &peer_db,
            ])
            .args([
                "--jobs",
                &DRAIN_TASKS.to_string(),
                "--concurrency",
                &SLOTS.to_string(),
            ])
            .args([
                "--samples",
                &LATENCY_SAMPLES.to_string(),
                "--interval-ms",
                "20",
            ])
            .args([
                "--peers-dir",
                &root.join("target/bench-peers").display().to_string(),
            ])
            .output();
        let parsed: Option<Value> = output.ok().and_then(|output| {
            if !output.status.success() {
                eprintln!(
                    "{system} {mode} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            serde_json::from_slice(&output.stdout).ok()
        });
        let Some(result) = parsed else { continue };
        let value = if mode == "drain" {
            format!(
                "{:.0} jobs/s",
                result["jobs_per_second"].as_f64().unwrap_or(f64::NAN)
            )
        } else {
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, mean {:.2} ms",
                result["p50_ms"].as_f64().unwrap_or(f64::NAN),
                result["p99_ms"].as_f64().unwrap_or(f64::NAN),
                result["mean_ms"].as_f64().unwrap_or(f64::NAN)
            )
        };
        report.add(key, label, value, result);
    }
}
