//! DataFusion helpers shared by the tasks: sessions, Parquet output and reading results.

use std::path::{Path, PathBuf};

use caraml_engine::TaskError;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, UInt64Type};
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use serde::{Deserialize, Serialize};

use super::errors::{query_error, require_file, utf8_path};
use super::files::{TempFile, create_dir};
use super::schemas;

/// A Parquet file that a task wrote, and its row count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOutput {
    pub path: PathBuf,
    pub rows: u64,
}

pub(crate) fn session() -> SessionContext {
    SessionContext::new()
}

/// Reads the nycflights13 CSV file at `path` with the column types of `schema`, turning
/// `NA` into `NULL`.
pub(crate) async fn read_csv(
    ctx: &SessionContext,
    path: &Path,
    schema: &Schema,
) -> Result<DataFrame, TaskError> {
    let action = format!("read CSV file {}", path.display());
    let text_schema = schemas::text_schema(schema);
    let df = ctx
        .read_csv(utf8_path(path)?, schemas::csv_options(&text_schema))
        .await
        .map_err(|err| query_error(&action, err))?;
    df.select(schemas::typed_columns(schema))
        .map_err(|err| query_error(&action, err))
}

/// Registers the Parquet file at `path` as table `name`, failing permanently when an
/// upstream task's output has gone missing.
pub(crate) async fn register_parquet(
    ctx: &SessionContext,
    name: &str,
    path: &Path,
) -> Result<(), TaskError> {
    require_file(
        path,
        &format!("input table `{name}`"),
        "the task that wrote it must run again, so start a new run of the workflow",
    )
    .await?;
    ctx.register_parquet(name, utf8_path(path)?, ParquetReadOptions::default())
        .await
        .map_err(|err| query_error(&format!("read Parquet file {}", path.display()), err))
}

/// Writes `df` to one Parquet file at `target` through a temporary file, replacing any
/// earlier output, and returns the number of rows written.
pub(crate) async fn write_parquet(df: DataFrame, target: &Path) -> Result<TableOutput, TaskError> {
    write_parquet_with(df, target, TableParquetOptions::default()).await
}

/// Works like [`write_parquet`] with at most `rows` rows per row group, so readers that
/// filter on a sorted column can skip the groups whose statistics rule them out.
pub(crate) async fn write_parquet_in_row_groups(
    df: DataFrame,
    target: &Path,
    rows: usize,
) -> Result<TableOutput, TaskError> {
    let mut options = TableParquetOptions::default();
    options.global.max_row_group_size = rows;
    write_parquet_with(df, target, options).await
}

async fn write_parquet_with(
    df: DataFrame,
    target: &Path,
    parquet_options: TableParquetOptions,
) -> Result<TableOutput, TaskError> {
    if let Some(dir) = target.parent() {
        create_dir(dir).await?;
    }
    let temp = TempFile::beside(target);
    let action = format!("write Parquet file {}", target.display());
    let options = DataFrameWriteOptions::new().with_single_file_output(true);
    let counts = df
        .write_parquet(utf8_path(temp.path())?, options, Some(parquet_options))
        .await
        .map_err(|err| query_error(&action, err))?;
    let rows = sum_counts(&counts).ok_or_else(|| {
        TaskError::permanent(format!(
            "failed to {action}: DataFusion returned no row count for the write"
        ))
    })?;
    temp.persist(target).await?;
    Ok(TableOutput {
        path: target.to_owned(),
        rows,
    })
}

/// Adds up the `count` column that a DataFusion write returns.
fn sum_counts(batches: &[RecordBatch]) -> Option<u64> {
    let mut total = 0;
    for batch in batches {
        let column = batch.column_by_name("count")?;
        let counts = column.as_primitive_opt::<UInt64Type>()?;
        total += counts.iter().flatten().sum::<u64>();
    }
    Some(total)
}

/// Runs `df` and returns its rows.
pub(crate) async fn collect(df: DataFrame, action: &str) -> Result<Vec<RecordBatch>, TaskError> {
    df.collect().await.map_err(|err| query_error(action, err))
}

/// Reads column `name` of `batch` as text; `None` stands for SQL `NULL`.
pub(crate) fn text_column(
    batch: &RecordBatch,
    name: &str,
) -> Result<Vec<Option<String>>, TaskError> {
    let column = cast_column(batch, name, &DataType::Utf8)?;
    let strings = column.as_string::<i32>();
    Ok(strings
        .iter()
        .map(|value| value.map(str::to_owned))
        .collect())
}

/// Reads column `name` of `batch` as 64-bit floats; `None` stands for SQL `NULL`.
pub(crate) fn float_column(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, TaskError> {
    let column = cast_column(batch, name, &DataType::Float64)?;
    Ok(column.as_primitive::<Float64Type>().iter().collect())
}

/// Reads column `name` of `batch` as 64-bit integers; `None` stands for SQL `NULL`.
pub(crate) fn integer_column(
    batch: &RecordBatch,
    name: &str,
) -> Result<Vec<Option<i64>>, TaskError> {
    let column = cast_column(batch, name, &DataType::Int64)?;
    Ok(column.as_primitive::<Int64Type>().iter().collect())
}

/// Casts column `name` to `to`, so callers need not know whether DataFusion chose, say,
/// `Utf8View` or `Utf8` for a string column.
fn cast_column(
    batch: &RecordBatch,
    name: &str,
    to: &DataType,
) -> Result<std::sync::Arc<dyn Array>, TaskError> {
    let column = batch.column_by_name(name).ok_or_else(|| {
        TaskError::permanent(format!(
            "query result has no column `{name}`; its columns are {:?}",
            batch
                .schema()
                .fields()
                .iter()
                .map(|field| field.name().as_str())
                .collect::<Vec<_>>()
        ))
    })?;
    cast(column, to).map_err(|err| {
        TaskError::permanent(format!(
            "column `{name}` of type {} cannot be read as {to}: {err}",
            column.data_type()
        ))
    })
}
