//! The run page: status and progress, the DAG, the timeline, the tasks, the input, the
//! event history, the parent and child runs, and the cancel, retry and signal forms.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use caraml_engine::{EventView, RunView, TaskView};
use chrono::Utc;
use maud::{Markup, html};
use serde_json::Value;

use super::form::Form;
use super::format;
use super::layout::{self, Section};
use super::live::{self, OUTPUT_PREVIEW_CHARS};
use super::page::{self, PageError, PageResult};
use super::session::{Session, SessionForm};
use super::{dag, data, gantt, logs};
use crate::http::{ApiError, AppState, QueryParams, RunId};

/// Events the page shows, newest first.
const EVENTS_SHOWN: u32 = 200;

/// Log lines the page shows, the first ones stored; the logs page has the rest.
const LOG_LINES_SHOWN: u32 = 200;

/// Task rows the table shows unless the request is for all of them.
const TABLE_ROWS: usize = 300;

/// Characters of the run's input the page shows.
const INPUT_CHARS: usize = 2000;

/// Messages shown after an action, chosen by the `notice` query parameter. The page never
/// shows the parameter's own text.
const NOTICES: [(&str, &str); 3] = [
    ("cancelled", "The run was cancelled."),
    (
        "retried",
        "The run was resumed: its failed, cancelled and skipped tasks run again.",
    ),
    ("signalled", "The signal was delivered."),
];

fn run_id(id: Result<RunId, ApiError>) -> Result<uuid::Uuid, PageError> {
    id.map(|RunId(id)| id).map_err(PageError::from)
}

/// `GET /runs/{id}`.
pub(super) async fn show(
    State(state): State<AppState>,
    session: Session,
    id: Result<RunId, ApiError>,
    query: Result<QueryParams, ApiError>,
) -> PageResult {
    let query = query?;
    let id = run_id(id)?;
    query.allow_only("the run page", &["expand", "notice", "tasks"])?;
    let expanded: HashSet<String> = query
        .text(
            "expand",
            "name a group to expand, or leave the parameter out",
        )?
        .map(|keys| keys.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let all_tasks = query.one_of("tasks", &["all"])?.is_some();
    let notice = query
        .text("notice", "leave the parameter out")?
        .and_then(|code| {
            NOTICES
                .iter()
                .find(|(name, _)| *name == code)
                .map(|(_, text)| *text)
        });

    let run = data::run(&state.store, &session.caller, id).await?;
    let events = data::recent_events(&state.store, &session.caller, id, EVENTS_SHOWN).await?;
    let log = logs::first_lines(&state, &session, id, LOG_LINES_SHOWN).await?;
    // A service's runs follow their service, so the page offers no run buttons for them.
    let service = state
        .store
        .service_of_run(id)
        .await
        .map_err(ApiError::from)?;
    let tasks = run.tasks.as_deref().unwrap_or_default();
    let now = Utc::now();
    let finished = live::is_finished(&run.status);
    let content = html! {
        div #run data-live=[(!finished).then(|| format!("/runs/{id}/live"))]
            data-gantt=(format!("/runs/{id}/gantt")) data-status=(run.status) {
            (header_section(&run, now))
            @if let Some(notice) = notice { p.notice { (notice) } }
            @if let Some(service) = &service {
                p.notice {
                    "This run serves service " code { (service) } "; restart or stop it on the "
                    a href="/services" { "Services" } " page."
                }
            } @else if session.caller.can_change() {
                (actions(&session, &run))
            }
            (relations(&run))
            section #dag-section {
                h2 { "DAG" }
                (dag::render(tasks, &expanded))
            }
            section {
                h2 { "Timeline" }
                div #gantt { (gantt::render(&run, tasks, now)) }
            }
            section {
                h2 { "Tasks" }
                (task_table(&run, tasks, all_tasks, now))
            }
            section #logs {
                h2 { "Logs" }
                // NOTE: only the DAG, the progress and the task table follow the run live.
                // The log lines and events are those stored when the page loaded.
                @if !finished { p.hint { "As stored when the page loaded; reload for newer lines." } }
                (logs::lines_table(&log.lines))
                @if log.next_after.is_some() {
                    p { a href=(format!("/runs/{id}/logs")) { "All log lines" } }
                }
            }
            section {
                h2 { "Input" }
                (json_block(&run.input, INPUT_CHARS))
            }
            section {
                h2 { "Events" }
                @if !finished { p.hint { "As stored when the page loaded; reload for newer events." } }
                (event_table(&events))
            }
        }
    };
    let title = format!("{} run", run.workflow);
    page::ok(layout::page(&title, &session, Section::Runs, content))
}

fn header_section(run: &RunView, now: chrono::DateTime<Utc>) -> Markup {
    html! {
        h1 {
            (run.workflow) " "
            span #run-status class=(format!("badge s-{}", run.status)) { (run.status) }
        }
        p.meta {
            "Run " code { (run.id) } " · version " code { (run.workflow_version) }
            " · created " (format::time(run.created_at))
            " · started " (format::maybe_time(run.started_at))
            " · finished " span #run-finished { (format::maybe_time(run.finished_at)) }
            " · duration " span #run-duration { (format::duration(run.started_at, run.finished_at, now)) }
        }
        p.progress-line {
            progress #run-progress value=(run.tasks_succeeded) max=(run.tasks_total.max(1)) {}
            " "
            span #run-progress-text { (progress_text(run.tasks_succeeded, run.tasks_total, run.tasks_failed, run.tasks_skipped, run.tasks_cancelled)) }
        }
    }
}

/// Describes a run's counts; the page's script writes the same words on updates.
fn progress_text(succeeded: i32, total: i32, failed: i32, skipped: i32, cancelled: i32) -> String {
    let mut text = format!("{succeeded} of {total} tasks succeeded");
    for (count, word) in [
        (failed, "failed"),
        (skipped, "skipped"),
        (cancelled, "cancelled"),
    ] {
        if count > 0 {
            text.push_str(&format!(" · {count} {word}"));
        }
    }
    text
}

fn actions(session: &Session, run: &RunView) -> Markup {
    let active = matches!(run.status.as_str(), "queued" | "running");
    let retryable = matches!(run.status.as_str(), "failed" | "cancelled");
    let id = run.id;
    html! {
        div.actions {
            form.action data-when="active" hidden[!active] method="post" action=(format!("/runs/{id}/cancel"))
                data-confirm="Cancel this run? Its tasks that have not finished are cancelled." {
                input type="hidden" name="csrf" value=(session.csrf);
                button.danger #cancel-run type="submit" { "Cancel run" }
            }
            form.action data-when="retryable" hidden[!retryable] method="post" action=(format!("/runs/{id}/retry")) {
                input type="hidden" name="csrf" value=(session.csrf);
                button #retry-run type="submit" { "Retry run" }
            }
            form.signal data-when="active" hidden[!active] method="post" action=(format!("/runs/{id}/signal")) {
                input type="hidden" name="csrf" value=(session.csrf);
                label { "Signal " input #signal-name type="text" name="name" required placeholder="approval"; }
                label { "Payload (JSON) "
                    textarea #signal-payload name="payload" rows="1" placeholder="{\"approved\": true}" {}
                }
                button #send-signal type="submit" { "Send signal" }
            }
        }
    }
}

fn relations(run: &RunView) -> Markup {
    let children = run.children.as_deref().unwrap_or_default();
    html! {
        @if let Some(parent) = run.parent_run_id {
            p.parent { "Started by run " a.mono href=(format!("/runs/{parent}")) { (parent) } }
        }
        @if !children.is_empty() {
            section {
                h2 { "Child runs" }
                table {
                    thead { tr { th { "Run" } th { "Workflow" } th { "Started by task" } th { "Status" } } }
                    tbody {
                        @for child in children {
                            tr {
                                td { a.mono href=(format!("/runs/{}", child.id)) { (child.id) } }
                                td { (child.workflow) }
                                td { (child.task) }
                                td { span class=(format!("badge s-{}", child.status)) { (child.status) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Returns the tasks the table lists: all of them, or for a large run the
/// [`TABLE_ROWS`] that most need attention (failed, running, waiting, ready), in spec order.
fn table_rows(tasks: &[TaskView], all: bool) -> Vec<usize> {
    if all || tasks.len() <= TABLE_ROWS {
        return (0..tasks.len()).collect();
    }
    let urgency = |status: &str| match status {
        "failed" => 0,
        "running" => 1,
        "waiting" => 2,
        "ready" => 3,
        _ => 4,
    };
    let mut rows: Vec<usize> = (0..tasks.len()).collect();
    rows.sort_by_key(|&i| (urgency(&tasks[i].status), i));
    rows.truncate(TABLE_ROWS);
    rows.sort_unstable();
    rows
}

fn task_table(run: &RunView, tasks: &[TaskView], all: bool, now: chrono::DateTime<Utc>) -> Markup {
    let rows = table_rows(tasks, all);
    html! {
        @if rows.len() < tasks.len() {
            p.hint {
                "Showing " (rows.len()) " of " (tasks.len()) " tasks: failed, running, waiting and ready ones first. "
                a href=(format!("/runs/{}?tasks=all#tasks", run.id)) { "Show all tasks" }
            }
        }
        table.tasks #tasks {
            thead {
                tr {
                    th { "Task" } th { "Kind" } th { "Status" } th { "Attempts" } th { "Started" }
                    th { "Duration" } th { "Error" } th { "Output" } th { "Logs" }
                }
            }
            tbody {
                @for index in rows {
                    (task_row(run, index, &tasks[index], now))
                }
            }
        }
    }
}

fn task_row(run: &RunView, index: usize, task: &TaskView, now: chrono::DateTime<Utc>) -> Markup {
    let output_text = task
        .output
        .as_ref()
        .map(|output| output.to_string())
        .unwrap_or_default();
    let (output_short, output_cut) = format::shorten(&output_text, OUTPUT_PREVIEW_CHARS as usize);
    let error = task.error.as_deref().unwrap_or_default();
    let (error_short, _) = format::shorten(error, caraml_engine::MAX_ERROR_CHARS as usize);
    let task_query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("task", &task.name)
        .finish();
    html! {
        tr #(format!("t-{index}")) data-i=(index) {
            td.name {
                (task.name)
                @if let (Some(signals), "waiting") = (&task.waiting_for, task.status.as_str()) {
                    small.waiting-for { "waiting for " (signals.join(", ")) }
                }
            }
            td { (task.kind) }
            td.c-status { span class=(format!("badge s-{}", task.status)) { (task.status) } }
            td.c-attempts { (task.attempts) }
            td.c-start { (format::maybe_time(task.started_at)) }
            td.c-duration { (format::duration(task.started_at, task.finished_at, now)) }
            td.c-error { span.err { (error_short) } }
            td.c-output {
                code.out { (output_short) }
                " "
                a.full href=(format!("/runs/{}/output?{task_query}", run.id)) hidden[!output_cut] { "full" }
            }
            td { a href=(format!("/runs/{}/logs?{task_query}", run.id)) { "logs" } }
        }
    }
}

fn json_block(value: &Value, max_chars: usize) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let (short, cut) = format::shorten(&text, max_chars);
    html! {
        pre.json { (short) }
        @if cut { p.hint { "Cut at " (max_chars) " characters; the API returns the whole input." } }
    }
}

fn event_table(events: &[EventView]) -> Markup {
    html! {
        @if events.len() == EVENTS_SHOWN as usize {
            p.hint { "The newest " (EVENTS_SHOWN) " events; " code { "caraml run events RUN_ID" } " lists them all." }
        }
        table.events {
            thead { tr { th { "#" } th { "Time" } th { "Event" } th { "Task" } th { "Attempt" } th { "Detail" } } }
            tbody {
                @for event in events {
                    tr {
                        td { (event.id) }
                        td { (format::time(event.at)) }
                        td { (event.kind) }
                        td { (event.task.as_deref().unwrap_or_default()) }
                        td { @if let Some(attempt) = event.attempt { (attempt) } }
                        td {
                            @if let Some(detail) = &event.detail {
                                code { (format::shorten(&detail.to_string(), 300).0) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /runs/{id}/live`.
pub(super) async fn live(
    State(state): State<AppState>,
    session: Session,
    id: Result<RunId, ApiError>,
) -> Result<Response, PageError> {
    let id = run_id(id)?;
    live::stream(
        state.store.clone(),
        session.caller,
        id,
        state.dashboard.shutdown(),
    )
    .await
}

/// `GET /runs/{id}/gantt`: the timeline alone, which the page fetches to redraw it.
pub(super) async fn gantt(
    State(state): State<AppState>,
    session: Session,
    id: Result<RunId, ApiError>,
) -> PageResult {
    let id = run_id(id)?;
    let run = data::run(&state.store, &session.caller, id).await?;
    let tasks = run.tasks.as_deref().unwrap_or_default();
    Ok(page::render(gantt::render(&run, tasks, Utc::now())).into_response())
}

/// `GET /runs/{id}/output?task=NAME`: a task's whole output as indented JSON text.
pub(super) async fn output(
    State(state): State<AppState>,
    session: Session,
    id: Result<RunId, ApiError>,
    query: Result<QueryParams, ApiError>,
) -> PageResult {
    let query = query?;
    let id = run_id(id)?;
    query.allow_only("the task output", &["task"])?;
    let Some(task) = query.text("task", "name the task whose output to show")? else {
        return Err(PageError::from(ApiError::BadRequest(
            "task is missing; name the task whose output to show, as in ?task=report".to_owned(),
        )));
    };
    let output = data::task_output(&state.store, &session.caller, id, &task).await?;
    let text = match output {
        Some(value) => serde_json::to_string_pretty(&value).unwrap_or_default(),
        None => "(no output)".to_owned(),
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Returns where to go after an action: the dead-letter list when the form came from it,
/// else the run page with a notice.
fn after_action(form: &Form, id: uuid::Uuid, notice: &str) -> Response {
    if form.get("back") == Some("dead-letters") {
        Redirect::to("/dead-letters").into_response()
    } else {
        Redirect::to(&format!("/runs/{id}?notice={notice}")).into_response()
    }
}

/// `POST /runs/{id}/cancel`.
pub(super) async fn cancel(
    State(state): State<AppState>,
    id: Result<RunId, ApiError>,
    posted: SessionForm,
) -> PageResult {
    let id = run_id(id)?;
    posted.session.require_change()?;
    data::cancel_run(&state.store, &posted.session.caller, id).await?;
    Ok(after_action(&posted.form, id, "cancelled"))
}

/// `POST /runs/{id}/retry`.
pub(super) async fn retry(
    State(state): State<AppState>,
    id: Result<RunId, ApiError>,
    posted: SessionForm,
) -> PageResult {
    let id = run_id(id)?;
    posted.session.require_change()?;
    data::retry_run(&state.store, &posted.session.caller, id).await?;
    Ok(after_action(&posted.form, id, "retried"))
}

/// `POST /runs/{id}/signal`: delivers the signal `name` with the JSON `payload`, or
/// `null` when the payload is blank.
pub(super) async fn signal(
    State(state): State<AppState>,
    id: Result<RunId, ApiError>,
    posted: SessionForm,
) -> PageResult {
    let id = run_id(id)?;
    posted.session.require_change()?;
    let Some(name) = posted.form.text("name") else {
        return Err(PageError::from(ApiError::BadRequest(
            "the signal name is empty; enter the name the task waits for, such as approval"
                .to_owned(),
        )));
    };
    let payload = match posted.form.text("payload") {
        None => Value::Null,
        Some(text) => serde_json::from_str(&text).map_err(|err| {
            PageError::from(ApiError::BadRequest(format!(
                "the signal payload is not valid JSON ({err}); enter JSON such as {{\"approved\": true}}, or leave it empty to send null"
            )))
        })?,
    };
    data::send_signal(&state.store, &posted.session.caller, id, &name, payload).await?;
    Ok(after_action(&posted.form, id, "signalled"))
}
