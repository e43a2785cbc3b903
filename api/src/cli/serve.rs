//! `caraml up`, `server`, `worker` and `migrate`.

use std::process::ExitCode;
use std::time::Duration;

use caraml_engine::postgres::LocalCluster;
use caraml_engine::{
    DEFAULT_PROJECT, Registry, RetentionOptions, RunView, Scheduler, Store, Submission, Worker,
    WorkerOptions,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::follow::{self, Event, EventPage, RunSource};
use super::{DatabaseArgs, RetentionArgs, ServerArgs, UpArgs, WorkerArgs, WorkerFlags};
use crate::auth::Role;
use crate::auth::tokens;

/// Writes a line to stderr, ignoring a closed stream: these lines come at shutdown, when
/// the reader of a pipe may already be gone.
macro_rules! warn_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Connections each process keeps at most.
const POOL_SIZE: u32 = 16;

/// Largest `--log-limit-bytes`: a worker buffers up to this much per running attempt
/// while the database is slow to take the lines.
const MAX_LOG_LIMIT_BYTES: usize = 1 << 30;

pub(super) async fn connect(url: &str) -> Result<Store, String> {
    let store = Store::connect(url, POOL_SIZE).await.map_err(|err| {
        format!(
            "cannot connect to PostgreSQL at {}: {err}; check DATABASE_URL",
            redact(url)
        )
    })?;
    store.migrate().await.map_err(|err| err.to_string())?;
    Ok(store)
}

pub(super) fn require_url(args: &DatabaseArgs) -> Result<String, String> {
    args.database_url.clone().filter(|url| !url.is_empty()).ok_or_else(|| {
        "DATABASE_URL is not set; set it (or pass --database-url) to a PostgreSQL database such as postgres://postgres@127.0.0.1:5432/postgres".to_owned()
    })
}

pub(super) async fn migrate(args: DatabaseArgs) -> Result<ExitCode, String> {
    connect(&require_url(&args)?).await?;
    say!("migrations applied");
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn server(args: ServerArgs, registry: Registry) -> Result<ExitCode, String> {
    let retention = retention_options(&args.retention)?;
    let store = connect(&require_url(&args.database)?).await?;
    register(&store, &registry).await?;
    let shutdown = shutdown_on_signal();
    let listener = bind(&args).await?;
    if let Ok(address) = listener.local_addr() {
        say!("API: http://{address}/v1/runs, dashboard: http://{address}/ (stop with Ctrl-C)");
    }
    // The API process starts scheduled runs too, so schedules keep their ticks while no
    // worker runs; the runs wait for a worker like any other.
    let scheduler = tokio::spawn(
        Scheduler::builder(store.clone())
            .build()
            .run(shutdown.clone()),
    );
    // Without a worker in this process, the API process sweeps expired runs itself.
    let sweeper = tokio::spawn(caraml_engine::retention::run(
        store.clone(),
        retention,
        shutdown.clone(),
    ));
    let served = crate::http::serve(listener, store, args.body_limit_bytes, shutdown.clone()).await;
    shutdown.cancel();
    if scheduler.await.is_err() {
        warn_line!("warning: the scheduler panicked");
    }
    let _ = sweeper.await;
    served.map_err(|err| format!("the API server failed: {err}"))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn worker(args: WorkerArgs, registry: Registry) -> Result<ExitCode, String> {
    let retention = retention_options(&args.retention)?;
    let worker_options = worker_options(&args.worker, retention)?;
    let extra_queues = extra_queues(&args.worker.also)?;
    let store = connect(&require_url(&args.database)?).await?;
    let shutdown = shutdown_on_signal();

    // Each extra queue gets a worker of its own in this process, so its slots are its own.
    // Schedules and the retention sweep run once, in the main worker.
    let mut extras = Vec::with_capacity(extra_queues.len());
    for (queue, slots) in extra_queues {
        let options = WorkerOptions {
            queue,
            slots,
            schedules: false,
            retention: RetentionOptions {
                default: None,
                interval: Duration::from_secs(86_400),
                ..worker_options.retention.clone()
            },
            ..worker_options.clone()
        };
        let worker = Worker::builder(store.clone(), registry.clone())
            .options(options)
            .build();
        extras.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    let main = Worker::builder(store, registry)
        .options(worker_options)
        .build()
        .run(shutdown)
        .await;
    for extra in extras {
        match extra.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => warn_line!("warning: a worker stopped with an error: {err}"),
            Err(err) => warn_line!("warning: a worker panicked: {err}"),
        }
    }
    main.map_err(|err| format!("the worker stopped: {err}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Parses `--also QUEUE=SLOTS` values.
fn extra_queues(values: &[String]) -> Result<Vec<(String, usize)>, String> {
    values
        .iter()
        .map(|value| {
            let Some((queue, slots)) = value.split_once('=') else {
                return Err(format!(
                    "--also is `{value}`; write QUEUE=SLOTS, such as gpu=1"
                ));
            };
            caraml_engine::spec::check_name("--also queue", queue)?;
            match slots.parse::<usize>() {
                Ok(slots) if (1..=4096).contains(&slots) => Ok((queue.to_owned(), slots)),
                _ => Err(format!(
                    "--also `{value}` has {slots} slots; use a whole number from 1 to 4096"
                )),
            }
        })
        .collect()
}

pub(super) async fn up(args: UpArgs, registry: Registry) -> Result<ExitCode, String> {
    // Flags are checked before a private cluster starts, so a typo costs no initdb.
    worker_options(&args.worker, retention_options(&args.server.retention)?)?;
    if let Some(example) = &args.example
        && !registry.workflows().iter().any(|w| &w.name == example)
    {
        return Err(format!(
            "--example is `{example}`, which is not a built-in workflow; the built-in example is `flights`"
        ));
    }

    let (url, cluster) = match args
        .server
        .database
        .database_url
        .clone()
        .filter(|u| !u.is_empty())
    {
        Some(url) => (url, None),
        None => {
            let dir = args.data_dir.join("postgres");
            let cluster = LocalCluster::start(&dir)
                .await
                .map_err(|err| err.to_string())?;
            say!(
                "PostgreSQL: private cluster in {} on 127.0.0.1:{} (set DATABASE_URL to use another database)",
                cluster.data_dir().display(),
                cluster.port()
            );
            (cluster.url(), Some(cluster))
        }
    };
    // The private cluster's port changes from start to start, so a token command could not
    // reach it later: the first admin token is kept next to the cluster instead.
    let token_file = cluster
        .as_ref()
        .map(|_| args.data_dir.join(ADMIN_TOKEN_FILE));
    let result = up_with(&url, args, registry, token_file).await;
    // A cluster that another `caraml up` started keeps running for that process.
    if let Some(cluster) = cluster.filter(|cluster| cluster.started_here())
        && let Err(err) = cluster.stop().await
    {
        warn_line!("warning: could not stop the private PostgreSQL cluster: {err}");
    }
    result
}

/// File in the data directory that keeps the first admin token of a private cluster.
const ADMIN_TOKEN_FILE: &str = "admin-token";

async fn up_with(
    url: &str,
    args: UpArgs,
    registry: Registry,
    token_file: Option<std::path::PathBuf>,
) -> Result<ExitCode, String> {
    let store = connect(url).await?;
    register(&store, &registry).await?;

    let shutdown = shutdown_on_signal();
    let listener = bind(&args.server).await?;
    let address = listener
        .local_addr()
        .map_err(|err| format!("cannot read the listening address: {err}"))?;
    let server = tokio::spawn(crate::http::serve(
        listener,
        store.clone(),
        args.server.body_limit_bytes,
        shutdown.clone(),
    ));
    let options = worker_options(&args.worker, retention_options(&args.server.retention)?)?;
    let worker = tokio::spawn(
        Worker::builder(store.clone(), registry)
            .options(options)
            .build()
            .run(shutdown.clone()),
    );
    let stop = if args.once {
        "exits when the example ends"
    } else {
        "stop with Ctrl-C"
    };
    say!("Dashboard: http://{address}/  API: http://{address}/v1 ({stop})");
    let server_url = format!("http://{address}");
    if server_url != format!("http://{}", super::DEFAULT_LISTEN) {
        say!("  export CARAML_SERVER={server_url}");
    }
    match first_admin_token(&store).await? {
        Some(token) => {
            say!(
                "Admin token of project `{DEFAULT_PROJECT}`, shown only now; log in to the dashboard with it, and give it to the CLI:"
            );
            say!("  export CARAML_TOKEN={token}");
            if let Some(file) = &token_file {
                match save_token(file, &token) {
                    Ok(()) => say!(
                        "  (also saved, readable by you alone, in {})",
                        file.display()
                    ),
                    Err(err) => warn_line!(
                        "warning: could not save the admin token in {}: {err}",
                        file.display()
                    ),
                }
            }
        }
        None => match token_file.filter(|file| file.exists()) {
            Some(file) => say!(
                "Log in with the admin token saved in {}: export CARAML_TOKEN=$(cat {})",
                file.display(),
                file.display()
            ),
            None => say!(
                "Log in with a token of project `{DEFAULT_PROJECT}`; create one with `DATABASE_URL={} caraml token create --project {DEFAULT_PROJECT} --role admin`",
                redact(url)
            ),
        },
    }

    let mut code = ExitCode::SUCCESS;
    if let Some(example) = &args.example {
        code = run_example(&store, example, &args).await?;
        if args.once {
            shutdown.cancel();
        }
    }

    shutdown.cancelled().await;
    match worker.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn_line!("warning: the worker stopped with an error: {err}"),
        Err(err) => warn_line!("warning: the worker panicked: {err}"),
    }
    if let Ok(Err(err)) = server.await {
        warn_line!("warning: the API server stopped with an error: {err}");
    }
    Ok(code)
}

/// Creates an admin token of the default project when the project has none yet, which is
/// the case on the first start against a database.
async fn first_admin_token(store: &Store) -> Result<Option<String>, String> {
    let existing = tokens::list_tokens(store.pool(), Some(DEFAULT_PROJECT))
        .await
        .map_err(|err| err.to_string())?;
    if !existing.is_empty() {
        return Ok(None);
    }
    let created = tokens::create_token(
        store.pool(),
        DEFAULT_PROJECT,
        Role::Admin,
        "first admin token, created by caraml up",
        None,
    )
    .await
    .map_err(|err| err.to_string())?;
    Ok(Some(created.token))
}

/// Writes the token to a file only its owner can read.
fn save_token(file: &std::path::Path, token: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)?;
    writeln!(out, "{token}")
}

async fn run_example(store: &Store, example: &str, args: &UpArgs) -> Result<ExitCode, String> {
    let output_dir = std::path::absolute(args.output_dir.join(example))
        .map_err(|err| format!("invalid --output-dir {}: {err}", args.output_dir.display()))?;
    let submitted = store
        .submit(
            Submission::Workflow(example.to_owned()),
            json!({"out_dir": output_dir}),
            None,
        )
        .await
        .map_err(|err| match err {
            caraml_engine::Error::NotFound { .. } => {
                format!("no workflow named `{example}`; the built-in example is `flights`")
            }
            other => other.to_string(),
        })?;
    say!("example `{example}`: run {} submitted", submitted.id);
    let source = StoreRun {
        store,
        id: submitted.id,
    };
    let run = follow::follow(&source, follow::POLL_INTERVAL).await?;
    follow::print_result(&run);
    say!("task logs: caraml run logs {}", run.id);
    if run.status == "succeeded" {
        say!("results are in {}", output_dir.display());
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// A run followed through the store of this process.
struct StoreRun<'a> {
    store: &'a Store,
    id: Uuid,
}

impl RunSource for StoreRun<'_> {
    async fn summary(&self) -> Result<RunView, String> {
        self.store
            .run_summary(self.id)
            .await
            .map_err(|err| err.to_string())
    }

    async fn events(&self, after: i64) -> Result<EventPage, String> {
        let events = self
            .store
            .run_events(self.id, after, follow::EVENT_PAGE)
            .await
            .map_err(|err| err.to_string())?;
        let next_after = (events.len() == follow::EVENT_PAGE as usize)
            .then(|| events.last().map(|event| event.id))
            .flatten();
        let events = events
            .into_iter()
            .map(|event| Event {
                id: event.id,
                kind: event.kind,
                task: event.task,
            })
            .collect();
        Ok(EventPage { events, next_after })
    }

    async fn full(&self) -> Result<RunView, String> {
        self.store
            .get_run(self.id)
            .await
            .map_err(|err| err.to_string())
    }
}

/// Records the kinds and workflows this process can run, so that submissions naming them
/// validate before a worker has started.
async fn register(store: &Store, registry: &Registry) -> Result<(), String> {
    store
        .register(registry)
        .await
        .map_err(|err| format!("cannot register task kinds and workflows: {err}"))
}

fn retention_options(args: &RetentionArgs) -> Result<RetentionOptions, String> {
    let default = caraml_engine::retention::parse_retention("--retention", &args.retention)
        .map_err(|err| format!("{err} (also settable with CARAML_RETENTION)"))?;
    Ok(RetentionOptions {
        default,
        ..RetentionOptions::default()
    })
}

fn worker_options(
    flags: &WorkerFlags,
    retention: RetentionOptions,
) -> Result<WorkerOptions, String> {
    if !flags.lease_seconds.is_finite() || !(1.0..=3600.0).contains(&flags.lease_seconds) {
        return Err(format!(
            "--lease-seconds is {}; use a number of seconds from 1 to 3600",
            flags.lease_seconds
        ));
    }
    if flags.slots == 0 || flags.slots > 4096 {
        return Err(format!("--slots is {}; use 1 to 4096", flags.slots));
    }
    if flags.log_limit_bytes > MAX_LOG_LIMIT_BYTES {
        return Err(format!(
            "--log-limit-bytes is {}; use 0 to {MAX_LOG_LIMIT_BYTES} (1 GiB)",
            flags.log_limit_bytes
        ));
    }
    caraml_engine::spec::check_name("--queue", &flags.queue)?;
    let lease = Duration::from_secs_f64(flags.lease_seconds);
    let options = WorkerOptions {
        queue: flags.queue.clone(),
        slots: flags.slots,
        prefetch: flags.prefetch,
        lease,
        heartbeat_interval: lease / 3,
        reap_interval: (lease * 2 / 3).max(Duration::from_secs(1)),
        retention,
        log_limit_bytes: flags.log_limit_bytes,
        ..WorkerOptions::default()
    };
    Ok(options)
}

async fn bind(args: &ServerArgs) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| {
            format!(
                "cannot listen on {}: {err}; choose another address with --listen or CARAML_LISTEN",
                args.listen
            )
        })
}

/// Returns a token cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

/// Hides the password of a connection URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
