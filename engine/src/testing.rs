//! Databases for tests: a fresh, migrated database per test on the server that
//! `DATABASE_URL` names, or else on a private cluster under `target/` that the first test
//! process starts and later ones reuse.

use std::path::PathBuf;

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
            let cluster = LocalCluster::start(&dir).await.unwrap_or_else(|err| {
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
