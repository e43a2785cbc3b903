//! Test task kinds and a harness that runs a worker against a fresh database.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use caraml_engine::testing::TestDatabase;
use caraml_engine::{
    Registry, RetentionOptions, RunView, Store, Task, TaskContext, TaskError, Worker, WorkerOptions,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Keys for which `test.toggle` fails.
pub(crate) static TOGGLE_BROKEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// How often `test.touch` ran, over all tests.
pub(crate) static TOUCH_COUNT: AtomicU64 = AtomicU64::new(0);

pub(crate) struct Harness {
    pub(crate) store: Store,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    pub(crate) async fn start() -> Self {
        Self::start_with(Self::options()).await
    }

    /// Returns the worker options that [`Harness::start`] uses.
    pub(crate) fn options() -> WorkerOptions {
        WorkerOptions {
            slots: 8,
            grace: Duration::from_secs(1),
            // Tests sweep with a `now` of their own; a daily interval keeps the worker's
            // own sweep from taking the sweep lock while they do.
            retention: RetentionOptions {
                interval: Duration::from_secs(86_400),
                ..RetentionOptions::default()
            },
            ..WorkerOptions::default()
        }
    }

    pub(crate) async fn start_with(options: WorkerOptions) -> Self {
        // Logs show with RUST_LOG set, such as RUST_LOG=caraml_engine=debug.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let db = TestDatabase::create().await;
        let mut registry = Registry::with_builtins();
        registry
            .task(Echo)
            .task(Flaky)
            .task(Fail)
            .task(Touch)
            .task(Toggle)
            .task(Big)
            .task(Chatty);
        let worker = Worker::builder(db.store.clone(), registry)
            .options(options)
            .build();
        // Kinds must be known before the first submission, so register them now rather
        // than waiting for the worker task to start.
        db.store
            .register_kinds(
                [
                    "sleep",
                    "test.echo",
                    "test.flaky",
                    "test.fail",
                    "test.touch",
                    "test.toggle",
                    "test.big",
                    "test.chatty",
                ]
                .into_iter(),
            )
            .await
            .expect("register kinds");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            if let Err(err) = worker.run(token).await {
                panic!("worker failed: {err}");
            }
        });
        Self {
            store: db.store,
            shutdown,
        }
    }

    /// Waits up to 30 s for the run to finish.
    pub(crate) async fn wait(&self, run_id: Uuid) -> RunView {
        self.wait_for(run_id, Duration::from_secs(30)).await
    }

    pub(crate) async fn wait_for(&self, run_id: Uuid, limit: Duration) -> RunView {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let run = self.store.run_summary(run_id).await.expect("run exists");
            if run.finished_at.is_some() {
                let run = self.store.get_run(run_id).await.expect("run exists");
                let stopped = run
                    .tasks
                    .as_ref()
                    .is_some_and(|tasks| tasks.iter().all(|t| t.status != "running"));
                if stopped {
                    return run;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {run_id} did not finish within {limit:?}; status {}",
                run.status
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub(crate) async fn wait_task_status(&self, run_id: Uuid, name: &str, status: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let run = self.store.get_run(run_id).await.expect("run exists");
            let current = run
                .tasks
                .as_ref()
                .and_then(|tasks| tasks.iter().find(|t| t.name == name))
                .map(|t| t.status.clone());
            if current.as_deref() == Some(status) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {name} never reached {status}; it is {current:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Returns the run's events as (kind, task name) in order.
    pub(crate) async fn event_order(&self, run_id: Uuid) -> Vec<(String, Option<String>)> {
        self.store
            .run_events(run_id, 0, 10_000)
            .await
            .expect("events")
            .into_iter()
            .map(|e| (e.kind, e.task))
            .collect()
    }

    pub(crate) async fn event_times(
        &self,
        run_id: Uuid,
        kind: &str,
    ) -> Vec<chrono::DateTime<chrono::Utc>> {
        self.store
            .run_events(run_id, 0, 10_000)
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.at)
            .collect()
    }
}

/// Creates a database with the `sleep` kind registered and no worker, for tests that store
/// runs and act on them without running their tasks.
pub(crate) async fn idle_database() -> TestDatabase {
    let db = TestDatabase::create().await;
    db.store
        .register_kinds(["sleep"].into_iter())
        .await
        .expect("register kinds");
    db
}

/// `test.echo`: returns its input, run input and upstream outputs.
pub(crate) struct Echo;

impl Task for Echo {
    type Input = Value;
    type Output = Value;
    const KIND: &'static str = "test.echo";

    async fn run(&self, ctx: TaskContext, input: Value) -> Result<Value, TaskError> {
        Ok(json!({"input": input, "run_input": ctx.run_input(), "upstream": ctx.upstream()}))
    }
}

#[derive(Deserialize)]
pub(crate) struct FlakyInput {
    succeed_on: u32,
}

/// `test.flaky`: fails with a retryable error until attempt `succeed_on`.
pub(crate) struct Flaky;

impl Task for Flaky {
    type Input = FlakyInput;
    type Output = Value;
    const KIND: &'static str = "test.flaky";

    async fn run(&self, ctx: TaskContext, input: FlakyInput) -> Result<Value, TaskError> {
        if ctx.attempt() < input.succeed_on {
            return Err(TaskError::retryable(format!(
                "attempt {} fails",
                ctx.attempt()
            )));
        }
        Ok(json!({"attempt": ctx.attempt()}))
    }
}

/// `test.fail`: always fails permanently.
pub(crate) struct Fail;

impl Task for Fail {
    type Input = Value;
    type Output = Value;
    const KIND: &'static str = "test.fail";

    async fn run(&self, _ctx: TaskContext, _input: Value) -> Result<Value, TaskError> {
        Err(TaskError::permanent("this task always fails"))
    }
}

#[derive(Deserialize)]
pub(crate) struct KeyInput {
    key: String,
}

/// `test.touch`: counts its runs and returns a fresh token.
pub(crate) struct Touch;

impl Task for Touch {
    type Input = KeyInput;
    type Output = Value;
    const KIND: &'static str = "test.touch";

    async fn run(&self, _ctx: TaskContext, input: KeyInput) -> Result<Value, TaskError> {
        TOUCH_COUNT.fetch_add(1, Ordering::SeqCst);
        Ok(json!({"touched": Uuid::new_v4().to_string(), "key": input.key}))
    }
}

/// `test.toggle`: fails permanently while its key is in `TOGGLE_BROKEN`, else returns what
/// its upstream `a` returned.
pub(crate) struct Toggle;

impl Task for Toggle {
    type Input = KeyInput;
    type Output = Value;
    const KIND: &'static str = "test.toggle";

    async fn run(&self, ctx: TaskContext, input: KeyInput) -> Result<Value, TaskError> {
        let broken = TOGGLE_BROKEN
            .lock()
            .map_err(|_| TaskError::permanent("toggle lock poisoned"))?
            .contains(&input.key);
        if broken {
            return Err(TaskError::permanent("toggle is broken"));
        }
        let a: Value = ctx.upstream_as("a")?;
        Ok(json!({"seen": a["touched"]}))
    }
}

#[derive(Deserialize)]
pub(crate) struct BigInput {
    bytes: usize,
}

/// `test.big`: returns a string of `bytes` characters.
pub(crate) struct Big;

impl Task for Big {
    type Input = BigInput;
    type Output = String;
    const KIND: &'static str = "test.big";

    async fn run(&self, _ctx: TaskContext, input: BigInput) -> Result<String, TaskError> {
        Ok("x".repeat(input.bytes))
    }
}

#[derive(Deserialize)]
pub(crate) struct ChattyInput {
    lines: usize,
    /// Length of each line, padded with `x`; 0 leaves lines unpadded.
    #[serde(default)]
    bytes: usize,
    #[serde(default = "first_attempt")]
    succeed_on: u32,
}

fn first_attempt() -> u32 {
    1
}

/// `test.chatty`: logs `lines` lines of `attempt A line I`, then fails with a retryable
/// error and an error line until attempt `succeed_on`.
pub(crate) struct Chatty;

impl Task for Chatty {
    type Input = ChattyInput;
    type Output = Value;
    const KIND: &'static str = "test.chatty";

    async fn run(&self, ctx: TaskContext, input: ChattyInput) -> Result<Value, TaskError> {
        let logger = ctx.logger();
        let attempt = ctx.attempt();
        for i in 0..input.lines {
            let mut line = format!("attempt {attempt} line {i}");
            if line.len() < input.bytes {
                line.push(' ');
            }
            while line.len() < input.bytes {
                line.push('x');
            }
            logger.info(&line);
        }
        if attempt < input.succeed_on {
            logger.error(&format!("attempt {attempt} fails"));
            return Err(TaskError::retryable(format!("attempt {attempt} fails")));
        }
        Ok(json!({"attempt": attempt}))
    }
}
