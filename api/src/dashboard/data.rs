//! Every store call of the dashboard, each scoped to the caller's project.
//!
//! NOTE: runs, services and schedules carry no project yet. The run lists pass the
//! caller's project in their filter, and the single-run reads and actions are where the
//! check that the run belongs to the caller's project goes once runs record a project.

use caraml_engine::{
    BulkFilter, BulkOutcome, DeadLetterFilter, DeadLetterPage, Delivered, EventView, OutputPreview,
    RunFilter, RunPage, RunProgress, RunView, ScheduleView, ServiceView, Store, TaskProgress,
    WorkerRecord,
};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::http::ApiError;

type Result<T> = std::result::Result<T, ApiError>;

fn scoped(caller: &Caller, mut filter: RunFilter) -> RunFilter {
    filter.project = Some(caller.project.clone());
    filter
}

pub(super) async fn runs(store: &Store, caller: &Caller, filter: RunFilter) -> Result<RunPage> {
    Ok(store.list_runs(&scoped(caller, filter)).await?)
}

pub(super) async fn status_counts(
    store: &Store,
    caller: &Caller,
    filter: RunFilter,
) -> Result<Vec<(String, i64)>> {
    Ok(store.count_runs_by_status(&scoped(caller, filter)).await?)
}

pub(super) async fn run(store: &Store, _caller: &Caller, id: Uuid) -> Result<RunView> {
    Ok(store.get_run(id).await?)
}

pub(super) async fn recent_events(
    store: &Store,
    _caller: &Caller,
    id: Uuid,
    limit: u32,
) -> Result<Vec<EventView>> {
    Ok(store.recent_events(id, limit).await?)
}

pub(super) async fn run_progress(store: &Store, _caller: &Caller, id: Uuid) -> Result<RunProgress> {
    Ok(store.run_progress(id).await?)
}

pub(super) async fn task_progress(
    store: &Store,
    _caller: &Caller,
    id: Uuid,
) -> Result<Vec<TaskProgress>> {
    Ok(store.task_progress(id).await?)
}

pub(super) async fn output_previews(
    store: &Store,
    _caller: &Caller,
    id: Uuid,
    indexes: &[i32],
    max_chars: i32,
) -> Result<Vec<OutputPreview>> {
    Ok(store.output_previews(id, indexes, max_chars).await?)
}

pub(super) async fn task_output(
    store: &Store,
    _caller: &Caller,
    id: Uuid,
    task: &str,
) -> Result<Option<Value>> {
    Ok(store.task_output(id, task).await?)
}

pub(super) async fn cancel_run(store: &Store, _caller: &Caller, id: Uuid) -> Result<String> {
    Ok(store.cancel_run(id).await?)
}

pub(super) async fn retry_run(store: &Store, _caller: &Caller, id: Uuid) -> Result<String> {
    Ok(store.retry_run(id).await?)
}

pub(super) async fn send_signal(
    store: &Store,
    _caller: &Caller,
    id: Uuid,
    name: &str,
    payload: Value,
) -> Result<Delivered> {
    Ok(store.send_signal(id, name, payload).await?)
}

pub(super) async fn bulk_retry(
    store: &Store,
    _caller: &Caller,
    filter: &BulkFilter,
) -> Result<BulkOutcome> {
    Ok(store.bulk_retry(filter).await?)
}

pub(super) async fn bulk_cancel(
    store: &Store,
    _caller: &Caller,
    filter: &BulkFilter,
) -> Result<BulkOutcome> {
    Ok(store.bulk_cancel(filter).await?)
}

/// Workers serve every project, so every caller sees all of them.
pub(super) async fn workers(store: &Store, _caller: &Caller) -> Result<Vec<WorkerRecord>> {
    Ok(store.list_workers().await?)
}

pub(super) async fn services(store: &Store, _caller: &Caller) -> Result<Vec<ServiceView>> {
    Ok(store.list_services().await?)
}

pub(super) async fn restart_service(
    store: &Store,
    _caller: &Caller,
    name: &str,
) -> Result<ServiceView> {
    Ok(store.restart_service(name).await?)
}

pub(super) async fn stop_service(
    store: &Store,
    _caller: &Caller,
    name: &str,
) -> Result<ServiceView> {
    Ok(store.stop_service(name).await?)
}

pub(super) async fn schedules(store: &Store, _caller: &Caller) -> Result<Vec<ScheduleView>> {
    Ok(store.list_schedules().await?)
}

pub(super) async fn pause_schedule(
    store: &Store,
    _caller: &Caller,
    name: &str,
) -> Result<ScheduleView> {
    Ok(store.pause_schedule(name).await?)
}

pub(super) async fn resume_schedule(
    store: &Store,
    _caller: &Caller,
    name: &str,
) -> Result<ScheduleView> {
    Ok(store.resume_schedule(name).await?)
}

pub(super) async fn dead_letters(
    store: &Store,
    _caller: &Caller,
    filter: &DeadLetterFilter,
) -> Result<DeadLetterPage> {
    Ok(store.list_dead_letters(filter).await?)
}
