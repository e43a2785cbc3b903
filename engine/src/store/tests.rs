//! The claim and completion SQL against a real PostgreSQL, driven statement by statement.
//!
//! Guarantees checked here:
//! - a result from an attempt whose lease lapsed is rejected, never applied;
//! - once the reaper has ended that attempt and a new one has the task, the old attempt's
//!   late result is rejected again, and the new attempt's result is the one stored;
//! - the task ends with exactly one `task.succeeded` event.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Fence, Finished};
use crate::retry::Decision;
use crate::store::Submission;
use crate::testing::TestDatabase;

fn succeed(task: &super::ClaimedTask, output: Value) -> Finished {
    Finished {
        run_id: task.run_id,
        idx: task.idx,
        attempt_id: task.attempt_id,
        decision: Decision::Succeed(output),
    }
}

#[tokio::test]
async fn stale_completion_is_rejected() {
    let db = TestDatabase::create().await;
    let store = db.store;
    store
        .register_kinds(["sleep"].into_iter())
        .await
        .expect("register kinds");
    let spec =
        serde_json::from_value(json!({"name": "stale", "tasks": [{"name": "t", "kind": "sleep"}]}))
            .expect("spec");
    let run = store
        .submit(Submission::Spec(spec), Value::Null, None)
        .await
        .expect("submit");
    let worker_a = uuid::Uuid::new_v4();
    let worker_b = uuid::Uuid::new_v4();

    // A lease of zero lapses at once, as if worker A stalled past its lease.
    let claimed = store
        .claim("default", 10, worker_a, Duration::ZERO, chrono::Utc::now())
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let first = claimed[0].clone();

    let applied = store
        .finish(&[succeed(&first, json!("late"))], Fence::Owner)
        .await
        .expect("finish");
    assert!(
        applied.accepted.is_empty(),
        "a result after the lease lapsed is rejected"
    );

    let expired = store.expired_attempts(10).await.expect("expired");
    assert_eq!(expired.len(), 1, "the reaper sees the lapsed attempt");
    let rescue = Finished {
        run_id: first.run_id,
        idx: first.idx,
        attempt_id: first.attempt_id,
        decision: Decision::Retry {
            delay: Duration::ZERO,
            error: "lease expired".into(),
        },
    };
    let applied = store
        .finish(&[rescue], Fence::Expired)
        .await
        .expect("rescue");
    assert_eq!(
        applied.accepted.len(),
        1,
        "the reaper ends the lapsed attempt"
    );

    let claimed = store
        .claim(
            "default",
            10,
            worker_b,
            Duration::from_secs(30),
            chrono::Utc::now(),
        )
        .await
        .expect("claim again");
    assert_eq!(claimed.len(), 1);
    let second = claimed[0].clone();
    assert_ne!(second.attempt_id, first.attempt_id);
    assert_eq!(second.attempt, 2);

    let applied = store
        .finish(&[succeed(&first, json!("late again"))], Fence::Owner)
        .await
        .expect("finish");
    assert!(
        applied.accepted.is_empty(),
        "the old attempt cannot overwrite the new one"
    );

    let rescue_live = Finished {
        run_id: second.run_id,
        idx: second.idx,
        attempt_id: second.attempt_id,
        decision: Decision::Fail {
            error: "wrongly reaped".into(),
        },
    };
    let applied = store
        .finish(&[rescue_live], Fence::Expired)
        .await
        .expect("reap");
    assert!(
        applied.accepted.is_empty(),
        "the reaper leaves an attempt with a live lease alone"
    );

    let applied = store
        .finish(&[succeed(&second, json!("fresh"))], Fence::Owner)
        .await
        .expect("finish");
    assert_eq!(
        applied.accepted.len(),
        1,
        "the live attempt's result is stored"
    );

    let view = store.get_run(run.id).await.expect("run");
    assert_eq!(view.status, "succeeded");
    let task = &view.tasks.expect("tasks")[0];
    assert_eq!(task.output, Some(json!("fresh")));
    let (successes,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM events WHERE run_id = $1 AND kind = 'task.succeeded'")
            .bind(run.id)
            .fetch_one(store.pool())
            .await
            .expect("count");
    assert_eq!(successes, 1, "exactly one success is recorded");
}
