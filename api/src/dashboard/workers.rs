//! The workers page: every registered worker process, its queue, slots and heartbeat.

use axum::extract::State;
use chrono::Utc;
use maud::html;

use super::data;
use super::format;
use super::layout::{self, Section};
use super::page::{self, PageResult};
use super::session::Session;
use crate::http::AppState;

/// A worker whose last heartbeat is older than this, and that did not stop, is shown as
/// silent: it probably died without deregistering.
const SILENT_AFTER_SECONDS: i64 = 60;

/// `GET /workers`.
pub(super) async fn list(State(state): State<AppState>, session: Session) -> PageResult {
    let workers = data::workers(&state.store, &session.caller).await?;
    let now = Utc::now();
    let content = html! {
        h1 { "Workers" }
        table.workers {
            thead {
                tr {
                    th { "State" } th { "Host" } th { "PID" } th { "Queue" } th { "Slots" }
                    th { "Started" } th { "Last heartbeat" } th { "Id" }
                }
            }
            tbody {
                @if workers.is_empty() {
                    tr { td colspan="8" .empty { "No worker has registered. Start one with " code { "caraml worker" } "." } }
                }
                @for worker in &workers {
                    @let silent = (now - worker.heartbeat_at).num_seconds() > SILENT_AFTER_SECONDS;
                    @let (label, class) = match (worker.stopped_at, silent) {
                        (Some(_), _) => ("stopped", "cancelled"),
                        (None, true) => ("silent", "failed"),
                        (None, false) => ("live", "succeeded"),
                    };
                    tr {
                        td { span class=(format!("badge s-{class}")) { (label) } }
                        td { (worker.hostname) }
                        td { (worker.pid) }
                        td { (worker.queue) }
                        td { (worker.slots) }
                        td { (format::time(worker.started_at)) }
                        td { (format::time(worker.heartbeat_at)) " (" (format::duration(Some(worker.heartbeat_at), None, now)) " ago)" }
                        td.mono { (worker.id) }
                    }
                }
            }
        }
    };
    page::ok(layout::page("Workers", &session, Section::Workers, content))
}
