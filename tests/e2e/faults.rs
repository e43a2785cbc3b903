//! Faults injected into real `caraml worker` processes while they run a 1,000-task DAG.
//!
//! Each test spawns worker processes from the `caraml` binary, submits a layered DAG of
//! `sleep` tasks, injects one fault while tasks run, and then checks what the engine
//! promises whatever the fault:
//! - the run succeeds;
//! - every task succeeded exactly once in the final state: one `task.succeeded` event per
//!   task, and every task run row `succeeded`;
//! - nothing stays `running` without a live lease. While the run goes on, no running task
//!   keeps a lapsed lease for longer than the reaper's interval plus a slack for the fault.
//!   At the end no row is `running`, and none has a lapsed lease.
//!
//! The faults:
//! - a worker killed with SIGKILL mid-task, whose tasks run again once their leases lapse;
//! - workers killed and restarted several times during one run;
//! - PostgreSQL stopped for two seconds and started again mid-run;
//! - the workers' server connections terminated, several times;
//! - the server out of connections while the workers must reconnect.
//!
//! The restart and the exhausted connections use a private cluster that the test starts and
//! stops, never the shared server. Connections are terminated only in the test's own
//! database. Most tests use two-second leases to stay short, and one test keeps the
//! default lease and checks that a killed worker's tasks run again within 30 seconds.
//!
//! Worker logs at debug level are kept in `target/tmp/caraml-faults/<test>/`, with
//! the private cluster's server log beside them. The tests run one at a time, since each
//! loads the machine with worker processes and PostgreSQL.

use std::fs::{File, Permissions};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use caraml_engine::postgres::LocalCluster;
use caraml_engine::testing::TestDatabase;
use caraml_engine::{Store, Submission, WorkflowSpec};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// Tasks in each layer of the DAG: more than the workers' slots, so slots stay busy.
const WIDTH: usize = 40;
/// Layers of the DAG. Each task depends on two tasks of the layer above.
const LAYERS: usize = 25;
const TASKS: i64 = (WIDTH * LAYERS) as i64;
const SLEEP_SECONDS: f64 = 0.03;
/// Lease of the workers in the tests that do not check the default.
const SHORT_LEASE_SECONDS: f64 = 2.0;
const SLOTS: &str = "8";
const WORKER_LOG_FILTER: &str = "debug,sqlx::query=warn";

/// Maximum wait for a run to finish once the fault is over.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// Maximum wait for any intermediate step: a worker registering, progress before a fault.
const STEP_LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// How long the server gets to finish a statement that a killed worker sent as it died (an
/// estimate: `assert_rescued` copes with a statement that finishes later).
const SETTLE: Duration = Duration::from_millis(250);
/// How long a lapsed lease may go unrescued beyond the reaper's interval. An estimate that
/// covers the faults that keep workers from the database (restart, exhausted connections)
/// and their reconnection.
const FAULT_SLACK: Duration = Duration::from_secs(10);
/// The reaper interval that the CLI derives from its default lease of 15 seconds.
const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(10);

/// Held by each test for its whole length, so the fault tests run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Running tasks that a worker must have before the test kills it.
const KILL_WHEN_HOLDING: usize = 4;

/// SQLSTATE of "sorry, too many clients already".
const TOO_MANY_CONNECTIONS: &str = "53300";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_tasks_rescued_after_lease() {
    // Two-second leases keep this test short. The default lease is exercised by
    // `default_lease_reruns_within_30_seconds`.
    let mut test = FaultTest::on_test_database("sigkill_once", Some(SHORT_LEASE_SECONDS)).await;
    let victim = test.spawn_worker().await;
    let survivor = test.spawn_worker().await;
    test.submit().await;

    let kill = test.kill_busy_worker(victim).await;

    test.wait_for_success().await;
    test.assert_each_task_succeeded_once().await;
    let rescues = test.assert_rescued(&kill.left_running).await;
    let survivor_id = test.worker_id(survivor);
    let finished_by: Vec<Option<Uuid>> =
        sqlx::query_scalar("SELECT worker_id FROM task_runs WHERE run_id = $1 AND idx = ANY($2)")
            .bind(test.run_id())
            .bind(rescues.iter().map(|r| r.idx).collect::<Vec<i32>>())
            .fetch_all(test.store.pool())
            .await
            .expect("read who finished the rescued tasks");
    assert!(
        finished_by.iter().all(|id| *id == Some(survivor_id)),
        "the surviving worker finished every task rescued from the killed worker: {finished_by:?}"
    );
    test.finish(&format!(
        "{} of the killed worker's {} attempts rescued",
        rescues.len(),
        kill.left_running.len()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kills_lose_no_task() {
    const KILLS: usize = 4;
    let mut test = FaultTest::on_test_database("sigkill_repeated", Some(SHORT_LEASE_SECONDS)).await;
    let mut slots = [test.spawn_worker().await, test.spawn_worker().await];
    test.submit().await;

    let mut left_running = Vec::new();
    for round in 0..KILLS {
        let slot = round % slots.len();
        let victim_id = test.worker_id(slots[slot]);
        let target = 150 * (round as i64 + 1);
        test.wait_progress(
            &format!(
                "worker {} to hold {KILL_WHEN_HOLDING} running tasks after {target} successes",
                slots[slot]
            ),
            |p| p.succeeded >= target && p.held_by(victim_id) >= KILL_WHEN_HOLDING,
        )
        .await;
        left_running.extend(test.kill_worker(slots[slot]).await.left_running);
        slots[slot] = test.spawn_worker().await;
    }

    test.wait_for_success().await;
    test.assert_each_task_succeeded_once().await;
    let rescues = test.assert_rescued(&left_running).await;
    test.finish(&format!(
        "{KILLS} kills, {} of the killed workers' {} attempts rescued",
        rescues.len(),
        left_running.len()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_postgres_restart() {
    let mut test =
        FaultTest::on_private_cluster("postgres_restart", Some(SHORT_LEASE_SECONDS)).await;
    let workers = [test.spawn_worker().await, test.spawn_worker().await];
    test.submit().await;
    test.wait_progress("tasks to run after 200 successes", |p| {
        p.succeeded >= 200 && !p.holders.is_empty()
    })
    .await;

    let cluster = test.cluster().clone();
    cluster.stop().await.expect("the private cluster stops");
    // The outage itself: the workers find no server for this long.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster
        .start_again()
        .await
        .expect("the private cluster starts again");
    let restarted_at = epoch_now();

    test.wait_for_success().await;
    test.assert_each_task_succeeded_once().await;
    test.assert_heartbeats_after(&workers, restarted_at).await;
    test.finish("PostgreSQL stopped for 2 s mid-run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_terminated_connections() {
    const ROUNDS: i64 = 3;
    let mut test =
        FaultTest::on_test_database("terminated_connections", Some(SHORT_LEASE_SECONDS)).await;
    let workers = [test.spawn_worker().await, test.spawn_worker().await];
    test.submit().await;

    let mut last_termination = 0.0;
    for round in 0..ROUNDS {
        let target = 150 + 200 * round;
        test.wait_progress(&format!("tasks to run after {target} successes"), |p| {
            p.succeeded >= target && !p.holders.is_empty()
        })
        .await;
        let terminated: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'caraml' AND datname = current_database()
               AND pid <> pg_backend_pid()",
        )
        .fetch_one(test.store.pool())
        .await
        .expect("terminate the workers' connections");
        assert!(
            terminated >= 2,
            "round {round}: each worker had a server connection to lose, terminated {terminated}"
        );
        last_termination = epoch_now();
    }

    test.wait_for_success().await;
    test.assert_each_task_succeeded_once().await;
    test.assert_heartbeats_after(&workers, last_termination)
        .await;
    test.finish(&format!("{ROUNDS} rounds of terminated connections"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_exhausted_connections() {
    let mut test =
        FaultTest::on_private_cluster("exhausted_connections", Some(SHORT_LEASE_SECONDS)).await;
    let max_connections: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(test.store.pool())
        .await
        .expect("read max_connections");
    assert_eq!(
        max_connections, "200",
        "the private cluster allows 200 connections"
    );
    let workers = [test.spawn_worker().await, test.spawn_worker().await];
    test.submit().await;
    test.wait_progress("tasks to run after 200 successes", |p| {
        p.succeeded >= 200 && !p.holders.is_empty()
    })
    .await;

    let options = PgConnectOptions::from_str(&test.url).expect("the cluster URL parses");
    let mut admin =
        PgConnection::connect_with(&options.clone().application_name("caraml-fault-admin"))
            .await
            .expect("connect the admin session");
    let hog_options = options.application_name("caraml-fault-hog");
    let mut hogs = Vec::new();
    let lockout = Instant::now();
    fill_connections(&hog_options, &mut hogs).await;
    assert!(
        hogs.len() > 100,
        "the test holds most of the server's 200 connections, holds {}",
        hogs.len()
    );
    // Refill the slots that the workers' connections leave, until the server rejects more
    // and the workers have none.
    loop {
        assert!(
            lockout.elapsed() < STEP_LIMIT,
            "the workers could not be locked out of the server within {STEP_LIMIT:?}"
        );
        let terminated = terminate_worker_connections(&mut admin).await;
        if terminated == 0 && worker_connections(&mut admin).await == 0 {
            // Terminated backends free their slots as they exit, so take those too and look
            // once more.
            tokio::time::sleep(Duration::from_millis(200)).await;
            fill_connections(&hog_options, &mut hogs).await;
            if worker_connections(&mut admin).await == 0 {
                break;
            }
        }
        fill_connections(&hog_options, &mut hogs).await;
    }
    let locked_out_at = Instant::now();
    while locked_out_at.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            worker_connections(&mut admin).await,
            0,
            "no worker reconnects while the server has no connection to give"
        );
    }
    let held_connections = hogs.len() + 1;
    drop(hogs);
    let _ = admin.close().await;
    let released_at = epoch_now();

    test.wait_for_success().await;
    test.assert_each_task_succeeded_once().await;
    test.assert_heartbeats_after(&workers, released_at).await;
    test.finish(&format!(
        "held {held_connections} connections, workers locked out for 3 s"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_lease_reruns_within_30_seconds() {
    let mut test = FaultTest::on_test_database("default_lease", None).await;
    let victim = test.spawn_worker().await;
    test.spawn_worker().await;
    test.submit().await;

    let kill = test.kill_busy_worker(victim).await;

    test.wait_for_success().await;
    test.assert_each_task_succeeded_once().await;
    let rescues = test.assert_rescued(&kill.left_running).await;
    let gaps: Vec<f64> = rescues.iter().map(|r| r.restarted_at - kill.at).collect();
    let slowest = gaps.iter().copied().fold(f64::MIN, f64::max);
    let fastest = gaps.iter().copied().fold(f64::MAX, f64::min);
    assert!(
        slowest < 30.0,
        "with the default lease, a killed worker's tasks run again within 30 s of the kill; the slowest took {slowest:.1} s"
    );
    test.finish(&format!(
        "{} rescued attempts ran again {fastest:.1} to {slowest:.1} s after the kill",
        rescues.len()
    ));
}

/// The progress of the run, read in one query.
#[derive(Debug)]
struct Progress {
    status: String,
    succeeded: i64,
    /// Running tasks whose lease lapsed longer ago than the test allows.
    stale: i64,
    /// The first task that failed, with its error.
    failure: Option<String>,
    /// The worker of each running task with a live lease.
    holders: Vec<Uuid>,
}

impl Progress {
    /// Counts the running tasks with a live lease that a worker has.
    fn held_by(&self, worker_id: Uuid) -> usize {
        self.holders.iter().filter(|&&id| id == worker_id).count()
    }
}

/// An attempt of a task: task index and attempt number.
type Attempt = (i32, i32);

/// A worker killed with SIGKILL.
struct Kill {
    /// When, in seconds since the Unix epoch.
    at: f64,
    /// The attempts it left `running`, read once the server had finished its last statements.
    left_running: Vec<Attempt>,
}

/// The outcome of an attempt that a killed worker had, read from the events, with times in
/// seconds since the Unix epoch.
#[derive(sqlx::FromRow)]
struct AttemptFate {
    idx: i32,
    attempt: i32,
    /// Whether the attempt itself succeeded: its commit landed as the worker died.
    succeeded: bool,
    /// When the reaper ended the attempt because its lease expired.
    rescued_at: Option<f64>,
    /// When the task's next attempt started.
    restarted_at: Option<f64>,
}

/// A killed worker's attempt that the reaper rescued.
#[derive(Debug)]
struct Rescue {
    idx: i32,
    /// When the task's next attempt started, in seconds since the Unix epoch.
    restarted_at: f64,
}

struct WorkerProcess {
    label: usize,
    child: Child,
    log: PathBuf,
    id: Uuid,
    killed: bool,
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if !self.killed && matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A private PostgreSQL cluster in a temporary directory, stopped when dropped.
struct PrivateCluster {
    cluster: LocalCluster,
    /// Where the server's log is copied before the directory is removed.
    log_copy: PathBuf,
    _dir: tempfile::TempDir,
}

impl PrivateCluster {
    async fn start(log_dir: &Path) -> Self {
        // When this process is root, the cluster runs as the `postgres` user, which must be
        // able to reach the data directory.
        let dir = tempfile::Builder::new()
            .prefix("caraml-fault-")
            .tempdir_in("/tmp")
            .expect("create a directory for the private cluster");
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755))
            .expect("open the cluster directory to the postgres user");
        let data = dir.path().join("data");
        let cluster = LocalCluster::start(&data).await.unwrap_or_else(|err| {
            panic!("the private cluster starts in {}: {err}", data.display())
        });
        Self {
            cluster,
            log_copy: log_dir.join("postgres.log"),
            _dir: dir,
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Stopping is async, and this may drop inside the test's runtime, so a thread of its
        // own runs the stop.
        let cluster = self.cluster.clone();
        let stopped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())
                .and_then(|runtime| {
                    runtime
                        .block_on(cluster.stop())
                        .map_err(|err| err.to_string())
                })
        })
        .join();
        if let Ok(Err(err)) = stopped {
            eprintln!("could not stop the private cluster: {err}");
        }
        let _ = std::fs::copy(self.cluster.data_dir().join("postgres.log"), &self.log_copy);
    }
}

/// One fault test: its database, its worker processes and its run.
struct FaultTest {
    name: &'static str,
    started: Instant,
    // Fields drop in order: the workers go before the cluster they use.
    workers: Vec<WorkerProcess>,
    store: Store,
    url: String,
    log_dir: PathBuf,
    /// `--lease-seconds` of the workers, or `None` for the CLI's default.
    lease_seconds: Option<f64>,
    /// How long a running task may keep a lapsed lease before the test fails.
    stale_limit: Duration,
    run_id: Option<Uuid>,
    cluster: Option<PrivateCluster>,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl FaultTest {
    /// Creates a test on a fresh database of the server that `DATABASE_URL` names.
    async fn on_test_database(name: &'static str, lease_seconds: Option<f64>) -> Self {
        let guard = ONE_AT_A_TIME.lock().await;
        let db = TestDatabase::create().await;
        // The test uses a pool of its own, under another application name than the
        // workers', so that terminating the workers' connections spares it.
        db.store.pool().close().await;
        Self::new(name, lease_seconds, db.url, log_dir(name), None, guard).await
    }

    /// Creates a test on a private cluster, which it starts now and stops when dropped.
    async fn on_private_cluster(name: &'static str, lease_seconds: Option<f64>) -> Self {
        let guard = ONE_AT_A_TIME.lock().await;
        let log_dir = log_dir(name);
        let cluster = PrivateCluster::start(&log_dir).await;
        let url = cluster.cluster.url();
        Self::new(name, lease_seconds, url, log_dir, Some(cluster), guard).await
    }

    async fn new(
        name: &'static str,
        lease_seconds: Option<f64>,
        url: String,
        log_dir: PathBuf,
        cluster: Option<PrivateCluster>,
        guard: MutexGuard<'static, ()>,
    ) -> Self {
        let options = PgConnectOptions::from_str(&url)
            .expect("the database URL parses")
            .application_name("caraml-fault-test");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .unwrap_or_else(|err| panic!("connect the test to {url}: {err}"));
        let store = Store::new(pool);
        store.migrate().await.expect("migrations apply");
        let registry = caraml::registry().expect("the built-in registry is valid");
        store
            .register(&registry)
            .await
            .expect("register task kinds");
        let reap_interval = match lease_seconds {
            // The CLI reaps every two thirds of a lease, but no more often than once a second.
            Some(seconds) => {
                Duration::from_secs_f64(seconds * 2.0 / 3.0).max(Duration::from_secs(1))
            }
            None => DEFAULT_REAP_INTERVAL,
        };
        Self {
            name,
            started: Instant::now(),
            workers: Vec::new(),
            store,
            url,
            log_dir,
            lease_seconds,
            stale_limit: reap_interval + FAULT_SLACK,
            run_id: None,
            cluster,
            _one_at_a_time: guard,
        }
    }

    fn cluster(&self) -> &LocalCluster {
        &self
            .cluster
            .as_ref()
            .expect("this test runs on a private cluster")
            .cluster
    }

    fn run_id(&self) -> Uuid {
        self.run_id.expect("the test submitted its run")
    }

    fn worker_id(&self, label: usize) -> Uuid {
        self.worker(label).id
    }

    fn worker(&self, label: usize) -> &WorkerProcess {
        self.workers
            .iter()
            .find(|w| w.label == label)
            .expect("the test spawned this worker")
    }

    /// Starts a `caraml worker` process, waits until it has registered and returns its label.
    async fn spawn_worker(&mut self) -> usize {
        let label = self.workers.len();
        let log = self.log_dir.join(format!("worker-{label}.log"));
        let file = File::create(&log)
            .unwrap_or_else(|err| panic!("create the worker log {}: {err}", log.display()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_caraml"));
        command.args(["worker", "--slots", SLOTS]);
        if let Some(seconds) = self.lease_seconds {
            command.args(["--lease-seconds", &seconds.to_string()]);
        }
        command
            .env("DATABASE_URL", &self.url)
            .env("CARAML_LOG", WORKER_LOG_FILTER)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("share the worker log"))
            .stderr(file);
        let child = command.spawn().expect("spawn `caraml worker`");

        let pid = child.id() as i32;
        // Kept before waiting, so that the guard kills it if it never registers.
        self.workers.push(WorkerProcess {
            label,
            child,
            log,
            id: Uuid::nil(),
            killed: false,
        });

        let store = self.store.clone();
        let id = poll_until(
            &format!("worker {label} (pid {pid}) to register"),
            STEP_LIMIT,
            async || {
                self.check_workers_alive();
                sqlx::query_scalar::<_, Uuid>(
                    "SELECT id FROM workers WHERE pid = $1 ORDER BY started_at DESC LIMIT 1",
                )
                .bind(pid)
                .fetch_optional(store.pool())
                .await
                .map_err(|err| err.to_string())?
                .ok_or_else(|| "not registered yet".to_owned())
            },
        )
        .await;
        self.workers[label].id = id;
        label
    }

    /// Waits until worker `label` holds enough running tasks for a kill to interrupt work
    /// mid-task, then kills it.
    async fn kill_busy_worker(&mut self, label: usize) -> Kill {
        let worker_id = self.worker_id(label);
        self.wait_progress(
            &format!("the victim to hold {KILL_WHEN_HOLDING} running tasks after 100 successes"),
            |p| p.succeeded >= 100 && p.held_by(worker_id) >= KILL_WHEN_HOLDING,
        )
        .await;
        self.kill_worker(label).await
    }

    /// Kills a worker with SIGKILL and reaps it, then reads the attempts it left `running`.
    async fn kill_worker(&mut self, label: usize) -> Kill {
        let worker = self
            .workers
            .iter_mut()
            .find(|w| w.label == label)
            .expect("the test spawned this worker");
        kill(Pid::from_raw(worker.child.id() as i32), Signal::SIGKILL)
            .expect("SIGKILL reaches the worker");
        let killed_at = epoch_now();
        worker.child.wait().expect("the killed worker is reaped");
        worker.killed = true;
        let worker_id = worker.id;
        // The server may still be applying a commit that the worker sent just before it died,
        // so give it a moment. `assert_rescued` recognises a commit that lands later anyway.
        tokio::time::sleep(SETTLE).await;
        let left_running = self.running_attempts(worker_id).await;
        // NOTE: if every attempt the worker had were committing as it died, none would be
        // left to rescue and this would fail. Killing only a worker with several running
        // tasks makes that unlikely.
        assert!(
            !left_running.is_empty(),
            "worker {label} left running tasks when it was killed"
        );
        Kill {
            at: killed_at,
            left_running,
        }
    }

    /// Panics when a worker that the test did not kill has exited.
    fn check_workers_alive(&mut self) {
        for worker in &mut self.workers {
            if worker.killed {
                continue;
            }
            if let Ok(Some(status)) = worker.child.try_wait() {
                worker.killed = true;
                panic!(
                    "worker {} exited on its own ({status}); workers must outlast the fault. Log: {}",
                    worker.label,
                    worker.log.display()
                );
            }
        }
    }

    async fn submit(&mut self) {
        let submitted = self
            .store
            .submit(
                Submission::Spec(layered_dag(&format!("faults-{}", self.name))),
                Value::Null,
                None,
            )
            .await
            .expect("the DAG is accepted");
        self.run_id = Some(submitted.id);
    }

    async fn progress(&self) -> Result<Progress, sqlx::Error> {
        let row: (String, i64, i64, Option<String>, Vec<Uuid>) = sqlx::query_as(
            "SELECT r.status,
                    count(*) FILTER (WHERE t.status = 'succeeded'),
                    count(*) FILTER (WHERE t.status = 'running'
                        AND t.lease_expires_at < now() - $2 * interval '1 millisecond'),
                    (array_agg(t.name || ': ' || coalesce(t.error, 'no error'))
                        FILTER (WHERE t.status IN ('failed', 'skipped', 'cancelled')))[1],
                    coalesce(array_agg(t.worker_id) FILTER (
                        WHERE t.status = 'running' AND t.lease_expires_at > now()), '{}')
             FROM runs r JOIN task_runs t ON t.run_id = r.id
             WHERE r.id = $1
             GROUP BY r.status",
        )
        .bind(self.run_id())
        .bind(self.stale_limit.as_millis() as f64)
        .fetch_one(self.store.pool())
        .await?;
        Ok(Progress {
            status: row.0,
            succeeded: row.1,
            stale: row.2,
            failure: row.3,
            holders: row.4,
        })
    }

    /// Polls the run's progress until `done` is true, checking on every poll that no worker
    /// died, no task failed and no lapsed lease went unrescued for too long.
    async fn wait_progress(
        &mut self,
        condition: &str,
        done: impl Fn(&Progress) -> bool,
    ) -> Progress {
        self.wait_progress_for(condition, STEP_LIMIT, done).await
    }

    async fn wait_progress_for(
        &mut self,
        condition: &str,
        limit: Duration,
        done: impl Fn(&Progress) -> bool,
    ) -> Progress {
        let condition = format!("{condition} (worker logs in {})", self.log_dir.display());
        poll_until(&condition, limit, async || {
            self.check_workers_alive();
            let progress = self
                .progress()
                .await
                .map_err(|err| format!("the progress query failed: {err}"))?;
            if let Some(failure) = &progress.failure {
                panic!(
                    "a task did not succeed ({failure}); tasks must succeed despite the fault. Logs: {}",
                    self.log_dir.display()
                );
            }
            assert!(
                progress.stale == 0,
                "{} running tasks kept a lease that lapsed over {:?} ago: nothing may stay running without a live lease. Logs: {}",
                progress.stale,
                self.stale_limit,
                self.log_dir.display()
            );
            if done(&progress) {
                Ok(progress)
            } else {
                Err(format!("{progress:?}"))
            }
        })
        .await
    }

    async fn wait_for_success(&mut self) {
        let progress = self
            .wait_progress_for("the run to finish", RUN_LIMIT, |p| {
                !matches!(p.status.as_str(), "queued" | "running")
            })
            .await;
        assert_eq!(
            progress.status, "succeeded",
            "the run succeeds despite the fault: {progress:?}"
        );
    }

    /// Returns the attempts of a worker whose task run is still `running`.
    async fn running_attempts(&self, worker_id: Uuid) -> Vec<Attempt> {
        sqlx::query_as(
            "SELECT idx, attempt FROM task_runs
             WHERE run_id = $1 AND worker_id = $2 AND status = 'running'",
        )
        .bind(self.run_id())
        .bind(worker_id)
        .fetch_all(self.store.pool())
        .await
        .expect("read a worker's running attempts")
    }

    /// Checks the final state: every task succeeded, with exactly one `task.succeeded`
    /// event each, and nothing is running.
    async fn assert_each_task_succeeded_once(&self) {
        let pool = self.store.pool();
        let (status, counted, rows, succeeded, running, lapsed): (String, i32, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT r.status, r.tasks_succeeded, count(t.idx),
                    count(*) FILTER (WHERE t.status = 'succeeded'),
                    count(*) FILTER (WHERE t.status = 'running'),
                    count(*) FILTER (WHERE t.status = 'running' AND t.lease_expires_at <= now())
             FROM runs r JOIN task_runs t ON t.run_id = r.id
             WHERE r.id = $1
             GROUP BY r.status, r.tasks_succeeded",
            )
            .bind(self.run_id())
            .fetch_one(pool)
            .await
            .expect("read the final state");
        assert_eq!(status, "succeeded", "the run succeeded");
        assert_eq!(rows, TASKS, "the run has all {TASKS} tasks");
        assert_eq!(succeeded, TASKS, "every task run row is `succeeded`");
        assert_eq!(i64::from(counted), TASKS, "the run counted every task once");
        assert_eq!(lapsed, 0, "no running task has a lapsed lease");
        assert_eq!(running, 0, "no task is left running");

        let wrong: Vec<(String, i64)> = sqlx::query_as(
            "SELECT t.name, count(e.id)
             FROM task_runs t
             LEFT JOIN events e ON e.run_id = t.run_id AND e.task_idx = t.idx
                               AND e.kind = 'task.succeeded'
             WHERE t.run_id = $1
             GROUP BY t.name
             HAVING count(e.id) <> 1",
        )
        .bind(self.run_id())
        .fetch_all(pool)
        .await
        .expect("count success events per task");
        assert!(
            wrong.is_empty(),
            "every task has exactly one `task.succeeded` event; these do not (task, events): {:?}",
            &wrong[..wrong.len().min(20)]
        );
    }

    /// Checks what became of the attempts a killed worker left running. Each either
    /// succeeded as that attempt, because the worker's last commit landed as it died, or was
    /// rescued with a `task.retrying` event saying its lease expired and then ran again. At
    /// least one must have been rescued. Returns the rescued ones.
    async fn assert_rescued(&self, left_running: &[Attempt]) -> Vec<Rescue> {
        let idxs: Vec<i32> = left_running.iter().map(|a| a.0).collect();
        let attempts: Vec<i32> = left_running.iter().map(|a| a.1).collect();
        let fates: Vec<AttemptFate> = sqlx::query_as(
            "SELECT s.idx, s.attempt,
                    EXISTS (SELECT FROM events e
                            WHERE e.run_id = $1 AND e.task_idx = s.idx AND e.attempt = s.attempt
                              AND e.kind = 'task.succeeded') AS succeeded,
                    (SELECT extract(epoch FROM min(e.at))::float8 FROM events e
                     WHERE e.run_id = $1 AND e.task_idx = s.idx AND e.attempt = s.attempt
                       AND e.kind = 'task.retrying' AND e.detail->>'error' LIKE 'lease expired%')
                      AS rescued_at,
                    (SELECT extract(epoch FROM min(e.at))::float8 FROM events e
                     WHERE e.run_id = $1 AND e.task_idx = s.idx AND e.attempt = s.attempt + 1
                       AND e.kind = 'task.running') AS restarted_at
             FROM unnest($2::int4[], $3::int4[]) AS s(idx, attempt)",
        )
        .bind(self.run_id())
        .bind(&idxs)
        .bind(&attempts)
        .fetch_all(self.store.pool())
        .await
        .expect("read the rescue events");

        let mut rescues = Vec::new();
        for fate in fates {
            let AttemptFate {
                idx,
                attempt,
                succeeded,
                rescued_at,
                restarted_at,
            } = fate;
            if succeeded {
                assert!(
                    rescued_at.is_none(),
                    "attempt {attempt} of task {idx} either succeeded or was rescued, not both"
                );
                continue;
            }
            let rescued_at = rescued_at.unwrap_or_else(|| {
                panic!(
                    "attempt {attempt} of task {idx}, left running by the killed worker, was rescued with a `lease expired` retry"
                )
            });
            let restarted_at = restarted_at.unwrap_or_else(|| {
                panic!("task {idx} ran again after attempt {attempt} was rescued")
            });
            assert!(
                restarted_at >= rescued_at,
                "task {idx} ran again only after its rescue"
            );
            rescues.push(Rescue { idx, restarted_at });
        }

        assert!(
            !rescues.is_empty(),
            "at least one attempt of the killed worker was stranded and rescued; it left {left_running:?}"
        );
        rescues
    }

    /// Waits until every listed worker has heartbeated after `after` (seconds since the
    /// epoch): they reconnected on their own.
    async fn assert_heartbeats_after(&mut self, labels: &[usize], after: f64) {
        let ids: Vec<Uuid> = labels.iter().map(|&label| self.worker_id(label)).collect();
        let store = self.store.clone();
        poll_until(
            &format!(
                "every worker to heartbeat after the fault (logs in {})",
                self.log_dir.display()
            ),
            STEP_LIMIT,
            async || {
                self.check_workers_alive();
                let fresh: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM workers
                     WHERE id = ANY($1) AND extract(epoch FROM heartbeat_at) > $2",
                )
                .bind(&ids)
                .bind(after)
                .fetch_one(store.pool())
                .await
                .map_err(|err| err.to_string())?;
                if fresh == ids.len() as i64 {
                    Ok(())
                } else {
                    Err(format!("{fresh} of {} workers heartbeated", ids.len()))
                }
            },
        )
        .await;
    }

    fn finish(&self, detail: &str) {
        eprintln!(
            "{}: run of {TASKS} tasks succeeded once each in {:.1} s ({detail}); logs in {}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            self.log_dir.display()
        );
    }
}

/// Builds a DAG of `LAYERS` layers of `WIDTH` sleep tasks. Each task after the first layer
/// depends on the task above it and on that task's neighbour, so a stalled task soon delays
/// the whole run.
fn layered_dag(name: &str) -> WorkflowSpec {
    let mut tasks = Vec::with_capacity(WIDTH * LAYERS);
    for layer in 0..LAYERS {
        for i in 0..WIDTH {
            let mut task = json!({
                "name": format!("l{layer}_{i}"),
                "kind": "sleep",
                "input": {"seconds": SLEEP_SECONDS},
                "retry": {"max_attempts": 20, "initial_backoff_seconds": 0.1, "max_backoff_seconds": 1},
            });
            if layer > 0 {
                task["depends_on"] = json!([
                    format!("l{}_{i}", layer - 1),
                    format!("l{}_{}", layer - 1, (i + 1) % WIDTH),
                ]);
            }
            tasks.push(task);
        }
    }
    serde_json::from_value(json!({"name": name, "tasks": tasks}))
        .expect("the layered DAG is a valid workflow spec")
}

/// Opens connections until the server rejects one for lack of slots.
async fn fill_connections(options: &PgConnectOptions, connections: &mut Vec<PgConnection>) {
    for _ in 0..300 {
        match PgConnection::connect_with(options).await {
            Ok(connection) => connections.push(connection),
            Err(sqlx::Error::Database(err))
                if err.code().as_deref() == Some(TOO_MANY_CONNECTIONS) =>
            {
                return;
            }
            Err(err) => panic!("opening connections fails only for lack of slots: {err}"),
        }
    }
    panic!("the server accepted 300 more connections without rejecting one");
}

async fn terminate_worker_connections(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = 'caraml' AND datname = current_database()
           AND pid <> pg_backend_pid()",
    )
    .fetch_one(admin)
    .await
    .expect("terminate the workers' connections")
}

async fn worker_connections(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'caraml'")
        .fetch_one(admin)
        .await
        .expect("count the workers' connections")
}

/// Calls `probe` every `POLL` until it returns `Ok`, and panics after `limit` with the last
/// state it reported.
async fn poll_until<T>(
    condition: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(state) => state,
        };
        assert!(
            started.elapsed() < limit,
            "{condition} did not happen within {limit:?}; last seen: {last}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Creates the test's log directory under target/, removing what an earlier run left.
fn log_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("caraml-faults")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|err| panic!("create the log directory {}: {err}", dir.display()));
    dir
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}
