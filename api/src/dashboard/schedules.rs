//! The schedules page: cron schedules with their next tick and last run, and pause and
//! resume buttons.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use maud::html;

use super::data;
use super::format;
use super::layout::{self, Section};
use super::page::{self, PageResult};
use super::session::{Session, SessionForm};
use crate::http::AppState;

/// `GET /schedules`.
pub(super) async fn list(State(state): State<AppState>, session: Session) -> PageResult {
    let schedules = data::schedules(&state.store, &session.caller).await?;
    let can_change = session.caller.can_change();
    let content = html! {
        h1 { "Schedules" }
        table.schedules {
            thead {
                tr {
                    th { "Schedule" } th { "Workflow" } th { "Cron" } th { "Time zone" }
                    th { "State" } th { "Next tick (UTC)" } th { "Last run" } th { "Missed ticks" }
                    th { "Last error" }
                    @if can_change { th { "Actions" } }
                }
            }
            tbody {
                @if schedules.is_empty() {
                    tr { td colspan="10" .empty { "No schedules. Create one with " code { "caraml schedule create" } "." } }
                }
                @for schedule in &schedules {
                    tr {
                        td { b { (schedule.name) } }
                        td { (schedule.workflow) }
                        td.mono { (schedule.cron) }
                        td { (schedule.timezone) }
                        td {
                            @if schedule.paused { span.badge.s-cancelled { "paused" } }
                            @else { span.badge.s-running { "active" } }
                        }
                        td { (format::time(schedule.next_tick_at)) }
                        td {
                            @if let Some(run) = schedule.last_run_id {
                                a.mono href=(format!("/runs/{run}")) { (super::runs::short_id(run)) }
                                br; small { "tick " (format::maybe_time(schedule.last_tick_at)) }
                            } @else { "–" }
                        }
                        td { (schedule.missed) }
                        td.c-error { span.err { (schedule.last_error.as_deref().unwrap_or_default()) } }
                        @if can_change {
                            td.row-actions {
                                @let path = form_urlencoded::byte_serialize(schedule.name.as_bytes()).collect::<String>();
                                @let (action, label) = if schedule.paused { ("resume", "Resume") } else { ("pause", "Pause") };
                                form method="post" action=(format!("/schedules/{path}/{action}")) {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    button type="submit" { (label) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page::ok(layout::page(
        "Schedules",
        &session,
        Section::Schedules,
        content,
    ))
}

/// `POST /schedules/{name}/pause`.
pub(super) async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: SessionForm,
) -> PageResult {
    posted.session.require_change()?;
    data::pause_schedule(&state.store, &posted.session.caller, &name).await?;
    Ok(Redirect::to("/schedules").into_response())
}

/// `POST /schedules/{name}/resume`.
pub(super) async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: SessionForm,
) -> PageResult {
    posted.session.require_change()?;
    data::resume_schedule(&state.store, &posted.session.caller, &name).await?;
    Ok(Redirect::to("/schedules").into_response())
}
