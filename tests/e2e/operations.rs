//! Operations on many runs through the HTTP API and the command line: per-workflow
//! retention, the dead-letter list, and bulk retry and cancel.
//!
//! Guarantees checked here:
//! - `PUT /v1/workflows/{name}/retention` and `caraml workflow retention` set, show and
//!   clear a workflow's retention, and reject invalid values with a 4xx naming the value;
//! - `GET /v1/dead-letters` and `caraml dead-letters list` list failed tasks, filter them by
//!   workflow and page them with a cursor;
//! - `POST /v1/runs/bulk/cancel|retry` and `caraml run cancel|retry` with a filter act on
//!   the selected runs and return their ids, while the single-run forms keep working;
//! - an empty filter is rejected, and the message shows how to select every run;
//! - `caraml worker` and `caraml server` reject an invalid `--retention` before connecting.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::api::{Server, read, sleep_spec};

/// Runs the `caraml` binary against `base`; returns its exit code, stdout and stderr.
pub(super) async fn caraml(
    server: &Server,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    caraml_at(&server.base, &server.token, args, env).await
}

/// Runs the `caraml` binary against `base` with `token`.
pub(super) async fn caraml_at(
    base: &str,
    token: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let base = base.to_owned();
    let token = token.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_caraml"))
            .args(&args)
            .env("CARAML_SERVER", &base)
            .env("CARAML_TOKEN", &token)
            .envs(env)
            .output()
            .expect("caraml runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .expect("cli thread")
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

async fn put(server: &Server, path: &str, body: Value) -> (StatusCode, Value) {
    let response = server
        .client
        .put(format!("{}{path}", server.base))
        .json(&body)
        .send()
        .await
        .expect("request sent");
    read(response).await
}

/// Waits until no task of the run is running.
async fn wait_stopped(server: &Server, id: &str) {
    for _ in 0..600 {
        let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
        let stopped = run["tasks"]
            .as_array()
            .is_some_and(|tasks| tasks.iter().all(|t| t["status"] != "running"));
        if !run["finished_at"].is_null() && stopped {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {id} did not stop within 30 s");
}

#[tokio::test]
async fn workflow_retention_over_http_and_cli() {
    let server = Server::start().await;
    let path = "/v1/workflows/flights/retention";

    let (status, body) = put(&server, path, json!({"retention": "30d"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["retention"], "30d");
    let (status, body) = server.get(path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["retention"], "30d", "the retention is stored");

    let (_, body) = put(&server, path, json!({"retention": "off"})).await;
    assert_eq!(body["retention"], "off");
    let (_, body) = put(&server, path, json!({"retention": null})).await;
    assert!(
        body["retention"].is_null(),
        "null restores the default: {body}"
    );

    let (status, body) = put(&server, path, json!({"retention": "7x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        message(&body).contains("`7x`"),
        "the value is named: {body}"
    );
    let (status, body) = put(&server, path, json!({"retention": 30})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        message(&body).contains("\"30d\""),
        "the fix is given: {body}"
    );
    let (status, body) = put(&server, path, json!({})).await;
    assert!(
        status.is_client_error(),
        "a missing retention is rejected: {body}"
    );
    let (status, body) = put(
        &server,
        "/v1/workflows/no-such-workflow/retention",
        json!({"retention": "1d"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(message(&body).contains("no-such-workflow"), "{body}");

    let set = caraml(&server, &["workflow", "retention", "flights", "12h"], &[]).await;
    assert_eq!(set.0, Some(0), "{set:?}");
    assert!(set.1.contains("12h"), "{}", set.1);
    let shown = caraml(&server, &["workflow", "retention", "flights"], &[]).await;
    assert_eq!(shown.0, Some(0), "{shown:?}");
    assert!(shown.1.contains("deleted after 12h"), "{}", shown.1);
    let bad = caraml(&server, &["workflow", "retention", "flights", "soon"], &[]).await;
    assert_eq!(bad.0, Some(1), "an invalid retention exits 1: {bad:?}");
    assert!(bad.2.contains("`soon`"), "the value is named: {}", bad.2);
    let (_, body) = server.get(path).await;
    assert_eq!(body["retention"], "12h", "a rejected value changes nothing");
}

#[tokio::test]
async fn dead_letters_over_http_and_cli() {
    let server = Server::start().await;
    let failing = |name: &str| {
        json!({"name": name, "tasks": [
            {"name": "query", "kind": "sql.query", "input": {"sql": "SELECT * FROM nowhere"}, "retry": {"max_attempts": 1}},
            {"name": "after", "kind": "sleep", "depends_on": ["query"]},
        ]})
    };
    let mut ids = Vec::new();
    for name in ["dead-a", "dead-b", "dead-a"] {
        let (status, body) = server
            .post("/v1/runs", json!({"spec": failing(name)}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().expect("id").to_owned();
        assert_eq!(server.wait_finished(&id).await["status"], "failed");
        ids.push(id);
    }

    let (status, body) = server.get("/v1/dead-letters").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let letters = body["dead_letters"].as_array().expect("dead letters");
    let listed: Vec<&str> = letters
        .iter()
        .filter_map(|l| l["run_id"].as_str())
        .collect();
    assert_eq!(listed, [&ids[2], &ids[1], &ids[0]], "newest first");
    let first = &letters[0];
    assert_eq!(first["workflow"], "dead-a");
    assert_eq!(first["task"], "query");
    assert_eq!(first["kind"], "sql.query");
    assert_eq!(first["attempts"], 1);
    assert!(
        first["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{first}"
    );
    assert!(first["finished_at"].is_string(), "{first}");

    let (_, filtered) = server.get("/v1/dead-letters?workflow=dead-a&limit=1").await;
    let page: Vec<&str> = filtered["dead_letters"]
        .as_array()
        .expect("page")
        .iter()
        .filter_map(|l| l["run_id"].as_str())
        .collect();
    assert_eq!(page, [&ids[2]]);
    let cursor = filtered["next_cursor"].as_str().expect("a next page");
    let (_, next) = server
        .get(&format!(
            "/v1/dead-letters?workflow=dead-a&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(next["dead_letters"][0]["run_id"], ids[0].as_str());
    assert!(next["next_cursor"].is_null(), "the last page has no cursor");

    let (status, body) = server.get("/v1/dead-letters?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("since"), "{body}");
    assert!(message(&body).contains("`yesterday`"), "{body}");

    let listed = caraml(
        &server,
        &[
            "dead-letters",
            "list",
            "--workflow",
            "dead-b",
            "--since",
            "1h",
        ],
        &[],
    )
    .await;
    assert_eq!(listed.0, Some(0), "{listed:?}");
    assert!(listed.1.contains(&ids[1]), "{}", listed.1);
    assert!(!listed.1.contains(&ids[0]), "only dead-b: {}", listed.1);
}

#[tokio::test]
async fn bulk_cancel_and_retry_over_http_and_cli() {
    let server = Server::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, body) = server
            .post("/v1/runs", json!({"spec": sleep_spec("bulk-sleep", 30.0)}))
            .await;
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    let (_, other) = server
        .post("/v1/runs", json!({"spec": sleep_spec("bulk-other", 30.0)}))
        .await;
    let other = other["id"].as_str().expect("id").to_owned();

    let (status, body) = server.post("/v1/runs/bulk/cancel", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        message(&body).contains("\"all\": true"),
        "an empty filter says how to select every run: {body}"
    );

    let (status, body) = server
        .post("/v1/runs/bulk/cancel", json!({"workflow": "bulk-sleep"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["affected"], 3);
    let cancelled: Vec<&str> = body["run_ids"]
        .as_array()
        .expect("run ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(cancelled, [&ids[0], &ids[1], &ids[2]]);
    assert_eq!(body["truncated"], false);
    for id in &ids {
        wait_stopped(&server, id).await;
    }
    let (_, run) = server.get(&format!("/v1/runs/{other}")).await;
    assert!(
        run["finished_at"].is_null(),
        "another workflow's run is untouched"
    );

    let (status, body) = server
        .post(
            "/v1/runs/bulk/retry",
            json!({"workflow": "bulk-sleep", "status": "cancelled", "created_since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["affected"], 3, "{body}");
    let (_, run) = server.get(&format!("/v1/runs/{}", ids[0])).await;
    assert!(run["finished_at"].is_null(), "a resumed run is open again");

    let (status, body) = server
        .post("/v1/runs/bulk/retry", json!({"created_since": "last week"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("created_since"), "{body}");

    let cancel = caraml(&server, &["run", "cancel", "--workflow", "bulk-sleep"], &[]).await;
    assert_eq!(cancel.0, Some(0), "{cancel:?}");
    assert!(cancel.1.contains("cancelled 3 run(s)"), "{}", cancel.1);
    for id in &ids {
        assert!(cancel.1.contains(id.as_str()), "{} lists {id}", cancel.1);
        wait_stopped(&server, id).await;
    }
    let retry = caraml(
        &server,
        &[
            "run",
            "retry",
            "--workflow",
            "bulk-sleep",
            "--status",
            "failed",
        ],
        &[],
    )
    .await;
    assert_eq!(retry.0, Some(0), "{retry:?}");
    assert!(
        retry.1.contains("resumed 0 run(s)"),
        "no run failed: {}",
        retry.1
    );

    let empty = caraml(&server, &["run", "cancel"], &[]).await;
    assert_eq!(empty.0, Some(1), "{empty:?}");
    assert!(empty.2.contains("--all"), "{}", empty.2);
    let both = caraml(&server, &["run", "cancel", &other, "--all"], &[]).await;
    assert_eq!(both.0, Some(1), "an id and a filter together: {both:?}");
    let wrong = caraml(
        &server,
        &["run", "retry", "--all", "--status", "running"],
        &[],
    )
    .await;
    assert_eq!(wrong.0, Some(1), "{wrong:?}");
    assert!(wrong.2.contains("`running`"), "{}", wrong.2);

    let single = caraml(&server, &["run", "cancel", &other], &[]).await;
    assert_eq!(single.0, Some(0), "the single-run form works: {single:?}");
    assert!(single.1.contains("cancelled"), "{}", single.1);
}

#[tokio::test]
async fn invalid_retention_flag_is_rejected() {
    // Port 1 refuses connections, so reaching the database would fail differently.
    let unreachable = [("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")];
    let worker = caraml_at(
        "http://127.0.0.1:1",
        "",
        &["worker", "--retention", "7x"],
        &unreachable,
    )
    .await;
    assert_eq!(worker.0, Some(1), "{worker:?}");
    assert!(worker.2.contains("--retention"), "{}", worker.2);
    assert!(worker.2.contains("`7x`"), "{}", worker.2);
    let from_env = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
        ("CARAML_RETENTION", "weekly"),
    ];
    let server = caraml_at("http://127.0.0.1:1", "", &["server"], &from_env).await;
    assert_eq!(server.0, Some(1), "{server:?}");
    assert!(server.2.contains("`weekly`"), "{}", server.2);
    assert!(server.2.contains("CARAML_RETENTION"), "{}", server.2);
}

#[tokio::test]
async fn service_runs_follow_their_service_only() {
    let server = Server::start().await;
    let service = json!({"name": "web", "spec": {"name": "web", "tasks": [
        {"name": "serve", "kind": "http.serve", "input": {"body": "hi"}}
    ]}});
    let (status, created) = server.post("/v1/services", service).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let run = created["run_id"].as_str().expect("run id").to_owned();

    let (status, answer) = server
        .post(&format!("/v1/runs/{run}/cancel"), json!(null))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("caraml service stop web"), "{message}");

    let (status, stopped) = server.post("/v1/services/web/stop", json!(null)).await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    wait_stopped(&server, &run).await;
    let (status, answer) = server
        .post(&format!("/v1/runs/{run}/retry"), json!(null))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, outcome) = server
        .post("/v1/runs/bulk/retry", json!({"workflow": "web"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(
        outcome["run_ids"],
        json!([]),
        "bulk retry leaves service runs alone"
    );
    assert_eq!(
        outcome["skipped"][0]["id"],
        json!(run),
        "and says so: {outcome}"
    );
    let reason = outcome["skipped"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("belongs to service `web`"), "{reason}");
    let (_, after) = server.get(&format!("/v1/runs/{run}?tasks=false")).await;
    assert_eq!(
        after["status"], "cancelled",
        "the stopped service's run stays stopped"
    );
}
