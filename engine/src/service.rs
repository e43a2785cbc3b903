//! The side of a service task that reports to the engine, and the built-in `http.serve`
//! service.

use std::net::SocketAddr;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::task::{Task, TaskContext, TaskError};

impl TaskContext {
    /// Reports that this service task is ready and reachable at `address` (such as
    /// `127.0.0.1:8080`). The API shows the address, and a run replacing a service takes
    /// over when its service task reports ready.
    pub async fn ready(&self, address: &str) -> Result<(), TaskError> {
        let durable = self.inner.durable.as_deref().ok_or_else(|| {
            TaskError::permanent("`ready` needs a context from a worker; a detached context has no service to report")
        })?;
        let held = durable
            .store
            .service_ready(self.run_id(), durable.task_idx, self.attempt_id(), address)
            .await
            .map_err(|err| TaskError::retryable(format!("could not record readiness: {err}")))?;
        if !held {
            return Err(TaskError::retryable(
                "this attempt lost its task to another attempt, so it cannot report ready",
            ));
        }
        Ok(())
    }
}

/// `http.serve`: a service that responds to every HTTP request with the JSON `body`, on
/// `host` (default 127.0.0.1) and `port` (default 0: any free port). It reports its address
/// when it listens and serves until stopped.
pub struct HttpServe;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServeInput {
    #[serde(default = "loopback")]
    pub host: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub body: Value,
}

fn loopback() -> String {
    "127.0.0.1".to_owned()
}

/// Maximum size of the request head that `http.serve` reads before it responds.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

impl Task for HttpServe {
    type Input = HttpServeInput;
    type Output = Value;
    const KIND: &'static str = "http.serve";
    const SERVICE: bool = true;

    async fn run(&self, ctx: TaskContext, input: HttpServeInput) -> Result<Value, TaskError> {
        let ip: std::net::IpAddr = input.host.parse().map_err(|_| {
            TaskError::permanent(format!(
                "http.serve.host `{}` is not an IP address; use one such as 127.0.0.1",
                input.host.escape_debug()
            ))
        })?;
        let listener = TcpListener::bind(SocketAddr::new(ip, input.port))
            .await
            .map_err(|err| {
                TaskError::retryable(format!(
                    "http.serve could not listen on {}:{}: {err}",
                    input.host, input.port
                ))
            })?;
        let address = listener
            .local_addr()
            .map_err(|err| TaskError::retryable(format!("http.serve has no address: {err}")))?;
        ctx.ready(&address.to_string()).await?;
        let body = std::sync::Arc::new(input.body.to_string());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    tokio::spawn(answer(stream, std::sync::Arc::clone(&body)));
                }
                () = ctx.cancellation().cancelled() => {
                    return Err(TaskError::retryable("http.serve stopped"));
                }
            }
        }
    }
}

/// Reads one request head and responds with `body`.
async fn answer(mut stream: TcpStream, body: std::sync::Arc<String>) {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
