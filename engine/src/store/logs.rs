//! Task logs: the lines that task attempts write through their logger, stored in batches by
//! the worker and read back a page at a time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Store;
use crate::error::{Error, Result};

/// Largest page of log lines one read returns.
pub const MAX_LOG_PAGE: u32 = 10_000;

/// Task names that a "task not found" error lists.
const TASKS_NAMED: usize = 10;

/// First key of the advisory locks that serialize log inserts per run. The two-key form
/// has a key space of its own, apart from the single-key locks of migrations and retention.
const LOG_LOCK_SPACE: i32 = 0x6c6f_6773;

/// Inserts a batch of lines for any number of runs.
///
/// The statement first takes a transaction advisory lock per run, in key order, so that
/// inserts for one run from several workers commit one after another. Identity values are
/// drawn after the locks, so a run's lines become visible in id order and a reader paging
/// with `id > after` never skips a line that commits later with a smaller id.
///
/// Parameters: $1 the lock key space, $2 the lock keys in ascending order, then one array
/// per column: $3 run ids, $4 task indexes, $5 attempts, $6 levels, $7 times, $8 messages.
pub(super) const INSERT_LINES: &str = "
WITH locks AS (
    SELECT count(pg_advisory_xact_lock($1, key)) AS taken
    FROM unnest($2::int4[]) AS key
)
INSERT INTO task_logs (run_id, task_idx, attempt, level, at, message)
SELECT line.run_id, line.task_idx, line.attempt, line.level, line.at, line.message
FROM unnest($3::uuid[], $4::int4[], $5::int4[], $6::text[], $7::timestamptz[], $8::text[])
     AS line (run_id, task_idx, attempt, level, at, message)
WHERE (SELECT taken FROM locks) >= 0";

/// A run's lines after a cursor, in order. Reads `task_logs` through its primary key.
///
/// Parameters: $1 run id, $2 the cursor, $3 attempt or NULL for every attempt, $4 limit.
pub(super) const RUN_LINES: &str = "
SELECT l.id, t.name AS task, l.attempt, l.level, l.at, l.message
FROM task_logs l
JOIN task_runs t ON t.run_id = l.run_id AND t.idx = l.task_idx
WHERE l.run_id = $1 AND l.id > $2 AND ($3::int4 IS NULL OR l.attempt = $3)
ORDER BY l.id
LIMIT $4";

/// One task's lines after a cursor, in order. Reads `task_logs` through `task_logs_task`.
///
/// Parameters: $1 run id, $2 task index, $3 the cursor, $4 attempt or NULL, $5 limit.
pub(super) const TASK_LINES: &str = "
SELECT l.id, t.name AS task, l.attempt, l.level, l.at, l.message
FROM task_logs l
JOIN task_runs t ON t.run_id = l.run_id AND t.idx = l.task_idx
WHERE l.run_id = $1 AND l.task_idx = $2 AND l.id > $3
  AND ($4::int4 IS NULL OR l.attempt = $4)
ORDER BY l.id
LIMIT $5";

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLevel {
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// A line that a worker has buffered and not yet stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewLogLine {
    pub(crate) run_id: Uuid,
    pub(crate) task_idx: i32,
    pub(crate) attempt: i32,
    pub(crate) level: LogLevel,
    pub(crate) at: DateTime<Utc>,
    pub(crate) message: String,
}

/// A stored log line.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct LogLine {
    /// Position of the line among its run's lines; pass it as `after` to read the lines
    /// that follow it.
    pub id: i64,
    pub task: String,
    /// Attempt number of the task, counting from 1.
    pub attempt: i32,
    /// `info`, `warn` or `error`.
    pub level: String,
    /// When the task wrote the line, by the worker's clock.
    pub at: DateTime<Utc>,
    pub message: String,
}

/// Filter and cursor for reading a run's log lines. `after` is the id of the last line
/// already read, 0 for the start.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only the lines of the task with this name.
    pub task: Option<String>,
    /// Only the lines of this attempt number.
    pub attempt: Option<i32>,
    pub after: i64,
    /// Lines per page, from 1 to [`MAX_LOG_PAGE`].
    pub limit: u32,
}

/// A page of log lines.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// The `after` of the next page while more lines are stored, absent once this page
    /// reaches the last stored line.
    pub next_after: Option<i64>,
}

impl Store {
    /// Stores buffered log lines in one statement.
    pub(crate) async fn insert_log_lines(&self, lines: &[NewLogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<i32> = lines.iter().map(|line| lock_key(line.run_id)).collect();
        keys.sort_unstable();
        keys.dedup();
        sqlx::query(INSERT_LINES)
            .bind(LOG_LOCK_SPACE)
            .bind(&keys)
            .bind(lines.iter().map(|line| line.run_id).collect::<Vec<_>>())
            .bind(lines.iter().map(|line| line.task_idx).collect::<Vec<_>>())
            .bind(lines.iter().map(|line| line.attempt).collect::<Vec<_>>())
            .bind(
                lines
                    .iter()
                    .map(|line| line.level.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(lines.iter().map(|line| line.at).collect::<Vec<_>>())
            .bind(
                lines
                    .iter()
                    .map(|line| line.message.as_str())
                    .collect::<Vec<_>>(),
            )
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Reads a page of a run's log lines in the order they were stored.
    pub async fn run_logs(&self, run_id: Uuid, filter: &LogFilter) -> Result<LogPage> {
        if let Some(attempt) = filter.attempt
            && attempt < 1
        {
            return Err(Error::InvalidInput(format!(
                "attempt {attempt} is invalid; attempts count from 1, so pass 1 or more"
            )));
        }
        if filter.after < 0 {
            return Err(Error::InvalidInput(format!(
                "after {} is invalid; pass 0 for the first line, or the id of the last line already read",
                filter.after
            )));
        }
        let limit = filter.limit.clamp(1, MAX_LOG_PAGE);
        let task_idx = self.log_task_index(run_id, filter.task.as_deref()).await?;

        // Reading one line past the page shows whether another page follows.
        let fetch = i64::from(limit) + 1;
        let mut lines: Vec<LogLine> = match task_idx {
            None => {
                sqlx::query_as(RUN_LINES)
                    .bind(run_id)
                    .bind(filter.after)
                    .bind(filter.attempt)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(idx) => {
                sqlx::query_as(TASK_LINES)
                    .bind(run_id)
                    .bind(idx)
                    .bind(filter.after)
                    .bind(filter.attempt)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let next_after = if lines.len() > limit as usize {
            lines.truncate(limit as usize);
            lines.last().map(|line| line.id)
        } else {
            None
        };
        Ok(LogPage { lines, next_after })
    }

    /// Checks that the run exists and returns the index of its task named `task`.
    async fn log_task_index(&self, run_id: Uuid, task: Option<&str>) -> Result<Option<i32>> {
        let (run_exists, idx): (bool, Option<i32>) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1),
                    (SELECT idx FROM task_runs WHERE run_id = $1 AND name = $2)",
        )
        .bind(run_id)
        .bind(task)
        .fetch_one(&self.pool)
        .await?;
        if !run_exists {
            return Err(Error::run_not_found(run_id));
        }
        let Some(task) = task else {
            return Ok(None);
        };
        if idx.is_some() {
            return Ok(idx);
        }

        let (total, names): (i64, Vec<String>) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM task_runs WHERE run_id = $1),
                    ARRAY(SELECT name FROM task_runs WHERE run_id = $1 ORDER BY idx LIMIT $2)",
        )
        .bind(run_id)
        .bind(TASKS_NAMED as i64)
        .fetch_one(&self.pool)
        .await?;
        Err(Error::TaskNotFound {
            run_id,
            task: task.to_owned(),
            tasks: names,
            total: total.max(0) as usize,
        })
    }
}

/// Folds a run id into the second key of its advisory lock. Two runs may share a key,
/// which only makes their inserts wait for each other.
fn lock_key(run_id: Uuid) -> i32 {
    let (high, low) = run_id.as_u64_pair();
    let folded = high ^ low;
    ((folded >> 32) as u32 ^ folded as u32) as i32
}

#[cfg(test)]
mod tests {
    //! Inserts for one run are serialized by its advisory lock, and a line's id is drawn
    //! only once the lock is held, so a run's ids follow the order of the commits.

    use std::time::Duration;

    use sqlx::{Connection as _, PgConnection};

    use super::*;
    use crate::testing::TestDatabase;

    fn line(run_id: Uuid, message: &str) -> NewLogLine {
        NewLogLine {
            run_id,
            task_idx: 0,
            attempt: 1,
            level: LogLevel::Info,
            at: Utc::now(),
            message: message.to_owned(),
        }
    }

    async fn stored_id(store: &Store, run_id: Uuid) -> i64 {
        let (id,): (i64,) = sqlx::query_as("SELECT id FROM task_logs WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(store.pool())
            .await
            .expect("the run's line is stored");
        id
    }

    #[tokio::test]
    async fn insert_draws_ids_after_lock() {
        let db = TestDatabase::create().await;
        let store = db.store.clone();
        let blocked_run = Uuid::now_v7();
        let mut other_run = Uuid::now_v7();
        while lock_key(other_run) == lock_key(blocked_run) {
            other_run = Uuid::now_v7();
        }

        let mut holder = PgConnection::connect(&db.url).await.expect("connect");
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(LOG_LOCK_SPACE)
            .bind(lock_key(blocked_run))
            .execute(&mut holder)
            .await
            .expect("hold the run's lock");

        let insert = tokio::spawn({
            let store = store.clone();
            async move { store.insert_log_lines(&[line(blocked_run, "waited")]).await }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (waiting,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_locks
                 WHERE locktype = 'advisory' AND NOT granted AND classid = $1::oid",
            )
            .bind(i64::from(LOG_LOCK_SPACE))
            .fetch_one(store.pool())
            .await
            .expect("read pg_locks");
            if waiting > 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the insert never waited for the run's lock"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        store
            .insert_log_lines(&[line(other_run, "passed")])
            .await
            .expect("another run's insert does not wait");
        sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(LOG_LOCK_SPACE)
            .bind(lock_key(blocked_run))
            .execute(&mut holder)
            .await
            .expect("release the run's lock");
        insert
            .await
            .expect("the insert task ran")
            .expect("the waiting insert succeeds once the lock is free");

        assert!(
            stored_id(&store, blocked_run).await > stored_id(&store, other_run).await,
            "the waiting insert drew its id after the lock, past the insert that committed first"
        );
    }
}
