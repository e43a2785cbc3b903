//! Classification of DataFusion and file-system failures into retryable and permanent task
//! errors.

use std::error::Error;
use std::io;

use caraml_engine::{ErrorKind, TaskError};
use datafusion::error::DataFusionError;
use datafusion::object_store;

/// Classifies an I/O failure. A missing file or a denied permission stays that way until
/// someone changes the input or the machine, but a full disk or a flaky mount may recover.
pub(crate) fn io_kind(err: &io::Error) -> ErrorKind {
    match err.kind() {
        io::ErrorKind::NotFound
        | io::ErrorKind::PermissionDenied
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::InvalidData
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::ReadOnlyFilesystem
        | io::ErrorKind::InvalidFilename => ErrorKind::Permanent,
        _ => ErrorKind::Retryable,
    }
}

pub(crate) fn task_error(kind: ErrorKind, message: String) -> TaskError {
    match kind {
        ErrorKind::Retryable => TaskError::retryable(message),
        ErrorKind::Permanent | ErrorKind::Suspended => TaskError::permanent(message),
    }
}

/// Builds the task error for an I/O failure, naming the action (`doing`) and the path.
pub(crate) fn io_error(doing: &str, path: &str, err: &io::Error) -> TaskError {
    task_error(
        io_kind(err),
        format!("sql.query failed to {doing} `{path}`: {err}"),
    )
}

/// Classifies an error by walking its sources. An I/O error or exhausted memory may pass, but
/// anything else (SQL, planning, bad data, schema) will fail again.
pub(crate) fn cause_kind(err: &(dyn Error + 'static)) -> ErrorKind {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<io::Error>() {
            return io_kind(io);
        }
        if let Some(object_store::Error::NotFound { .. }) = current.downcast_ref() {
            return ErrorKind::Permanent;
        }
        if let Some(DataFusionError::ResourcesExhausted(_)) = current.downcast_ref() {
            return ErrorKind::Retryable;
        }
        cause = current.source();
    }
    ErrorKind::Permanent
}
