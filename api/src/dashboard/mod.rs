//! The dashboard: server-rendered pages at `/` for runs, workers, services, schedules and
//! dead letters, with live updates of a run page over server-sent events.
//!
//! Every value reaches the page through `maud`, which escapes it, and the pages run only
//! the script served at `/assets/dashboard.js`, under a Content-Security-Policy that
//! forbids inline scripts. A session is the API token in an `HttpOnly` cookie, checked on
//! every request; every form post carries a CSRF token derived from that session.

mod dag;
mod data;
mod dead_letters;
mod form;
mod format;
mod gantt;
mod layout;
mod live;
mod login;
mod logs;
mod page;
mod run;
mod runs;
mod schedules;
mod services;
mod session;
mod workers;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::http::AppState;

/// Settings shared by the dashboard's handlers: the key of the CSRF tokens and the
/// server's shutdown signal, which ends open event streams.
#[derive(Clone)]
pub(crate) struct Settings {
    shutdown: CancellationToken,
}

/// Key of the HMAC that derives a session's CSRF token from its API token. It is fixed, so
/// that every API process and every restart accepts the same forms: the secret is the API
/// token in the `HttpOnly` cookie, which another site can neither read nor guess.
const CSRF_KEY: &[u8] = b"caraml dashboard csrf v1";

impl Settings {
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        Self { shutdown }
    }

    fn csrf_key(&self) -> &'static [u8] {
        CSRF_KEY
    }

    fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Routes of the dashboard, merged into the API's router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(runs::list))
        .route("/runs", get(runs::list))
        .route("/runs/table", get(runs::table))
        .route("/runs/bulk", post(runs::bulk))
        .route("/runs/{id}", get(run::show))
        .route("/runs/{id}/live", get(run::live))
        .route("/runs/{id}/gantt", get(run::gantt))
        .route("/runs/{id}/output", get(run::output))
        .route("/runs/{id}/logs", get(logs::show))
        .route("/runs/{id}/cancel", post(run::cancel))
        .route("/runs/{id}/retry", post(run::retry))
        .route("/runs/{id}/signal", post(run::signal))
        .route("/workers", get(workers::list))
        .route("/services", get(services::list))
        .route("/services/{name}/restart", post(services::restart))
        .route("/services/{name}/stop", post(services::stop))
        .route("/schedules", get(schedules::list))
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .route("/dead-letters", get(dead_letters::list))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", get(login::logout).post(login::logout_form))
        // Browsers request an icon on every page, and an empty response keeps their consoles quiet.
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .route(layout::CSS_PATH, get(layout::stylesheet))
        .route(layout::JS_PATH, get(layout::script))
        .layer(middleware::from_fn(layout::security_headers))
}
