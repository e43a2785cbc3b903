//! The runs list: status counts, filters, a keyset-paginated table, and bulk retry and
//! cancel for the current filter.
//!
//! The page reads one page of runs through the primary key and one grouped count. It
//! never counts or skips over all runs, so it stays fast however many runs there are.

use axum::extract::State;
use axum::response::IntoResponse;
use caraml_engine::{BulkFilter, BulkOutcome, RUN_STATUSES, RunFilter, RunPage, RunView};
use chrono::Utc;
use maud::{Markup, html};

use super::data;
use super::form::Form;
use super::format;
use super::layout::{self, Section};
use super::page::{self, PageError, PageResult};
use super::session::{Session, SessionForm};
use crate::http::{ApiError, AppState, QueryParams};

/// Runs per page.
const PAGE_SIZE: u32 = 50;

/// The filter of the runs list, as its query parameters or the bulk form's fields give it.
#[derive(Debug, Clone, Default)]
pub(super) struct ListFilter {
    status: Option<String>,
    workflow: Option<String>,
    from: Option<chrono::DateTime<Utc>>,
    to: Option<chrono::DateTime<Utc>>,
}

impl ListFilter {
    fn from_query(query: &QueryParams) -> Result<Self, ApiError> {
        let status = query.text("status", "choose a status")?;
        if let Some(status) = &status
            && !RUN_STATUSES.contains(&status.as_str())
        {
            return Err(ApiError::BadRequest(format!(
                "status must be one of {}, got {}",
                RUN_STATUSES.join(", "),
                crate::http::quoted(status)
            )));
        }
        Ok(Self {
            status,
            workflow: query.text("workflow", "give a workflow name")?,
            from: optional_time("from", query.text("from", "give a time")?.as_deref())?,
            to: optional_time("to", query.text("to", "give a time")?.as_deref())?,
        })
    }

    fn from_form(form: &Form) -> Result<Self, ApiError> {
        let status = form.text("status");
        if let Some(status) = &status
            && !RUN_STATUSES.contains(&status.as_str())
        {
            return Err(ApiError::BadRequest(format!(
                "status must be one of {}, got {}",
                RUN_STATUSES.join(", "),
                crate::http::quoted(status)
            )));
        }
        Ok(Self {
            status,
            workflow: form.text("workflow"),
            from: optional_time("from", form.text("from").as_deref())?,
            to: optional_time("to", form.text("to").as_deref())?,
        })
    }

    fn is_empty(&self) -> bool {
        self.status.is_none() && self.workflow.is_none() && self.from.is_none() && self.to.is_none()
    }

    fn run_filter(&self, before: Option<uuid::Uuid>) -> RunFilter {
        RunFilter {
            status: self.status.clone(),
            workflow: self.workflow.clone(),
            from: self.from,
            to: self.to,
            before,
            limit: PAGE_SIZE,
            ..RunFilter::default()
        }
    }

    /// Returns the query string of this filter, with `status` replaced when given.
    fn query(&self, status: Option<Option<&str>>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        let status = status.unwrap_or(self.status.as_deref());
        if let Some(status) = status {
            query.append_pair("status", status);
        }
        if let Some(workflow) = &self.workflow {
            query.append_pair("workflow", workflow);
        }
        if let Some(from) = self.from {
            query.append_pair("from", &format::time_input(from));
        }
        if let Some(to) = self.to {
            query.append_pair("to", &format::time_input(to));
        }
        query.finish()
    }
}

fn optional_time(
    name: &str,
    text: Option<&str>,
) -> Result<Option<chrono::DateTime<Utc>>, ApiError> {
    text.map(|text| format::parse_time_input(name, text))
        .transpose()
}

/// `GET /` and `GET /runs`.
pub(super) async fn list(
    State(state): State<AppState>,
    session: Session,
    query: Result<QueryParams, ApiError>,
) -> PageResult {
    let query = query?;
    query.allow_only(
        "the runs page",
        &["status", "workflow", "from", "to", "before"],
    )?;
    let filter = ListFilter::from_query(&query)?;
    let before = query.run_id("before", "the cursor of the older page")?;
    let live = live_section(&state, &session, &filter, before).await?;
    let content = html! {
        h1 { "Runs" }
        (filter_form(&filter))
        div #runs-live data-refresh=[before.is_none().then(|| format!("/runs/table?{}", filter.query(None)))] {
            (live)
        }
        @if session.caller.can_change() {
            (bulk_form(&session, &filter))
        }
    };
    page::ok(layout::page("Runs", &session, Section::Runs, content))
}

/// `GET /runs/table`: the counts and the table, which the runs page fetches every few
/// seconds to refresh them in place.
pub(super) async fn table(
    State(state): State<AppState>,
    session: Session,
    query: Result<QueryParams, ApiError>,
) -> PageResult {
    let query = query?;
    query.allow_only("the runs table", &["status", "workflow", "from", "to"])?;
    let filter = ListFilter::from_query(&query)?;
    let live = live_section(&state, &session, &filter, None).await?;
    Ok(page::render(live).into_response())
}

async fn live_section(
    state: &AppState,
    session: &Session,
    filter: &ListFilter,
    before: Option<uuid::Uuid>,
) -> Result<Markup, PageError> {
    let run_filter = filter.run_filter(before);
    let counts = data::status_counts(&state.store, &session.caller, run_filter.clone()).await?;
    let runs = data::runs(&state.store, &session.caller, run_filter).await?;
    Ok(html! {
        (status_counts(filter, &counts))
        (runs_table(&runs, filter, &session.caller.project))
    })
}

fn status_counts(filter: &ListFilter, counts: &[(String, i64)]) -> Markup {
    let total: i64 = counts.iter().map(|(_, count)| count).sum();
    let count_of = |status: &str| {
        counts
            .iter()
            .find(|(name, _)| name == status)
            .map_or(0, |(_, count)| *count)
    };
    html! {
        div.counts {
            a.count.active[filter.status.is_none()] href=(format!("/runs?{}", filter.query(Some(None)))) {
                span.n { (total) } " all"
            }
            @for status in RUN_STATUSES {
                @let active = if filter.status.as_deref() == Some(status) { " active" } else { "" };
                a class=(format!("count s-{status}{active}"))
                    href=(format!("/runs?{}", filter.query(Some(Some(status))))) {
                    span.n #(format!("count-{status}")) { (count_of(status)) } " " (status)
                }
            }
        }
    }
}

fn filter_form(filter: &ListFilter) -> Markup {
    html! {
        form.filters method="get" action="/runs" {
            label { "Status "
                select name="status" {
                    option value="" selected[filter.status.is_none()] { "any" }
                    @for status in RUN_STATUSES {
                        option value=(status) selected[filter.status.as_deref() == Some(status)] { (status) }
                    }
                }
            }
            label { "Workflow "
                input type="text" name="workflow" value=[filter.workflow.as_deref()] placeholder="any";
            }
            label { "Created from (UTC) "
                input type="datetime-local" step="1" name="from" value=[filter.from.map(format::time_input)];
            }
            label { "to "
                input type="datetime-local" step="1" name="to" value=[filter.to.map(format::time_input)];
            }
            button type="submit" { "Filter" }
            @if !filter.is_empty() {
                " " a href="/runs" { "Clear" }
            }
        }
    }
}

fn runs_table(page: &RunPage, filter: &ListFilter, project: &str) -> Markup {
    let now = Utc::now();
    html! {
        table.runs {
            thead {
                tr {
                    th { "Status" } th { "Workflow" } th { "Project" } th { "Started" }
                    th { "Duration" } th { "Progress" } th { "Run" }
                }
            }
            tbody {
                @if page.runs.is_empty() {
                    tr { td colspan="7" .empty { "No runs match this filter." } }
                }
                @for run in &page.runs {
                    (run_row(run, project, now))
                }
            }
        }
        @if let Some(cursor) = page.next_cursor {
            p.pager {
                a.older href=(format!("/runs?{}&before={cursor}", filter.query(None))) { "Older runs →" }
            }
        }
    }
}

fn run_row(run: &RunView, project: &str, now: chrono::DateTime<Utc>) -> Markup {
    html! {
        tr {
            td { span class=(format!("badge s-{}", run.status)) { (run.status) } }
            td { a href=(format!("/runs/{}", run.id)) { (run.workflow) } }
            // Every run listed belongs to the caller's project.
            td { (project) }
            td { (format::maybe_time(run.started_at.or(Some(run.created_at)))) }
            td { (format::duration(run.started_at, run.finished_at, now)) }
            td.progress {
                progress value=(run.tasks_succeeded) max=(run.tasks_total.max(1)) {}
                " " (run.tasks_succeeded) "/" (run.tasks_total)
                @if run.tasks_failed > 0 { " · " span.failed { (run.tasks_failed) " failed" } }
            }
            td { a.mono href=(format!("/runs/{}", run.id)) { (short_id(run.id)) } }
        }
    }
}

/// Returns the last 12 hex digits of a run id, which differ between runs created in the
/// same millisecond.
pub(super) fn short_id(id: uuid::Uuid) -> String {
    let text = id.simple().to_string();
    text[text.len() - 12..].to_owned()
}

fn bulk_form(session: &Session, filter: &ListFilter) -> Markup {
    let scope = if filter.is_empty() {
        "every run".to_owned()
    } else {
        "every run that matches the filter".to_owned()
    };
    html! {
        form.bulk method="post" action="/runs/bulk"
            data-confirm=(format!("Apply this action to {scope}? Runs it does not apply to are left alone.")) {
            input type="hidden" name="csrf" value=(session.csrf);
            @if let Some(status) = &filter.status { input type="hidden" name="status" value=(status); }
            @if let Some(workflow) = &filter.workflow { input type="hidden" name="workflow" value=(workflow); }
            @if let Some(from) = filter.from { input type="hidden" name="from" value=(format::time_input(from)); }
            @if let Some(to) = filter.to { input type="hidden" name="to" value=(format::time_input(to)); }
            span { "For " (scope) " (at most 10,000 per click): " }
            button type="submit" name="action" value="retry" { "Retry failed and cancelled" }
            " "
            button.danger type="submit" name="action" value="cancel" { "Cancel queued and running" }
        }
    }
}

/// `POST /runs/bulk`: retries or cancels the runs of a filter, and shows what changed.
pub(super) async fn bulk(State(state): State<AppState>, posted: SessionForm) -> PageResult {
    let SessionForm { session, form } = posted;
    session.require_change()?;
    let filter = ListFilter::from_form(&form)?;
    let bulk_filter = BulkFilter {
        workflow: filter.workflow.clone(),
        status: filter.status.clone(),
        created_since: filter.from,
        created_until: filter.to,
        all: filter.is_empty(),
        ..BulkFilter::default()
    };
    let outcome = match form.get("action") {
        Some("retry") => data::bulk_retry(&state.store, &session.caller, &bulk_filter).await?,
        Some("cancel") => data::bulk_cancel(&state.store, &session.caller, &bulk_filter).await?,
        other => {
            return Err(PageError::from(ApiError::BadRequest(format!(
                "action is {}; use retry or cancel",
                crate::http::quoted(other.unwrap_or_default())
            ))));
        }
    };
    let content = bulk_outcome(&outcome, &filter);
    page::ok(layout::page(
        "Bulk action",
        &session,
        Section::Runs,
        content,
    ))
}

fn bulk_outcome(outcome: &BulkOutcome, filter: &ListFilter) -> Markup {
    let verb = if outcome.action == "retry" {
        "Retried"
    } else {
        "Cancelled"
    };
    html! {
        h1 { (verb) " " (outcome.affected) " runs" }
        @if let Some(message) = &outcome.message { p.notice { (message) } }
        @if !outcome.run_ids.is_empty() {
            ul.ids {
                @for id in &outcome.run_ids {
                    li { a.mono href=(format!("/runs/{id}")) { (id) } }
                }
            }
        }
        @if !outcome.skipped.is_empty() {
            h2 { "Left alone" }
            table {
                thead { tr { th { "Run" } th { "Reason" } } }
                tbody {
                    @for skipped in &outcome.skipped {
                        tr {
                            td { a.mono href=(format!("/runs/{}", skipped.id)) { (skipped.id) } }
                            td { (skipped.reason) }
                        }
                    }
                }
            }
        }
        p { a href=(format!("/runs?{}", filter.query(None))) { "Back to the runs" } }
    }
}
