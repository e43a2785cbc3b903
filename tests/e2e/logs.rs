//! Task logs through the HTTP API and the command line, with a worker in this process. The
//! built-in `sleep` task logs a line when it starts and one when it is done.
//!
//! Guarantees checked here:
//! - `GET /v1/runs/{id}/logs` returns a run's lines in order, filters them by task and
//!   attempt, and pages them with `after` and `next_after`;
//! - an unknown run or task gets a 404 that names it, the unknown task's listing the run's
//!   tasks, and an invalid parameter gets a 400 that names the parameter and its value;
//! - `caraml run logs` prints `TIME LEVEL task#attempt message` lines, and `--follow`
//!   prints the lines of a running run as they come until the run finishes;
//! - `--follow` gives up after repeated failed polls, saying how to go on.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::api::Server;
use super::operations::{caraml, caraml_at};

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

fn lines(page: &Value) -> &Vec<Value> {
    page["lines"].as_array().expect("the page has lines")
}

/// Submits a run of `first`, a sleep of `seconds`, followed by `second`, a sleep of 0 s.
async fn submit_sleeps(server: &Server, name: &str, seconds: f64) -> String {
    let (status, body) = server
        .post(
            "/v1/runs",
            json!({"spec": {"name": name, "tasks": [
                {"name": "first", "kind": "sleep", "input": {"seconds": seconds}},
                {"name": "second", "kind": "sleep", "depends_on": ["first"]},
            ]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().expect("a run id").to_owned()
}

#[tokio::test]
async fn logs_page_filter_and_reject() {
    let server = Server::start().await;
    let id = submit_sleeps(&server, "logged", 0.0).await;
    server.wait_finished(&id).await;

    let (status, page) = server.get(&format!("/v1/runs/{id}/logs")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let written: Vec<(&str, i64, &str, &str)> = lines(&page)
        .iter()
        .map(|line| {
            (
                line["task"].as_str().unwrap_or_default(),
                line["attempt"].as_i64().unwrap_or_default(),
                line["level"].as_str().unwrap_or_default(),
                line["message"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        written,
        [
            ("first", 1, "info", "sleeping for 0 s"),
            ("first", 1, "info", "slept 0 s"),
            ("second", 1, "info", "sleeping for 0 s"),
            ("second", 1, "info", "slept 0 s"),
        ],
        "the run's lines in order: {page}"
    );
    assert!(
        lines(&page)
            .iter()
            .all(|line| line["id"].is_i64() && line["at"].is_string()),
        "every line has its id and time: {page}"
    );
    assert!(page["next_after"].is_null(), "one page holds every line");

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = server
            .get(&format!("/v1/runs/{id}/logs?limit=1&after={after}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(lines(&page).len() <= 1, "a page holds at most its limit");
        paged.extend(lines(&page).iter().map(|line| line["id"].clone()));
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    let ids: Vec<Value> = lines(&page).iter().map(|line| line["id"].clone()).collect();
    assert_eq!(paged, ids, "pages joined by `after` give every line once");

    let (_, second) = server.get(&format!("/v1/runs/{id}/logs?task=second")).await;
    assert_eq!(lines(&second).len(), 2, "{second}");
    assert!(
        lines(&second).iter().all(|line| line["task"] == "second"),
        "the task filter keeps that task's lines: {second}"
    );
    let (_, retried) = server
        .get(&format!("/v1/runs/{id}/logs?task=first&attempt=2"))
        .await;
    assert!(
        lines(&retried).is_empty(),
        "no line has attempt 2: {retried}"
    );

    let missing = uuid::Uuid::now_v7();
    let (status, body) = server.get(&format!("/v1/runs/{missing}/logs")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        message(&body).contains(&missing.to_string()),
        "the 404 names the run: {body}"
    );

    let (status, body) = server.get(&format!("/v1/runs/{id}/logs?task=third")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let text = message(&body);
    assert!(text.contains("`third`"), "the 404 names the task: {text}");
    assert!(
        text.contains("`first`") && text.contains("`second`"),
        "and lists the run's tasks: {text}"
    );

    let invalid = [
        ("after=-1", vec!["after", "\"-1\"", "log line id"]),
        ("after=last", vec!["after", "\"last\"", "next_after"]),
        ("limit=0", vec!["limit", "\"0\"", "1 to 10000"]),
        ("limit=10001", vec!["limit", "\"10001\"", "1 to 10000"]),
        ("attempt=0", vec!["attempt", "\"0\"", "whole number"]),
        ("attempt=one", vec!["attempt", "\"one\""]),
        ("task=", vec!["task is empty", "task name"]),
        ("colour=red", vec!["`colour`", "`task`", "`after`"]),
    ];
    for (query, expected) in invalid {
        let (status, body) = server.get(&format!("/v1/runs/{id}/logs?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        for part in expected {
            assert!(
                message(&body).contains(part),
                "the 400 for {query} contains {part:?}: {body}"
            );
        }
    }
    let (status, body) = server.get("/v1/runs/not-a-run/logs").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("\"not-a-run\""), "{body}");
}

#[tokio::test]
async fn cli_logs_follow_running_run() {
    let server = Server::start().await;
    let id = submit_sleeps(&server, "followed", 2.0).await;
    let (_, run) = server.get(&format!("/v1/runs/{id}?tasks=false")).await;
    assert!(
        run["finished_at"].is_null(),
        "the run is still running when following starts: {run}"
    );

    let (code, stdout, stderr) = caraml(&server, &["run", "logs", &id, "--follow"], &[]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let (_, run) = server.get(&format!("/v1/runs/{id}?tasks=false")).await;
    assert!(
        !run["finished_at"].is_null(),
        "following ends once the run has finished: {run}"
    );
    let printed: Vec<&str> = stdout
        .lines()
        .map(|line| line.split_once(' ').map_or("", |(_, rest)| rest))
        .collect();
    assert_eq!(
        printed,
        [
            "INFO  first#1 sleeping for 2 s",
            "INFO  first#1 slept 2 s",
            "INFO  second#1 sleeping for 0 s",
            "INFO  second#1 slept 0 s",
        ],
        "every line once, including those written while following: {stdout}"
    );
    let time = stdout.split(' ').next().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        "each line starts with an RFC 3339 time: {stdout}"
    );
    assert!(
        stderr.contains(&format!("run {id} succeeded")),
        "the end of the run goes to stderr: {stderr}"
    );

    let (code, stdout, stderr) = caraml(
        &server,
        &["run", "logs", &id, "--task", "second", "--attempt", "1"],
        &[],
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout.lines().all(|line| line.contains(" second#1 ")),
        "only the task's lines: {stdout}"
    );

    let (code, _, stderr) = caraml(&server, &["run", "logs", &id, "--task", "third"], &[]).await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("404") && stderr.contains("`third`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn cli_follow_gives_up_when_unreachable() {
    // Nothing listens on port 1, so every poll fails at once.
    let run_id = uuid::Uuid::now_v7().to_string();
    let started = std::time::Instant::now();
    let (code, _, stderr) = caraml_at(
        "http://127.0.0.1:1",
        "",
        &["run", "logs", &run_id, "--follow", "--after", "41"],
        &[],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("after 5 failed polls in a row"),
        "says why it stopped: {stderr}"
    );
    assert!(
        stderr.contains(&format!("caraml run logs {run_id} --follow --after 41")),
        "says how to go on from the last line printed: {stderr}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "failed polls are retried, 500 ms apart, before giving up"
    );
}
