//! Every store call of the dashboard, each scoped to the caller's project: lists filter by
//! it, a run of another project reads as missing, and changes need the editor role.

use caraml_engine::{
    BulkFilter, BulkOutcome, DeadLetterFilter, DeadLetterPage, Delivered, EventView, LogFilter,
    LogPage, OutputPreview, RunFilter, RunPage, RunProgress, RunView, ScheduleView, ServiceView,
    Store, TaskProgress, WorkerRecord,
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

pub(super) async fn run(store: &Store, caller: &Caller, id: Uuid) -> Result<RunView> {
    caller.require_run(store, id).await?;
    Ok(store.get_run(id).await?)
}

pub(super) async fn recent_events(
    store: &Store,
    caller: &Caller,
    id: Uuid,
    limit: u32,
) -> Result<Vec<EventView>> {
    caller.require_run(store, id).await?;
    Ok(store.recent_events(id, limit).await?)
}

pub(super) async fn run_progress(store: &Store, caller: &Caller, id: Uuid) -> Result<RunProgress> {
    caller.require_run(store, id).await?;
    Ok(store.run_progress(id).await?)
}

pub(super) async fn task_progress(
    store: &Store,
    caller: &Caller,
    id: Uuid,
) -> Result<Vec<TaskProgress>> {
    caller.require_run(store, id).await?;
    Ok(store.task_progress(id).await?)
}

pub(super) async fn output_previews(
    store: &Store,
    caller: &Caller,
    id: Uuid,
    indexes: &[i32],
    max_chars: i32,
) -> Result<Vec<OutputPreview>> {
    caller.require_run(store, id).await?;
    Ok(store.output_previews(id, indexes, max_chars).await?)
}

pub(super) async fn task_output(
    store: &Store,
    caller: &Caller,
    id: Uuid,
    task: &str,
) -> Result<Option<Value>> {
    caller.require_run(store, id).await?;
    Ok(store.task_output(id, task).await?)
}

pub(super) async fn run_logs(
    store: &Store,
    caller: &Caller,
    id: Uuid,
    filter: &LogFilter,
) -> Result<LogPage> {
    caller.require_run(store, id).await?;
    Ok(store.run_logs(id, filter).await?)
}

pub(super) async fn cancel_run(store: &Store, caller: &Caller, id: Uuid) -> Result<String> {
    caller.require_run(store, id).await?;
    caller.require_editor("cancelling a run")?;
    store.check_not_service_run(id, "cancelled").await?;
    Ok(store.cancel_run(id).await?)
}

pub(super) async fn retry_run(store: &Store, caller: &Caller, id: Uuid) -> Result<String> {
    caller.require_run(store, id).await?;
    caller.require_editor("retrying a run")?;
    Ok(store.retry_run(id).await?)
}

pub(super) async fn send_signal(
    store: &Store,
    caller: &Caller,
    id: Uuid,
    name: &str,
    payload: Value,
) -> Result<Delivered> {
    caller.require_run(store, id).await?;
    caller.require_editor("sending a signal")?;
    Ok(store.send_signal(id, name, payload).await?)
}

pub(super) async fn bulk_retry(
    store: &Store,
    caller: &Caller,
    filter: &BulkFilter,
) -> Result<BulkOutcome> {
    caller.require_editor("retrying runs")?;
    let filter = BulkFilter {
        project: Some(caller.project.clone()),
        ..filter.clone()
    };
    Ok(store.bulk_retry(&filter).await?)
}

pub(super) async fn bulk_cancel(
    store: &Store,
    caller: &Caller,
    filter: &BulkFilter,
) -> Result<BulkOutcome> {
    caller.require_editor("cancelling runs")?;
    let filter = BulkFilter {
        project: Some(caller.project.clone()),
        ..filter.clone()
    };
    Ok(store.bulk_cancel(&filter).await?)
}

/// Workers serve every project, so every caller sees all of them.
pub(super) async fn workers(store: &Store, _caller: &Caller) -> Result<Vec<WorkerRecord>> {
    Ok(store.list_workers().await?)
}

pub(super) async fn services(store: &Store, caller: &Caller) -> Result<Vec<ServiceView>> {
    Ok(store.list_services(&caller.project).await?)
}

pub(super) async fn restart_service(
    store: &Store,
    caller: &Caller,
    name: &str,
) -> Result<ServiceView> {
    store.get_service(&caller.project, name).await?;
    caller.require_editor("restarting a service")?;
    Ok(store.restart_service(&caller.project, name).await?)
}

pub(super) async fn stop_service(
    store: &Store,
    caller: &Caller,
    name: &str,
) -> Result<ServiceView> {
    store.get_service(&caller.project, name).await?;
    caller.require_editor("stopping a service")?;
    Ok(store.stop_service(&caller.project, name).await?)
}

pub(super) async fn schedules(store: &Store, caller: &Caller) -> Result<Vec<ScheduleView>> {
    Ok(store.list_schedules(&caller.project).await?)
}

pub(super) async fn pause_schedule(
    store: &Store,
    caller: &Caller,
    name: &str,
) -> Result<ScheduleView> {
    store.get_schedule(&caller.project, name).await?;
    caller.require_editor("pausing a schedule")?;
    Ok(store.pause_schedule(&caller.project, name).await?)
}

pub(super) async fn resume_schedule(
    store: &Store,
    caller: &Caller,
    name: &str,
) -> Result<ScheduleView> {
    store.get_schedule(&caller.project, name).await?;
    caller.require_editor("resuming a schedule")?;
    Ok(store.resume_schedule(&caller.project, name).await?)
}

pub(super) async fn dead_letters(
    store: &Store,
    caller: &Caller,
    filter: &DeadLetterFilter,
) -> Result<DeadLetterPage> {
    let filter = DeadLetterFilter {
        project: Some(caller.project.clone()),
        ..filter.clone()
    };
    Ok(store.list_dead_letters(&filter).await?)
}
