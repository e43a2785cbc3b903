//! The dashboard, from HTTP and from headless Chromium, with a worker in this process.
//!
//! Guarantees checked here:
//! - pages without a session cookie redirect to the login form, and every page carries a
//!   Content-Security-Policy without inline scripts;
//! - form posts without the session's CSRF token, or from another origin, are rejected;
//! - in Chromium (tests/browser/dashboard.test.mjs), logging in through the form works,
//!   and a run page turns its DAG nodes green from live updates without reloading;
//! - the cancel and retry buttons work, and a viewer sees no change buttons;
//! - HTML in inputs, outputs and errors is shown as text.
//!
//! The browser test needs Node.js and Chromium (`apt-get install nodejs npm chromium`); it
//! runs `npm ci` in tests/browser when its node_modules is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use caraml::engine::testing::TestDatabase;
use caraml::engine::{Store, Task, TaskContext, TaskError, Worker, WorkerOptions};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// HTML that must stay text wherever the dashboard shows it.
const INJECTED_HTML: &str =
    "<script>window.__injected=1</script><img src=x onerror=\"window.__injected=2\">";

/// Maximum time the browser test may take once its packages are installed. It takes
/// about 15 s; the bound only stops a hung browser, with room for a loaded machine.
const BROWSER_TEST_LIMIT: Duration = Duration::from_secs(180);

/// `test.echo`: logs its input's `value` and returns it, or fails permanently with it as
/// the error when `fail` is set.
struct Echo;

#[derive(Deserialize)]
struct EchoInput {
    value: Value,
    #[serde(default)]
    fail: bool,
}

impl Task for Echo {
    type Input = EchoInput;
    type Output = Value;
    const KIND: &'static str = "test.echo";

    async fn run(&self, ctx: TaskContext, input: EchoInput) -> Result<Value, TaskError> {
        ctx.logger().info(&format!("echo {}", input.value));
        if input.fail {
            return Err(TaskError::permanent(input.value.to_string()));
        }
        Ok(json!({"value": input.value}))
    }
}

/// `test.flaky`: fails its first attempt and succeeds on any later one.
struct Flaky;

impl Task for Flaky {
    type Input = Value;
    type Output = Value;
    const KIND: &'static str = "test.flaky";

    async fn run(&self, ctx: TaskContext, _input: Value) -> Result<Value, TaskError> {
        if ctx.attempt() == 1 {
            return Err(TaskError::permanent(format!(
                "the first attempt fails on purpose {INJECTED_HTML}"
            )));
        }
        Ok(json!({"attempt": ctx.attempt()}))
    }
}

struct DashboardServer {
    base: String,
    store: Store,
    client: reqwest::Client,
    /// Admin and viewer tokens of the project `default`.
    admin: String,
    viewer: String,
    shutdown: CancellationToken,
}

impl Drop for DashboardServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl DashboardServer {
    async fn start() -> Self {
        let db = TestDatabase::create().await;
        let mut registry = caraml::registry().expect("built-in registry is valid");
        registry.task(Echo).task(Flaky);
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
            caraml::api::http::DEFAULT_BODY_LIMIT,
            shutdown.clone(),
        ));
        let admin = super::token(&db.store, "default", caraml::api::auth::Role::Admin).await;
        let viewer = super::token(&db.store, "default", caraml::api::auth::Role::Viewer).await;
        Self {
            base: format!("http://{address}"),
            store: db.store,
            admin,
            viewer,
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .expect("HTTP client"),
            shutdown,
        }
    }

    async fn submit(&self, spec: Value, input: Value) -> String {
        let response = self
            .client
            .post(format!("{}/v1/runs", self.base))
            .bearer_auth(&self.admin)
            .json(&json!({"spec": spec, "input": input}))
            .send()
            .await
            .expect("submit request sent");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON response");
        assert_eq!(status, StatusCode::CREATED, "submission accepted: {body}");
        body["id"].as_str().expect("run id").to_owned()
    }

    /// Waits until the run has `status`, for at most 30 s.
    async fn wait_status(&self, id: &str, status: &str) {
        let uuid: uuid::Uuid = id.parse().expect("run id");
        for _ in 0..600 {
            let run = self.store.run_summary(uuid).await.expect("run summary");
            if run.status == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {id} did not reach status {status} within 30 s");
    }

    async fn page(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("cookie", format!("caraml_session={token}"));
        }
        request.send().await.expect("page request sent")
    }
}

/// Returns a DAG shaped like the flights example: a gate, two loads, a join, four monthly
/// statistics, two reports and a final step.
fn report_spec() -> Value {
    let quick = |name: &str, after: &[&str]| json!({"name": name, "kind": "sleep", "input": {"seconds": 0.15}, "depends_on": after});
    json!({"name": "daily-report", "tasks": [
        {"name": "wait_for_data", "kind": "approval", "input": {"signal": "go", "timeout_seconds": 300}},
        quick("load_flights", &["wait_for_data"]),
        quick("load_weather", &["wait_for_data"]),
        quick("join_weather", &["load_flights", "load_weather"]),
        quick("stats_jan", &["join_weather"]),
        quick("stats_feb", &["join_weather"]),
        quick("stats_mar", &["join_weather"]),
        quick("stats_apr", &["join_weather"]),
        quick("carrier_report", &["stats_jan", "stats_feb", "stats_mar", "stats_apr"]),
        quick("airport_report", &["stats_jan", "stats_feb", "stats_mar", "stats_apr"]),
        quick("publish", &["carrier_report", "airport_report"]),
    ]})
}

#[tokio::test]
async fn pages_require_a_session() {
    let server = DashboardServer::start().await;
    for path in [
        "/",
        "/runs",
        "/workers",
        "/services",
        "/schedules",
        "/dead-letters",
    ] {
        let response = server.page(path, None).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "{path} without a session redirects"
        );
        let location = response
            .headers()
            .get("location")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            location.starts_with("/login?next="),
            "{path} redirects to the login form: {location}"
        );
    }

    let login = server.page("/login", None).await;
    assert_eq!(login.status(), StatusCode::OK);
    let policy = login
        .headers()
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
        "pages allow only the server's own scripts: {policy}"
    );

    for path in ["/", "/workers", "/services", "/schedules", "/dead-letters"] {
        let response = server.page(path, Some(&server.admin)).await;
        assert_eq!(response.status(), StatusCode::OK, "{path} with a session");
    }
}

#[tokio::test]
async fn login_sets_an_http_only_cookie() {
    let server = DashboardServer::start().await;
    let response = server
        .client
        .post(format!("{}/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=cml_0000&next=%2Fworkers")
        .send()
        .await
        .expect("login sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a wrong token");
    assert!(response.headers().get("set-cookie").is_none());

    let response = server
        .client
        .post(format!("{}/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}&next=%2Fworkers", server.admin))
        .send()
        .await
        .expect("login sent");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/workers"),
        "the login returns to the page asked for"
    );
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for part in [
        format!("caraml_session={}", server.admin).as_str(),
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(part), "the cookie has {part}: {cookie}");
    }

    let foreign = server
        .client
        .post(format!("{}/login", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://attacker.invalid")
        .body("token=abc")
        .send()
        .await
        .expect("login sent");
    assert_eq!(
        foreign.status(),
        StatusCode::FORBIDDEN,
        "a login posted from another origin is rejected"
    );
}

#[tokio::test]
async fn change_posts_need_csrf_token() {
    let server = DashboardServer::start().await;
    let id = server
        .submit(
            json!({"name": "held", "tasks": [
                {"name": "gate", "kind": "approval", "input": {"timeout_seconds": 300}}
            ]}),
            Value::Null,
        )
        .await;
    server.wait_status(&id, "running").await;

    let post = |body: &'static str| {
        server
            .client
            .post(format!("{}/runs/{id}/cancel", server.base))
            .header("cookie", format!("caraml_session={}", server.admin))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let response = post("").await.expect("cancel sent");
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a post without a CSRF token is rejected"
    );
    let response = post("csrf=00").await.expect("cancel sent");
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a post with a wrong CSRF token is rejected"
    );
    let run = server
        .store
        .run_summary(id.parse().expect("id"))
        .await
        .expect("run");
    assert_eq!(run.status, "running", "no rejected post changed the run");

    // The page's own forms carry the token that the server accepts.
    let page = server
        .page(&format!("/runs/{id}"), Some(&server.admin))
        .await
        .text()
        .await
        .expect("page");
    let csrf = csrf_of(&page);
    let response = server
        .client
        .post(format!("{}/runs/{id}/cancel", server.base))
        .header("cookie", format!("caraml_session={}", server.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .expect("cancel sent");
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the form's post is accepted"
    );
    server.wait_status(&id, "cancelled").await;
}

/// Returns the CSRF token of the forms on a page.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page has a CSRF field")
        .to_owned()
}

#[tokio::test]
async fn runs_list_pages_filters_and_bulk_cancels() {
    let server = DashboardServer::start().await;
    let held = json!({"name": "held", "tasks": [
        {"name": "gate", "kind": "approval", "input": {"timeout_seconds": 300}}
    ]});
    let quick = json!({"name": "quick", "tasks": [{"name": "nap", "kind": "sleep"}]});
    let mut held_ids = Vec::new();
    for _ in 0..3 {
        held_ids.push(server.submit(held.clone(), Value::Null).await);
    }
    for _ in 0..52 {
        server.submit(quick.clone(), Value::Null).await;
    }
    for id in &held_ids {
        server.wait_status(id, "running").await;
    }

    let rows = |page: &str| page.matches("<tr><td><span class=\"badge").count();
    let first = server
        .page("/runs", Some(&server.admin))
        .await
        .text()
        .await
        .expect("runs page");
    assert_eq!(rows(&first), 50, "the first page has 50 runs");
    assert!(
        first.contains("<span class=\"n\">55</span> all"),
        "the counts cover every run"
    );
    let older = first
        .split("class=\"older\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an older link")
        .replace("&amp;", "&");
    assert!(
        older.contains("before="),
        "the older link carries the cursor: {older}"
    );
    let second = server
        .page(&older, Some(&server.admin))
        .await
        .text()
        .await
        .expect("older page");
    assert_eq!(rows(&second), 5, "the older page has the rest");
    assert!(
        !second.contains("class=\"older\""),
        "the last page has no older link"
    );

    let filtered = server
        .page("/runs?workflow=held&status=running", Some(&server.admin))
        .await
        .text()
        .await
        .expect("filtered page");
    assert_eq!(rows(&filtered), 3, "the filter selects the held runs");
    let future = server
        .page("/runs?from=2999-01-01T00:00", Some(&server.admin))
        .await
        .text()
        .await
        .expect("future page");
    assert_eq!(rows(&future), 0, "no run was created after the range start");

    let response = server
        .client
        .post(format!("{}/runs/bulk", server.base))
        .header("cookie", format!("caraml_session={}", server.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&workflow=held&action=cancel",
            csrf_of(&filtered)
        ))
        .send()
        .await
        .expect("bulk cancel sent");
    assert_eq!(response.status(), StatusCode::OK);
    let outcome = response.text().await.expect("outcome page");
    assert!(
        outcome.contains("Cancelled 3 runs"),
        "the outcome counts the runs"
    );
    for id in &held_ids {
        server.wait_status(id, "cancelled").await;
    }
}

#[tokio::test]
async fn live_stream_ends_after_final_state() {
    let server = DashboardServer::start().await;
    let id = server
        .submit(
            json!({"name": "short", "tasks": [
                {"name": "first", "kind": "sleep", "input": {"seconds": 0.3}},
                {"name": "second", "kind": "sleep", "input": {"seconds": 0.3}, "depends_on": ["first"]},
            ]}),
            Value::Null,
        )
        .await;
    let mut response = server
        .page(&format!("/runs/{id}/live"), Some(&server.admin))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );

    // The server ends the stream once the run has finished, so reading to the end returns.
    let mut body = String::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.expect("stream chunk") {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the stream ends within 30 s of a two-task run");

    let events: Vec<(&str, &str)> = body
        .split("\n\n")
        .filter_map(|block| {
            let kind = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((kind, data))
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(
        kinds.last(),
        Some(&"done"),
        "the last event is done: {kinds:?}"
    );
    assert!(
        kinds[..kinds.len() - 1].iter().all(|kind| *kind == "state"),
        "every other event is a state: {kinds:?}"
    );

    let states: Vec<Value> = events
        .iter()
        .filter(|(kind, _)| *kind == "state")
        .map(|(_, data)| serde_json::from_str(data).expect("state is JSON"))
        .collect();
    assert_eq!(
        states[0]["tasks"].as_array().map(Vec::len),
        Some(2),
        "the first state carries every task"
    );
    let last = states.last().expect("a state");
    assert_eq!(last["run"]["status"], "succeeded");
    assert_eq!(last["run"]["finished"], true);
    let mut seen: std::collections::HashMap<i64, Value> = std::collections::HashMap::new();
    for state in &states {
        for task in state["tasks"].as_array().expect("tasks array") {
            let index = task["i"].as_i64().expect("task index");
            assert_ne!(
                seen.get(&index),
                Some(task),
                "a state carries a task only when it changed"
            );
            seen.insert(index, task.clone());
        }
    }
}

#[tokio::test]
async fn large_run_page_collapses_groups() {
    let server = DashboardServer::start().await;
    let shards = 5000;
    let mut tasks =
        vec![json!({"name": "gate", "kind": "approval", "input": {"timeout_seconds": 300}})];
    for i in 0..shards {
        tasks.push(
            json!({"name": format!("shard_{i:04}"), "kind": "sleep", "depends_on": ["gate"]}),
        );
    }
    let shard_names: Vec<String> = (0..shards).map(|i| format!("shard_{i:04}")).collect();
    tasks.push(json!({"name": "merge", "kind": "sleep", "depends_on": shard_names}));
    let id = server
        .submit(json!({"name": "wide", "tasks": tasks}), Value::Null)
        .await;
    server.wait_status(&id, "running").await;

    let page = server
        .page(&format!("/runs/{id}"), Some(&server.admin))
        .await
        .text()
        .await
        .expect("run page");
    assert!(
        page.contains("shard* ×5000"),
        "the shards are one box with their count"
    );
    assert_eq!(
        page.matches("class=\"node ").count(),
        2,
        "only gate and merge are drawn as single tasks"
    );
    assert_eq!(
        page.matches("<tr id=\"t-").count(),
        300,
        "the task table lists 300 of 5002 tasks"
    );
    assert!(
        page.len() < 1_000_000,
        "the page of a 5,002-task run stays under 1 MB, got {} bytes",
        page.len()
    );

    let expanded = server
        .page(&format!("/runs/{id}?expand=L1:shard"), Some(&server.admin))
        .await
        .text()
        .await
        .expect("expanded run page");
    assert_eq!(
        expanded.matches("class=\"node ").count(),
        5002,
        "an expanded group draws each of its tasks"
    );
}

/// Checks that a program starts, or returns the reason it does not.
async fn check_program(program: &str, hint: &str) -> Result<(), String> {
    match tokio::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "`{program} --version` exited with {status}; {hint}"
        )),
        Err(err) => Err(format!("{program} cannot be started ({err}); {hint}")),
    }
}

async fn npm_ci(dir: &Path) {
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("npm ci finishes within 5 minutes")
    .expect("npm ci starts");
    assert!(
        output.status.success(),
        "npm ci in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let mut missing = Vec::new();
    if !Path::new(&chromium).exists() {
        missing.push(format!(
            "Chromium is not at {chromium}; install it with `apt-get install chromium`, or set CHROMIUM to its path"
        ));
    }
    for (program, hint) in [
        (
            "node",
            "install Node.js 20 or later with `apt-get install nodejs`",
        ),
        ("npm", "install npm with `apt-get install npm`"),
    ] {
        if let Err(reason) = check_program(program, hint).await {
            missing.push(reason);
        }
    }
    assert!(
        missing.is_empty(),
        "the browser test cannot run:\n{}",
        missing.join("\n")
    );

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    if !browser_dir.join("node_modules/playwright-core").exists() {
        npm_ci(&browser_dir).await;
    }
    let artifacts = root.join("target/browser-artifacts");
    std::fs::create_dir_all(&artifacts).expect("create target/browser-artifacts");
    // The README's copy is refreshed only when asked for, so that a test run leaves the
    // working tree clean.
    let mut screenshots = vec![artifacts.join("run-page.png")];
    if std::env::var_os("CARAML_UPDATE_SCREENSHOT").is_some() {
        std::fs::create_dir_all(root.join("docs")).expect("create docs");
        screenshots.push(root.join("docs/dashboard-run.png"));
    }

    let server = DashboardServer::start().await;
    let live = server
        .submit(report_spec(), json!({"day": "2013-01-01"}))
        .await;
    let cancel = server
        .submit(
            json!({"name": "held-release", "tasks": [
                {"name": "build", "kind": "sleep", "input": {"seconds": 0.05}},
                {"name": "approve", "kind": "approval", "depends_on": ["build"], "input": {"timeout_seconds": 300}},
                {"name": "ship", "kind": "sleep", "depends_on": ["approve"]},
            ]}),
            Value::Null,
        )
        .await;
    let retry = server
        .submit(
            json!({"name": "flaky-import", "tasks": [
                {"name": "import", "kind": "test.flaky", "retry": {"max_attempts": 1}},
            ]}),
            Value::Null,
        )
        .await;
    let inject = server
        .submit(
            json!({"name": "markup-check", "tasks": [
                {"name": "echo_markup", "kind": "test.echo", "input": {"value": INJECTED_HTML}},
                {"name": "fail_markup", "kind": "test.echo", "input": {"value": INJECTED_HTML, "fail": true}},
            ]}),
            json!({"note": INJECTED_HTML}),
        )
        .await;
    let mut wide_tasks = vec![
        json!({"name": "gate", "kind": "approval", "input": {"signal": "go", "timeout_seconds": 300}}),
    ];
    for i in 0..320 {
        wide_tasks
            .push(json!({"name": format!("part_{i:03}"), "kind": "sleep", "depends_on": ["gate"]}));
    }
    let wide = server
        .submit(
            json!({"name": "wide-fan-out", "tasks": wide_tasks}),
            Value::Null,
        )
        .await;
    server.wait_status(&live, "running").await;
    server.wait_status(&wide, "running").await;
    server.wait_status(&cancel, "running").await;
    server.wait_status(&retry, "failed").await;
    server.wait_status(&inject, "failed").await;

    let screenshot_paths: Vec<String> = screenshots
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    let run = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "dashboard.test.mjs"])
        .current_dir(&browser_dir)
        .env("CARAML_URL", &server.base)
        .env("CARAML_ADMIN_TOKEN", &server.admin)
        .env("CARAML_VIEWER_TOKEN", &server.viewer)
        .env("CARAML_RUN_LIVE", &live)
        .env("CARAML_RUN_CANCEL", &cancel)
        .env("CARAML_RUN_RETRY", &retry)
        .env("CARAML_RUN_INJECT", &inject)
        .env("CARAML_RUN_WIDE", &wide)
        .env("CARAML_SCREENSHOTS", screenshot_paths.join(":"))
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_TEST_LIMIT, run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the browser test did not finish within {} s",
                BROWSER_TEST_LIMIT.as_secs()
            )
        })
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("{stdout}");
    for path in &screenshots {
        assert!(path.exists(), "the screenshot {} was saved", path.display());
    }
}

#[tokio::test]
async fn run_page_shows_task_logs() {
    let server = DashboardServer::start().await;
    let id = server
        .submit(
            json!({"name": "logged", "tasks": [
                {"name": "nap", "kind": "sleep", "input": {"seconds": 0.05}}
            ]}),
            Value::Null,
        )
        .await;
    server.wait_status(&id, "succeeded").await;

    let page = server
        .page(&format!("/runs/{id}"), Some(&server.admin))
        .await
        .text()
        .await
        .expect("run page");
    assert!(
        page.contains("<h2>Logs</h2>"),
        "the run page has a logs section"
    );
    assert!(
        page.contains("nap#1"),
        "the lines name task and attempt: {page}"
    );

    let logs = server
        .page(
            &format!("/runs/{id}/logs?task=nap&attempt=1"),
            Some(&server.admin),
        )
        .await;
    assert_eq!(logs.status(), StatusCode::OK);
    let text = logs.text().await.expect("logs page");
    assert!(text.contains("nap#1"), "{text}");

    let other = super::token(&server.store, "other", caraml::api::auth::Role::Admin).await;
    let hidden = server.page(&format!("/runs/{id}/logs"), Some(&other)).await;
    assert_eq!(
        hidden.status(),
        StatusCode::NOT_FOUND,
        "another project's run"
    );
    let hidden = server.page(&format!("/runs/{id}"), Some(&other)).await;
    assert_eq!(
        hidden.status(),
        StatusCode::NOT_FOUND,
        "another project's run"
    );
}

#[tokio::test]
async fn markup_in_names_and_logs_stays_text() {
    let server = DashboardServer::start().await;

    let response = server
        .client
        .post(format!("{}/v1/runs", server.base))
        .bearer_auth(&server.admin)
        .json(
            &json!({"spec": {"name": "<script>alert(1)</script>", "tasks": [
                {"name": "a", "kind": "sleep"}
            ]}}),
        )
        .send()
        .await
        .expect("submit sent");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = response.text().await.expect("body");
    assert!(body.contains("is invalid"), "the name is rejected: {body}");

    let id = server
        .submit(
            json!({"name": "markup", "tasks": [
                {"name": "echo_markup", "kind": "test.echo", "input": {"value": INJECTED_HTML}}
            ]}),
            json!({"note": INJECTED_HTML}),
        )
        .await;
    server.wait_status(&id, "succeeded").await;
    for path in [format!("/runs/{id}"), format!("/runs/{id}/logs")] {
        let page = server
            .page(&path, Some(&server.admin))
            .await
            .text()
            .await
            .expect("page");
        assert!(
            !page.contains("<script>window.__injected") && !page.contains("<img src=x"),
            "{path} shows markup from the run as markup"
        );
        assert!(
            page.contains("&lt;script&gt;window.__injected"),
            "{path} shows the markup as text"
        );
    }
}

#[tokio::test]
async fn service_run_page_offers_no_run_buttons() {
    let server = DashboardServer::start().await;
    let response = server
        .client
        .post(format!("{}/v1/services", server.base))
        .bearer_auth(&server.admin)
        .json(&json!({"name": "web", "spec": {"name": "web", "tasks": [
            {"name": "serve", "kind": "http.serve", "input": {"body": "hi"}}
        ]}}))
        .send()
        .await
        .expect("create service sent");
    assert_eq!(response.status(), StatusCode::CREATED);
    let service: Value = response.json().await.expect("service");
    let run = service["run_id"].as_str().expect("run id").to_owned();

    let page = server
        .page(&format!("/runs/{run}"), Some(&server.admin))
        .await
        .text()
        .await
        .expect("run page");
    assert!(page.contains("This run serves service"), "{page}");
    assert!(!page.contains("id=\"cancel-run\""), "no cancel button");
    assert!(!page.contains("id=\"retry-run\""), "no retry button");
}
