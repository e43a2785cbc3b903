//! Task logs on the worker: each attempt's logger buffers its lines in memory, and one loop
//! per worker stores the buffered lines of every attempt in batches.
//!
//! Guarantees kept here:
//! - writing a line never waits for the database and never fails: the logger appends to a
//!   buffer, and the flush loop and the result writer store it;
//! - the result writer flushes before it writes results, so an attempt's lines are stored,
//!   or dropped by a failed flush, before its run can show the attempt as ended;
//! - an attempt stores at most its limit of message bytes. The first line over the limit
//!   and every line after it are dropped, and one closing note counts them;
//! - a line is cut to [`MAX_LINE_BYTES`], and NUL characters, which PostgreSQL text cannot
//!   hold, become U+FFFD;
//! - a flush that fails drops its lines, and the first failure of a streak is logged once.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;
use crate::store::{LogLevel, NewLogLine, Store};

/// Time between flushes while the worker runs.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Lines stored in one statement; a full batch is stored without waiting for the interval.
const BATCH_LINES: usize = 500;

/// Maximum bytes of one line's message; a longer message is cut to this length.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Default for [`super::WorkerOptions::log_limit_bytes`]: 1 MiB per attempt.
pub const DEFAULT_LOG_LIMIT_BYTES: usize = 1024 * 1024;

/// Lines of every attempt of a worker that are not stored yet.
#[derive(Default)]
pub(crate) struct LogBuffer {
    // NOTE: lines still here when the worker process dies are lost: up to one flush
    // interval of them, or more while the database is slow to take a batch.
    pending: Mutex<Vec<NewLogLine>>,
    /// Wakes the flush loop once a batch is full.
    batch_full: Notify,
    /// Held while a flush takes and stores lines. A flush that must finish before results
    /// are written thus also waits for the lines that a flush in progress has taken.
    flushing: tokio::sync::Mutex<FailureStreak>,
}

/// Flushes that failed since the last one that succeeded.
#[derive(Debug, Default)]
struct FailureStreak {
    flushes: u64,
    lines: u64,
}

impl LogBuffer {
    fn pending(&self) -> MutexGuard<'_, Vec<NewLogLine>> {
        // Every critical section pushes or takes whole lines, so a poisoned buffer is
        // still consistent.
        self.pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn push(&self, line: NewLogLine) {
        let mut pending = self.pending();
        pending.push(line);
        if pending.len() == BATCH_LINES {
            self.batch_full.notify_one();
        }
    }

    /// Stores every buffered line, a batch per statement. A batch that fails is dropped
    /// with the rest of the buffer, so that an unreachable database costs one statement
    /// per flush.
    pub(crate) async fn flush(&self, store: &Store) {
        let mut streak = self.flushing.lock().await;
        let lines = std::mem::take(&mut *self.pending());
        if lines.is_empty() {
            return;
        }
        for (done, batch) in lines.chunks(BATCH_LINES).enumerate() {
            if let Err(err) = store.insert_log_lines(batch).await {
                let dropped = (lines.len() - done * BATCH_LINES) as u64;
                if streak.flushes == 0 {
                    tracing::warn!(
                        error = %err,
                        lines = dropped,
                        "storing task log lines failed; the lines are dropped, and further failures are counted until a flush succeeds"
                    );
                }
                streak.flushes += 1;
                streak.lines += dropped;
                return;
            }
        }
        if streak.flushes > 0 {
            tracing::warn!(
                failed_flushes = streak.flushes,
                dropped_lines = streak.lines,
                "storing task log lines works again after failures that dropped lines"
            );
            *streak = FailureStreak::default();
        }
    }
}

/// The log of one attempt: a size limit in front of the worker's buffer.
pub(crate) struct AttemptLog {
    buffer: Arc<LogBuffer>,
    run_id: Uuid,
    task_idx: i32,
    attempt: i32,
    limit_bytes: usize,
    usage: Mutex<Usage>,
}

#[derive(Debug, Default)]
struct Usage {
    stored_bytes: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// Whether the closing note about dropped lines was written.
    noted: bool,
}

impl AttemptLog {
    pub(crate) fn new(
        buffer: Arc<LogBuffer>,
        run_id: Uuid,
        task_idx: i32,
        attempt: i32,
        limit_bytes: usize,
    ) -> Self {
        Self {
            buffer,
            run_id,
            task_idx,
            attempt,
            limit_bytes,
            usage: Mutex::new(Usage::default()),
        }
    }

    fn usage(&self) -> MutexGuard<'_, Usage> {
        self.usage
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Buffers a line, or counts it as dropped once the attempt's log is over its limit.
    pub(crate) fn write(&self, level: LogLevel, message: &str) {
        let message = clean_line(message);
        // The usage lock is held while the line is buffered, so lines keep the order of
        // their checks.
        let mut usage = self.usage();
        let over_limit = usage.stored_bytes.saturating_add(message.len()) > self.limit_bytes;
        if usage.dropped_lines > 0 || over_limit {
            usage.dropped_lines += 1;
            usage.dropped_bytes += message.len() as u64;
            return;
        }
        usage.stored_bytes += message.len();
        self.buffer.push(self.line(level, message));
    }

    /// Ends the attempt's log: when lines were dropped, buffers one note that counts them.
    /// Lines written after this are dropped.
    pub(crate) fn finish(&self) {
        let mut usage = self.usage();
        if usage.dropped_lines == 0 || usage.noted {
            return;
        }
        usage.noted = true;
        let note = format!(
            "log cut at {} bytes, the limit per attempt: {} later lines ({} bytes) were dropped; raise the worker's --log-limit-bytes to keep more",
            self.limit_bytes, usage.dropped_lines, usage.dropped_bytes
        );
        self.buffer.push(self.line(LogLevel::Warn, note));
    }

    fn line(&self, level: LogLevel, message: String) -> NewLogLine {
        NewLogLine {
            run_id: self.run_id,
            task_idx: self.task_idx,
            attempt: self.attempt,
            level,
            at: chrono::Utc::now(),
            message,
        }
    }
}

/// Replaces NUL characters and cuts the message to [`MAX_LINE_BYTES`] at a character
/// boundary, with a marker that gives the original length.
fn clean_line(message: &str) -> String {
    let mut line = if message.contains('\0') {
        message.replace('\0', "\u{fffd}")
    } else {
        message.to_owned()
    };
    if line.len() > MAX_LINE_BYTES {
        let marker = format!(" [line cut: {} bytes in all]", line.len());
        let keep = line.floor_char_boundary(MAX_LINE_BYTES - marker.len());
        line.truncate(keep);
        line.push_str(&marker);
    }
    line
}

/// Stores buffered lines every [`FLUSH_INTERVAL`], or as soon as a batch is full, until
/// `stop` is cancelled; then stores what is left.
pub(super) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(FLUSH_INTERVAL) => {}
            () = shared.logs.batch_full.notified() => {}
            () = stop.cancelled() => {
                shared.logs.flush(&shared.store).await;
                return;
            }
        }
        shared.logs.flush(&shared.store).await;
    }
}

#[cfg(test)]
mod tests {
    //! The limit, the cut and the failure handling, without a database. A store pointed at
    //! a port where nothing listens acts as a database that is down.

    use std::time::Duration;

    use super::*;

    fn attempt_log(buffer: &Arc<LogBuffer>, limit_bytes: usize) -> AttemptLog {
        AttemptLog::new(Arc::clone(buffer), Uuid::now_v7(), 0, 1, limit_bytes)
    }

    fn messages(buffer: &LogBuffer) -> Vec<String> {
        buffer
            .pending()
            .iter()
            .map(|line| line.message.clone())
            .collect()
    }

    #[test]
    fn lines_over_limit_dropped_with_note() {
        let buffer = Arc::new(LogBuffer::default());
        let log = attempt_log(&buffer, 25);
        log.write(LogLevel::Info, "0123456789");
        log.write(LogLevel::Info, "0123456789");
        log.write(LogLevel::Info, "0123456789");
        log.write(LogLevel::Info, "x");
        log.finish();
        log.finish();
        log.write(LogLevel::Info, "after the end");

        let lines = buffer.pending().clone();
        assert_eq!(lines.len(), 3, "two lines fit, then one note: {lines:?}");
        assert_eq!(lines[0].message, "0123456789");
        assert_eq!(lines[1].message, "0123456789");
        let note = &lines[2];
        assert_eq!(note.level, LogLevel::Warn);
        assert!(
            note.message.contains("cut at 25 bytes"),
            "the note gives the limit: {}",
            note.message
        );
        assert!(
            note.message.contains("2 later lines (11 bytes)"),
            "the note counts every dropped line, also those that would fit: {}",
            note.message
        );
    }

    #[test]
    fn no_note_under_limit() {
        let buffer = Arc::new(LogBuffer::default());
        let log = attempt_log(&buffer, 100);
        log.write(LogLevel::Info, "short");
        log.write(LogLevel::Error, "also short");
        log.finish();
        assert_eq!(messages(&buffer), ["short", "also short"]);
    }

    #[test]
    fn long_line_cut_at_char_boundary() {
        let long = "é".repeat(MAX_LINE_BYTES);
        let line = clean_line(&long);
        assert!(
            line.len() <= MAX_LINE_BYTES,
            "a cut line fits the maximum: {} bytes",
            line.len()
        );
        assert!(
            line.ends_with(&format!(" [line cut: {} bytes in all]", long.len())),
            "the marker gives the original length"
        );
        let exact = "x".repeat(MAX_LINE_BYTES);
        assert_eq!(
            clean_line(&exact),
            exact,
            "a line at the maximum stays whole"
        );
    }

    #[test]
    fn nul_characters_replaced() {
        assert_eq!(clean_line("a\0b"), "a\u{fffd}b");
    }

    #[tokio::test]
    async fn failed_flush_drops_lines() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://postgres@127.0.0.1:1/none")
            .expect("a lazy pool");
        let store = Store::new(pool);
        let buffer = Arc::new(LogBuffer::default());
        let log = attempt_log(&buffer, 1_000_000);
        for i in 0..(BATCH_LINES + 10) {
            log.write(LogLevel::Info, &format!("line {i}"));
        }

        buffer.flush(&store).await;
        assert!(
            buffer.pending().is_empty(),
            "the lines of a failed flush are dropped, not kept for another try"
        );
        let streak = buffer.flushing.lock().await;
        assert_eq!(streak.flushes, 1, "one failed flush is counted once");
        assert_eq!(streak.lines, (BATCH_LINES + 10) as u64);
    }
}
