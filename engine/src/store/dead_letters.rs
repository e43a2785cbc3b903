//! Dead letters: tasks that failed for good, having used their attempts or raised a
//! permanent error. Resuming a run (`retry_run`) takes its tasks off this list.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::Store;
use super::query::MAX_PAGE;
use crate::error::{Error, Result};

/// A task that failed for good.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeadLetter {
    pub run_id: Uuid,
    pub workflow: String,
    pub task: String,
    pub kind: String,
    /// Attempts started, across resumes of the run.
    pub attempts: i32,
    /// Attempts the task's retry policy allows per resume.
    pub max_attempts: i32,
    pub error: Option<String>,
    pub finished_at: DateTime<Utc>,
    #[serde(skip)]
    pub(crate) idx: i32,
}

/// Filter for listing dead letters, newest first. `since` is inclusive and `until`
/// exclusive, both on the time the task failed. `cursor` is the `next_cursor` of the
/// previous page.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// Every API caller lists one project; `None` lists all projects.
    pub project: Option<String>,
    pub workflow: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetter>,
    pub next_cursor: Option<String>,
}

/// Position after the last dead letter of a page: its failure time in microseconds since
/// the Unix epoch, run id and task index, written as `MICROS_RUNID_IDX`.
struct Cursor {
    finished_at: DateTime<Utc>,
    run_id: Uuid,
    idx: i32,
}

impl Cursor {
    fn parse(text: &str) -> Result<Self> {
        let invalid = || {
            Error::InvalidInput(format!(
                "cursor `{}` is invalid; pass the `next_cursor` of the previous page unchanged",
                text.escape_debug()
            ))
        };
        let mut parts = text.splitn(3, '_');
        let micros = parts.next().and_then(|p| p.parse::<i64>().ok());
        let run_id = parts.next().and_then(|p| p.parse::<Uuid>().ok());
        let idx = parts.next().and_then(|p| p.parse::<i32>().ok());
        let (Some(micros), Some(run_id), Some(idx)) = (micros, run_id, idx) else {
            return Err(invalid());
        };
        let finished_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        Ok(Self {
            finished_at,
            run_id,
            idx,
        })
    }

    fn after(letter: &DeadLetter) -> String {
        format!(
            "{}_{}_{}",
            letter.finished_at.timestamp_micros(),
            letter.run_id,
            letter.idx
        )
    }
}

impl Store {
    /// Lists tasks that failed for good, newest first, with their run, workflow, attempts
    /// and last error.
    pub async fn list_dead_letters(&self, filter: &DeadLetterFilter) -> Result<DeadLetterPage> {
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            return Err(Error::InvalidInput(format!(
                "since ({since}) is not before until ({until}); give a time range that starts before it ends"
            )));
        }
        let cursor = filter.cursor.as_deref().map(Cursor::parse).transpose()?;
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut letters: Vec<DeadLetter> = sqlx::query_as(
            "SELECT t.run_id, r.workflow, t.name AS task, t.kind, t.attempt AS attempts,
                    t.max_attempts, t.error, t.finished_at, t.idx
             FROM task_runs t
             JOIN runs r ON r.id = t.run_id
             WHERE t.status = 'failed' AND t.finished_at IS NOT NULL
               AND ($1::text IS NULL OR r.workflow = $1)
               AND ($2::timestamptz IS NULL OR t.finished_at >= $2)
               AND ($3::timestamptz IS NULL OR t.finished_at < $3)
               AND ($4::timestamptz IS NULL
                    OR (t.finished_at, t.run_id, t.idx) < ($4, $5::uuid, $6::int4))
               AND ($8::text IS NULL OR r.project = $8)
             ORDER BY t.finished_at DESC, t.run_id DESC, t.idx DESC
             LIMIT $7",
        )
        .bind(&filter.workflow)
        .bind(filter.since)
        .bind(filter.until)
        .bind(cursor.as_ref().map(|c| c.finished_at))
        .bind(cursor.as_ref().map(|c| c.run_id))
        .bind(cursor.as_ref().map(|c| c.idx))
        .bind(i64::from(limit) + 1)
        .bind(&filter.project)
        .fetch_all(&self.pool)
        .await?;
        let next_cursor = if letters.len() > limit as usize {
            letters.truncate(limit as usize);
            letters.last().map(Cursor::after)
        } else {
            None
        };
        Ok(DeadLetterPage {
            dead_letters: letters,
            next_cursor,
        })
    }
}
