//! The dead-letters page: tasks that failed for good, newest first, with their error and
//! a button that retries their run.

use axum::extract::State;
use caraml_engine::DeadLetterFilter;
use maud::html;

use super::data;
use super::format;
use super::layout::{self, Section};
use super::page::{self, PageResult};
use super::session::Session;
use crate::http::{ApiError, AppState, QueryParams};

/// Dead letters per page.
const PAGE_SIZE: u32 = 50;

/// `GET /dead-letters`.
pub(super) async fn list(
    State(state): State<AppState>,
    session: Session,
    query: Result<QueryParams, ApiError>,
) -> PageResult {
    let query = query?;
    query.allow_only("the dead-letters page", &["workflow", "cursor"])?;
    let workflow = query.text("workflow", "give a workflow name, or leave it out")?;
    let filter = DeadLetterFilter {
        workflow: workflow.clone(),
        cursor: query.text("cursor", "give the cursor of the older page")?,
        limit: PAGE_SIZE,
        ..DeadLetterFilter::default()
    };
    let page = data::dead_letters(&state.store, &session.caller, &filter).await?;
    let can_change = session.caller.can_change();
    let older = page.next_cursor.as_ref().map(|cursor| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(workflow) = &workflow {
            query.append_pair("workflow", workflow);
        }
        query.append_pair("cursor", cursor).finish()
    });
    let content = html! {
        h1 { "Dead letters" }
        p.hint { "Tasks that failed for good: they used their attempts or raised a permanent error. Retrying resumes the whole run." }
        form.filters method="get" action="/dead-letters" {
            label { "Workflow " input type="text" name="workflow" value=[workflow.as_deref()] placeholder="any"; }
            button type="submit" { "Filter" }
        }
        table.dead-letters {
            thead {
                tr {
                    th { "Failed at" } th { "Workflow" } th { "Task" } th { "Kind" }
                    th { "Attempts" } th { "Error" } th { "Run" }
                    @if can_change { th { "Actions" } }
                }
            }
            tbody {
                @if page.dead_letters.is_empty() {
                    tr { td colspan="8" .empty { "No dead letters." } }
                }
                @for letter in &page.dead_letters {
                    tr {
                        td { (format::time(letter.finished_at)) }
                        td { (letter.workflow) }
                        td { (letter.task) }
                        td { (letter.kind) }
                        td { (letter.attempts) " of " (letter.max_attempts) }
                        td.c-error { span.err { (format::shorten(letter.error.as_deref().unwrap_or_default(), 500).0) } }
                        td { a.mono href=(format!("/runs/{}", letter.run_id)) { (super::runs::short_id(letter.run_id)) } }
                        @if can_change {
                            td.row-actions {
                                form method="post" action=(format!("/runs/{}/retry", letter.run_id)) {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    input type="hidden" name="back" value="dead-letters";
                                    button type="submit" { "Retry run" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(query) = &older {
            p.pager { a.older href=(format!("/dead-letters?{query}")) { "Older dead letters →" } }
        }
    };
    page::ok(layout::page(
        "Dead letters",
        &session,
        Section::DeadLetters,
        content,
    ))
}
