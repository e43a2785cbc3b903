//! Responses of the dashboard: HTML pages, and errors shown as pages.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};

use super::layout;
use crate::http::ApiError;

/// An error shown to the browser as a page with the status and the message. Server faults
/// show a request id to quote, and are logged in full under it.
#[derive(Debug)]
pub(super) struct PageError(pub(super) ApiError);

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl From<caraml_engine::Error> for PageError {
    fn from(err: caraml_engine::Error) -> Self {
        Self(ApiError::from(err))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let described = self.0.describe();
        let title = described
            .status
            .canonical_reason()
            .unwrap_or("Error")
            .to_owned();
        let body = html! {
            h1 { (described.status.as_u16()) " " (title) }
            p.error-message { (described.message) }
            @if let Some(request_id) = &described.request_id {
                p { "Request id: " code { (request_id) } }
            }
            p { a href="/" { "Back to the runs" } }
        };
        (described.status, render(layout::bare(&title, body))).into_response()
    }
}

/// Turns a page into a response body.
pub(super) fn render(page: Markup) -> Html<String> {
    Html(page.into_string())
}

/// Result of a page handler.
pub(super) type PageResult = Result<Response, PageError>;

/// Returns a page with status 200.
pub(super) fn ok(page: Markup) -> PageResult {
    Ok((StatusCode::OK, render(page)).into_response())
}
