//! The API's OpenAPI 3.1 document, served at `/openapi.json`.
//!
//! Each endpoint is described by a documentation function below, kept apart from its
//! handler. The request and response schemas derive from the types the handlers parse and
//! return, or from the types in [`schemas`] where a handler checks or builds JSON by hand.
//! [`Conventions`] adds what every endpoint of a kind shares: the bearer scheme on `/v1`,
//! and the error responses of authentication, input checks, size limits and server faults.

mod params;
mod schemas;

use std::sync::OnceLock;

use axum::Json;
use caraml_engine::{
    BulkOutcome, DeadLetterPage, Delivered, LogPage, RunCounts, RunPage, RunView, ScheduleView,
    ServiceView, SignalView,
};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::bulk::BulkRequest;
use super::error::Body as ErrorResponse;
use super::retention::RetentionRequest;
use super::schedules::CreateRequest as CreateScheduleRequest;
use super::services::{CreateRequest as CreateServiceRequest, ReplaceRequest};
use super::signals::SignalRequest;
pub(crate) use params::RunStatus;
use params::{
    DeadLetterQuery, EventQuery, LogQuery, RunCountQuery, RunListQuery, RunPath, RunQuery,
};
pub(crate) use schemas::SpecDocument;
use schemas::{
    EventPage, RetentionSetting, RunStatusChange, ScheduleList, SubmitRunRequest, SubmittedRun,
    WorkerList, WorkflowList,
};

/// Name of the bearer security scheme in the document.
const BEARER: &str = "bearer";

/// Prefix of the endpoints that require a bearer token.
const PROTECTED_PREFIX: &str = "/v1/";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CaraML API",
        description = "The HTTP API of CaraML, an MLOps platform on a durable task-graph engine in PostgreSQL. Errors share one JSON shape, `ErrorResponse`, with a message that names the value and the fix."
    ),
    paths(
        endpoints::submit_run,
        endpoints::list_runs,
        endpoints::bulk_retry,
        endpoints::bulk_cancel,
        endpoints::get_run,
        endpoints::cancel_run,
        endpoints::retry_run,
        endpoints::run_events,
        endpoints::run_logs,
        endpoints::count_runs,
        endpoints::list_signals,
        endpoints::send_signal,
        endpoints::list_workflows,
        endpoints::get_retention,
        endpoints::set_retention,
        endpoints::list_workers,
        endpoints::list_dead_letters,
        endpoints::create_schedule,
        endpoints::list_schedules,
        endpoints::get_schedule,
        endpoints::delete_schedule,
        endpoints::pause_schedule,
        endpoints::resume_schedule,
        endpoints::create_service,
        endpoints::list_services,
        endpoints::get_service,
        endpoints::replace_service,
        endpoints::restart_service,
        endpoints::stop_service,
        endpoints::healthz,
        endpoints::readyz,
        endpoints::metrics,
        endpoints::openapi_json,
        endpoints::docs_page,
    ),
    components(schemas(ErrorResponse)),
    modifiers(&Conventions),
    tags(
        (name = "runs", description = "Start runs of workflows, follow them, cancel and resume them."),
        (name = "bulk", description = "Retry or cancel every run a filter selects."),
        (name = "signals", description = "Named signals that wake waiting tasks, such as approvals."),
        (name = "workflows", description = "Stored workflows, task kinds and per-workflow retention."),
        (name = "workers", description = "Worker processes and the tasks that failed for good."),
        (name = "schedules", description = "Cron schedules that start runs."),
        (name = "services", description = "Long-lived tasks that serve at an address, replaced with no gap."),
        (name = "operations", description = "Probes, metrics and this documentation; no token needed."),
    )
)]
struct ApiDoc;

/// Returns the document, built on first use.
pub(crate) fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

pub(crate) async fn serve_document() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(document())
}

/// Adds the security scheme and the responses that endpoints share by kind.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Send `Authorization: Bearer TOKEN` with every request under /v1.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                add_shared_responses(path, operation);
            }
        }
    }
}

fn add_shared_responses(path: &str, operation: &mut Operation) {
    if !path.starts_with(PROTECTED_PREFIX) {
        return;
    }
    operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);

    let has_parameters = operation
        .parameters
        .as_ref()
        .is_some_and(|parameters| !parameters.is_empty());
    let has_body = operation.request_body.is_some();
    let mut shared = vec![
        (
            "401",
            "The request has no bearer token, or the token is not valid.",
        ),
        ("403", "The token does not allow this request."),
        (
            "500",
            "The server failed; the body has a `request_id` to find in the server log.",
        ),
        ("503", "The database is unavailable; retry shortly."),
    ];
    if has_parameters || has_body {
        shared.push((
            "400",
            "A parameter or a body field is invalid; the message names it, its value and the fix.",
        ));
    }
    if path.contains('{') {
        shared.push(("404", "Nothing exists under the name or id in the path."));
    }
    if has_body {
        shared.push((
            "413",
            "The body is larger than the server's limit (8 MiB unless set with --body-limit-bytes).",
        ));
        shared.push((
            "415",
            "The body was sent without `Content-Type: application/json`.",
        ));
    }
    for (status, description) in shared {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description));
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorResponse")))
                    .build(),
            )
            .build(),
    )
}

/// Documentation functions, one per endpoint. Each is named after its operation, which is its
/// `operationId`; the first doc line is the summary and the rest the description. Nothing
/// calls them: the path macro reads their attributes.
#[allow(dead_code)]
mod endpoints {
    use super::*;

    /// Submit a run
    ///
    /// Starts a run of a registered workflow, or stores an inline spec and starts a run of it.
    /// A repeated `idempotency_key` returns the first run with status 200.
    #[utoipa::path(
        post,
        path = "/v1/runs",
        tag = "runs",
        request_body = SubmitRunRequest,
        responses(
            (status = 201, description = "The run was created.", body = SubmittedRun),
            (status = 200, description = "A run with this idempotency key exists; it is returned.", body = SubmittedRun),
            (status = 404, description = "No workflow is stored under the name given.", body = ErrorResponse),
            (status = 409, description = "The idempotency key belongs to a run of another workflow, or the spec names a workflow defined in Rust.", body = ErrorResponse),
            (status = 422, description = "The spec is invalid; `problems` lists every problem with the tasks involved.", body = ErrorResponse),
        )
    )]
    fn submit_run() {}

    /// List runs
    ///
    /// Pages go from newest to oldest; pass `next_cursor` as `cursor` for the next page.
    #[utoipa::path(
        get,
        path = "/v1/runs",
        tag = "runs",
        params(RunListQuery),
        responses((status = 200, description = "A page of runs, without their tasks.", body = RunPage))
    )]
    fn list_runs() {}

    /// Retry runs in bulk
    ///
    /// Resumes the failed and cancelled runs that the filter selects, oldest first.
    #[utoipa::path(
        post,
        path = "/v1/runs/bulk/retry",
        tag = "bulk",
        request_body = BulkRequest,
        responses((status = 200, description = "The runs resumed, and those left alone with the reason.", body = BulkOutcome))
    )]
    fn bulk_retry() {}

    /// Cancel runs in bulk
    ///
    /// Cancels the queued and running runs that the filter selects, oldest first.
    #[utoipa::path(
        post,
        path = "/v1/runs/bulk/cancel",
        tag = "bulk",
        request_body = BulkRequest,
        responses((status = 200, description = "The runs cancelled, and those left alone with the reason.", body = BulkOutcome))
    )]
    fn bulk_cancel() {}

    /// Get a run
    ///
    /// The run with its tasks and the child runs its tasks started.
    #[utoipa::path(
        get,
        path = "/v1/runs/{id}",
        tag = "runs",
        params(RunPath, RunQuery),
        responses((status = 200, description = "The run.", body = RunView))
    )]
    fn get_run() {}

    /// Cancel a run
    ///
    /// Cancels the run's tasks and child runs; running tasks see their cancellation token.
    #[utoipa::path(
        post,
        path = "/v1/runs/{id}/cancel",
        tag = "runs",
        params(RunPath),
        responses(
            (status = 200, description = "The run is cancelled, or was already.", body = RunStatusChange),
            (status = 409, description = "The run already succeeded or failed.", body = ErrorResponse),
        )
    )]
    fn cancel_run() {}

    /// Retry a run
    ///
    /// Resumes a failed or cancelled run: its failed, cancelled and skipped tasks run again,
    /// and the outputs of the tasks that succeeded are reused.
    #[utoipa::path(
        post,
        path = "/v1/runs/{id}/retry",
        tag = "runs",
        params(RunPath),
        responses(
            (status = 200, description = "The run is queued again.", body = RunStatusChange),
            (status = 409, description = "The run is not failed or cancelled.", body = ErrorResponse),
        )
    )]
    fn retry_run() {}

    /// List a run's events
    ///
    /// Every state change of the run and its tasks, in order.
    #[utoipa::path(
        get,
        path = "/v1/runs/{id}/events",
        tag = "runs",
        params(RunPath, EventQuery),
        responses((status = 200, description = "A page of events.", body = EventPage))
    )]
    fn run_events() {}

    /// List a run's log lines
    ///
    /// The lines the run's tasks wrote through their logger, per attempt, in the order they
    /// were stored.
    #[utoipa::path(
        get,
        path = "/v1/runs/{id}/logs",
        tag = "runs",
        params(RunPath, LogQuery),
        responses((status = 200, description = "A page of log lines.", body = LogPage))
    )]
    fn run_logs() {}

    /// Count runs per status
    ///
    /// Counts the project's runs per status, for one workflow and a creation time range
    /// when given.
    #[utoipa::path(
        get,
        path = "/v1/runs/counts",
        tag = "runs",
        params(RunCountQuery),
        responses((status = 200, description = "Runs per status.", body = RunCounts))
    )]
    fn count_runs() {}

    /// List a run's signals
    #[utoipa::path(
        get,
        path = "/v1/runs/{id}/signals",
        tag = "signals",
        params(RunPath),
        responses((status = 200, description = "The signals sent to the run, oldest first.", body = [SignalView]))
    )]
    fn list_signals() {}

    /// Send a signal
    ///
    /// Stores the signal and wakes the run's tasks that wait for it. A task that waits for it
    /// later finds it. An empty body sends the payload `null`.
    #[utoipa::path(
        post,
        path = "/v1/runs/{id}/signals/{name}",
        tag = "signals",
        params(
            RunPath,
            ("name" = String, Path, description = "The signal's name: 1 to 200 letters, digits, `_`, `-`, `.` or `:`.", pattern = "^[A-Za-z0-9_.:-]{1,200}$"),
        ),
        request_body(content = Option<SignalRequest>, description = "The payload, or an empty body."),
        responses(
            (status = 201, description = "The signal was stored.", body = Delivered),
            (status = 409, description = "The run has ended.", body = ErrorResponse),
        )
    )]
    fn send_signal() {}

    /// List workflows
    #[utoipa::path(
        get,
        path = "/v1/workflows",
        tag = "workflows",
        responses((status = 200, description = "Every stored workflow version, and the registered task kinds.", body = WorkflowList))
    )]
    fn list_workflows() {}

    /// Get a workflow's retention
    #[utoipa::path(
        get,
        path = "/v1/workflows/{name}/retention",
        tag = "workflows",
        params(("name" = String, Path, description = "A stored workflow's name.", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
        responses((status = 200, description = "The workflow's retention.", body = RetentionSetting))
    )]
    fn get_retention() {}

    /// Set a workflow's retention
    ///
    /// Finished runs of the workflow are deleted once older than this, whatever the processes'
    /// default is.
    #[utoipa::path(
        put,
        path = "/v1/workflows/{name}/retention",
        tag = "workflows",
        params(("name" = String, Path, description = "A stored workflow's name.", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
        request_body = RetentionRequest,
        responses((status = 200, description = "The retention now in force.", body = RetentionSetting))
    )]
    fn set_retention() {}

    /// List workers
    #[utoipa::path(
        get,
        path = "/v1/workers",
        tag = "workers",
        responses((status = 200, description = "Live workers, and those that stopped in the last hour.", body = WorkerList))
    )]
    fn list_workers() {}

    /// List dead letters
    ///
    /// Tasks that failed for good, newest first.
    #[utoipa::path(
        get,
        path = "/v1/dead-letters",
        tag = "workers",
        params(DeadLetterQuery),
        responses((status = 200, description = "A page of dead letters.", body = DeadLetterPage))
    )]
    fn list_dead_letters() {}

    /// Create a schedule
    #[utoipa::path(
        post,
        path = "/v1/schedules",
        tag = "schedules",
        request_body = CreateScheduleRequest,
        responses(
            (status = 201, description = "The schedule was created.", body = ScheduleView),
            (status = 404, description = "No workflow is stored under the name given.", body = ErrorResponse),
            (status = 409, description = "A schedule with this name exists.", body = ErrorResponse),
        )
    )]
    fn create_schedule() {}

    /// List schedules
    #[utoipa::path(
        get,
        path = "/v1/schedules",
        tag = "schedules",
        responses((status = 200, description = "Every schedule.", body = ScheduleList))
    )]
    fn list_schedules() {}

    /// Get a schedule
    #[utoipa::path(
        get,
        path = "/v1/schedules/{name}",
        tag = "schedules",
        params(("name" = String, Path, description = "The schedule's name.", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
        responses((status = 200, description = "The schedule.", body = ScheduleView))
    )]
    fn get_schedule() {}

    /// Delete a schedule
    ///
    /// The runs it started are kept.
    #[utoipa::path(
        delete,
        path = "/v1/schedules/{name}",
        tag = "schedules",
        params(("name" = String, Path, description = "The schedule's name.", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
        responses((status = 200, description = "The schedule as it was.", body = ScheduleView))
    )]
    fn delete_schedule() {}

    /// Pause a schedule
    #[utoipa::path(
        post,
        path = "/v1/schedules/{name}/pause",
        tag = "schedules",
        params(("name" = String, Path, description = "The schedule's name.", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
        responses((status = 200, description = "The paused schedule.", body = ScheduleView))
    )]
    fn pause_schedule() {}

    /// Resume a schedule
    ///
    /// The schedule goes on from its next tick; ticks that passed while it was paused start no
    /// run.
    #[utoipa::path(
        post,
        path = "/v1/schedules/{name}/resume",
        tag = "schedules",
        params(("name" = String, Path, description = "The schedule's name.", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
        responses(
            (status = 200, description = "The resumed schedule.", body = ScheduleView),
            (status = 409, description = "The cron expression matches no future time.", body = ErrorResponse),
        )
    )]
    fn resume_schedule() {}

    /// Create a service
    #[utoipa::path(
        post,
        path = "/v1/services",
        tag = "services",
        request_body = CreateServiceRequest,
        responses(
            (status = 201, description = "The service was created and is starting.", body = ServiceView),
            (status = 404, description = "No workflow is stored under the name given.", body = ErrorResponse),
            (status = 409, description = "A service with this name is running.", body = ErrorResponse),
            (status = 422, description = "The spec is invalid; `problems` lists every problem.", body = ErrorResponse),
        )
    )]
    fn create_service() {}

    /// List services
    #[utoipa::path(
        get,
        path = "/v1/services",
        tag = "services",
        responses((status = 200, description = "Every service.", body = [ServiceView]))
    )]
    fn list_services() {}

    /// Get a service
    #[utoipa::path(
        get,
        path = "/v1/services/{name}",
        tag = "services",
        params(("name" = String, Path, description = "The service's name.", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
        responses((status = 200, description = "The service.", body = ServiceView))
    )]
    fn get_service() {}

    /// Replace a service
    ///
    /// Starts the new version beside the running one; it takes over the service's address once
    /// it is ready.
    #[utoipa::path(
        post,
        path = "/v1/services/{name}/replace",
        tag = "services",
        params(("name" = String, Path, description = "The service's name.", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
        request_body = ReplaceRequest,
        responses(
            (status = 200, description = "The service, with the new version as `candidate_run_id`.", body = ServiceView),
            (status = 409, description = "The service is stopped, or another replacement raced this one.", body = ErrorResponse),
            (status = 422, description = "The spec is invalid; `problems` lists every problem.", body = ErrorResponse),
        )
    )]
    fn replace_service() {}

    /// Restart a service
    ///
    /// Replaces the service by a fresh run of the same workflow.
    #[utoipa::path(
        post,
        path = "/v1/services/{name}/restart",
        tag = "services",
        params(("name" = String, Path, description = "The service's name.", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
        responses(
            (status = 200, description = "The service, with the fresh run starting.", body = ServiceView),
            (status = 409, description = "Another replacement raced this one.", body = ErrorResponse),
        )
    )]
    fn restart_service() {}

    /// Stop a service
    #[utoipa::path(
        post,
        path = "/v1/services/{name}/stop",
        tag = "services",
        params(("name" = String, Path, description = "The service's name.", pattern = "^[A-Za-z0-9_.:-]{1,200}$")),
        responses((status = 200, description = "The stopped service.", body = ServiceView))
    )]
    fn stop_service() {}

    /// Liveness probe
    #[utoipa::path(
        get,
        path = "/healthz",
        tag = "operations",
        responses((status = 200, description = "The process serves requests.", body = String, content_type = "text/plain", example = "ok"))
    )]
    fn healthz() {}

    /// Readiness probe
    ///
    /// Checks that the database responds.
    #[utoipa::path(
        get,
        path = "/readyz",
        tag = "operations",
        responses(
            (status = 200, description = "The database responds.", body = String, content_type = "text/plain", example = "ready"),
            (status = 503, description = "The database does not respond; the body gives the error.", body = String, content_type = "text/plain"),
        )
    )]
    fn readyz() {}

    /// Prometheus metrics
    ///
    /// Claimed, succeeded, failed, retried, rescued and stale task counts, claim latency and
    /// queue depth, in the Prometheus text format 0.0.4.
    #[utoipa::path(
        get,
        path = "/metrics",
        tag = "operations",
        responses((status = 200, description = "The metrics.", body = String, content_type = "text/plain"))
    )]
    fn metrics() {}

    /// This OpenAPI document
    #[utoipa::path(
        get,
        path = "/openapi.json",
        tag = "operations",
        responses((status = 200, description = "The OpenAPI 3.1 document of the API.", body = Object))
    )]
    fn openapi_json() {}

    /// API reference page
    ///
    /// This document as an HTML page: endpoints by tag, with parameters, schemas and examples.
    #[utoipa::path(
        get,
        path = "/docs",
        tag = "operations",
        responses((status = 200, description = "The page.", body = String, content_type = "text/html"))
    )]
    fn docs_page() {}
}

#[cfg(test)]
mod tests;
