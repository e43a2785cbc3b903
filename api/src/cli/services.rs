//! `caraml service ...`: long-lived services, through the HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Value, json};

use super::ServiceCommand;
use super::client::{Api, segment};

pub(super) async fn run(command: ServiceCommand) -> Result<ExitCode, String> {
    let (method, path, body, client) = match command {
        ServiceCommand::List { client } => (Method::GET, "/v1/services".to_owned(), None, client),
        ServiceCommand::Get { name, client } => (
            Method::GET,
            format!("/v1/services/{}", segment(&name)),
            None,
            client,
        ),
        ServiceCommand::Create {
            name,
            file,
            workflow,
            input,
            drain_seconds,
            client,
        } => {
            let mut body = definition(file, workflow, input)?;
            body["name"] = Value::String(name);
            body["drain_seconds"] = json!(drain_seconds);
            (Method::POST, "/v1/services".to_owned(), Some(body), client)
        }
        ServiceCommand::Replace {
            name,
            file,
            workflow,
            input,
            client,
        } => (
            Method::POST,
            format!("/v1/services/{}/replace", segment(&name)),
            Some(definition(file, workflow, input)?),
            client,
        ),
        ServiceCommand::Restart { name, client } => (
            Method::POST,
            format!("/v1/services/{}/restart", segment(&name)),
            Some(json!({})),
            client,
        ),
        ServiceCommand::Stop { name, client } => (
            Method::POST,
            format!("/v1/services/{}/stop", segment(&name)),
            Some(json!({})),
            client,
        ),
    };
    let api = Api::new(&client)?;
    let answer = api.call(method, &path, body).await?;
    say!(
        "{}",
        serde_json::to_string_pretty(&answer).unwrap_or_else(|_| answer.to_string())
    );
    Ok(ExitCode::SUCCESS)
}

/// Builds the `workflow` or `spec` and `input` fields of a request.
fn definition(
    file: Option<PathBuf>,
    workflow: Option<String>,
    input: Option<String>,
) -> Result<Value, String> {
    let input: Value = match input {
        Some(text) => serde_json::from_str(&text).map_err(|err| {
            format!("--input is not valid JSON: {err}; pass JSON such as '{{\"port\": 8080}}'")
        })?,
        None => Value::Null,
    };
    let mut body = json!({ "input": input });
    match (file, workflow) {
        (Some(path), None) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|err| format!("cannot read spec file {}: {err}", path.display()))?;
            body["spec"] = Value::String(text);
        }
        (None, Some(name)) => body["workflow"] = Value::String(name),
        _ => return Err("name a spec FILE or --workflow NAME for the service".to_owned()),
    }
    Ok(body)
}
