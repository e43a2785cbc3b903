//! A private PostgreSQL cluster started from the machine's PostgreSQL binaries, for
//! `caraml up` without a configured database and for tests.
//!
//! `initdb` and `postgres` refuse to run as root. When this process is root, the cluster's
//! commands run as the `postgres` system user through `runuser`, and the data directory is
//! handed to that user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use tokio::process::Command;

/// Error starting or stopping a private cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb and pg_ctl on PATH and under /usr/lib/postgresql/*/bin); install them (Debian: apt-get install postgresql) or set DATABASE_URL to an existing database"
    )]
    BinariesNotFound,
    #[error(
        "initdb refuses to run as root and there is no `postgres` user to run it as; create one (useradd --system --home /var/lib/postgresql postgres) or set DATABASE_URL to an existing database"
    )]
    NoPostgresUser,
    #[error("could not prepare data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
}

/// A PostgreSQL cluster in a data directory this process controls.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    /// The system user the cluster's commands run as, when this process is root.
    run_as: Option<String>,
    /// Whether this process started the server, rather than finding it running.
    started_here: bool,
}

impl LocalCluster {
    /// Starts the cluster in `data_dir`, creating it first when the directory contains none.
    /// A cluster that is already running there is reused.
    pub async fn start(data_dir: &Path) -> Result<Self, ClusterError> {
        let bin_dir = find_binaries().ok_or(ClusterError::BinariesNotFound)?;
        let run_as = if nix::unistd::geteuid().is_root() {
            if nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .is_none()
            {
                return Err(ClusterError::NoPostgresUser);
            }
            Some("postgres".to_owned())
        } else {
            None
        };
        let data_dir = absolute(data_dir)?;
        let mut cluster = Self {
            data_dir,
            bin_dir,
            port: 0,
            run_as,
            started_here: false,
        };

        if let Some(port) = cluster.running_port() {
            cluster.port = port;
            return Ok(cluster);
        }
        if !cluster.data_dir.join("PG_VERSION").exists() {
            cluster.init().await?;
        }
        cluster.port = free_port().map_err(|source| ClusterError::DataDir {
            path: cluster.data_dir.clone(),
            source,
        })?;
        cluster.start_server().await?;
        cluster.started_here = true;
        Ok(cluster)
    }

    /// Returns a connection URL for the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Whether [`LocalCluster::start`] started the server; `false` when another process had
    /// already started it, in which case that process should stop it.
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the server, letting it finish in-flight transactions first (fast shutdown).
    pub async fn stop(&self) -> Result<(), ClusterError> {
        let data_dir = self.data_dir.display().to_string();
        self.pg_ctl(&["-D", &data_dir, "-m", "fast", "-w", "stop"])
            .await
    }

    /// Starts the server again on the same port after [`LocalCluster::stop`].
    pub async fn start_again(&self) -> Result<(), ClusterError> {
        self.start_server().await
    }

    async fn init(&self) -> Result<(), ClusterError> {
        let data_error = |source| ClusterError::DataDir {
            path: self.data_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.data_dir).map_err(data_error)?;
        if let Some(user) = &self.run_as
            && let Ok(Some(user)) = nix::unistd::User::from_name(user)
        {
            nix::unistd::chown(&self.data_dir, Some(user.uid), Some(user.gid))
                .map_err(|errno| data_error(std::io::Error::from(errno)))?;
        }
        let data_dir = self.data_dir.display().to_string();
        self.run(
            "initdb",
            &[
                "-D",
                &data_dir,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-instructions",
            ],
        )
        .await?;
        // TCP on the loopback interface only, and no Unix socket: a socket path under a
        // deep data directory can exceed the 107-byte limit of socket addresses.
        let settings = "\n# Set by caraml\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_connections = 200\n";
        let conf = self.data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(data_error)?;
        text.push_str(settings);
        std::fs::write(&conf, text).map_err(data_error)?;
        Ok(())
    }

    async fn start_server(&self) -> Result<(), ClusterError> {
        let data_dir = self.data_dir.display().to_string();
        let log = self.data_dir.join("postgres.log").display().to_string();
        let options = format!("-p {}", self.port);
        self.pg_ctl(&[
            "-D", &data_dir, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
        ])
        .await
    }

    async fn pg_ctl(&self, args: &[&str]) -> Result<(), ClusterError> {
        self.run("pg_ctl", args).await
    }

    async fn run(&self, program: &str, args: &[&str]) -> Result<(), ClusterError> {
        let binary = self.bin_dir.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        command.args(args).kill_on_drop(true);
        let described = format!("{} {}", binary.display(), args.join(" "));
        let output = command
            .output()
            .await
            .map_err(|err| ClusterError::Command {
                command: described.clone(),
                detail: err.to_string(),
            })?;
        if !output.status.success() {
            let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            if detail.is_empty() {
                detail = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            }
            return Err(ClusterError::Command {
                command: described,
                detail,
            });
        }
        Ok(())
    }

    /// Returns the port of a server already running in the data directory.
    fn running_port(&self) -> Option<u16> {
        // postmaster.pid contains the pid on line 1 and the port on line 4.
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let mut lines = pid_file.lines();
        let pid: i32 = lines.next()?.trim().parse().ok()?;
        let port: u16 = lines.nth(2)?.trim().parse().ok()?;
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        alive.then_some(port)
    }
}

fn absolute(path: &Path) -> Result<PathBuf, ClusterError> {
    std::path::absolute(path).map_err(|source| ClusterError::DataDir {
        path: path.to_owned(),
        source,
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Finds the directory holding `initdb` and `pg_ctl`: on PATH first, then the newest
/// version under /usr/lib/postgresql.
fn find_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                // On Debian, /usr/bin/pg_ctl is a wrapper script; prefer the real binaries.
                if let Ok(real) = std::fs::canonicalize(dir.join("initdb"))
                    && let Some(real_dir) = real.parent()
                    && has_both(real_dir)
                {
                    return Some(real_dir.to_owned());
                }
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
