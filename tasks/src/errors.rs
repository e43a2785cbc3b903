//! Sorting DataFusion and file-system failures into retryable and permanent task errors.

use std::error::Error;
use std::io;

use caraml_engine::{ErrorKind, TaskError};
use datafusion::error::DataFusionError;
use datafusion::object_store;

/// Whether an I/O failure could go away on its own: a missing file or a denied permission
/// stays that way until someone changes the input or the machine, anything else (a full
/// disk, a flaky network mount) may not.
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
        ErrorKind::Permanent => TaskError::permanent(message),
    }
}

/// An I/O failure on `path`, with what was being done to it.
pub(crate) fn io_error(doing: &str, path: &str, err: &io::Error) -> TaskError {
    task_error(
        io_kind(err),
        format!("sql.query could not {doing} `{path}`: {err}"),
    )
}

/// Classifies an error by the deepest cause that tells: an I/O error or exhausted memory may
/// pass, everything else (SQL, planning, bad data, schema) will not.
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

/// The message of a DataFusion error without a backtrace, if one was captured.
pub(crate) fn datafusion_message(err: &DataFusionError) -> String {
    err.strip_backtrace()
}
