//! Bulk retry and cancel by filter.
//!
//! Guarantees checked here:
//! - a bulk retry resumes exactly the failed runs the filter selects, and they succeed;
//! - a bulk cancel cancels exactly the queued or running runs the filter selects;
//! - a call acts on at most `limit` runs, oldest first, and sets `truncated` when more matched;
//! - an empty filter, a status the action does not apply to, an unknown status, an empty
//!   time range and a limit out of range are rejected before anything changes.

use caraml_engine::{BulkFilter, Error, MAX_BULK, Store};
use serde_json::{Value, json};
use uuid::Uuid;

use super::support::{Harness, TOGGLE_BROKEN, idle_database};
use super::{spec, submit};

async fn status(store: &Store, run_id: Uuid) -> String {
    store.run_summary(run_id).await.expect("run exists").status
}

#[tokio::test]
async fn bulk_retry_resumes_filtered_runs() {
    let harness = Harness::start().await;
    let store = &harness.store;
    let key = Uuid::new_v4().to_string();
    TOGGLE_BROKEN.lock().expect("toggle lock").push(key.clone());
    let breaking = |workflow: &str| {
        spec(json!({"name": workflow, "tasks": [
            {"name": "a", "kind": "test.touch", "input": {"key": key}},
            {"name": "b", "kind": "test.toggle", "input": {"key": key}, "depends_on": ["a"], "retry": {"max_attempts": 1}},
        ]}))
    };
    let mut chosen = Vec::new();
    let mut others = Vec::new();
    for i in 0..5 {
        let workflow = if i % 2 == 0 { "bulk-a" } else { "bulk-b" };
        let run_id = submit(store, breaking(workflow), Value::Null).await;
        assert_eq!(harness.wait(run_id).await.status, "failed");
        if i % 2 == 0 {
            chosen.push(run_id);
        } else {
            others.push(run_id);
        }
    }
    TOGGLE_BROKEN
        .lock()
        .expect("toggle lock")
        .retain(|k| k != &key);

    let outcome = store
        .bulk_retry(&BulkFilter {
            workflow: Some("bulk-a".to_owned()),
            status: Some("failed".to_owned()),
            ..BulkFilter::default()
        })
        .await
        .expect("bulk retry");
    assert_eq!(outcome.affected, 3);
    assert_eq!(outcome.run_ids, chosen, "bulk-a's runs, oldest first");
    assert!(outcome.skipped.is_empty(), "{:?}", outcome.skipped);
    assert!(!outcome.truncated);
    for run_id in &chosen {
        assert_eq!(
            harness.wait(*run_id).await.status,
            "succeeded",
            "a resumed run succeeds now that the task works"
        );
    }
    for run_id in &others {
        assert_eq!(
            status(store, *run_id).await,
            "failed",
            "runs of other workflows are untouched"
        );
    }

    let second = store
        .run_summary(others[1])
        .await
        .expect("run exists")
        .created_at;
    let recent = store
        .bulk_retry(&BulkFilter {
            workflow: Some("bulk-b".to_owned()),
            created_since: Some(second),
            ..BulkFilter::default()
        })
        .await
        .expect("bulk retry by created time");
    assert_eq!(
        recent.run_ids,
        [others[1]],
        "only runs created since the given time"
    );
    assert_eq!(harness.wait(others[1]).await.status, "succeeded");
    assert_eq!(status(store, others[0]).await, "failed");

    let again = store
        .bulk_retry(&BulkFilter {
            workflow: Some("bulk-a".to_owned()),
            ..BulkFilter::default()
        })
        .await
        .expect("bulk retry with nothing to do");
    assert_eq!(again.affected, 0, "succeeded runs are not selected");
}

#[tokio::test]
async fn bulk_cancel_by_filter_with_limit() {
    let db = idle_database().await;
    let store = &db.store;
    let waiting = |workflow: &str| {
        spec(json!({"name": workflow, "tasks": [
            {"name": "a", "kind": "sleep"},
            {"name": "b", "kind": "sleep", "depends_on": ["a"]},
        ]}))
    };
    let mut chosen = Vec::new();
    for _ in 0..5 {
        chosen.push(submit(store, waiting("cancel-a"), Value::Null).await);
    }
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(submit(store, waiting("cancel-b"), Value::Null).await);
    }

    let first = store
        .bulk_cancel(&BulkFilter {
            workflow: Some("cancel-a".to_owned()),
            limit: Some(2),
            ..BulkFilter::default()
        })
        .await
        .expect("bulk cancel");
    assert_eq!(first.run_ids, chosen[..2], "the oldest two runs");
    assert!(first.truncated, "more runs matched than the limit");
    assert!(
        first
            .message
            .as_deref()
            .unwrap_or("")
            .contains("call again"),
        "the answer says how to act on the rest: {:?}",
        first.message
    );

    let rest = store
        .bulk_cancel(&BulkFilter {
            workflow: Some("cancel-a".to_owned()),
            status: Some("queued".to_owned()),
            ..BulkFilter::default()
        })
        .await
        .expect("bulk cancel the rest");
    assert_eq!(rest.run_ids, chosen[2..], "the runs the first call left");
    assert!(!rest.truncated);
    assert!(rest.message.is_none());
    for run_id in &chosen {
        let run = store.get_run(*run_id).await.expect("run exists");
        assert_eq!(run.status, "cancelled");
        assert_eq!(
            run.tasks_cancelled, 2,
            "both tasks of {run_id} are cancelled"
        );
    }
    for run_id in &others {
        assert_eq!(
            status(store, *run_id).await,
            "queued",
            "runs of other workflows are untouched"
        );
    }

    let everything = store
        .bulk_cancel(&BulkFilter {
            all: true,
            ..BulkFilter::default()
        })
        .await
        .expect("bulk cancel all");
    assert_eq!(
        everything.run_ids, others,
        "all selects every cancellable run"
    );
    let (events,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM events WHERE kind = 'run.cancelled' AND run_id = ANY($1)",
    )
    .bind(&others)
    .fetch_one(store.pool())
    .await
    .expect("count events");
    assert_eq!(events, 2, "each cancelled run has its event");
}

#[tokio::test]
async fn bulk_filter_is_checked() {
    let db = idle_database().await;
    let store = &db.store;
    let run_id = submit(
        store,
        spec(json!({"name": "untouched", "tasks": [{"name": "a", "kind": "sleep"}]})),
        Value::Null,
    )
    .await;
    let now = chrono::Utc::now();
    let workflow = || Some("untouched".to_owned());
    let cases: Vec<(&str, bool, BulkFilter, &str)> = vec![
        ("empty retry", true, BulkFilter::default(), "\"all\": true"),
        ("empty cancel", false, BulkFilter::default(), "--all"),
        (
            "retry succeeded",
            true,
            BulkFilter {
                status: Some("succeeded".to_owned()),
                ..BulkFilter::default()
            },
            "`succeeded`",
        ),
        (
            "cancel failed",
            false,
            BulkFilter {
                status: Some("failed".to_owned()),
                ..BulkFilter::default()
            },
            "`failed`",
        ),
        (
            "unknown status",
            false,
            BulkFilter {
                status: Some("sideways".to_owned()),
                ..BulkFilter::default()
            },
            "`sideways`",
        ),
        (
            "empty range",
            false,
            BulkFilter {
                workflow: workflow(),
                created_since: Some(now),
                created_until: Some(now),
                ..BulkFilter::default()
            },
            "created since",
        ),
        (
            "cancel by finish time",
            false,
            BulkFilter {
                workflow: workflow(),
                finished_since: Some(now),
                ..BulkFilter::default()
            },
            "created time",
        ),
        (
            "limit zero",
            false,
            BulkFilter {
                workflow: workflow(),
                limit: Some(0),
                ..BulkFilter::default()
            },
            "limit is 0",
        ),
        (
            "limit too large",
            true,
            BulkFilter {
                workflow: workflow(),
                limit: Some(MAX_BULK + 1),
                ..BulkFilter::default()
            },
            "limit is 10001",
        ),
    ];
    for (label, retry, filter, expected) in cases {
        let result = if retry {
            store.bulk_retry(&filter).await
        } else {
            store.bulk_cancel(&filter).await
        };
        match result {
            Err(Error::InvalidInput(message)) => assert!(
                message.contains(expected),
                "{label}: the message contains {expected:?}: {message}"
            ),
            other => panic!("{label}: rejected as invalid input, got {other:?}"),
        }
    }
    assert_eq!(
        status(store, run_id).await,
        "queued",
        "no rejected filter changed anything"
    );
}
