//! Conversions from the errors of the file system, DataFusion and the zip reader into
//! [`TaskError`]s marked retryable or permanent by whether another attempt can help.

use std::error::Error as StdError;
use std::path::Path;

use caraml_engine::TaskError;
use datafusion::error::DataFusionError;

/// Wraps a failed file-system operation on `path`. The attempt is retried because most such
/// faults (a full disk, a busy network mount) can clear.
pub(crate) fn io_error(action: &str, path: &Path, err: &std::io::Error) -> TaskError {
    TaskError::retryable(format!("failed to {action} {}: {err}", path.display()))
}

/// Wraps a failed DataFusion query or write.
///
/// Only an I/O fault somewhere in the error's chain is retried: a parse error or a planning
/// error comes back the same on every attempt.
pub(crate) fn query_error(action: &str, err: DataFusionError) -> TaskError {
    if has_io_cause(&err) {
        TaskError::retryable(format!("failed to {action}: {err}"))
    } else {
        TaskError::permanent(format!("failed to {action}: {err}"))
    }
}

fn has_io_cause(err: &DataFusionError) -> bool {
    if matches!(
        err.find_root(),
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_)
    ) {
        return true;
    }
    let mut cause: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(current) = cause {
        if current.is::<std::io::Error>() {
            return true;
        }
        cause = current.source();
    }
    false
}

/// Fails permanently when a file that a task reads is missing, naming the file and `fix`.
pub(crate) async fn require_file(path: &Path, what: &str, fix: &str) -> Result<(), TaskError> {
    match tokio::fs::metadata(path).await {
        Ok(metadata) if metadata.is_file() => Ok(()),
        Ok(_) => Err(TaskError::permanent(format!(
            "{what} {} is not a regular file; {fix}",
            path.display()
        ))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(TaskError::permanent(
            format!("{what} {} was not found; {fix}", path.display()),
        )),
        Err(err) => Err(io_error("read the metadata of", path, &err)),
    }
}

/// Returns `path` as UTF-8, which DataFusion needs for its table URLs.
pub(crate) fn utf8_path(path: &Path) -> Result<&str, TaskError> {
    path.to_str().ok_or_else(|| {
        TaskError::permanent(format!(
            "path {} is not valid UTF-8, which DataFusion requires; choose `data_dir` and `out_dir` with UTF-8 names",
            path.display()
        ))
    })
}
