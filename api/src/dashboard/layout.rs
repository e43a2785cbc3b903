//! The page shell: head, navigation and footer, the stylesheet and script it links, and the
//! security headers of every dashboard response.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;

/// The stylesheet, served at [`CSS_PATH`].
pub(super) const CSS: &str = include_str!("assets/dashboard.css");
/// The script, served at [`JS_PATH`].
pub(super) const JS: &str = include_str!("assets/dashboard.js");

pub(super) const CSS_PATH: &str = "/assets/dashboard.css";
pub(super) const JS_PATH: &str = "/assets/dashboard.js";

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Runs,
    Workers,
    Services,
    Schedules,
    DeadLetters,
}

const SECTIONS: [(Section, &str, &str); 5] = [
    (Section::Runs, "/runs", "Runs"),
    (Section::Workers, "/workers", "Workers"),
    (Section::Services, "/services", "Services"),
    (Section::Schedules, "/schedules", "Schedules"),
    (Section::DeadLetters, "/dead-letters", "Dead letters"),
];

/// Wraps a page's content in the shell, with the navigation for a logged-in session.
pub(super) fn page(title: &str, session: &Session, section: Section, content: Markup) -> Markup {
    let role = match session.caller.role {
        crate::auth::Role::Viewer => "viewer",
        crate::auth::Role::Editor => "editor",
        crate::auth::Role::Admin => "admin",
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/" { "CaraML" }
                    nav {
                        @for (each, href, label) in SECTIONS {
                            a.active[each == section] href=(href) { (label) }
                        }
                    }
                    span.who { "project " b { (session.caller.project) } " · " (role) }
                    form.logout method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" { "Log out" }
                    }
                }
                main { (content) }
            }
        }
    }
}

/// Wraps content in the shell without navigation, for the login and error pages.
pub(super) fn bare(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/" { "CaraML" } }
                main { (content) }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · CaraML" }
            link rel="stylesheet" href=(CSS_PATH);
            script src=(JS_PATH) defer {}
        }
    }
}

/// Content-Security-Policy of every dashboard page: scripts, styles and connections only
/// from this server, and no inline script, so injected markup cannot run code even if it
/// slipped past escaping.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'; object-src 'none'";

/// Adds the security headers to a dashboard response.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

pub(super) async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            // Revalidated on every load, so that a new build's pages never run an old script.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
}

pub(super) async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
}
