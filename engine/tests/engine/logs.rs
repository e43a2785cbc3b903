//! Task logs: what a task writes through its logger is stored with its attempt.
//!
//! Guarantees checked here:
//! - every attempt's lines are stored, each with its attempt, in the order they were
//!   written, by the time the run shows as finished;
//! - the task and attempt filters select their lines, and pages joined by `after` give
//!   every line once, in order;
//! - an attempt stores at most its limit of message bytes, then one note that counts the
//!   dropped lines;
//! - an unknown run or task is an error that names it, and an unknown task's error lists
//!   the run's tasks;
//! - the retention sweep deletes a run's lines with the run.

use caraml_engine::{Error, LogFilter, LogLine, MAX_LOG_PAGE, RetentionOptions, WorkerOptions};
use serde_json::{Value, json};
use uuid::Uuid;

use super::support::Harness;
use super::{spec, submit};

fn all_lines() -> LogFilter {
    LogFilter {
        limit: MAX_LOG_PAGE,
        ..LogFilter::default()
    }
}

async fn read(harness: &Harness, run_id: Uuid, filter: LogFilter) -> Vec<LogLine> {
    let page = harness
        .store
        .run_logs(run_id, &filter)
        .await
        .expect("the run's lines are readable");
    assert!(page.next_after.is_none(), "one page holds every line");
    page.lines
}

/// Submits a run whose `flaky` task logs three lines and fails on attempt 1, then logs
/// three lines and succeeds on attempt 2, beside a `steady` task that logs two lines.
async fn retried_run(harness: &Harness) -> Uuid {
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "chatty", "tasks": [
            {"name": "flaky", "kind": "test.chatty", "input": {"lines": 3, "succeed_on": 2},
             "retry": {"max_attempts": 2, "initial_backoff_seconds": 0}},
            {"name": "steady", "kind": "test.chatty", "input": {"lines": 2}},
        ]})),
        Value::Null,
    )
    .await;
    let run = harness.wait(run_id).await;
    assert_eq!(run.status, "succeeded");
    run_id
}

#[tokio::test]
async fn lines_kept_per_attempt() {
    let harness = Harness::start().await;
    let run_id = retried_run(&harness).await;

    let flaky = read(
        &harness,
        run_id,
        LogFilter {
            task: Some("flaky".to_owned()),
            ..all_lines()
        },
    )
    .await;
    let written: Vec<(i32, &str, &str)> = flaky
        .iter()
        .map(|line| (line.attempt, line.level.as_str(), line.message.as_str()))
        .collect();
    assert_eq!(
        written,
        [
            (1, "info", "attempt 1 line 0"),
            (1, "info", "attempt 1 line 1"),
            (1, "info", "attempt 1 line 2"),
            (1, "error", "attempt 1 fails"),
            (2, "info", "attempt 2 line 0"),
            (2, "info", "attempt 2 line 1"),
            (2, "info", "attempt 2 line 2"),
        ],
        "both attempts' lines are stored with their attempt, in the order written"
    );
    assert!(
        flaky.iter().all(|line| line.task == "flaky"),
        "the task filter keeps only that task's lines"
    );
    assert!(
        flaky.windows(2).all(|pair| pair[0].at <= pair[1].at),
        "times follow the order of the lines"
    );

    let second = read(
        &harness,
        run_id,
        LogFilter {
            task: Some("flaky".to_owned()),
            attempt: Some(2),
            ..all_lines()
        },
    )
    .await;
    assert_eq!(
        second.len(),
        3,
        "the attempt filter keeps attempt 2's lines"
    );
    assert!(second.iter().all(|line| line.attempt == 2));

    let run = read(&harness, run_id, all_lines()).await;
    assert_eq!(run.len(), 9, "the run holds both tasks' lines");
    assert_eq!(
        run.iter().filter(|line| line.task == "steady").count(),
        2,
        "the other task's lines are there too"
    );
    assert!(
        run.windows(2).all(|pair| pair[0].id < pair[1].id),
        "a run's lines come in id order"
    );

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = harness
            .store
            .run_logs(
                run_id,
                &LogFilter {
                    after,
                    limit: 2,
                    ..LogFilter::default()
                },
            )
            .await
            .expect("a page of lines");
        assert!(page.lines.len() <= 2, "a page holds at most its limit");
        paged.extend(page.lines.iter().map(|line| line.id));
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    let ids: Vec<i64> = run.iter().map(|line| line.id).collect();
    assert_eq!(paged, ids, "pages joined by `after` give every line once");
}

#[tokio::test]
async fn log_limit_keeps_note() {
    let harness = Harness::start_with(WorkerOptions {
        log_limit_bytes: 10_000,
        ..Harness::options()
    })
    .await;
    let run_id = submit(
        &harness.store,
        spec(json!({"name": "verbose", "tasks": [
            {"name": "talk", "kind": "test.chatty", "input": {"lines": 100, "bytes": 1_000}},
        ]})),
        Value::Null,
    )
    .await;
    assert_eq!(harness.wait(run_id).await.status, "succeeded");

    let lines = read(&harness, run_id, all_lines()).await;
    let (note, kept) = lines.split_last().expect("some lines are stored");
    let kept_bytes: usize = kept.iter().map(|line| line.message.len()).sum();
    assert_eq!(kept.len(), 10, "ten lines of 1,000 bytes fit 10,000 bytes");
    assert!(
        kept_bytes <= 10_000,
        "the stored messages stay within the limit: {kept_bytes} bytes"
    );
    assert_eq!(note.level, "warn");
    assert!(
        note.message.contains("cut at 10000 bytes"),
        "the note gives the limit: {}",
        note.message
    );
    assert!(
        note.message.contains("90 later lines"),
        "the note counts the dropped lines: {}",
        note.message
    );
}

#[tokio::test]
async fn unknown_run_and_task_named() {
    let harness = Harness::start().await;
    let run_id = retried_run(&harness).await;

    let missing = Uuid::now_v7();
    let err = harness
        .store
        .run_logs(missing, &all_lines())
        .await
        .expect_err("an unknown run is an error");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.to_string()),
        "the error names the run: {err}"
    );

    let err = harness
        .store
        .run_logs(
            run_id,
            &LogFilter {
                task: Some("nope".to_owned()),
                ..all_lines()
            },
        )
        .await
        .expect_err("an unknown task is an error");
    assert!(matches!(err, Error::TaskNotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("`nope`"), "names the task: {message}");
    assert!(
        message.contains("`flaky`") && message.contains("`steady`"),
        "lists the run's tasks: {message}"
    );

    let err = harness
        .store
        .run_logs(
            run_id,
            &LogFilter {
                attempt: Some(0),
                ..all_lines()
            },
        )
        .await
        .expect_err("attempt 0 is rejected");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn sweep_deletes_lines() {
    let harness = Harness::start().await;
    let run_id = retried_run(&harness).await;
    let finished = harness
        .store
        .run_summary(run_id)
        .await
        .expect("the run")
        .finished_at
        .expect("the run finished");

    let swept = harness
        .store
        .sweep_expired_runs(
            &RetentionOptions {
                pause: std::time::Duration::ZERO,
                ..RetentionOptions::default()
            },
            finished + chrono::Duration::days(8),
        )
        .await
        .expect("a sweep after 8 days");
    assert_eq!(swept.runs, 1);
    assert_eq!(swept.logs, 9, "the run's lines are counted: {swept:?}");
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM task_logs WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(harness.store.pool())
        .await
        .expect("count lines");
    assert_eq!(left, 0, "the run's lines are deleted with it");
}
