//! Task logs on the dashboard: the first lines stored on the run page, and a page of a run's
//! lines, filtered by task and attempt, at `/runs/{id}/logs`.

use axum::extract::State;
use caraml_engine::{LogFilter, LogLine, LogPage};
use maud::{Markup, html};

use super::layout::{self, Section};
use super::page::{self, PageError, PageResult};
use super::session::Session;
use super::{data, format};
use crate::http::{ApiError, AppState, QueryParams, RunId};

/// Lines one logs page shows.
const PAGE_LINES: u32 = 1_000;

/// Renders log lines as a table: time, level, task and attempt, message.
pub(super) fn lines_table(lines: &[LogLine]) -> Markup {
    html! {
        @if lines.is_empty() {
            p.hint { "No log lines yet: tasks write them through their context's logger." }
        } @else {
            table.logs {
                thead { tr { th { "Time" } th { "Level" } th { "Task" } th { "Message" } } }
                tbody {
                    @for line in lines {
                        tr class=(format!("log-{}", line.level)) {
                            td.mono { (format::time(line.at)) }
                            td { (line.level) }
                            td { (line.task) "#" (line.attempt) }
                            td { pre.log { (line.message) } }
                        }
                    }
                }
            }
        }
    }
}

/// Reads the first lines of a run for its page, and whether more are stored.
pub(super) async fn first_lines(
    state: &AppState,
    session: &Session,
    id: uuid::Uuid,
    limit: u32,
) -> Result<LogPage, ApiError> {
    let filter = LogFilter {
        limit,
        ..LogFilter::default()
    };
    data::run_logs(&state.store, &session.caller, id, &filter).await
}

/// `GET /runs/{id}/logs`.
pub(super) async fn show(
    State(state): State<AppState>,
    session: Session,
    id: Result<RunId, ApiError>,
    query: Result<QueryParams, ApiError>,
) -> PageResult {
    let query = query?;
    let RunId(id) = id.map_err(PageError::from)?;
    query.allow_only("the logs page", &["task", "attempt", "after"])?;
    let filter = LogFilter {
        task: query.text(
            "task",
            "name a task of the run, or leave the parameter out for every task",
        )?,
        attempt: query.whole_number("attempt", 1, i32::MAX)?,
        after: query.log_line_id("after")?.unwrap_or(0),
        limit: PAGE_LINES,
    };
    let page = data::run_logs(&state.store, &session.caller, id, &filter).await?;

    let mut next = form_urlencoded::Serializer::new(String::new());
    next.append_pair("after", &page.next_after.unwrap_or_default().to_string());
    if let Some(task) = &filter.task {
        next.append_pair("task", task);
    }
    if let Some(attempt) = filter.attempt {
        next.append_pair("attempt", &attempt.to_string());
    }
    let next = next.finish();

    let content = html! {
        h1 { "Logs" }
        p.meta {
            "Run " a.mono href=(format!("/runs/{id}")) { (id) }
            @if let Some(task) = &filter.task { " · task " code { (task) } }
            @if let Some(attempt) = filter.attempt { " · attempt " (attempt) }
        }
        (lines_table(&page.lines))
        @if page.next_after.is_some() {
            p { a href=(format!("/runs/{id}/logs?{next}")) { "Next lines" } }
        }
    };
    page::ok(layout::page("Logs", &session, Section::Runs, content))
}
