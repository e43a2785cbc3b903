//! Dead letters: tasks that failed for good.
//!
//! Guarantees checked here:
//! - every failed task is listed once, newest first, with its run, workflow, kind,
//!   attempts and last error, and tasks that succeeded or were skipped are not;
//! - the list filters by workflow and by failure time (`since` inclusive, `until`
//!   exclusive);
//! - pages of any size, followed by their cursors, list each dead letter exactly once;
//! - a malformed cursor or an empty time range is rejected, naming the value.

use caraml_engine::{DeadLetter, DeadLetterFilter, Error};
use serde_json::{Value, json};

use super::support::Harness;
use super::{spec, submit};

fn filter() -> DeadLetterFilter {
    DeadLetterFilter {
        limit: 100,
        ..DeadLetterFilter::default()
    }
}

fn failing(workflow: &str) -> caraml_engine::WorkflowSpec {
    spec(json!({"name": workflow, "tasks": [
        {"name": "ok", "kind": "test.echo"},
        {"name": "broken", "kind": "test.fail", "retry": {"max_attempts": 3}},
        {"name": "after", "kind": "test.echo", "depends_on": ["broken"]},
    ]}))
}

#[tokio::test]
async fn dead_letters_list_filter_and_page() {
    let harness = Harness::start().await;
    let store = &harness.store;
    let mut runs = Vec::new();
    for workflow in ["dl-a", "dl-b", "dl-a"] {
        let run_id = submit(store, failing(workflow), Value::Null).await;
        assert_eq!(harness.wait(run_id).await.status, "failed");
        runs.push(run_id);
    }
    let exhausted = submit(
        store,
        spec(json!({"name": "dl-b", "tasks": [{
            "name": "flaky", "kind": "test.flaky", "input": {"succeed_on": 9},
            "retry": {"max_attempts": 2, "initial_backoff_seconds": 0}
        }]})),
        Value::Null,
    )
    .await;
    assert_eq!(harness.wait(exhausted).await.status, "failed");
    runs.push(exhausted);

    let all = store.list_dead_letters(&filter()).await.expect("list");
    let listed: Vec<uuid::Uuid> = all.dead_letters.iter().map(|d| d.run_id).collect();
    let newest_first: Vec<uuid::Uuid> = runs.iter().rev().copied().collect();
    assert_eq!(
        listed, newest_first,
        "one dead letter per failed task, newest first"
    );
    assert!(all.next_cursor.is_none(), "everything fits one page");

    let permanent = &all.dead_letters[3];
    assert_eq!(permanent.workflow, "dl-a");
    assert_eq!(permanent.task, "broken");
    assert_eq!(permanent.kind, "test.fail");
    assert_eq!(
        permanent.attempts, 1,
        "a permanent error ends the task at once"
    );
    assert_eq!(permanent.max_attempts, 3);
    assert!(
        permanent
            .error
            .as_deref()
            .unwrap_or("")
            .contains("always fails"),
        "the last error is listed: {:?}",
        permanent.error
    );
    let used_up = &all.dead_letters[0];
    assert_eq!(used_up.task, "flaky");
    assert_eq!(used_up.attempts, 2, "the task used both attempts");
    assert!(
        used_up.error.as_deref().unwrap_or("").contains("attempt 2"),
        "the error of the last attempt is listed: {:?}",
        used_up.error
    );

    let only_a = store
        .list_dead_letters(&DeadLetterFilter {
            workflow: Some("dl-a".to_owned()),
            ..filter()
        })
        .await
        .expect("list dl-a");
    let a_runs: Vec<uuid::Uuid> = only_a.dead_letters.iter().map(|d| d.run_id).collect();
    assert_eq!(a_runs, [runs[2], runs[0]], "only dl-a's dead letters");

    let times: Vec<_> = all.dead_letters.iter().map(|d| d.finished_at).collect();
    let since_second = store
        .list_dead_letters(&DeadLetterFilter {
            since: Some(times[2]),
            ..filter()
        })
        .await
        .expect("list since");
    assert_eq!(
        since_second.dead_letters.len(),
        3,
        "since includes the dead letter that failed at that time"
    );
    let until_second = store
        .list_dead_letters(&DeadLetterFilter {
            until: Some(times[2]),
            ..filter()
        })
        .await
        .expect("list until");
    let until_runs: Vec<uuid::Uuid> = until_second.dead_letters.iter().map(|d| d.run_id).collect();
    assert_eq!(
        until_runs,
        [runs[0]],
        "until excludes the dead letter that failed at that time"
    );

    let mut paged: Vec<DeadLetter> = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_dead_letters(&DeadLetterFilter {
                limit: 1,
                cursor: cursor.clone(),
                ..filter()
            })
            .await
            .expect("page");
        assert!(
            page.dead_letters.len() <= 1,
            "a page holds at most the limit"
        );
        paged.extend(page.dead_letters);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let paged_runs: Vec<uuid::Uuid> = paged.iter().map(|d| d.run_id).collect();
    assert_eq!(
        paged_runs, newest_first,
        "pages list each dead letter once, in order"
    );
}

#[tokio::test]
async fn dead_letter_filter_is_checked() {
    let harness = Harness::start().await;
    let store = &harness.store;
    let bad_cursor = store
        .list_dead_letters(&DeadLetterFilter {
            cursor: Some("not-a-cursor".to_owned()),
            ..filter()
        })
        .await;
    match bad_cursor {
        Err(Error::InvalidInput(message)) => assert!(
            message.contains("not-a-cursor"),
            "the message names the cursor: {message}"
        ),
        other => panic!("a malformed cursor is rejected, got {other:?}"),
    }
    let now = chrono::Utc::now();
    let empty_range = store
        .list_dead_letters(&DeadLetterFilter {
            since: Some(now),
            until: Some(now),
            ..filter()
        })
        .await;
    assert!(
        matches!(empty_range, Err(Error::InvalidInput(_))),
        "since must come before until: {empty_range:?}"
    );
}
