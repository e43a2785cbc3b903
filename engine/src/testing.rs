//! Databases for tests: a fresh, migrated database per test on the server that
//! `DATABASE_URL` names, or else on a private cluster under `target/` that the first test
//! process starts and later ones reuse. Test processes that start together (as under
//! `cargo nextest`) take turns on a file lock, so one initializes and starts the cluster and
//! the others wait and then reuse it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::OnceCell;

use crate::postgres::LocalCluster;
use crate::store::Store;

static SERVER: OnceCell<String> = OnceCell::const_new();

/// A database created for one test.
pub struct TestDatabase {
    pub url: String,
    pub store: Store,
}

impl TestDatabase {
    /// Creates and migrates a database with a unique name. The name carries the process id,
    /// so databases left by earlier test processes are dropped the next time a test starts.
    pub async fn create() -> Self {
        let server = SERVER
            .get_or_init(|| async { server_url().await })
            .await
            .clone();
        let name = format!(
            "caraml_test_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let mut admin = PgConnection::connect(&server)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to the test server {server}: {err}"));
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
        let _ = admin.close().await;

        let url = with_database(&server, &name);
        let store = Store::connect(&url, 20)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|err| panic!("migrations failed on {url}: {err}"));
        Self { url, store }
    }
}

async fn server_url() -> String {
    let server = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let dir = target_dir().join("caraml-test-postgres");
            let cluster = start_shared_cluster(&dir).await.unwrap_or_else(|err| {
                panic!(
                    "DATABASE_URL is not set and a private cluster could not start in {}: {err}",
                    dir.display()
                )
            });
            cluster.url()
        }
    };
    drop_stale_databases(&server).await;
    server
}

/// Starts the cluster in `data_dir`, or reuses the one running there, while holding an
/// exclusive lock on `<data_dir>.lock`. The lock file sits beside the data directory because
/// initdb requires an empty directory.
async fn start_shared_cluster(data_dir: &Path) -> Result<LocalCluster, String> {
    let lock_path = data_dir.with_extension("lock");
    let lock = tokio::task::spawn_blocking({
        let lock_path = lock_path.clone();
        move || lock_exclusive(&lock_path)
    })
    .await
    .map_err(|err| {
        format!(
            "the thread waiting for {} failed: {err}",
            lock_path.display()
        )
    })?
    .map_err(|err| format!("cannot lock {}: {err}", lock_path.display()))?;
    let started = LocalCluster::start(data_dir).await;
    // Closing the file releases the lock, and the next process finds the server running.
    drop(lock);
    started.map_err(|err| err.to_string())
}

/// Opens `path`, creating it, and waits until this process holds its exclusive lock.
fn lock_exclusive(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.lock()?;
    Ok(file)
}

/// Drops test databases whose creating process has exited.
async fn drop_stale_databases(server: &str) {
    let Ok(mut admin) = PgConnection::connect(server).await else {
        return;
    };
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'caraml_test_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    for (name,) in names {
        let pid = name
            .strip_prefix("caraml_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<i32>().ok());
        let alive = pid.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        });
        if !alive {
            let _ = admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }
    let _ = admin.close().await;
}

/// Replaces the database name in a connection URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // Test binaries live in target/debug/deps.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// Without the lock, each start finds no cluster and runs initdb into the same
    /// directory, and all but one fail.
    #[tokio::test]
    async fn concurrent_starts_share_one_cluster() {
        let dir = tempfile::Builder::new()
            .prefix("caraml-shared-cluster")
            .tempdir_in("/tmp")
            .expect("create a directory for the cluster");
        // Open to the postgres user, which runs the cluster when the tests run as root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("open the directory to the postgres user");
        let data_dir = dir.path().join("data");

        let starts: Vec<_> = (0..3)
            .map(|_| {
                let data_dir = data_dir.clone();
                tokio::spawn(async move { start_shared_cluster(&data_dir).await })
            })
            .collect();
        let mut results = Vec::new();
        for start in starts {
            results.push(start.await.expect("start task ran"));
        }

        // Stop whatever started before checking, so that a failure leaves no server behind.
        let started: Vec<&LocalCluster> = results
            .iter()
            .flatten()
            .filter(|cluster| cluster.started_here())
            .collect();
        for cluster in &started {
            cluster.stop().await.expect("the cluster stops");
        }
        for result in &results {
            assert!(
                result.is_ok(),
                "every concurrent start succeeds: {result:?}"
            );
        }
        let ports: HashSet<u16> = results.iter().flatten().map(LocalCluster::port).collect();
        assert_eq!(started.len(), 1, "exactly one start ran the server");
        assert_eq!(ports.len(), 1, "every start got the same server");
    }
}
