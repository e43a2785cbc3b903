//! Schedules through the HTTP API and the command line, with a worker in this process and
//! a manual clock, so that no test waits for a real tick.
//!
//! Guarantees checked here:
//! - a schedule created over HTTP starts a run at its tick, which the worker runs;
//! - list, get, pause, resume and delete return the schedule as JSON;
//! - invalid schedules get a 4xx JSON error that names the value and the fix;
//! - `caraml schedule` creates, lists, pauses, resumes and deletes schedules.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use caraml::engine::testing::TestDatabase;
use caraml::engine::{ManualClock, Store, Worker, WorkerOptions};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Server {
    base: String,
    store: Store,
    clock: Arc<ManualClock>,
    client: reqwest::Client,
    token: String,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    /// Starts the API and a worker, whose scheduler reads the manual clock, and stores the
    /// workflow `tick`.
    async fn start() -> Self {
        let db = TestDatabase::create().await;
        let start = DateTime::parse_from_rfc3339("2031-01-01T00:00:00.500Z")
            .expect("start time")
            .with_timezone(&Utc);
        let clock = Arc::new(ManualClock::new(start));
        let store = db.store.clone().with_clock(clock.clone());
        let registry = caraml::registry().expect("built-in registry is valid");
        store.register(&registry).await.expect("register kinds");
        let spec = serde_json::from_value(json!({"name": "tick", "tasks": [
            {"name": "wait", "kind": "sleep", "input": {"seconds": 0}},
        ]}))
        .expect("spec");
        store
            .store_workflow(&spec, "spec")
            .await
            .expect("store workflow");

        let shutdown = CancellationToken::new();
        let worker = Worker::builder(store.clone(), registry)
            .options(WorkerOptions {
                grace: Duration::from_secs(1),
                ..WorkerOptions::default()
            })
            .build();
        tokio::spawn(worker.run(shutdown.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let address: SocketAddr = listener.local_addr().expect("local address");
        tokio::spawn(caraml::api::http::serve(
            listener,
            store.clone(),
            caraml::api::http::DEFAULT_BODY_LIMIT,
            shutdown.clone(),
        ));
        let token = super::token(&store, "default", caraml::api::auth::Role::Admin).await;
        Self {
            base: format!("http://{address}"),
            store,
            clock,
            client: super::client_with(&token),
            token,
            shutdown,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// Polls `GET path` every 20 ms for up to 10 s until `done` holds for the body.
    async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.get(path).await;
            if status == StatusCode::OK && done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "GET {path} did not reach the expected state in 10 s: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn http_schedule_lifecycle() {
    let server = Server::start().await;
    let (status, created) = server
        .post(
            "/v1/schedules",
            json!({"name": "every-second", "cron": "* * * * * *", "workflow": "tick", "input": {"n": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["timezone"], "UTC", "the time zone defaults to UTC");
    assert_eq!(
        created["missed"], "skip",
        "missed ticks are skipped by default"
    );
    assert_eq!(created["paused"], false);
    assert_eq!(created["next_tick_at"], "2031-01-01T00:00:01Z");
    assert!(created["last_run_id"].is_null());

    let (status, list) = server.get("/v1/schedules").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["schedules"]
        .as_array()
        .expect("schedules")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["every-second"]);

    // The worker's scheduler starts the tick's run, and the worker runs it.
    server.clock.advance(Duration::from_secs(1));
    let schedule = server
        .wait_for("/v1/schedules/every-second", |s| {
            !s["last_run_id"].is_null()
        })
        .await;
    assert_eq!(schedule["last_tick_at"], "2031-01-01T00:00:01Z");
    let run_id = schedule["last_run_id"].as_str().expect("run id").to_owned();
    let run = server
        .wait_for(&format!("/v1/runs/{run_id}"), |run| {
            !run["finished_at"].is_null()
        })
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["workflow"], "tick");
    assert_eq!(run["input"], json!({"n": 1}));
    assert_eq!(
        run["idempotency_key"],
        "schedule:every-second:2031-01-01T00:00:01Z"
    );

    let (status, paused) = server
        .post("/v1/schedules/every-second/pause", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["paused"], true);

    server.clock.advance(Duration::from_secs(60));
    let (status, resumed) = server
        .post("/v1/schedules/every-second/resume", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["paused"], false);
    assert_eq!(
        resumed["next_tick_at"], "2031-01-01T00:01:02Z",
        "a resumed schedule waits for the first tick after the clock"
    );

    let (status, deleted) = server
        .send(reqwest::Method::DELETE, "/v1/schedules/every-second", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["name"], "every-second");
    let (status, missing) = server.get("/v1/schedules/every-second").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["error"]["code"], "not_found");
    assert!(
        message(&missing).contains("schedule `every-second` not found"),
        "{missing}"
    );
    let (_, run) = server.get(&format!("/v1/runs/{run_id}")).await;
    assert_eq!(
        run["id"],
        run_id.as_str(),
        "deleting a schedule keeps its runs"
    );
}

#[tokio::test]
async fn http_schedule_errors_name_the_fix() {
    let server = Server::start().await;
    let valid = json!({"name": "nightly", "cron": "0 2 * * *", "workflow": "tick"});
    let with = |key: &str, value: Value| {
        let mut body = valid.clone();
        body[key] = value;
        body
    };
    let cases = [
        (
            with("cron", json!("0 25 * * *")),
            "cron expression `0 25 * * *` is invalid",
            "use 5 fields",
        ),
        (
            with("cron", json!("* * *")),
            "has 3 fields",
            "or 6 with seconds first",
        ),
        (
            with("timezone", json!("Europe/Atlantis")),
            "time zone `Europe/Atlantis` is unknown",
            "IANA",
        ),
        (
            with("workflow", json!("ghost")),
            "workflow `ghost` is not registered",
            "start a worker",
        ),
        (
            with("missed", json!("sometimes")),
            "missed-tick policy `sometimes` is invalid",
            "use `skip` or `run_once`",
        ),
        (
            with("name", json!("no spaces")),
            "schedule name `no spaces` is invalid",
            "use 1 to 200 characters",
        ),
    ];
    for (body, problem, fix) in cases {
        let (status, answer) = server.post("/v1/schedules", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], "bad_request");
        assert!(
            message(&answer).contains(problem),
            "names the value: {answer}"
        );
        assert!(message(&answer).contains(fix), "gives the fix: {answer}");
    }
    let (_, list) = server.get("/v1/schedules").await;
    assert_eq!(
        list["schedules"],
        json!([]),
        "rejected schedules are not stored"
    );

    let (status, answer) = server
        .post("/v1/schedules", with("colour", json!("red")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        message(&answer).contains("colour"),
        "names the unknown field: {answer}"
    );

    let (status, _) = server.post("/v1/schedules", valid.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = server.post("/v1/schedules", valid.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        message(&answer).contains("schedule `nightly` already exists"),
        "{answer}"
    );

    let (status, answer) = server.post("/v1/schedules/ghost/pause", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, answer) = server
        .send(reqwest::Method::PUT, "/v1/schedules/nightly", None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{answer}");
    assert!(message(&answer).contains("PUT"), "{answer}");
}

#[tokio::test]
async fn cli_manages_schedules() {
    let server = Server::start().await;
    let base = server.base.clone();
    let token = server.token.clone();
    let caraml = move |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_caraml"))
            .args(args)
            .env("CARAML_SERVER", &base)
            .env("CARAML_TOKEN", &token)
            .output()
            .expect("caraml runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let outputs = tokio::task::spawn_blocking(move || {
        [
            caraml(&[
                "schedule",
                "create",
                "reports",
                "--cron",
                "30 6 * * 1-5",
                "--workflow",
                "tick",
                "--timezone",
                "America/New_York",
                "--input",
                r#"{"team": "ops"}"#,
                "--missed",
                "run_once",
            ]),
            caraml(&["schedule", "list"]),
            caraml(&["schedule", "pause", "reports"]),
            caraml(&["schedule", "list"]),
            caraml(&["schedule", "resume", "reports"]),
            caraml(&[
                "schedule",
                "create",
                "bad",
                "--cron",
                "* * * * *",
                "--workflow",
                "ghost",
            ]),
            caraml(&[
                "schedule",
                "create",
                "bad",
                "--cron",
                "* * * * *",
                "--workflow",
                "tick",
                "--missed",
                "sometimes",
            ]),
            caraml(&["schedule", "delete", "reports"]),
            caraml(&["schedule", "get", "reports"]),
        ]
    })
    .await
    .expect("cli thread");
    let [
        create,
        list,
        pause,
        paused_list,
        resume,
        unknown,
        bad_policy,
        delete,
        get,
    ] = outputs;

    assert_eq!(create.0, Some(0), "{create:?}");
    let created: Value = serde_json::from_str(&create.1).expect("create prints the schedule");
    assert_eq!(created["timezone"], "America/New_York");
    assert_eq!(created["missed"], "run_once");
    assert_eq!(created["input"], json!({"team": "ops"}));
    assert_eq!(
        created["next_tick_at"], "2031-01-01T11:30:00Z",
        "06:30 in New York is 11:30 UTC in January, and 2031-01-01 is a Wednesday"
    );

    assert_eq!(list.0, Some(0), "{list:?}");
    assert!(
        list.1.contains("reports") && list.1.contains("active"),
        "{}",
        list.1
    );
    assert!(list.1.contains("30 6 * * 1-5"), "{}", list.1);
    assert_eq!(pause.0, Some(0), "{pause:?}");
    assert!(paused_list.1.contains("paused"), "{}", paused_list.1);
    assert_eq!(resume.0, Some(0), "{resume:?}");

    assert_eq!(unknown.0, Some(1), "{unknown:?}");
    assert!(
        unknown.2.contains("workflow `ghost` is not registered"),
        "{}",
        unknown.2
    );
    assert_eq!(
        bad_policy.0,
        Some(2),
        "clap rejects the policy: {bad_policy:?}"
    );
    assert!(
        bad_policy.2.contains("run_once"),
        "lists the accepted values: {}",
        bad_policy.2
    );

    assert_eq!(delete.0, Some(0), "{delete:?}");
    assert_eq!(get.0, Some(1), "{get:?}");
    assert!(get.2.contains("schedule `reports` not found"), "{}", get.2);
    assert!(
        server
            .store
            .list_schedules("default")
            .await
            .expect("list")
            .is_empty()
    );
}
