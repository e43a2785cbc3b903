//! Worker processes: a service whose worker is killed with SIGKILL starts again on another
//! worker at a new address, and one process serves extra queues with slots of their own.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use caraml_engine::testing::TestDatabase;
use caraml_engine::{ServiceView, Store, Submission, WorkflowSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `caraml worker` process, killed when dropped.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn spawn(url: &str) -> Self {
        Self::spawn_with(url, &[])
    }

    fn spawn_with(url: &str, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_caraml"))
            .args(["worker", "--slots", "2", "--lease-seconds", "2"])
            .args(extra)
            .env("DATABASE_URL", url)
            .env("CARAML_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn `caraml worker`");
        Self(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_service(store: &Store, check: impl Fn(&ServiceView) -> bool) -> ServiceView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(service) = store.get_service("default", "web").await
            && check(&service)
        {
            return service;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "service web never reached the expected state: {:?}",
            store.get_service("default", "web").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(address: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

#[tokio::test]
async fn killed_service_restarts_at_a_new_address() {
    let db = TestDatabase::create().await;
    db.store
        .register(&caraml::registry().expect("the built-in registry is valid"))
        .await
        .expect("register the binary's kinds");
    let mut first = WorkerProcess::spawn(&db.url);

    let spec: WorkflowSpec = serde_json::from_value(json!({"name": "web", "tasks": [
        {"name": "serve", "kind": "http.serve", "input": {"body": "hello"}}
    ]}))
    .expect("spec");
    db.store
        .create_service(
            "default",
            "web",
            Submission::Spec(spec),
            Value::Null,
            Duration::ZERO,
        )
        .await
        .expect("create");
    let before = wait_service(&db.store, |s| s.status == "ready").await;
    let old_address = before.address.clone().expect("address");
    assert_eq!(get(&old_address).await.as_deref(), Some("\"hello\""));

    first.kill();
    let _second = WorkerProcess::spawn(&db.url);
    let after = wait_service(&db.store, |s| {
        s.status == "ready" && s.restarts >= 1 && s.address.as_deref() != Some(old_address.as_str())
    })
    .await;
    let new_address = after.address.clone().expect("address");
    assert_eq!(get(&new_address).await.as_deref(), Some("\"hello\""));
    assert_eq!(after.run_id, before.run_id, "the same run serves again");
    let error = after.last_error.unwrap_or_default();
    assert!(error.contains("lease expired"), "{error}");
    assert!(
        get(&old_address).await.is_none(),
        "the killed process no longer answers"
    );
}

#[tokio::test]
async fn worker_serves_extra_queues_with_their_own_slots() {
    let db = TestDatabase::create().await;
    db.store
        .register(&caraml::registry().expect("the built-in registry is valid"))
        .await
        .expect("register the binary's kinds");
    let _worker = WorkerProcess::spawn_with(&db.url, &["--also", "gpu=1"]);
    let spec: WorkflowSpec = serde_json::from_value(json!({"name": "queues", "tasks": [
        {"name": "cpu", "kind": "sleep"},
        {"name": "gpu", "kind": "sleep", "queue": "gpu", "depends_on": ["cpu"]}
    ]}))
    .expect("spec");
    let run = db
        .store
        .submit(Submission::Spec(spec), Value::Null, None)
        .await
        .expect("submit")
        .id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let summary = db.store.run_summary(run).await.expect("run");
        if summary.status == "succeeded" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run ended {}",
            summary.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queues: Vec<(String, i32)> =
        sqlx::query_as("SELECT queue, slots FROM workers WHERE stopped_at IS NULL ORDER BY queue")
            .fetch_all(db.store.pool())
            .await
            .expect("workers");
    assert_eq!(
        queues,
        vec![("default".to_owned(), 2), ("gpu".to_owned(), 1)]
    );

    let output = Command::new(env!("CARGO_BIN_EXE_caraml"))
        .args(["worker", "--also", "gpu"])
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run `caraml worker`");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("write QUEUE=SLOTS"), "{stderr}");
}
