//! Output files that appear whole or not at all.
//!
//! Tasks run at least once, and two attempts of one task can overlap when a lease lapses.
//! Each attempt therefore writes to its own temporary file beside the target and renames
//! it over the target when done, so a reader never sees a half-written file and a re-run
//! replaces the previous output.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use caraml_engine::TaskError;

use super::errors::io_error;

/// A temporary file in the folder of its target, deleted on drop unless persisted.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// Picks a fresh name beside `target`, keeping its extension because DataFusion checks
    /// the extension of the files it reads; `flights.parquet` gets `flights.<unique>.tmp.parquet`.
    pub(crate) fn beside(target: &Path) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        // The process id and counter keep names apart within one host, and the clock keeps
        // them apart across hosts that share a folder.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let unique = format!("{}-{count}-{nanos}", std::process::id());

        let stem = target
            .file_stem()
            .map_or_else(|| "output".into(), |stem| stem.to_string_lossy());
        let name = match target.extension() {
            Some(extension) => format!("{stem}.{unique}.tmp.{}", extension.to_string_lossy()),
            None => format!("{stem}.{unique}.tmp"),
        };
        Self {
            path: target.with_file_name(name),
            persisted: false,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file over `target`, replacing any earlier output there.
    pub(crate) async fn persist(mut self, target: &Path) -> Result<(), TaskError> {
        tokio::fs::rename(&self.path, target)
            .await
            .map_err(|err| io_error("rename the finished output to", target, &err))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            // The file may never have been created, and a leftover only costs disk space,
            // so a failed removal is not worth reporting.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Creates `dir` and its parents if they are missing.
pub(crate) async fn create_dir(dir: &Path) -> Result<(), TaskError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|err| io_error("create the folder", dir, &err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_name_keeps_extension() {
        let temp = TempFile::beside(Path::new("/out/staging/flights.parquet"));
        let name = temp
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        let name = name.expect("a temp file has a name");
        assert!(name.starts_with("flights."), "{name}");
        assert!(name.ends_with(".tmp.parquet"), "{name}");
        assert_eq!(temp.path().parent(), Some(Path::new("/out/staging")));
    }

    #[test]
    fn temp_names_differ() {
        let target = Path::new("/out/weather.parquet");
        let first = TempFile::beside(target);
        let second = TempFile::beside(target);
        assert_ne!(first.path(), second.path());
    }

    #[tokio::test]
    async fn dropped_temp_file_is_removed() {
        let dir = std::env::temp_dir().join(format!("caraml-files-{}", std::process::id()));
        create_dir(&dir).await.expect("the test folder is created");
        let target = dir.join("dropped.txt");
        let temp = TempFile::beside(&target);
        let path = temp.path().to_owned();
        std::fs::write(&path, "partial").expect("the temp file is written");
        drop(temp);
        assert!(!path.exists(), "{} is left behind", path.display());
        assert!(!target.exists());
        let _ = std::fs::remove_dir(&dir);
    }

    #[tokio::test]
    async fn persist_replaces_target() {
        let dir = std::env::temp_dir().join(format!("caraml-persist-{}", std::process::id()));
        create_dir(&dir).await.expect("the test folder is created");
        let target = dir.join("report.txt");
        std::fs::write(&target, "old").expect("the old output is written");

        let temp = TempFile::beside(&target);
        let temp_path = temp.path().to_owned();
        std::fs::write(&temp_path, "new").expect("the temp file is written");
        temp.persist(&target).await.expect("the rename succeeds");

        let text = std::fs::read_to_string(&target).expect("the target is readable");
        assert_eq!(text, "new");
        assert!(!temp_path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
