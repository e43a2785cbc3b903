//! `sql.query`: a DataFusion SQL query over CSV and Parquet files, returned inline or
//! written to Parquet.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use caraml_engine::{MAX_INLINE_OUTPUT_BYTES, Task, TaskContext, TaskError};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{SQLOptions, SessionContext};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::errors::{cause_kind, io_error, task_error};
use crate::rows::to_json_rows;
use crate::tables::{Registered, TableSource, deserialize_tables, register_tables};

/// The row limit for inline results when the input sets none.
pub const DEFAULT_MAX_ROWS: usize = 1000;

/// Task kind `sql.query`, which runs one SQL query over the tables named in its input.
pub struct SqlQuery;

/// The input of `sql.query`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlQueryInput {
    /// Tables by name. Each is registered under its name before the query runs.
    #[serde(default, deserialize_with = "deserialize_tables")]
    pub tables: BTreeMap<String, TableSource>,
    /// One query (`SELECT` or `WITH`). Statements that create, change or set anything are
    /// rejected.
    pub sql: String,
    /// Parquet file to write the result to. Missing parent directories are created.
    #[serde(default)]
    pub output: Option<String>,
    /// Maximum rows returned inline when `output` is absent. Defaults to
    /// [`DEFAULT_MAX_ROWS`].
    #[serde(default)]
    pub max_rows: Option<usize>,
}

/// The output of `sql.query`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SqlQueryOutput {
    /// Result written to the Parquet file at `path`, an absolute path.
    Written {
        path: String,
        rows: u64,
        columns: Vec<String>,
    },
    /// Result rows in the output itself, one object per row.
    Inline {
        rows: u64,
        columns: Vec<String>,
        data: Vec<Map<String, Value>>,
    },
}

impl Task for SqlQuery {
    type Input = SqlQueryInput;
    type Output = SqlQueryOutput;
    const KIND: &'static str = "sql.query";

    async fn run(
        &self,
        ctx: TaskContext,
        input: SqlQueryInput,
    ) -> Result<SqlQueryOutput, TaskError> {
        execute(input, ctx.upstream(), ctx.cancellation()).await
    }
}

/// Runs the query described by `input` and stops when `cancel` fires. `upstream` maps
/// upstream node names to their outputs, for tables given as `{"upstream": node}`.
pub async fn execute(
    input: SqlQueryInput,
    upstream: &HashMap<String, Value>,
    cancel: &CancellationToken,
) -> Result<SqlQueryOutput, TaskError> {
    // Dropping the query future stops DataFusion, whose streams and spawned partitions end
    // when dropped. Cancellation is polled first, so a cancelled attempt never starts.
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(TaskError::retryable("sql.query was cancelled")),
        result = run(input, upstream) => result,
    }
}

async fn run(
    input: SqlQueryInput,
    upstream: &HashMap<String, Value>,
) -> Result<SqlQueryOutput, TaskError> {
    check_input(&input)?;
    let ctx = SessionContext::new();
    let registered = register_tables(&ctx, &input.tables, upstream).await?;

    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(&input.sql, options)
        .await
        .map_err(|err| planning_error(&err, &registered))?;
    let columns: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect();
    let stream = frame
        .execute_stream()
        .await
        .map_err(|err| running_error(&err, &registered))?;

    match input.output {
        Some(output) => {
            let (path, rows) = write_parquet(stream, &output, &registered).await?;
            Ok(SqlQueryOutput::Written {
                path,
                rows,
                columns,
            })
        }
        None => {
            let max_rows = input.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
            let (rows, data) = collect_rows(stream, max_rows, &registered).await?;
            Ok(SqlQueryOutput::Inline {
                rows,
                columns,
                data,
            })
        }
    }
}

fn check_input(input: &SqlQueryInput) -> Result<(), TaskError> {
    if input.sql.trim().is_empty() {
        return Err(TaskError::permanent(
            "sql.query has an empty `sql`; give one query, such as SELECT * FROM flights LIMIT 10",
        ));
    }
    match (&input.output, input.max_rows) {
        (Some(output), _) if output.trim().is_empty() => Err(TaskError::permanent(
            "sql.query has an empty `output`; give a path such as results/summary.parquet, or leave `output` out to return the rows inline",
        )),
        (Some(_), Some(_)) => Err(TaskError::permanent(
            "sql.query has both `output` and `max_rows`, but max_rows only limits inline results; remove `max_rows`, or remove `output` to return the rows inline",
        )),
        _ => Ok(()),
    }
}

fn planning_error(err: &DataFusionError, registered: &Registered) -> TaskError {
    if let DataFusionError::SQL(parser, _) = err.find_root() {
        return TaskError::permanent(format!(
            "sql.query failed to parse `sql`: {parser}; fix the statement"
        ));
    }
    let message = err.strip_backtrace();
    let rejected_statements = [
        "DDL not supported",
        "DML not supported",
        "Statement not supported",
    ];
    if rejected_statements
        .iter()
        .any(|phrase| message.contains(phrase))
    {
        return TaskError::permanent(format!(
            "sql.query runs only queries (SELECT or WITH), and `sql` is another statement ({message}); to keep a result, set `output` instead of using CREATE TABLE or COPY"
        ));
    }
    let tables = if registered.tables.is_empty() {
        String::new()
    } else {
        format!(" (tables: {})", registered.tables.join(", "))
    };
    task_error(
        cause_kind(err),
        format!(
            "sql.query failed to plan `sql`: {}{tables}{}",
            message.trim_end(),
            registered.text_hint(&message)
        ),
    )
}

fn running_error(err: &DataFusionError, registered: &Registered) -> TaskError {
    let message = err.strip_backtrace();
    task_error(
        cause_kind(err),
        format!(
            "sql.query failed while running the query: {}{}",
            message.trim_end(),
            registered.text_hint(&message)
        ),
    )
}

/// Collects the result rows for the task's output. Rejects more than `max_rows` rows and
/// more JSON than the engine stores inline.
async fn collect_rows(
    mut stream: SendableRecordBatchStream,
    max_rows: usize,
    registered: &Registered,
) -> Result<(u64, Vec<Map<String, Value>>), TaskError> {
    let mut batches = Vec::new();
    let mut rows: usize = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|err| running_error(&err, registered))?;
        rows += batch.num_rows();
        // Past the limit the batches are only counted, so the error can report the row
        // count without keeping the rows in memory.
        if rows <= max_rows {
            batches.push(batch);
        } else {
            batches.clear();
        }
    }
    if rows > max_rows {
        return Err(TaskError::permanent(format!(
            "sql.query returned {rows} rows, more than max_rows ({max_rows}) allows inline; set `output` to a .parquet path to write them to a file, raise `max_rows`, or narrow the query"
        )));
    }

    let data = to_json_rows(&batches)?;
    let size = serde_json::to_vec(&data).map_or(0, |bytes| bytes.len());
    if size > MAX_INLINE_OUTPUT_BYTES {
        return Err(TaskError::permanent(format!(
            "sql.query returned {rows} rows taking {size} bytes as JSON, over the engine's {MAX_INLINE_OUTPUT_BYTES}-byte limit for inline outputs; set `output` to a .parquet path to write them to a file, or select fewer columns or rows"
        )));
    }
    Ok((rows as u64, data))
}

/// Writes the result to `output` and returns its absolute path and row count.
///
/// The file is written under a temporary name and renamed at the end. A reader therefore
/// never reads a partial file, and an attempt that dies halfway leaves any previous file.
async fn write_parquet(
    mut stream: SendableRecordBatchStream,
    output: &str,
    registered: &Registered,
) -> Result<(String, u64), TaskError> {
    let target = std::path::absolute(output).map_err(|err| io_error("resolve", output, &err))?;
    let display_path = target.display().to_string();
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|err| io_error("create the directory", &parent.display().to_string(), &err))?;
    }

    let partial = PartialFile::beside(&target);
    let file = tokio::fs::File::create(&partial.path)
        .await
        .map_err(|err| io_error("create", &partial.path.display().to_string(), &err))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = AsyncArrowWriter::try_new(file, stream.schema(), Some(properties))
        .map_err(|err| parquet_error(&display_path, &err))?;

    let mut rows: u64 = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|err| running_error(&err, registered))?;
        rows += batch.num_rows() as u64;
        writer
            .write(&batch)
            .await
            .map_err(|err| parquet_error(&display_path, &err))?;
    }
    writer
        .close()
        .await
        .map_err(|err| parquet_error(&display_path, &err))?;

    tokio::fs::rename(&partial.path, &target)
        .await
        .map_err(|err| io_error("write", &display_path, &err))?;
    partial.keep();
    Ok((display_path, rows))
}

fn parquet_error(path: &str, err: &ParquetError) -> TaskError {
    task_error(
        cause_kind(err),
        format!("sql.query failed to write Parquet to `{path}`: {err}"),
    )
}

/// File written under a temporary name and removed on drop unless kept, so failed and
/// cancelled attempts leave nothing behind. A killed process can still leave one behind.
struct PartialFile {
    path: PathBuf,
    keep: bool,
}

impl PartialFile {
    fn beside(target: &Path) -> Self {
        // Unique within the process by the counter and across processes by the id, so
        // concurrent attempts writing the same output never share a temporary file.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = target
            .file_name()
            .map_or_else(|| "output".into(), |name| name.to_string_lossy());
        let path = target.with_file_name(format!(".{name}.{}-{n}.partial", std::process::id()));
        Self { path, keep: false }
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: the file may never have been created.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests;
