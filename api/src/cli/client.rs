//! `caraml run ...`: a client of the HTTP API.

use std::process::ExitCode;

use caraml_engine::RunView;
use reqwest::{Client, Method, Response};
use serde_json::{Value, json};

use super::{ClientArgs, RunCommand, follow, operations};

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
            let input: Value = match input {
                Some(text) => serde_json::from_str(&text).map_err(|err| {
                    format!("--input is not valid JSON: {err}; pass JSON such as '{{\"key\": 1}}'")
                })?,
                None => Value::Null,
            };
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
                return Ok(ExitCode::SUCCESS);
            }
            say!("run {id} submitted");
            let run = follow::follow(|| api.get_run(&id)).await?;
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

async fn print_call(client: &ClientArgs, method: Method, path: &str) -> Result<ExitCode, String> {
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

pub(super) struct Api {
    client: Client,
    base: String,
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
        Ok(Self { client, base })
    }

    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|err| {
            format!("cannot reach the CaraML API at {}: {err}; start it with `caraml up` or set CARAML_SERVER", self.base)
        })?;
        read(response).await
    }

    async fn get_run(&self, id: &str) -> Result<RunView, String> {
        let value = self
            .call(Method::GET, &format!("/v1/runs/{}", segment(id)), None)
            .await?;
        serde_json::from_value(value).map_err(|err| format!("unexpected run from the API: {err}"))
    }
}

async fn read(response: Response) -> Result<Value, String> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|err| format!("cannot read the API's answer: {err}"))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        return Ok(value);
    }
    let message = value["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string());
    let mut out = format!("{status}: {message}");
    for problem in value["error"]["problems"].as_array().into_iter().flatten() {
        if let Some(text) = problem["message"].as_str() {
            out.push_str(&format!("\n  - {text}"));
        }
    }
    Err(out)
}
