//! The `caraml` command line: servers and workers, and a client of the HTTP API.

/// Prints a line to standard output; a closed pipe (as with `caraml run list | head`) ends
/// the process quietly instead of panicking like `println!`.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

mod client;
mod follow;
mod logs;
mod operations;
mod schedules;
mod serve;
mod services;
mod tokens;
mod workflows;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use caraml_engine::Registry;
use clap::{Args, Parser, Subcommand};

/// Default address of the API, for both `caraml up` and the client commands.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";

#[derive(Debug, Parser)]
#[command(
    name = "caraml",
    version,
    about = "CaraML: durable task graphs for ML teams"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API and a worker in one process; starts a private PostgreSQL when no
    /// database is configured.
    Up(UpArgs),
    /// Run the HTTP API only.
    Server(ServerArgs),
    /// Run a worker only.
    Worker(WorkerArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Submit, inspect and control runs through the API.
    #[command(subcommand)]
    Run(RunCommand),
    /// Inspect stored workflows through the API.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Start, replace, restart, stop and list long-lived services.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Create, list, pause, resume and delete cron schedules through the API.
    #[command(subcommand)]
    Schedule(schedules::ScheduleCommand),
    /// Inspect tasks that failed for good through the API.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Create, list and revoke API tokens, directly in the database.
    #[command(subcommand)]
    Token(tokens::TokenCommand),
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Debug, Args, Clone)]
struct RetentionArgs {
    /// Age after which finished runs are deleted, such as 7d or 12h, for workflows that set
    /// no retention of their own; 0 or off keeps them. Set the same value on every process.
    #[arg(long, env = "CARAML_RETENTION", default_value = "7d")]
    retention: String,
}

#[derive(Debug, Args)]
struct ServerArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Address the API listens on.
    #[arg(long, env = "CARAML_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = crate::http::DEFAULT_BODY_LIMIT)]
    body_limit_bytes: usize,
}

#[derive(Debug, Args, Clone)]
struct WorkerFlags {
    /// Tasks run at the same time.
    #[arg(long, default_value_t = 8)]
    slots: usize,
    /// Queue to take tasks from.
    #[arg(long, default_value = caraml_engine::spec::DEFAULT_QUEUE)]
    queue: String,
    /// Another queue with slots of its own, as QUEUE=SLOTS (such as gpu=1); repeat for more.
    #[arg(long = "also", value_name = "QUEUE=SLOTS")]
    also: Vec<String>,
    /// Tasks claimed ahead of free slots while tasks are short (under 10 ms on average).
    #[arg(long, default_value_t = 256)]
    prefetch: usize,
    /// Lease of each attempt, in seconds; a dead worker's tasks run again after it lapses.
    #[arg(long, default_value_t = 15.0)]
    lease_seconds: f64,
    /// Bytes of log messages stored per task attempt; later lines are dropped and counted
    /// in a closing note.
    #[arg(long, default_value_t = caraml_engine::DEFAULT_LOG_LIMIT_BYTES)]
    log_limit_bytes: usize,
}

#[derive(Debug, Args)]
struct WorkerArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    retention: RetentionArgs,
    #[command(flatten)]
    worker: WorkerFlags,
}

#[derive(Debug, Args)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    worker: WorkerFlags,
    /// Directory for the private PostgreSQL cluster used when DATABASE_URL is not set.
    #[arg(long, env = "CARAML_DATA_DIR", default_value = ".caraml")]
    data_dir: PathBuf,
    /// Run an example workflow once started, and show its progress (`flights`).
    #[arg(long)]
    example: Option<String>,
    /// Directory the example writes its results to.
    #[arg(long, default_value = "caraml-output")]
    output_dir: PathBuf,
    /// Exit once the example finishes, with a non-zero status when it failed.
    #[arg(long, requires = "example")]
    once: bool,
}

#[derive(Debug, Args, Clone)]
struct ClientArgs {
    /// Base URL of the CaraML API.
    #[arg(
        long,
        env = "CARAML_SERVER",
        default_value = "http://127.0.0.1:7420",
        global = true
    )]
    server: String,
    /// API token (from `caraml token create`, or the one `caraml up` printed).
    #[arg(long, env = "CARAML_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum RunCommand {
    /// Submit a workflow spec file (JSON or YAML), or a registered workflow by name.
    Submit {
        /// The spec file; leave out with --workflow.
        file: Option<PathBuf>,
        /// Name of a registered workflow to run instead of a file.
        #[arg(long, conflicts_with = "file")]
        workflow: Option<String>,
        /// Run input as JSON.
        #[arg(long)]
        input: Option<String>,
        /// Key that makes a repeated submission of the same workflow return the first run.
        /// The API rejects the key for another workflow.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Show progress until the run finishes; exit non-zero when it fails.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a run with its tasks.
    Get {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List runs, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a queued or running run, or every such run a filter selects.
    Cancel {
        /// The run to cancel; leave out to cancel the runs the filter selects.
        id: Option<String>,
        #[command(flatten)]
        filter: BulkArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume a failed or cancelled run, or every such run a filter selects, reusing the
    /// outputs of tasks that succeeded.
    Retry {
        /// The run to resume; leave out to resume the runs the filter selects.
        id: Option<String>,
        #[command(flatten)]
        filter: BulkArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send a signal to a run, waking the tasks that wait for it; an approval gate takes
    /// `--payload '{"approved": true, "by": "ana"}'`.
    Signal {
        id: String,
        name: String,
        /// Payload as JSON; leave out to send `null`.
        #[arg(long)]
        payload: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the state changes of a run.
    Events {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the lines a run's tasks logged, as TIME LEVEL TASK#ATTEMPT MESSAGE.
    Logs {
        id: String,
        /// Only the lines of this task.
        #[arg(long)]
        task: Option<String>,
        /// Only the lines of this attempt number, counting from 1.
        #[arg(long)]
        attempt: Option<u32>,
        /// Start after the line with this id, such as the one a stopped --follow printed.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Keep printing new lines until the run finishes.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// List services with their status and address.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one service.
    Get {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a service from a spec FILE or a registered --workflow with one service task.
    Create {
        name: String,
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        workflow: Option<String>,
        /// Run input as JSON.
        #[arg(long)]
        input: Option<String>,
        /// How long a replaced version keeps serving after the switch.
        #[arg(long, default_value_t = 2.0)]
        drain_seconds: f64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace a service by a new version with no gap: the new one takes over once ready.
    Replace {
        name: String,
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        workflow: Option<String>,
        #[arg(long)]
        input: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restart a service with no gap, or start a stopped one again.
    Restart {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a service.
    Stop {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Selects runs for `run cancel` and `run retry` without a run id. Times are RFC 3339, such
/// as 2026-12-05T10:00:00Z, or a duration before now, such as 24h.
#[derive(Debug, Args, Clone, Default)]
struct BulkArgs {
    /// Only runs of this workflow.
    #[arg(long)]
    workflow: Option<String>,
    /// Only runs with this status (retry: failed or cancelled; cancel: queued or running).
    #[arg(long)]
    status: Option<String>,
    /// Only runs created at or after this time.
    #[arg(long)]
    since: Option<String>,
    /// Only runs created before this time.
    #[arg(long)]
    until: Option<String>,
    /// Only runs that finished at or after this time (retry only).
    #[arg(long)]
    finished_since: Option<String>,
    /// Only runs that finished before this time (retry only).
    #[arg(long)]
    finished_until: Option<String>,
    /// Act on every run the action applies to; required when no other filter is given.
    #[arg(long)]
    all: bool,
    /// Maximum runs to act on in this call, up to 10000.
    #[arg(long)]
    limit: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum WorkflowCommand {
    /// List the newest version of every stored workflow.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show or set how long finished runs of a workflow are kept: a duration such as 30d,
    /// off to keep them forever, or default to follow the processes' --retention.
    Retention {
        name: String,
        /// The new retention; leave out to show the current one.
        retention: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetterCommand {
    /// List tasks that failed for good, newest first.
    List {
        /// Only tasks of runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only tasks that failed at or after this time (RFC 3339, or a duration ago such as 24h).
        #[arg(long)]
        since: Option<String>,
        /// Only tasks that failed before this time (RFC 3339, or a duration ago such as 1h).
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs the command line with the task kinds and workflows of `registry`.
pub fn main(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => serve::up(args, registry).await,
            Command::Server(args) => serve::server(args, registry).await,
            Command::Worker(args) => serve::worker(args, registry).await,
            Command::Migrate(args) => serve::migrate(args).await,
            Command::Run(command) => client::run(command).await,
            Command::Workflow(command @ WorkflowCommand::List { .. }) => {
                workflows::run(command).await
            }
            Command::Workflow(command) => operations::workflow(command).await,
            Command::Service(command) => services::run(command).await,
            Command::Schedule(command) => schedules::run(command).await,
            Command::DeadLetters(command) => operations::dead_letters(command).await,
            Command::Token(command) => tokens::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").is_err() {
        std::process::exit(0);
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CARAML_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (stderr piped into a reader that quit) is
        // dropped, because reporting it would write to stderr again and panic the worker.
        .log_internal_errors(false)
        .try_init();
}
