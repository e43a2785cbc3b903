//! End-to-end tests across crates against a real PostgreSQL: the HTTP API and command line
//! with an in-process worker, task logs, the dashboard in headless Chromium, operations on
//! many runs (retention, dead letters, bulk actions), fault scenarios with worker processes,
//! and the API against its OpenAPI document.

mod access;
mod api;
mod contract;
mod dashboard;
mod faults;
mod logs;
mod operations;
mod schedules;
mod services;

use caraml::api::auth::Role;
use caraml::api::auth::tokens::create_token;
use caraml::engine::Store;

/// Creates a token with `role` in `project` (created when missing) and returns it.
pub(crate) async fn token(store: &Store, project: &str, role: Role) -> String {
    caraml::api::auth::tokens::ensure_project(store.pool(), project)
        .await
        .expect("create project");
    create_token(store.pool(), project, role, "test", None)
        .await
        .expect("create token")
        .token
}

/// Builds an HTTP client that sends `token` with every request.
pub(crate) fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}
