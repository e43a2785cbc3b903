//! Turning query results into JSON rows for a task's output.

use caraml_engine::TaskError;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

/// One JSON object per row, keyed by column name. Nulls are written out rather than left
/// out, so every row has every column.
pub(crate) fn to_json_rows(batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>, TaskError> {
    if batches.iter().all(|batch| batch.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer
        .write_batches(&refs)
        .and_then(|()| writer.finish())
        .map_err(|err| {
            TaskError::permanent(format!(
                "sql.query could not turn its result into JSON ({err}); set `output` to write the result to Parquet instead"
            ))
        })?;
    serde_json::from_slice(&writer.into_inner()).map_err(|err| {
        TaskError::permanent(format!(
            "sql.query produced JSON it could not read back ({err}); set `output` to write the result to Parquet instead"
        ))
    })
}
