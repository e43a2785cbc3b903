//! Run lists and status counts over the HTTP API and on the dashboard's runs page, with
//! 1,000,000 runs in one project.
//!
//! Loads the runs with one `INSERT ... SELECT` (ids are UUIDv7 spread over 30 days, 20
//! workflows, the five statuses in realistic shares), vacuums and analyzes the table as
//! autovacuum would, then times each query kind through a real server with a token:
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench runs_list`
//!
//! `CARAML_BENCH_RUNS` changes the number of runs, `CARAML_BENCH_REQUESTS` the requests per
//! query kind.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use caraml::api::auth::Role;
use caraml::api::auth::tokens::create_token;
use caraml::engine::testing::TestDatabase;
use chrono::{SubsecRound, Utc};
use tokio_util::sync::CancellationToken;

const WORKFLOWS: u32 = 20;

/// Builds the path of the i-th request of one query kind.
type PathOf = Box<dyn Fn(usize) -> String>;
const DAYS: i64 = 30;

#[tokio::main]
async fn main() {
    let runs: u64 = env_number("CARAML_BENCH_RUNS", 1_000_000);
    let requests: usize = env_number("CARAML_BENCH_REQUESTS", 100);
    let db = TestDatabase::create().await;
    let pool = db.store.pool().clone();

    let started = Instant::now();
    load_runs(&pool, runs).await;
    println!(
        "loaded {runs} runs in {:.1} s (insert, vacuum, analyze)",
        started.elapsed().as_secs_f64()
    );

    let token = create_token(&pool, "default", Role::Viewer, "bench", None)
        .await
        .expect("create token")
        .token;
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let address: SocketAddr = listener.local_addr().expect("local address");
    tokio::spawn(caraml::api::http::serve(
        listener,
        db.store.clone(),
        caraml::api::http::DEFAULT_BODY_LIMIT,
        shutdown.clone(),
    ));
    let client = reqwest::Client::new();
    let base = format!("http://{address}");

    let now = Utc::now().trunc_subsecs(0);
    let statuses = ["queued", "running", "succeeded", "failed", "cancelled"];
    let kinds: [(&str, PathOf); 7] = [
        (
            "first page (50 runs)",
            Box::new(|_| "/v1/runs?limit=50".to_owned()),
        ),
        (
            "filter by status",
            Box::new(move |i| format!("/v1/runs?limit=50&status={}", statuses[i % 5])),
        ),
        (
            "filter by workflow and time range",
            Box::new(move |i| {
                let to = now - chrono::Duration::hours((i % (DAYS as usize * 24)) as i64);
                let from = to - chrono::Duration::days(7);
                format!(
                    "/v1/runs?limit=50&workflow=wf-{}&from={}&to={}",
                    i as u32 % WORKFLOWS,
                    from.to_rfc3339().replace('+', "%2B"),
                    to.to_rfc3339().replace('+', "%2B")
                )
            }),
        ),
        (
            "status counts, all runs",
            Box::new(|_| "/v1/runs/counts".to_owned()),
        ),
        (
            "status counts, one workflow",
            Box::new(|i| format!("/v1/runs/counts?workflow=wf-{}", i as u32 % WORKFLOWS)),
        ),
        (
            "dashboard runs page (counts and first page)",
            Box::new(|_| "/".to_owned()),
        ),
        (
            "dashboard runs page, filter by workflow",
            Box::new(|i| format!("/runs?workflow=wf-{}", i as u32 % WORKFLOWS)),
        ),
    ];

    println!("| query | requests | p50 ms | p95 ms | max ms |");
    println!("|---|---|---|---|---|");
    for (name, path) in &kinds {
        // One request first, so that each kind starts with the same warm connection.
        fetch(&client, &base, &token, &path(0)).await;
        let mut times = Vec::with_capacity(requests);
        for i in 0..requests {
            let started = Instant::now();
            fetch(&client, &base, &token, &path(i + 1)).await;
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "| {name} | {requests} | {:.1} | {:.1} | {:.1} |",
            ms(percentile(&times, 0.50)),
            ms(percentile(&times, 0.95)),
            ms(*times.last().expect("at least one request"))
        );
    }
    shutdown.cancel();
}

/// Inserts `count` finished and open runs of the project `default`, newest first.
async fn load_runs(pool: &sqlx::PgPool, count: u64) {
    let span_ms = DAYS * 24 * 3600 * 1000;
    sqlx::query(
        "INSERT INTO runs (id, project, workflow, workflow_version, status, tasks_total,
                           tasks_succeeded, created_at, started_at, finished_at)
         SELECT (lpad(to_hex(ms), 12, '0') || '7' || lpad(to_hex(i % 4096), 3, '0')
                 || '8' || lpad(to_hex(i), 15, '0'))::uuid,
                'default', 'wf-' || (i % $3), 'v1', status, 10,
                CASE WHEN status = 'succeeded' THEN 10 ELSE 3 END,
                to_timestamp(ms / 1000.0), to_timestamp(ms / 1000.0),
                CASE WHEN status IN ('succeeded', 'failed', 'cancelled')
                     THEN to_timestamp(ms / 1000.0) + interval '40 seconds' END
         FROM (
             SELECT i,
                    (extract(epoch FROM now()) * 1000)::int8 - (i * $2 / $1) AS ms,
                    CASE WHEN i % 100 < 85 THEN 'succeeded'
                         WHEN i % 100 < 93 THEN 'failed'
                         WHEN i % 100 < 96 THEN 'cancelled'
                         WHEN i % 100 < 98 THEN 'running'
                         ELSE 'queued' END AS status
             FROM generate_series(1, $1) AS i
         ) g",
    )
    .bind(count as i64)
    .bind(span_ms)
    .bind(i64::from(WORKFLOWS))
    .execute(pool)
    .await
    .expect("insert runs");
    sqlx::query("VACUUM ANALYZE runs")
        .execute(pool)
        .await
        .expect("vacuum runs");
}

async fn fetch(client: &reqwest::Client, base: &str, token: &str, path: &str) {
    // The API takes the token as a bearer header, the dashboard as its session cookie.
    let response = client
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .header("cookie", format!("caraml_session={token}"))
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let body = response.text().await.expect("body read");
    assert!(status.is_success(), "GET {path}: {status} {body}");
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
