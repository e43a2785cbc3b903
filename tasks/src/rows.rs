//! Conversion of query results into JSON rows for a task's output.

use caraml_engine::TaskError;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

/// Converts batches into one JSON object per row, keyed by column name. Nulls are written
/// out, so every row has every column.
///
/// NOTE: NaN and infinite floats become null and binary values become hex strings, because
/// that is how the Arrow JSON writer encodes them.
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
                "sql.query failed to convert its result to JSON ({err}); set `output` to write the result to Parquet instead"
            ))
        })?;
    serde_json::from_slice(&writer.into_inner()).map_err(|err| {
        TaskError::permanent(format!(
            "sql.query failed to parse the JSON it produced ({err}); set `output` to write the result to Parquet instead"
        ))
    })
}
