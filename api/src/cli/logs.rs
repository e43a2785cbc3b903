//! `caraml run logs`: prints the lines a run's tasks logged and, with `--follow`, keeps
//! polling for new lines until the run finishes.

use std::process::ExitCode;
use std::time::Duration;

use caraml_engine::{LogLine, LogPage, MAX_LOG_PAGE};
use chrono::SecondsFormat;
use reqwest::Method;

use super::client::{Api, CallError, segment};

/// Time between polls of `--follow`.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// Polls in a row that may fail with a transient error before `--follow` gives up.
const MAX_FAILED_POLLS: u32 = 5;

/// A request for a run's lines: the run, the filters and the cursor.
pub(super) struct LogRequest {
    pub(super) run_id: String,
    pub(super) task: Option<String>,
    pub(super) attempt: Option<u32>,
    /// Id of the last line already printed, 0 for none.
    pub(super) after: i64,
}

/// Prints the lines stored so far; with `follow`, keeps printing new lines until the run
/// has finished and every line is printed.
pub(super) async fn print(
    api: &Api,
    request: LogRequest,
    follow: bool,
) -> Result<ExitCode, String> {
    let mut cursor = request.after;
    if !follow {
        print_new_lines(api, &request, &mut cursor)
            .await
            .map_err(|err| err.message)?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut failures = 0;
    loop {
        match poll(api, &request, &mut cursor).await {
            Ok(Some(status)) => {
                use std::io::Write as _;
                // Standard output holds only log lines, so the end of the run goes to stderr.
                let _ = writeln!(std::io::stderr(), "run {} {status}", request.run_id);
                return Ok(ExitCode::SUCCESS);
            }
            Ok(None) => failures = 0,
            Err(err) if err.transient && failures + 1 < MAX_FAILED_POLLS => {
                failures += 1;
                tracing::debug!(error = %err.message, failures, "polling the run's logs failed; trying again");
            }
            Err(err) if err.transient => {
                return Err(format!(
                    "{}; stopped following after {MAX_FAILED_POLLS} failed polls in a row. Run `caraml run logs {} --follow --after {cursor}` to go on after the last line printed",
                    err.message, request.run_id
                ));
            }
            Err(err) => return Err(err.message),
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
}

/// Reads the run's status, then prints the lines stored after `cursor`. Returns the status
/// when the run had finished before the lines were read: a worker stores an attempt's lines
/// before its result, so none of the run's attempts has lines left to store.
async fn poll(
    api: &Api,
    request: &LogRequest,
    cursor: &mut i64,
) -> Result<Option<String>, CallError> {
    let run = api
        .try_call(
            Method::GET,
            &format!("/v1/runs/{}?tasks=false", segment(&request.run_id)),
            None,
        )
        .await?;
    let finished = !run["finished_at"].is_null();
    print_new_lines(api, request, cursor).await?;
    Ok(finished.then(|| run["status"].as_str().unwrap_or("finished").to_owned()))
}

/// Prints every page of lines after `cursor`, moving it past each printed line.
async fn print_new_lines(
    api: &Api,
    request: &LogRequest,
    cursor: &mut i64,
) -> Result<(), CallError> {
    loop {
        let page = read_page(api, request, *cursor).await?;
        for line in &page.lines {
            say!("{}", format_line(line));
            *cursor = line.id;
        }
        if page.next_after.is_none() {
            return Ok(());
        }
    }
}

async fn read_page(api: &Api, request: &LogRequest, after: i64) -> Result<LogPage, CallError> {
    let mut path = format!(
        "/v1/runs/{}/logs?after={after}&limit={MAX_LOG_PAGE}",
        segment(&request.run_id)
    );
    if let Some(task) = &request.task {
        path.push_str(&format!("&task={}", segment(task)));
    }
    if let Some(attempt) = request.attempt {
        path.push_str(&format!("&attempt={attempt}"));
    }
    let value = api.try_call(Method::GET, &path, None).await?;
    serde_json::from_value(value).map_err(|err| CallError {
        message: format!("unexpected log lines from the API: {err}"),
        transient: false,
    })
}

/// Formats a line as `TIME LEVEL task#attempt message`.
fn format_line(line: &LogLine) -> String {
    format!(
        "{} {:<5} {}#{} {}",
        line.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        line.level.to_ascii_uppercase(),
        line.task,
        line.attempt,
        line.message
    )
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::*;

    #[test]
    fn line_format() {
        let line = LogLine {
            id: 7,
            task: "month_01".to_owned(),
            attempt: 2,
            level: "warn".to_owned(),
            at: Utc
                .with_ymd_and_hms(2026, 12, 5, 10, 0, 1)
                .single()
                .expect("a valid time"),
            message: "wrote 27004 rows".to_owned(),
        };
        assert_eq!(
            format_line(&line),
            "2026-12-05T10:00:01.000Z WARN  month_01#2 wrote 27004 rows"
        );
    }
}
