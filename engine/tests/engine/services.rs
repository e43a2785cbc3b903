//! Long-lived services: readiness, restarts after failures, replacement with no gap, stop.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use caraml_engine::testing::TestDatabase;
use caraml_engine::{
    Registry, ServiceView, Store, Submission, Task, TaskContext, TaskError, Worker, WorkerOptions,
    WorkflowSpec,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Starts of `test.crashy`, over all tests.
static CRASHY_STARTS: AtomicU32 = AtomicU32::new(0);

/// `test.crashy`: a service whose first start fails right after it reports ready.
struct Crashy;

impl Task for Crashy {
    type Input = Value;
    type Output = Value;
    const KIND: &'static str = "test.crashy";
    const SERVICE: bool = true;

    async fn run(&self, ctx: TaskContext, _input: Value) -> Result<Value, TaskError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|err| TaskError::retryable(err.to_string()))?;
        let address = listener
            .local_addr()
            .map_err(|err| TaskError::retryable(err.to_string()))?;
        ctx.ready(&address.to_string()).await?;
        if CRASHY_STARTS.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(TaskError::permanent("boom"));
        }
        ctx.cancellation().cancelled().await;
        Err(TaskError::retryable("stopped"))
    }
}

struct Harness {
    db: TestDatabase,
    stop: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Harness {
    async fn start() -> Self {
        let db = TestDatabase::create().await;
        let mut registry = Registry::with_builtins();
        registry.task(Crashy);
        // Kinds and their service flags are stored before the first service is created.
        db.store.register(&registry).await.expect("register");
        let worker = Worker::builder(db.store.clone(), registry)
            .options(WorkerOptions {
                slots: 4,
                grace: Duration::from_secs(1),
                poll_interval: Duration::from_millis(100),
                ..WorkerOptions::default()
            })
            .build();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            if let Err(err) = worker.run(token).await {
                panic!("worker failed: {err}");
            }
        });
        Self { db, stop }
    }

    fn store(&self) -> &Store {
        &self.db.store
    }
}

fn serve_spec(body: &str) -> Submission {
    let spec: WorkflowSpec = serde_json::from_value(json!({"name": "web", "tasks": [
        {"name": "serve", "kind": "http.serve", "input": {"body": {"version": body}}}
    ]}))
    .expect("spec");
    Submission::Spec(spec)
}

async fn wait_service(
    store: &Store,
    name: &str,
    check: impl Fn(&ServiceView) -> bool,
) -> ServiceView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let service = store.get_service("default", name).await.expect("service");
        if check(&service) {
            return service;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "service {name} never reached the expected state: {service:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends one HTTP request and returns the body of the response.
async fn get(address: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

#[tokio::test]
async fn service_reports_its_address() {
    let harness = Harness::start().await;
    let store = harness.store();
    store
        .create_service(
            "default",
            "web",
            serve_spec("v1"),
            Value::Null,
            Duration::from_secs(1),
        )
        .await
        .expect("create");
    let service = wait_service(store, "web", |s| s.status == "ready").await;
    let address = service.address.expect("a ready service has an address");
    assert_eq!(get(&address).await.as_deref(), Some(r#"{"version":"v1"}"#));
    assert_eq!(service.restarts, 0);
    assert_eq!(service.task.as_deref(), Some("serve"));
    let listed = store.list_services("default").await.expect("list");
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn service_replaced_without_gap() {
    let harness = Harness::start().await;
    let store = harness.store().clone();
    store
        .create_service(
            "default",
            "web",
            serve_spec("v1"),
            Value::Null,
            Duration::from_secs(1),
        )
        .await
        .expect("create");
    let first = wait_service(&store, "web", |s| s.status == "ready").await;

    // A client resolves the address through the engine before every request, as a router
    // would, and counts failed requests.
    let done = CancellationToken::new();
    let client = {
        let store = store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let (mut failures, mut v1, mut v2) = (0u32, 0u32, 0u32);
            while !done.is_cancelled() {
                let address = store
                    .get_service("default", "web")
                    .await
                    .ok()
                    .and_then(|s| s.address);
                let body = match address {
                    Some(address) => get(&address).await,
                    None => None,
                };
                match body.as_deref() {
                    Some(r#"{"version":"v1"}"#) => v1 += 1,
                    Some(r#"{"version":"v2"}"#) => v2 += 1,
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (failures, v1, v2)
        })
    };

    tokio::time::sleep(Duration::from_millis(200)).await;
    store
        .replace_service("default", "web", serve_spec("v2"), Value::Null)
        .await
        .expect("replace");
    let replaced = wait_service(&store, "web", |s| {
        s.run_id != first.run_id && s.status == "ready"
    })
    .await;
    assert_eq!(replaced.generation, 2);
    assert_eq!(replaced.candidate_run_id, None);

    // The old run keeps serving for the drain time, then stops.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let old = store.run_summary(first.run_id).await.expect("old run");
        if old.status == "cancelled" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replaced run never stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.cancel();
    let (failures, v1, v2) = client.await.expect("client");
    assert!(v1 > 0, "the client never reached v1");
    assert!(v2 > 0, "the client never reached v2");
    assert_eq!(
        failures, 0,
        "{failures} requests failed during the replacement"
    );
}

#[tokio::test]
async fn service_restarts_after_a_failure() {
    let harness = Harness::start().await;
    let store = harness.store();
    let spec: WorkflowSpec = serde_json::from_value(json!({"name": "crashy", "tasks": [
        {"name": "serve", "kind": "test.crashy"}
    ]}))
    .expect("spec");
    store
        .create_service(
            "default",
            "crashy",
            Submission::Spec(spec),
            Value::Null,
            Duration::ZERO,
        )
        .await
        .expect("create");
    let service = wait_service(store, "crashy", |s| s.status == "ready" && s.restarts >= 1).await;
    assert_eq!(service.restarts, 1);
    let error = service.last_error.unwrap_or_default();
    assert!(error.contains("boom"), "{error}");
    assert!(service.address.is_some());
}

#[tokio::test]
async fn stopped_service_cancels_its_run() {
    let harness = Harness::start().await;
    let store = harness.store();
    store
        .create_service(
            "default",
            "web",
            serve_spec("v1"),
            Value::Null,
            Duration::ZERO,
        )
        .await
        .expect("create");
    let ready = wait_service(store, "web", |s| s.status == "ready").await;
    let stopped = store.stop_service("default", "web").await.expect("stop");
    assert_eq!(stopped.status, "stopped");
    assert_eq!(stopped.address, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(ready.address.as_deref().unwrap_or("127.0.0.1:1"))
        .await
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stopped service still answers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted = store
        .restart_service("default", "web")
        .await
        .expect("restart");
    assert_eq!(restarted.generation, 2);
    wait_service(store, "web", |s| s.status == "ready").await;
}

#[tokio::test]
async fn service_definitions_are_checked() {
    let harness = Harness::start().await;
    let store = harness.store();
    let plain: WorkflowSpec = serde_json::from_value(json!({"name": "plain", "tasks": [
        {"name": "s", "kind": "sleep"}
    ]}))
    .expect("spec");
    let err = store
        .create_service(
            "default",
            "plain",
            Submission::Spec(plain),
            Value::Null,
            Duration::ZERO,
        )
        .await
        .expect_err("a workflow without a service task is rejected");
    assert!(
        err.to_string().contains("has no task of a service kind"),
        "{err}"
    );

    let err = store
        .create_service(
            "default",
            "bad name",
            serve_spec("v1"),
            Value::Null,
            Duration::ZERO,
        )
        .await
        .expect_err("an invalid name is rejected");
    assert!(
        err.to_string()
            .contains("service name `bad name` is invalid"),
        "{err}"
    );

    store
        .create_service(
            "default",
            "web",
            serve_spec("v1"),
            Value::Null,
            Duration::ZERO,
        )
        .await
        .expect("create");
    let err = store
        .create_service(
            "default",
            "web",
            serve_spec("v1"),
            Value::Null,
            Duration::ZERO,
        )
        .await
        .expect_err("a second service of one name is rejected");
    assert!(matches!(err, caraml_engine::Error::Conflict(_)), "{err}");

    let err = store
        .replace_service("default", "ghost", serve_spec("v1"), Value::Null)
        .await
        .expect_err("an unknown service cannot be replaced");
    assert!(
        matches!(err, caraml_engine::Error::NotFound { .. }),
        "{err}"
    );
}
