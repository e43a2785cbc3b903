//! The API's route table: each endpoint is declared once, as a method, a path and a
//! handler. The router is built from it, and the OpenAPI test walks the same list, so an
//! endpoint added here without documentation fails that test.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post, put};

use super::{AppState, bulk, dead_letters, docs, openapi, retention, runs, schedules};
use super::{logs, services, signals};

/// One method on one path, as the router serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) method: Method,
    /// The path in axum's syntax, which is also OpenAPI's: `/v1/runs/{id}`.
    pub(crate) path: &'static str,
}

/// Routes under construction, with the list of endpoints they serve.
pub(crate) struct Routes {
    router: Router<AppState>,
    endpoints: Vec<Endpoint>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            endpoints: Vec::new(),
        }
    }

    fn add(mut self, method: Method, path: &'static str, route: MethodRouter<AppState>) -> Self {
        // `Router::route` merges a second method on a path that is already routed.
        self.router = self.router.route(path, route);
        self.endpoints.push(Endpoint { method, path });
        self
    }

    pub(crate) fn get<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.add(Method::GET, path, get(handler))
    }

    pub(crate) fn post<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.add(Method::POST, path, post(handler))
    }

    pub(crate) fn put<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.add(Method::PUT, path, put(handler))
    }

    pub(crate) fn delete<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.add(Method::DELETE, path, delete(handler))
    }

    /// Lets a module declare its own endpoints.
    fn with(self, add: impl FnOnce(Self) -> Self) -> Self {
        add(self)
    }

    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the OpenAPI document's test reads the list")
    )]
    pub(crate) fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub(crate) fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// Declares every endpoint of the API.
pub(crate) fn table() -> Routes {
    Routes::new()
        .post("/v1/runs", runs::submit)
        .get("/v1/runs", runs::list)
        .get("/v1/runs/counts", runs::counts)
        .post("/v1/runs/bulk/retry", bulk::retry)
        .post("/v1/runs/bulk/cancel", bulk::cancel)
        .get("/v1/runs/{id}", runs::get)
        .post("/v1/runs/{id}/cancel", runs::cancel)
        .post("/v1/runs/{id}/retry", runs::retry)
        .get("/v1/runs/{id}/events", runs::events)
        .get("/v1/runs/{id}/logs", logs::list)
        .get("/v1/runs/{id}/signals", signals::list)
        .post("/v1/runs/{id}/signals/{name}", signals::send)
        .get("/v1/workflows", runs::workflows)
        .get("/v1/workflows/{name}/retention", retention::get)
        .put("/v1/workflows/{name}/retention", retention::put)
        .get("/v1/workers", runs::workers)
        .get("/v1/dead-letters", dead_letters::list)
        .with(schedules::routes)
        .post("/v1/services", services::create)
        .get("/v1/services", services::list)
        .get("/v1/services/{name}", services::get)
        .post("/v1/services/{name}/replace", services::replace)
        .post("/v1/services/{name}/restart", services::restart)
        .post("/v1/services/{name}/stop", services::stop)
        .get("/healthz", super::healthz)
        .get("/readyz", super::readyz)
        .get("/metrics", super::metrics)
        .get("/openapi.json", openapi::serve_document)
        .get("/docs", docs::serve_page)
}
