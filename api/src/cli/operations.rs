//! `caraml workflow retention`, `caraml dead-letters` and the bulk forms of `caraml run
//! cancel` and `caraml run retry`: clients of the HTTP API.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::json;

use super::client::{Api, print_post, segment};
use super::{BulkArgs, ClientArgs, DeadLetterCommand, WorkflowCommand};

pub(super) async fn workflow(command: WorkflowCommand) -> Result<ExitCode, String> {
    let WorkflowCommand::Retention {
        name,
        retention,
        client,
    } = command
    else {
        return Err("only `caraml workflow retention` is handled here".to_owned());
    };
    let api = Api::new(&client)?;
    let path = format!("/v1/workflows/{}/retention", segment(&name));
    let answer = match retention {
        None => api.call(Method::GET, &path, None).await?,
        Some(text) => {
            // Check the value here, so that a typo is reported without a request.
            let parsed = caraml_engine::WorkflowRetention::parse(Some(text.as_str()))
                .map_err(|err| err.to_string())?;
            api.call(
                Method::PUT,
                &path,
                Some(json!({"retention": parsed.to_text()})),
            )
            .await?
        }
    };
    match answer["retention"].as_str() {
        Some("off") => say!("workflow {name}: finished runs are kept forever"),
        Some(age) => say!("workflow {name}: finished runs are deleted after {age}"),
        None => say!("workflow {name}: finished runs follow the --retention of each process"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn dead_letters(command: DeadLetterCommand) -> Result<ExitCode, String> {
    let DeadLetterCommand::List {
        workflow,
        since,
        until,
        limit,
        cursor,
        client,
    } = command;

    let now = Utc::now();
    let mut query = vec![format!("limit={limit}")];
    let times = [
        ("since", time_flag("--since", since.as_deref(), now)?),
        ("until", time_flag("--until", until.as_deref(), now)?),
    ];
    for (key, time) in times {
        if let Some(time) = time {
            query.push(format!("{key}={}", segment(&time.to_rfc3339())));
        }
    }
    for (key, value) in [("workflow", workflow), ("cursor", cursor)] {
        if let Some(value) = value {
            query.push(format!("{key}={}", segment(&value)));
        }
    }

    let api = Api::new(&client)?;
    let page = api
        .call(
            Method::GET,
            &format!("/v1/dead-letters?{}", query.join("&")),
            None,
        )
        .await?;

    let letters = page["dead_letters"].as_array().cloned().unwrap_or_default();
    if letters.is_empty() {
        say!("no dead letters");
    }
    for letter in &letters {
        say!(
            "{}  {}  {:<20} {:<20} {:<14} attempts {}/{}  {}",
            letter["finished_at"].as_str().unwrap_or_default(),
            letter["run_id"].as_str().unwrap_or_default(),
            letter["workflow"].as_str().unwrap_or_default(),
            letter["task"].as_str().unwrap_or_default(),
            letter["kind"].as_str().unwrap_or_default(),
            letter["attempts"],
            letter["max_attempts"],
            letter["error"].as_str().unwrap_or("-"),
        );
    }
    if let Some(cursor) = page["next_cursor"].as_str() {
        say!("more: --cursor {cursor}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `run cancel` or `run retry` on one run, or on the runs a filter selects.
pub(super) async fn run_action(
    action: &str,
    id: Option<String>,
    filter: &BulkArgs,
    client: &ClientArgs,
) -> Result<ExitCode, String> {
    let has_filter = filter.workflow.is_some()
        || filter.status.is_some()
        || filter.since.is_some()
        || filter.until.is_some()
        || filter.finished_since.is_some()
        || filter.finished_until.is_some()
        || filter.all
        || filter.limit.is_some();
    match id {
        Some(id) if has_filter => Err(format!(
            "run {action} was given run id `{id}` and a filter; give the id to {action} one run, or only the filter to {action} the runs it selects"
        )),
        Some(id) => print_post(client, &format!("/v1/runs/{}/{action}", segment(&id))).await,
        None if !has_filter => Err(format!(
            "run {action} needs a run id or a filter; give RUN_ID, or select runs with --workflow, --status, --since or --until, or pass --all to {action} every run it applies to"
        )),
        None => bulk(action, filter, client).await,
    }
}

async fn bulk(action: &str, filter: &BulkArgs, client: &ClientArgs) -> Result<ExitCode, String> {
    let now = Utc::now();
    let time = |flag: &str, value: &Option<String>| {
        time_flag(flag, value.as_deref(), now).map(|t| t.map(|t| t.to_rfc3339()))
    };
    let body = json!({
        "workflow": filter.workflow,
        "status": filter.status,
        "created_since": time("--since", &filter.since)?,
        "created_until": time("--until", &filter.until)?,
        "finished_since": time("--finished-since", &filter.finished_since)?,
        "finished_until": time("--finished-until", &filter.finished_until)?,
        "all": filter.all,
        "limit": filter.limit,
    });
    let api = Api::new(client)?;
    let outcome = api
        .call(Method::POST, &format!("/v1/runs/bulk/{action}"), Some(body))
        .await?;
    let verb = if action == "retry" {
        "resumed"
    } else {
        "cancelled"
    };
    say!("{verb} {} run(s)", outcome["affected"]);
    for id in outcome["run_ids"].as_array().into_iter().flatten() {
        say!("  {}", id.as_str().unwrap_or_default());
    }
    for skipped in outcome["skipped"].as_array().into_iter().flatten() {
        say!(
            "skipped {}: {}",
            skipped["id"].as_str().unwrap_or_default(),
            skipped["reason"].as_str().unwrap_or_default()
        );
    }
    if let Some(message) = outcome["message"].as_str() {
        say!("note: {message}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a time option: an RFC 3339 time, or a duration before `now` such as `24h`.
fn time_flag(
    flag: &str,
    value: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    let Some(text) = value else {
        return Ok(None);
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(time.with_timezone(&Utc)));
    }
    let ago = caraml_engine::retention::parse_duration(flag, text).map_err(|_| {
        format!(
            "{flag} `{}` is neither an RFC 3339 time nor a duration; give a time such as 2026-12-05T10:00:00Z or a duration before now such as 24h",
            text.escape_debug()
        )
    })?;
    let ago = chrono::Duration::from_std(ago)
        .map_err(|_| format!("{flag} `{text}` reaches too far back; give a shorter duration"))?;
    Ok(Some(now - ago))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_flag_reads_times_and_durations() {
        let now = DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        let Some(now) = now else {
            panic!("the test time parses");
        };
        let absolute = time_flag("--since", Some("2026-12-01T00:00:00Z"), now);
        assert_eq!(
            absolute.ok().flatten().map(|t| t.to_rfc3339()),
            Some("2026-12-01T00:00:00+00:00".to_owned())
        );
        let relative = time_flag("--since", Some("24h"), now);
        assert_eq!(
            relative.ok().flatten().map(|t| t.to_rfc3339()),
            Some("2026-12-04T12:00:00+00:00".to_owned())
        );
        let bad = time_flag("--since", Some("yesterday"), now);
        let message = bad.err().unwrap_or_default();
        assert!(message.contains("--since"), "{message}");
        assert!(message.contains("`yesterday`"), "{message}");
        assert_eq!(time_flag("--since", None, now).ok(), Some(None));
    }
}
