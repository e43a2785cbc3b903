//! Small reads for views that refresh often: a run's progress, its tasks' states, status
//! counts over many runs, and one task's output.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::Store;
use super::query::{EventView, RunFilter};
use crate::error::{Error, Result};

/// A run's status and counts, with the id of its newest event. Every state change of a
/// run or task appends an event, so an unchanged event id means nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RunProgress {
    pub status: String,
    pub tasks_total: i32,
    pub tasks_succeeded: i32,
    pub tasks_failed: i32,
    pub tasks_skipped: i32,
    pub tasks_cancelled: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_event_id: i64,
}

/// A task's state without its input and output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TaskProgress {
    /// Position of the task in the run's spec.
    pub idx: i32,
    pub status: String,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The error's first [`MAX_ERROR_CHARS`] characters.
    pub error: Option<String>,
}

/// The start of a task's output as JSON text.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OutputPreview {
    pub idx: i32,
    pub text: String,
    /// True when `text` is shorter than the whole output.
    pub truncated: bool,
}

/// Maximum characters of an error that [`TaskProgress`] carries.
pub const MAX_ERROR_CHARS: i32 = 500;

impl Store {
    /// Returns a run's status, counts and newest event id.
    pub async fn run_progress(&self, run_id: Uuid) -> Result<RunProgress> {
        sqlx::query_as(
            "SELECT status, tasks_total, tasks_succeeded, tasks_failed, tasks_skipped,
                    tasks_cancelled, started_at, finished_at,
                    coalesce((SELECT max(e.id) FROM events e WHERE e.run_id = r.id), 0) AS last_event_id
             FROM runs r WHERE id = $1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::run_not_found(run_id))
    }

    /// Returns the state of every task of a run, in spec order.
    pub async fn task_progress(&self, run_id: Uuid) -> Result<Vec<TaskProgress>> {
        Ok(sqlx::query_as(
            "SELECT idx, status, attempt AS attempts, started_at, finished_at,
                    left(error, $2) AS error
             FROM task_runs WHERE run_id = $1 ORDER BY idx",
        )
        .bind(run_id)
        .bind(MAX_ERROR_CHARS)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Returns the first `max_chars` characters of the outputs of the tasks at `indexes`
    /// that have an output.
    pub async fn output_previews(
        &self,
        run_id: Uuid,
        indexes: &[i32],
        max_chars: i32,
    ) -> Result<Vec<OutputPreview>> {
        Ok(sqlx::query_as(
            "SELECT idx, left(output::text, $3) AS text, length(output::text) > $3 AS truncated
             FROM task_runs
             WHERE run_id = $1 AND idx = ANY($2) AND output IS NOT NULL
             ORDER BY idx",
        )
        .bind(run_id)
        .bind(indexes)
        .bind(max_chars)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Returns the output of the task `task` of a run: `None` when it has none yet.
    pub async fn task_output(&self, run_id: Uuid, task: &str) -> Result<Option<Value>> {
        let row: Option<(Option<Value>,)> =
            sqlx::query_as("SELECT output FROM task_runs WHERE run_id = $1 AND name = $2")
                .bind(run_id)
                .bind(task)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some((output,)) => Ok(output),
            None => {
                // Tell a missing run from a missing task.
                self.run_summary(run_id).await?;
                Err(Error::NotFound {
                    what: "task",
                    id: format!("{task}` of run `{run_id}"),
                })
            }
        }
    }

    /// Returns the newest `limit` events of a run, newest first.
    pub async fn recent_events(&self, run_id: Uuid, limit: u32) -> Result<Vec<EventView>> {
        Ok(sqlx::query_as(
            "SELECT e.id, e.kind, t.name AS task, e.attempt, e.at, e.detail
             FROM events e
             LEFT JOIN task_runs t ON t.run_id = e.run_id AND t.idx = e.task_idx
             WHERE e.run_id = $1
             ORDER BY e.id DESC
             LIMIT $2",
        )
        .bind(run_id)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Counts runs by status, as [`Store::count_runs`] does, as (status, count) pairs in
    /// the order of [`RUN_STATUSES`].
    pub async fn count_runs_by_status(&self, filter: &RunFilter) -> Result<Vec<(String, i64)>> {
        let counts = self.count_runs(filter).await?;
        Ok(vec![
            ("queued".to_owned(), counts.queued),
            ("running".to_owned(), counts.running),
            ("succeeded".to_owned(), counts.succeeded),
            ("failed".to_owned(), counts.failed),
            ("cancelled".to_owned(), counts.cancelled),
        ])
    }
}

#[cfg(test)]
mod tests {
    //! Guarantees checked here:
    //! - a run's progress changes whenever one of its tasks changes state, because every
    //!   change appends an event;
    //! - output previews are cut at the requested length and marked as cut;
    //! - a range of creation times selects runs through their UUIDv7 ids.

    use std::time::Duration;

    use chrono::Utc;
    use serde_json::{Value, json};
    use uuid::{NoContext, Timestamp, Uuid};

    use super::super::query::first_id_at;
    use crate::error::Error;
    use crate::retry::Decision;
    use crate::store::{Fence, Finished, RunFilter, Store, Submission};
    use crate::testing::TestDatabase;

    async fn submit_pair(store: &Store) -> Uuid {
        store
            .register_kinds(["sleep"].into_iter())
            .await
            .expect("register kinds");
        let spec = serde_json::from_value(json!({"name": "pair", "tasks": [
            {"name": "first", "kind": "sleep"},
            {"name": "second", "kind": "sleep", "depends_on": ["first"]},
        ]}))
        .expect("spec");
        store
            .submit(Submission::Spec(spec), Value::Null, None)
            .await
            .expect("submit")
            .id
    }

    #[tokio::test]
    async fn progress_follows_task_changes() {
        let db = TestDatabase::create().await;
        let store = db.store;
        let run = submit_pair(&store).await;

        let before = store.run_progress(run).await.expect("progress");
        assert_eq!(before.tasks_total, 2);
        assert!(before.last_event_id > 0, "submission records events");
        let tasks = store.task_progress(run).await.expect("tasks");
        let statuses: Vec<&str> = tasks.iter().map(|task| task.status.as_str()).collect();
        assert_eq!(statuses, ["ready", "blocked"], "tasks in spec order");

        let claimed = store
            .claim(
                "default",
                1,
                Uuid::new_v4(),
                Duration::from_secs(60),
                Utc::now(),
            )
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        let after_claim = store.run_progress(run).await.expect("progress");
        assert_ne!(after_claim, before, "a claimed task changes the progress");
        let first = &store.task_progress(run).await.expect("tasks")[0];
        assert_eq!(first.status, "running");
        assert_eq!(first.attempts, 1);
        assert!(first.started_at.is_some());

        let output = json!({"text": "x".repeat(300)});
        store
            .finish(
                &[Finished {
                    run_id: run,
                    idx: claimed[0].idx,
                    attempt_id: claimed[0].attempt_id,
                    decision: Decision::Succeed(output.clone()),
                }],
                Fence::Owner,
            )
            .await
            .expect("finish");
        let after_finish = store.run_progress(run).await.expect("progress");
        assert_eq!(after_finish.tasks_succeeded, 1);
        assert!(after_finish.last_event_id > after_claim.last_event_id);

        let previews = store
            .output_previews(run, &[0, 1], 100)
            .await
            .expect("previews");
        assert_eq!(
            previews.len(),
            1,
            "only the task with an output has a preview"
        );
        assert_eq!(previews[0].text.chars().count(), 100);
        assert!(previews[0].truncated, "a cut preview says so");
        let whole = store.task_output(run, "first").await.expect("output");
        assert_eq!(whole, Some(output));
        assert_eq!(
            store.task_output(run, "second").await.expect("output"),
            None
        );
        assert!(
            matches!(
                store.task_output(run, "third").await,
                Err(Error::NotFound { what: "task", .. })
            ),
            "an unknown task is not found"
        );

        let events = store.recent_events(run, 2).await.expect("events");
        assert_eq!(events.len(), 2);
        assert!(events[0].id > events[1].id, "newest first");
    }

    #[tokio::test]
    async fn creation_range_selects_runs() {
        let db = TestDatabase::create().await;
        let store = db.store;
        let run = submit_pair(&store).await;
        let hour = chrono::Duration::hours(1);
        let now = Utc::now();
        let list = |since: Option<chrono::DateTime<Utc>>, until| {
            let store = store.clone();
            async move {
                let filter = RunFilter {
                    from: since,
                    to: until,
                    limit: 10,
                    ..RunFilter::default()
                };
                let page = store.list_runs(&filter).await.expect("list");
                let counts = store.count_runs_by_status(&filter).await.expect("counts");
                (
                    page.runs.iter().map(|run| run.id).collect::<Vec<_>>(),
                    counts.iter().map(|(_, count)| count).sum::<i64>(),
                )
            }
        };

        assert_eq!(
            list(Some(now - hour), Some(now + hour)).await,
            (vec![run], 1)
        );
        assert_eq!(
            list(Some(now + hour), None).await,
            (vec![], 0),
            "created before since"
        );
        assert_eq!(
            list(None, Some(now - hour)).await,
            (vec![], 0),
            "created after until"
        );
    }

    #[test]
    fn first_id_bounds_the_millisecond() {
        let time = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:00:00.123Z")
            .expect("time")
            .with_timezone(&Utc);
        let millis = u64::try_from(time.timestamp_millis()).expect("after 1970");
        let id = Uuid::new_v7(Timestamp::from_unix(
            NoContext,
            millis / 1000,
            u32::try_from(millis % 1000).expect("millis") * 1_000_000,
        ));
        assert!(
            first_id_at(time) <= id,
            "an id of that millisecond is not before the bound"
        );
        assert!(
            id < first_id_at(time + chrono::Duration::milliseconds(1)),
            "an id of that millisecond is before the next one's bound"
        );
    }
}
