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

use crate::errors::{cause_kind, datafusion_message, io_error, task_error};
use crate::rows::to_json_rows;
use crate::tables::{TableSource, deserialize_tables, register_tables};

/// The row limit for inline results when the input sets none.
pub const DEFAULT_MAX_ROWS: usize = 1000;

/// `sql.query`: runs one SQL query over the tables named in its input.
pub struct SqlQuery;

/// The input of `sql.query`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlQueryInput {
    /// Table name to source; each is registered under its name before the query runs.
    #[serde(default, deserialize_with = "deserialize_tables")]
    pub tables: BTreeMap<String, TableSource>,
    /// One query (`SELECT` or `WITH`); statements that create, change or set anything are
    /// refused.
    pub sql: String,
    /// A Parquet file to write the result to; parent directories are created.
    #[serde(default)]
    pub output: Option<String>,
    /// Without `output`: the most rows returned inline; [`DEFAULT_MAX_ROWS`] when absent.
    #[serde(default)]
    pub max_rows: Option<usize>,
}

/// The output of `sql.query`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SqlQueryOutput {
    /// The result went to the Parquet file at `path`, an absolute path.
    Written {
        path: String,
        rows: u64,
        columns: Vec<String>,
    },
    /// The result itself, one object per row.
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

    async fn run(&self, ctx: TaskContext, input: SqlQueryInput) -> Result<SqlQueryOutput, TaskError> {
        execute(input, ctx.upstream(), ctx.cancellation()).await
    }
}

/// Runs the query described by `input`; `upstream` holds the outputs of upstream nodes by
/// name, for tables given as `{"upstream": node}`. Stops when `cancel` fires.
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
    register_tables(&ctx, &input.tables, upstream).await?;

    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(&input.sql, options)
        .await
        .map_err(|err| planning_error(&err, &input.tables))?;
    let columns: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect();
    let stream = frame.execute_stream().await.map_err(|err| running_error(&err))?;

    match input.output {
        Some(output) => {
            let (path, rows) = write_parquet(stream, &output).await?;
            Ok(SqlQueryOutput::Written {
                path,
                rows,
                columns,
            })
        }
        None => {
            let max_rows = input.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
            let (rows, data) = collect_rows(stream, max_rows).await?;
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

fn planning_error(err: &DataFusionError, tables: &BTreeMap<String, TableSource>) -> TaskError {
    let message = datafusion_message(err);
    if matches!(err.find_root(), DataFusionError::SQL(..)) {
        return TaskError::permanent(format!(
            "sql.query could not parse `sql`: {message}; fix the statement"
        ));
    }
    let names: Vec<&str> = tables.keys().map(String::as_str).collect();
    task_error(
        cause_kind(err),
        format!(
            "sql.query could not plan `sql`: {message}; the query can read the tables [{}]",
            names.join(", ")
        ),
    )
}

fn running_error(err: &DataFusionError) -> TaskError {
    task_error(
        cause_kind(err),
        format!(
            "sql.query failed while running the query: {}",
            datafusion_message(err)
        ),
    )
}

/// Collects the result for the task's output, refusing more than `max_rows` rows or more
/// JSON than the engine keeps inline.
async fn collect_rows(
    mut stream: SendableRecordBatchStream,
    max_rows: usize,
) -> Result<(u64, Vec<Map<String, Value>>), TaskError> {
    let mut batches = Vec::new();
    let mut rows: usize = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|err| running_error(&err))?;
        rows += batch.num_rows();
        // Past the limit the batches are only counted, so the error can say how many rows
        // there are without holding them.
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
/// The file is written under a temporary name and renamed at the end, so a reader never sees
/// a partial file, and an attempt that dies halfway leaves the previous result in place.
async fn write_parquet(
    mut stream: SendableRecordBatchStream,
    output: &str,
) -> Result<(String, u64), TaskError> {
    let target = std::path::absolute(output).map_err(|err| io_error("resolve", output, &err))?;
    let shown = target.display().to_string();
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
        .map_err(|err| parquet_error(&shown, &err))?;

    let mut rows: u64 = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|err| running_error(&err))?;
        rows += batch.num_rows() as u64;
        writer
            .write(&batch)
            .await
            .map_err(|err| parquet_error(&shown, &err))?;
    }
    writer
        .close()
        .await
        .map_err(|err| parquet_error(&shown, &err))?;

    tokio::fs::rename(&partial.path, &target)
        .await
        .map_err(|err| io_error("write", &shown, &err))?;
    partial.keep();
    Ok((shown, rows))
}

fn parquet_error(path: &str, err: &ParquetError) -> TaskError {
    task_error(
        cause_kind(err),
        format!("sql.query could not write Parquet to `{path}`: {err}"),
    )
}

/// A file being written under a temporary name; removed on drop unless kept, so failed and
/// cancelled attempts leave nothing behind.
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
