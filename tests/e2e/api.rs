//! The HTTP API and the command line, with a worker in this process.
//!
//! Guarantees checked here:
//! - every spec validation error returns 422 with the offending names, and stores nothing;
//! - malformed, oversized and ambiguous requests get a 4xx with a JSON error in the
//!   product's words, naming the parameter or field, its value and the fix;
//! - identical submissions with one idempotency key return one run, and the key reused for
//!   another workflow gets a 409 naming both workflows;
//! - cancel, retry, events, lists with cursors and the probes behave as documented;
//! - `caraml run submit --follow` exits 0 for a run that succeeds and 1 for one that fails;
//! - `caraml workflow list` prints the stored workflows as a table or as JSON.

use std::net::SocketAddr;
use std::time::Duration;

use caraml::engine::testing::TestDatabase;
use caraml::engine::{Store, Worker, WorkerOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub(super) struct Server {
    pub(super) base: String,
    pub(super) store: Store,
    pub(super) client: reqwest::Client,
    /// The database's URL, for commands that work on it directly.
    pub(super) url: String,
    /// An admin token of the project `default`, which `client` sends.
    pub(super) token: String,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    pub(super) async fn start() -> Self {
        Self::start_with_limit(caraml::api::http::DEFAULT_BODY_LIMIT).await
    }

    async fn start_with_limit(body_limit: usize) -> Self {
        let db = TestDatabase::create().await;
        let registry = caraml::registry().expect("built-in registry is valid");
        db.store.register(&registry).await.expect("register kinds");
        let shutdown = CancellationToken::new();
        let worker = Worker::builder(db.store.clone(), registry)
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
            db.store.clone(),
            body_limit,
            shutdown.clone(),
        ));
        let token = super::token(&db.store, "default", caraml::api::auth::Role::Admin).await;
        Self {
            base: format!("http://{address}"),
            url: db.url,
            store: db.store,
            client: super::client_with(&token),
            token,
            shutdown,
        }
    }

    pub(super) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    pub(super) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    pub(super) async fn wait_finished(&self, id: &str) -> Value {
        for _ in 0..600 {
            let (status, run) = self.get(&format!("/v1/runs/{id}")).await;
            assert_eq!(status, StatusCode::OK);
            if !run["finished_at"].is_null() {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {id} did not finish within 30 s");
    }

    async fn run_count(&self) -> i64 {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM runs")
            .fetch_one(self.store.pool())
            .await
            .expect("count runs");
        count
    }
}

impl Server {
    /// Sends `body` as is, with the given Content-Type header when there is one.
    async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        read(request.send().await.expect("request sent")).await
    }
}

pub(super) async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub(super) fn sleep_spec(name: &str, seconds: f64) -> Value {
    json!({"name": name, "tasks": [
        {"name": "first", "kind": "sleep", "input": {"seconds": seconds}},
        {"name": "second", "kind": "sleep", "depends_on": ["first"]},
    ]})
}

#[tokio::test]
async fn submitted_spec_runs_to_success() {
    let server = Server::start().await;
    let (status, body) = server
        .post(
            "/v1/runs",
            json!({"spec": sleep_spec("two", 0.0), "input": {"x": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "queued");
    let id = body["id"].as_str().expect("id").to_owned();

    let run = server.wait_finished(&id).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["input"], json!({"x": 1}));
    let tasks = run["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1]["depends_on"], json!(["first"]));
    assert_eq!(tasks[1]["attempts"], 1);
    assert!(
        tasks
            .iter()
            .all(|t| !t["started_at"].is_null() && !t["finished_at"].is_null())
    );
}

#[tokio::test]
async fn every_spec_error_is_422_with_names() {
    let server = Server::start().await;
    let cases = [
        (
            json!([{"name": "a", "kind": "sleep", "depends_on": ["c"]},
                   {"name": "b", "kind": "sleep", "depends_on": ["a"]},
                   {"name": "c", "kind": "sleep", "depends_on": ["b"]}]),
            "cycle",
            vec!["a", "b", "c"],
        ),
        (
            json!([{"name": "a", "kind": "sleep", "depends_on": ["a"]}]),
            "self_dependency",
            vec!["a"],
        ),
        (
            json!([{"name": "a", "kind": "sleep", "depends_on": ["nowhere"]}]),
            "dangling_dependency",
            vec!["a", "nowhere"],
        ),
        (
            json!([{"name": "a", "kind": "sleep"}, {"name": "a", "kind": "sleep"}]),
            "duplicate_name",
            vec!["a"],
        ),
        (
            json!([{"name": "a", "kind": "no.such.kind"}]),
            "unknown_kind",
            vec!["a"],
        ),
        (json!([]), "empty", vec![]),
        (
            json!([{"name": "a", "kind": "sleep", "retry": {"max_attempts": 0}}]),
            "invalid_retry",
            vec!["a"],
        ),
        (
            json!([{"name": "a", "kind": "sleep", "retry": {"max_attempts": 2, "initial_backoff_seconds": 10, "max_backoff_seconds": 1}}]),
            "invalid_retry",
            vec!["a"],
        ),
        (
            json!([{"name": "a", "kind": "sleep", "timeout_seconds": -5}]),
            "invalid_timeout",
            vec!["a"],
        ),
    ];
    for (tasks, code, names) in cases {
        let (status, body) = server
            .post("/v1/runs", json!({"spec": {"name": "bad", "tasks": tasks}}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{code}: {body}");
        let problems = body["error"]["problems"]
            .as_array()
            .expect("problems listed");
        let problem = problems
            .iter()
            .find(|p| p["code"] == code)
            .unwrap_or_else(|| panic!("no {code} problem in {body}"));
        let mut found: Vec<&str> = problem["tasks"]
            .as_array()
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        found.sort_unstable();
        assert_eq!(found, names, "{code} names the offending tasks");
        for name in &names {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(name),
                "{code}: the message names `{name}`: {body}"
            );
        }
    }
    assert_eq!(server.run_count().await, 0, "no rejected spec was stored");
}

#[tokio::test]
async fn yaml_spec_text_is_accepted() {
    let server = Server::start().await;
    let yaml =
        "name: from-yaml\ntasks:\n  - name: only\n    kind: sleep\n    input: {seconds: 0}\n";
    let (status, body) = server.post("/v1/runs", json!({"spec": yaml})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run = server.wait_finished(body["id"].as_str().expect("id")).await;
    assert_eq!(run["status"], "succeeded");
}

#[tokio::test]
async fn malformed_requests_get_clear_4xx() {
    let server = Server::start_with_limit(64 * 1024).await;
    let url = format!("{}/v1/runs", server.base);

    let response = server
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not valid JSON")
    );

    let response = server
        .client
        .post(&url)
        .body("{}")
        .send()
        .await
        .expect("sent");
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    let (status, body) = server.post("/v1/runs", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("neither")
    );

    let (status, _) = server
        .post(
            "/v1/runs",
            json!({"workflow": "flights", "spec": sleep_spec("x", 0.0)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = server
        .post("/v1/runs", json!({"workflow": "no-such-workflow"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let big = json!({"spec": sleep_spec("big", 0.0), "input": "x".repeat(100 * 1024)});
    let (status, body) = server.post("/v1/runs", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("limit")
    );

    let (status, body) = server.get("/v1/runs/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not-a-uuid")
    );

    let (status, _) = server
        .get("/v1/runs/01934a6e-7b1c-7d2e-8f90-123456789abc")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = server.get("/v1/runs?status=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("sideways")
    );
    assert_eq!(server.run_count().await, 0);
}

/// Phrases of axum's and serde's default rejections, which must not reach a client.
const FRAMEWORK_PHRASES: [&str; 7] = [
    "Failed to",
    "deserialize",
    "invalid type",
    "invalid digit",
    "unknown variant",
    "expected one of",
    "Expected request",
];

/// A malformed request and what its error message must contain.
struct Malformed<'a> {
    method: reqwest::Method,
    path: String,
    content_type: Option<&'a str>,
    body: &'a str,
    status: StatusCode,
    contains: Vec<&'a str>,
}

fn bad_query<'a>(path: String, contains: Vec<&'a str>) -> Malformed<'a> {
    Malformed {
        method: reqwest::Method::GET,
        path,
        content_type: None,
        body: "",
        status: StatusCode::BAD_REQUEST,
        contains,
    }
}

fn bad_submit<'a>(
    content_type: Option<&'a str>,
    body: &'a str,
    status: StatusCode,
    contains: Vec<&'a str>,
) -> Malformed<'a> {
    Malformed {
        method: reqwest::Method::POST,
        path: "/v1/runs".to_owned(),
        content_type,
        body,
        status,
        contains,
    }
}

#[tokio::test]
async fn malformed_query_and_body_in_own_words() {
    let server = Server::start().await;
    let (_, run) = server
        .post("/v1/runs", json!({"spec": sleep_spec("shape", 0.0)}))
        .await;
    let id = run["id"].as_str().expect("id").to_owned();
    let json_type = Some("application/json");
    let bad = StatusCode::BAD_REQUEST;
    let cases = [
        bad_query(
            "/v1/runs?limit=abc".into(),
            vec!["limit must be a whole number from 1 to 500", "\"abc\""],
        ),
        bad_query(
            "/v1/runs?limit=0".into(),
            vec!["limit", "from 1 to 500", "\"0\""],
        ),
        bad_query(
            "/v1/runs?status=bogus".into(),
            vec!["status must be one of queued, running", "\"bogus\""],
        ),
        bad_query(
            "/v1/runs?cursor=yesterday".into(),
            vec!["cursor", "next_cursor", "\"yesterday\""],
        ),
        bad_query(
            "/v1/runs?workflow=".into(),
            vec!["workflow is empty", "leave the parameter out"],
        ),
        bad_query(
            "/v1/runs?colour=red".into(),
            vec!["unknown query parameter `colour`", "`status`", "`limit`"],
        ),
        bad_query(
            "/v1/runs?limit=1&limit=2".into(),
            vec!["`limit`", "more than once"],
        ),
        bad_query(
            format!("/v1/runs/{id}/events?after=later"),
            vec!["after must be an event id", "next_after", "\"later\""],
        ),
        bad_query(
            format!("/v1/runs/{id}/events?limit=20000"),
            vec!["limit must be a whole number from 1 to 10000", "\"20000\""],
        ),
        bad_query(
            format!("/v1/runs/{id}?tasks=maybe"),
            vec!["tasks must be one of true, false", "\"maybe\""],
        ),
        bad_query("/v1/runs/%FF".into(), vec!["run id", "UUID"]),
        bad_submit(
            json_type,
            r#"{"workflow": 5}"#,
            bad,
            vec![
                "workflow must be the name of a registered workflow as a JSON string",
                "got 5",
            ],
        ),
        bad_submit(
            json_type,
            "[]",
            bad,
            vec!["must be a JSON object", "got an array", "\"workflow\""],
        ),
        bad_submit(
            json_type,
            r#"{"spec": 7}"#,
            bad,
            vec!["spec must be a workflow spec", "got 7"],
        ),
        bad_submit(
            json_type,
            r#"{"workflow": "flights", "inputs": {}}"#,
            bad,
            vec!["unknown field `inputs`", "`input`"],
        ),
        bad_submit(
            json_type,
            "workflow=flights",
            bad,
            vec!["not valid JSON at line 1, column 1"],
        ),
        bad_submit(
            json_type,
            r#"{"workflow": "#,
            bad,
            vec!["not valid JSON", "before the JSON value is complete"],
        ),
        bad_submit(json_type, "", bad, vec!["request body is empty"]),
        bad_submit(
            Some("text/plain"),
            r#"{"workflow": "flights"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            vec!["\"text/plain\"", "Content-Type: application/json"],
        ),
        bad_submit(
            None,
            r#"{"workflow": "flights"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            vec!["no Content-Type header", "Content-Type: application/json"],
        ),
    ];
    for case in cases {
        let request = format!("{} {} {}", case.method, case.path, case.body);
        let (status, answer) = server
            .send_raw(case.method, &case.path, case.content_type, case.body)
            .await;
        assert_eq!(status, case.status, "{request}: {answer}");
        let message = answer["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{request}: a JSON error: {answer}"));
        for part in case.contains {
            assert!(
                message.contains(part),
                "{request}: the message contains {part:?}: {message}"
            );
        }
        for phrase in FRAMEWORK_PHRASES {
            assert!(
                !message.contains(phrase),
                "{request}: no framework wording {phrase:?}: {message}"
            );
        }
    }
    assert_eq!(
        server.run_count().await,
        1,
        "no malformed request stored a run"
    );
}

#[tokio::test]
async fn run_without_tasks_on_request() {
    let server = Server::start().await;
    let (_, body) = server
        .post("/v1/runs", json!({"spec": sleep_spec("summary", 0.0)}))
        .await;
    let id = body["id"].as_str().expect("id").to_owned();
    server.wait_finished(&id).await;
    let (status, summary) = server.get(&format!("/v1/runs/{id}?tasks=false")).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert!(
        summary.get("tasks").is_none(),
        "tasks=false leaves the tasks out: {summary}"
    );
    assert_eq!(summary["tasks_succeeded"], 2, "and keeps the counts");
    let (_, full) = server.get(&format!("/v1/runs/{id}?tasks=true")).await;
    assert_eq!(full["tasks"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn idempotency_key_reused_for_other_workflow_is_409() {
    let server = Server::start().await;
    let (status, first) = server
        .post(
            "/v1/runs",
            json!({"spec": sleep_spec("nightly", 0.0), "idempotency_key": "train-7"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");

    let (status, body) = server
        .post(
            "/v1/runs",
            json!({"spec": sleep_spec("weekly", 0.0), "idempotency_key": "train-7"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for part in ["`train-7`", "`nightly`", "`weekly`", "new idempotency_key"] {
        assert!(message.contains(part), "the 409 contains {part}: {message}");
    }

    let (status, body) = server
        .post(
            "/v1/runs",
            json!({"workflow": "flights", "idempotency_key": "train-7"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a registered workflow too: {body}"
    );

    let (status, again) = server
        .post(
            "/v1/runs",
            json!({"spec": sleep_spec("nightly", 0.0), "idempotency_key": "train-7"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        again["id"], first["id"],
        "the same workflow gets the first run"
    );
    assert_eq!(server.run_count().await, 1);
}

#[tokio::test]
async fn idempotency_key_returns_first_run_over_http() {
    let server = Server::start().await;
    let body = json!({"spec": sleep_spec("once", 0.0), "idempotency_key": "deploy-42"});
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let client = server.client.clone();
            let url = format!("{}/v1/runs", server.base);
            let body = body.clone();
            tokio::spawn(async move {
                read(client.post(url).json(&body).send().await.expect("sent")).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut created = 0;
    for request in requests {
        let (status, body) = request.await.expect("request task");
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{status} {body}"
        );
        if status == StatusCode::CREATED {
            created += 1;
        }
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every request got the same run");
    assert_eq!(created, 1, "exactly one request created the run");
    assert_eq!(server.run_count().await, 1);
}

#[tokio::test]
async fn cancel_retry_and_events() {
    let server = Server::start().await;
    let (_, body) = server
        .post("/v1/runs", json!({"spec": sleep_spec("slow", 30.0)}))
        .await;
    let id = body["id"].as_str().expect("id").to_owned();
    for _ in 0..200 {
        let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
        if run["tasks"][0]["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, body) = server
        .post(&format!("/v1/runs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    let run = server.wait_finished(&id).await;
    assert_eq!(run["status"], "cancelled");
    for _ in 0..200 {
        let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
        if run["tasks"][0]["status"] == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let (status, body) = server
        .post(&format!("/v1/runs/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
    assert!(run["finished_at"].is_null(), "a resumed run is open again");
    let (status, _) = server
        .post(&format!("/v1/runs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = server.get(&format!("/v1/runs/{id}/events")).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for expected in ["run.queued", "task.running", "run.cancelled", "run.resumed"] {
        assert!(
            kinds.contains(&expected),
            "events include {expected}: {kinds:?}"
        );
    }

    let (_, done) = server
        .post("/v1/runs", json!({"spec": sleep_spec("quick", 0.0)}))
        .await;
    let done_id = done["id"].as_str().expect("id").to_owned();
    server.wait_finished(&done_id).await;
    let (status, body) = server
        .post(&format!("/v1/runs/{done_id}/cancel"), json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a finished run cannot be cancelled: {body}"
    );
    let (status, _) = server
        .post(&format!("/v1/runs/{done_id}/retry"), json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a succeeded run cannot be retried"
    );
}

#[tokio::test]
async fn list_pages_with_cursor_and_filters() {
    let server = Server::start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, body) = server
            .post(
                "/v1/runs",
                json!({"spec": sleep_spec(&format!("list-{}", i % 2), 0.0)}),
            )
            .await;
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        server.wait_finished(id).await;
    }
    let (_, first) = server.get("/v1/runs?limit=2").await;
    let first_ids: Vec<&str> = first["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(
        first_ids,
        [ids[4].as_str(), ids[3].as_str()],
        "newest first"
    );
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = server
        .get(&format!("/v1/runs?limit=2&cursor={cursor}"))
        .await;
    let second_ids: Vec<&str> = second["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(second_ids, [ids[2].as_str(), ids[1].as_str()]);

    let (_, filtered) = server
        .get("/v1/runs?workflow=list-0&status=succeeded")
        .await;
    assert_eq!(filtered["runs"].as_array().expect("runs").len(), 3);
    assert!(filtered["next_cursor"].is_null());
}

#[tokio::test]
async fn probes_metrics_and_workflows() {
    let server = Server::start().await;
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(server.get("/readyz").await.0, StatusCode::OK);
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics.as_str().expect("text");
    for name in [
        "caraml_tasks_claimed_total",
        "caraml_tasks_succeeded_total",
        "caraml_tasks_failed_total",
        "caraml_tasks_retried_total",
        "caraml_tasks_rescued_total",
        "caraml_claim_duration_seconds_bucket",
        "caraml_queue_depth",
    ] {
        assert!(text.contains(name), "/metrics exposes {name}");
    }
    let (status, body) = server.get("/v1/workflows").await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = body["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for kind in ["sleep", "http.request", "sql.query", "flights.report"] {
        assert!(kinds.contains(&kind), "kind {kind} is registered");
    }
    assert!(
        body["workflows"]
            .as_array()
            .expect("workflows")
            .iter()
            .any(|w| w["name"] == "flights"),
        "the flights workflow is registered"
    );
    let (status, body) = server.get("/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("/v1")
    );
}

#[tokio::test]
async fn cli_follow_exit_codes() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "name: cli-good\ntasks:\n  - name: a\n    kind: sleep\n    input: {seconds: 0.1}\n  - name: b\n    kind: sleep\n    depends_on: [a]\n")
        .expect("write spec");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"name": "cli-bad", "tasks": [{"name": "x", "kind": "sql.query", "input": {"sql": "SELECT * FROM nowhere"}, "retry": {"max_attempts": 1}}]}"#)
        .expect("write spec");
    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        "name: cli-invalid\ntasks:\n  - name: a\n    kind: sleep\n    depends_on: [a]\n",
    )
    .expect("write spec");

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
    let good = good.display().to_string();
    let bad = bad.display().to_string();
    let invalid = invalid.display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        (
            caraml(&["run", "submit", &good, "--follow"]),
            caraml(&["run", "submit", &bad, "--follow"]),
            caraml(&["run", "submit", &invalid]),
            caraml(&["run", "list"]),
        )
    })
    .await
    .expect("cli thread");
    let (good, bad, invalid, list) = output;
    assert_eq!(good.0, Some(0), "a succeeding run exits 0: {good:?}");
    assert!(
        good.1.contains("tasks done"),
        "plain progress lines when not a terminal: {}",
        good.1
    );
    assert!(good.1.contains("succeeded"));
    assert_eq!(bad.0, Some(1), "a failing run exits 1: {bad:?}");
    assert!(bad.1.contains("failed"), "{}", bad.1);
    assert_eq!(invalid.0, Some(1), "an invalid spec exits 1");
    assert_eq!(
        invalid.2.matches("depends on itself").count(),
        1,
        "the reason is printed once: {}",
        invalid.2
    );
    assert_eq!(list.0, Some(0));
    assert!(
        list.1.contains("cli-good") && list.1.contains("cli-bad"),
        "{}",
        list.1
    );
}

#[tokio::test]
async fn spec_cannot_take_rust_workflow_name() {
    let server = Server::start().await;
    let (status, body) = server
        .post("/v1/runs", json!({"spec": sleep_spec("flights", 0.0)}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("defined in Rust")
    );
    let (_, workflows) = server.get("/v1/workflows").await;
    let flights = workflows["workflows"]
        .as_array()
        .expect("workflows")
        .iter()
        .find(|w| w["name"] == "flights")
        .expect("flights is listed");
    assert_eq!(
        flights["source"], "rust",
        "the Rust workflow stays the latest version"
    );
}

#[tokio::test]
async fn events_page_and_wrong_method() {
    let server = Server::start().await;
    let (_, body) = server
        .post("/v1/runs", json!({"spec": sleep_spec("paged", 0.0)}))
        .await;
    let id = body["id"].as_str().expect("id").to_owned();
    server.wait_finished(&id).await;

    let (_, first) = server.get(&format!("/v1/runs/{id}/events?limit=2")).await;
    assert_eq!(first["events"].as_array().expect("events").len(), 2);
    let after = first["next_after"]
        .as_i64()
        .expect("a full page points to the next one");
    let (_, rest) = server
        .get(&format!("/v1/runs/{id}/events?limit=1000&after={after}"))
        .await;
    let kinds: Vec<&str> = rest["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.last(),
        Some(&"run.succeeded"),
        "the last page ends the history"
    );
    assert!(rest["next_after"].is_null(), "a short page is the last one");

    let response = server
        .client
        .delete(format!("{}/v1/runs/{id}", server.base))
        .send()
        .await
        .expect("sent");
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("DELETE"),
        "a 405 names the method in JSON: {body}"
    );
}

#[tokio::test]
async fn cli_workflow_list() {
    let server = Server::start().await;
    let (_, listing) = server.get("/v1/workflows").await;
    let flights_tasks = listing["workflows"]
        .as_array()
        .expect("workflows")
        .iter()
        .find(|w| w["name"] == "flights")
        .and_then(|w| w["spec"]["tasks"].as_array())
        .map(Vec::len)
        .expect("flights is stored with its tasks");

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
    let (table, json) = tokio::task::spawn_blocking(move || {
        (
            caraml(&["workflow", "list"]),
            caraml(&["workflow", "list", "--json"]),
        )
    })
    .await
    .expect("cli thread");

    assert_eq!(table.0, Some(0), "{table:?}");
    let mut lines = table.1.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "VERSION", "SOURCE", "TASKS"]);
    let flights: Vec<&str> = lines
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&"flights"))
        .unwrap_or_else(|| panic!("a flights row: {}", table.1));
    assert_eq!(flights[2], "rust");
    assert_eq!(flights[3], flights_tasks.to_string());

    assert_eq!(json.0, Some(0), "{json:?}");
    let rows: Value = serde_json::from_str(&json.1).expect("--json prints JSON");
    let row = rows
        .as_array()
        .expect("an array")
        .iter()
        .find(|row| row["name"] == "flights")
        .expect("a flights element");
    assert_eq!(row["source"], "rust");
    assert_eq!(row["task_count"], flights_tasks);
    assert_eq!(row["version"].as_str().map(str::len), Some(16));
}

#[tokio::test]
async fn nul_characters_are_a_client_error() {
    let server = Server::start().await;
    let cases = [
        json!({"spec": sleep_spec("nul", 0.0), "input": "a\u{0}b"}),
        json!({"spec": sleep_spec("nul", 0.0), "idempotency_key": "k\u{0}"}),
    ];
    for body in cases {
        let (status, answer) = server.post("/v1/runs", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("NUL"), "names the fix: {message}");
    }
}

#[tokio::test]
async fn signal_bodies_are_checked() {
    let server = Server::start().await;
    let spec = json!({"name": "gate", "tasks": [{"name": "approve", "kind": "approval"}]});
    let (status, run) = server.post("/v1/runs", json!({"spec": spec})).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let path = format!(
        "/v1/runs/{}/signals/approval",
        run["id"].as_str().unwrap_or_default()
    );

    let (status, answer) = server
        .send_raw(reqwest::Method::POST, &path, Some("text/plain"), "{}")
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{answer}");
    let (status, answer) = server
        .send_raw(
            reqwest::Method::POST,
            &path,
            Some("application/json"),
            "[1]",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("only the field `payload`"), "{message}");

    let (status, answer) = server
        .send_raw(
            reqwest::Method::POST,
            &path,
            Some("application/json"),
            r#"{"payload": {"approved": true}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}
