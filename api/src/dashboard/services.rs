//! The services page: long-lived tasks with their address, restarts and last error, and
//! restart and stop buttons.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use maud::html;

use super::data;
use super::format;
use super::layout::{self, Section};
use super::page::{self, PageResult};
use super::session::{Session, SessionForm};
use crate::http::AppState;

/// `GET /services`.
pub(super) async fn list(State(state): State<AppState>, session: Session) -> PageResult {
    let services = data::services(&state.store, &session.caller).await?;
    let can_change = session.caller.can_change();
    let content = html! {
        h1 { "Services" }
        table.services {
            thead {
                tr {
                    th { "Service" } th { "Status" } th { "Address" } th { "Ready since" }
                    th { "Restarts" } th { "Last error" } th { "Run" } th { "Generation" }
                    @if can_change { th { "Actions" } }
                }
            }
            tbody {
                @if services.is_empty() {
                    tr { td colspan="9" .empty { "No services. Create one with " code { "caraml service create" } "." } }
                }
                @for service in &services {
                    tr {
                        td { b { (service.name) } br; small { (service.workflow) } }
                        td { span class=(format!("badge svc-{}", service.status)) { (service.status) } }
                        td.mono { (service.address.as_deref().unwrap_or("–")) }
                        td { (format::maybe_time(service.ready_at)) }
                        td { (service.restarts) }
                        td.c-error { span.err { (service.last_error.as_deref().unwrap_or_default()) } }
                        td {
                            a.mono href=(format!("/runs/{}", service.run_id)) { (super::runs::short_id(service.run_id)) }
                            @if let Some(candidate) = service.candidate_run_id {
                                br; small { "replacing with " a.mono href=(format!("/runs/{candidate}")) { (super::runs::short_id(candidate)) } }
                            }
                        }
                        td { (service.generation) }
                        @if can_change {
                            td.row-actions {
                                @let path = form_urlencoded::byte_serialize(service.name.as_bytes()).collect::<String>();
                                form method="post" action=(format!("/services/{path}/restart")) {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    button type="submit" { "Restart" }
                                }
                                form method="post" action=(format!("/services/{path}/stop"))
                                    data-confirm="Stop this service? Its run is cancelled." {
                                    input type="hidden" name="csrf" value=(session.csrf);
                                    button.danger type="submit" { "Stop" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page::ok(layout::page(
        "Services",
        &session,
        Section::Services,
        content,
    ))
}

/// `POST /services/{name}/restart`.
pub(super) async fn restart(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: SessionForm,
) -> PageResult {
    posted.session.require_change()?;
    data::restart_service(&state.store, &posted.session.caller, &name).await?;
    Ok(Redirect::to("/services").into_response())
}

/// `POST /services/{name}/stop`.
pub(super) async fn stop(
    State(state): State<AppState>,
    Path(name): Path<String>,
    posted: SessionForm,
) -> PageResult {
    posted.session.require_change()?;
    data::stop_service(&state.store, &posted.session.caller, &name).await?;
    Ok(Redirect::to("/services").into_response())
}
