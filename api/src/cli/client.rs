//! `caraml run ...`: a client of the HTTP API.

use std::process::ExitCode;

use caraml_engine::RunView;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};

use super::follow::{self, EventPage, RunSource};
use super::{ClientArgs, RunCommand, logs, operations};

pub(super) async fn run(command: RunCommand) -> Result<ExitCode, String> {
    match command {
        RunCommand::Submit {
            file,
            workflow,
            input,
            idempotency_key,
            follow: follow_run,
            client,
        } => {
            let api = Api::new(&client)?;
            let input = parse_input(input)?;
            let mut body = json!({"input": input, "idempotency_key": idempotency_key});
            match (file, workflow) {
                (Some(path), None) => {
                    let text = std::fs::read_to_string(&path).map_err(|err| {
                        format!("cannot read spec file {}: {err}", path.display())
                    })?;
                    body["spec"] = Value::String(text);
                }
                (None, Some(name)) => body["workflow"] = Value::String(name),
                _ => {
                    return Err("name a spec FILE or --workflow NAME to submit".to_owned());
                }
            }
            let submitted = api.call(Method::POST, "/v1/runs", Some(body)).await?;
            let id = submitted["id"].as_str().unwrap_or_default().to_owned();
            if !follow_run {
                say!("{}", pretty(&submitted));
                eprintln!("dashboard: {}/runs/{id}", api.base);
                return Ok(ExitCode::SUCCESS);
            }
            say!("run {id} submitted");
            let run = follow::follow(&ApiRun { api: &api, id }, follow::POLL_INTERVAL).await?;
            follow::print_result(&run);
            Ok(if run.status == "succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        RunCommand::Get { id, client } => {
            print_call(&client, Method::GET, &format!("/v1/runs/{}", segment(&id))).await
        }
        RunCommand::List {
            status,
            workflow,
            limit,
            cursor,
            client,
        } => {
            let mut query = vec![format!("limit={limit}")];
            for (key, value) in [
                ("status", status),
                ("workflow", workflow),
                ("cursor", cursor),
            ] {
                if let Some(value) = value {
                    query.push(format!("{key}={}", segment(&value)));
                }
            }
            let api = Api::new(&client)?;
            let page = api
                .call(Method::GET, &format!("/v1/runs?{}", query.join("&")), None)
                .await?;
            for run in page["runs"].as_array().into_iter().flatten() {
                say!(
                    "{}  {:<10} {:<24} {}/{} tasks  created {}",
                    run["id"].as_str().unwrap_or_default(),
                    run["status"].as_str().unwrap_or_default(),
                    run["workflow"].as_str().unwrap_or_default(),
                    run["tasks_succeeded"],
                    run["tasks_total"],
                    run["created_at"].as_str().unwrap_or_default(),
                );
            }
            if let Some(cursor) = page["next_cursor"].as_str() {
                say!("more: --cursor {cursor}");
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Cancel { id, filter, client } => {
            operations::run_action("cancel", id, &filter, &client).await
        }
        RunCommand::Retry { id, filter, client } => {
            operations::run_action("retry", id, &filter, &client).await
        }
        RunCommand::Signal {
            id,
            name,
            payload,
            client,
        } => {
            let payload: Value = match payload {
                None => Value::Null,
                Some(text) => serde_json::from_str(&text).map_err(|err| {
                    format!("--payload is not valid JSON: {err}; pass JSON such as '{{\"approved\": true}}'")
                })?,
            };
            let api = Api::new(&client)?;
            let path = format!("/v1/runs/{}/signals/{}", segment(&id), segment(&name));
            let answer = api
                .call(Method::POST, &path, Some(json!({ "payload": payload })))
                .await?;
            say!("{}", pretty(&answer));
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Logs {
            id,
            task,
            attempt,
            after,
            follow: follow_logs,
            client,
        } => {
            let request = logs::LogRequest {
                run_id: id,
                task,
                attempt,
                after,
            };
            logs::print(&Api::new(&client)?, request, follow_logs).await
        }
        RunCommand::Events { id, client } => {
            let api = Api::new(&client)?;
            let mut after = 0;
            loop {
                let page = api
                    .call(
                        Method::GET,
                        &format!("/v1/runs/{}/events?limit=10000&after={after}", segment(&id)),
                        None,
                    )
                    .await?;
                for event in page["events"].as_array().into_iter().flatten() {
                    say!(
                        "{}  {:<16} {:<24} {}",
                        event["at"].as_str().unwrap_or_default(),
                        event["kind"].as_str().unwrap_or_default(),
                        event["task"].as_str().unwrap_or("-"),
                        event["detail"]
                            .as_object()
                            .map(|d| Value::Object(d.clone()).to_string())
                            .unwrap_or_default(),
                    );
                }
                match page["next_after"].as_i64() {
                    Some(next) => after = next,
                    None => break,
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Parses the `--input` flag; a missing flag is a `null` input.
pub(super) fn parse_input(input: Option<String>) -> Result<Value, String> {
    match input {
        Some(text) => serde_json::from_str(&text).map_err(|err| {
            format!("--input is not valid JSON: {err}; pass JSON such as '{{\"key\": 1}}'")
        }),
        None => Ok(Value::Null),
    }
}

pub(super) async fn print_call(
    client: &ClientArgs,
    method: Method,
    path: &str,
) -> Result<ExitCode, String> {
    let api = Api::new(client)?;
    say!("{}", pretty(&api.call(method, path, None).await?));
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn print_post(client: &ClientArgs, path: &str) -> Result<ExitCode, String> {
    let api = Api::new(client)?;
    say!(
        "{}",
        pretty(&api.call(Method::POST, path, Some(json!({}))).await?)
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Percent-encodes a value for a URL path segment or query value.
pub(super) fn segment(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A client of the CaraML API at one base URL.
pub(super) struct Api {
    client: Client,
    base: String,
    token: Option<String>,
}

impl Api {
    pub(super) fn new(args: &ClientArgs) -> Result<Self, String> {
        let base = args.server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "--server is `{base}`; give the API's base URL, such as http://127.0.0.1:7420"
            ));
        }
        let client = Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {err}"))?;
        let token = args.token.clone().filter(|token| !token.trim().is_empty());
        Ok(Self {
            client,
            base,
            token,
        })
    }

    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        self.try_call(method, path, body)
            .await
            .map_err(|err| err.message)
    }

    /// Calls the API like [`Api::call`], and reports whether a failure is transient.
    pub(super) async fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.trim());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|err| CallError {
            message: format!("cannot reach the CaraML API at {}: {err}; start it with `caraml up` or set CARAML_SERVER", self.base),
            transient: true,
        })?;
        if response.status() == StatusCode::UNAUTHORIZED && self.token.is_none() {
            let reason = read(response)
                .await
                .err()
                .map(|err| err.message)
                .unwrap_or_default();
            return Err(CallError {
                message: format!(
                    "{reason}; set CARAML_TOKEN (or pass --token) to the token `caraml up` printed or one from `caraml token create`"
                ),
                transient: false,
            });
        }
        read(response).await
    }

    async fn get_run(&self, id: &str, with_tasks: bool) -> Result<RunView, String> {
        let value = self
            .call(
                Method::GET,
                &format!("/v1/runs/{}?tasks={with_tasks}", segment(id)),
                None,
            )
            .await?;
        serde_json::from_value(value).map_err(|err| format!("unexpected run from the API: {err}"))
    }
}

/// A run followed through the API.
struct ApiRun<'a> {
    api: &'a Api,
    id: String,
}

impl RunSource for ApiRun<'_> {
    async fn summary(&self) -> Result<RunView, String> {
        self.api.get_run(&self.id, false).await
    }

    async fn events(&self, after: i64) -> Result<EventPage, String> {
        let path = format!(
            "/v1/runs/{}/events?after={after}&limit={}",
            segment(&self.id),
            follow::EVENT_PAGE
        );
        let value = self.api.call(Method::GET, &path, None).await?;
        serde_json::from_value(value)
            .map_err(|err| format!("unexpected events from the API: {err}"))
    }

    async fn full(&self) -> Result<RunView, String> {
        self.api.get_run(&self.id, true).await
    }
}

/// A failed API call.
#[derive(Debug)]
pub(super) struct CallError {
    pub(super) message: String,
    /// Whether the same call may succeed later: the API was unreachable, overloaded or
    /// failed on its side, rather than rejecting the request.
    pub(super) transient: bool,
}

async fn read(response: Response) -> Result<Value, CallError> {
    let status = response.status();
    let text = response.text().await.map_err(|err| CallError {
        message: format!("cannot read the API's response: {err}"),
        transient: true,
    })?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        return Ok(value);
    }
    Err(CallError {
        message: error_text(status, &value),
        transient: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
    })
}

/// Formats an error response. The message of an invalid spec already joins its problems,
/// so those are listed one per line in its place rather than after it.
fn error_text(status: StatusCode, body: &Value) -> String {
    let problems: Vec<&str> = body["error"]["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|problem| problem["message"].as_str())
        .collect();
    if problems.is_empty() {
        let message = body["error"]["message"]
            .as_str()
            .or(body.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        return format!("{status}: {message}");
    }
    let plural = if problems.len() == 1 { "" } else { "s" };
    let mut out = format!(
        "{status}: invalid workflow spec ({} problem{plural}):",
        problems.len()
    );
    for problem in problems {
        out.push_str("\n  - ");
        out.push_str(problem);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_problems_printed_once() {
        let body = json!({"error": {
            "code": "invalid_spec",
            "message": "invalid workflow spec: task `a` depends on itself; task `b` has unknown kind `x`",
            "problems": [
                {"code": "self_dependency", "message": "task `a` depends on itself", "tasks": ["a"]},
                {"code": "unknown_kind", "message": "task `b` has unknown kind `x`", "tasks": ["b"]},
            ],
        }});
        let text = error_text(StatusCode::UNPROCESSABLE_ENTITY, &body);
        assert_eq!(
            text.matches("depends on itself").count(),
            1,
            "each problem appears once: {text}"
        );
        assert_eq!(text.matches("unknown kind").count(), 1, "{text}");
        assert!(text.starts_with("422 Unprocessable Entity: invalid workflow spec (2 problems):"));
    }

    #[test]
    fn plain_errors_print_their_message() {
        let body = json!({"error": {"code": "not_found", "message": "run `x` not found"}});
        assert_eq!(
            error_text(StatusCode::NOT_FOUND, &body),
            "404 Not Found: run `x` not found"
        );
        let text = error_text(
            StatusCode::BAD_GATEWAY,
            &Value::String("upstream down".into()),
        );
        assert_eq!(text, "502 Bad Gateway: upstream down");
    }
}
