//! The JSON API under `/v1`, the probes, `/metrics`, and the API's OpenAPI document and
//! reference page.

mod bulk;
mod dead_letters;
mod docs;
mod error;
mod extract;
mod logs;
mod openapi;
mod retention;
mod routes;
mod runs;
mod schedules;
mod services;
mod signals;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use caraml_engine::Store;
use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(crate) use error::ApiError;
pub(crate) use extract::{QueryParams, RunId, quoted};

/// Default largest request body: 8 MiB, room for a 50,000-task spec.
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

static BODY_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_BODY_LIMIT);

pub(crate) fn body_limit() -> usize {
    BODY_LIMIT.load(Ordering::Relaxed)
}

/// State shared by every handler.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) dashboard: crate::dashboard::Settings,
}

/// Builds the API's router, with the dashboard at `/`.
pub fn router(store: Store, body_limit: usize) -> Router {
    router_with_shutdown(store, body_limit, CancellationToken::new())
}

/// Builds the API's router; `shutdown` ends the dashboard's open event streams, which
/// would otherwise hold a graceful shutdown open.
fn router_with_shutdown(store: Store, body_limit: usize, shutdown: CancellationToken) -> Router {
    BODY_LIMIT.store(body_limit, Ordering::Relaxed);
    let state = AppState {
        store,
        dashboard: crate::dashboard::Settings::new(shutdown),
    };
    routes::table()
        .into_router()
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    body_limit: usize,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = router_with_shutdown(store, body_limit, shutdown.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Parses an RFC 3339 time from the request field or query parameter `name`.
pub(crate) fn parse_time(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|err| {
            ApiError::BadRequest(format!(
                "{name} is `{}`, which is not an RFC 3339 time ({err}); use a time such as 2026-12-05T10:00:00Z",
                text.escape_debug()
            ))
        })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(state.store.pool()).await {
        Ok(_) => (StatusCode::OK, "ready".to_owned()),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unreachable: {err}"),
        ),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // The queue depth query uses the partial index of ready tasks, so a scrape stays cheap
    // however many finished tasks the table holds.
    static WARNED: OnceLock<()> = OnceLock::new();
    let depths = match state.store.queue_depths().await {
        Ok(depths) => depths,
        Err(err) => {
            if WARNED.set(()).is_ok() {
                tracing::warn!(error = %err, "could not read queue depths for /metrics");
            }
            Vec::new()
        }
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        caraml_engine::metrics::render(&depths),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not supported on {}; see the API table in the README for the methods of each endpoint",
        uri.path()
    ))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "no endpoint at {}; the API lives under /v1 (runs, workflows, workers, services, schedules, dead-letters) and the dashboard at /",
        uri.path()
    ))
}
