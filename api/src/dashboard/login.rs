//! Logging in with an API token, and logging out.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};

use super::form::Form;
use super::layout;
use super::page::{self, PageError, PageResult};
use super::session::{SessionForm, check_same_origin, cleared_cookie, session_cookie, token_fits};
use crate::auth::authenticate;
use crate::http::{ApiError, AppState, QueryParams};

/// Returns `next` when it is a path on this server, so that the login form cannot send
/// the browser to another site.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path
        }
        _ => "/",
    }
}

fn login_form(next: &str, error: Option<&str>) -> Markup {
    let content = html! {
        div.login {
            h1 { "Log in" }
            p { "Paste an API token. The dashboard keeps it in a cookie that scripts cannot read, and shows the runs of the token's project." }
            @if let Some(error) = error { p.error-message #login-error { (error) } }
            form method="post" action="/login" {
                input type="hidden" name="next" value=(next);
                label { "API token "
                    input #token type="password" name="token" required autocomplete="current-password" autofocus;
                }
                button #login type="submit" { "Log in" }
            }
        }
    };
    layout::bare("Log in", content)
}

/// `GET /login`.
pub(super) async fn show(query: Result<QueryParams, ApiError>) -> PageResult {
    let query = query?;
    query.allow_only("the login page", &["next"])?;
    let next = query.text("next", "leave it out").unwrap_or(None);
    page::ok(login_form(local_path(next.as_deref()), None))
}

/// `POST /login`: checks the token and starts a session with it.
pub(super) async fn submit(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    form: Form,
) -> PageResult {
    check_same_origin(&headers)?;
    let next = local_path(form.get("next")).to_owned();
    let token = form.get("token").map(str::trim).unwrap_or_default();
    if !token_fits(token) {
        let page = login_form(
            &next,
            Some("The token is empty or longer than 4 KiB; paste the API token you were given."),
        );
        return Ok((StatusCode::UNAUTHORIZED, page::render(page)).into_response());
    }
    match authenticate(&state.store, token).await {
        Ok(_) => Ok((
            [(header::SET_COOKIE, session_cookie(token))],
            Redirect::to(&next),
        )
            .into_response()),
        Err(ApiError::Unauthorized(message)) => {
            let page = login_form(&next, Some(&message));
            Ok((StatusCode::UNAUTHORIZED, page::render(page)).into_response())
        }
        Err(other) => Err(PageError::from(other)),
    }
}

/// `GET /logout`: ends the session. Following a link of another site here only logs the
/// user out, which gains that site nothing.
pub(super) async fn logout() -> impl IntoResponse {
    (
        [(header::SET_COOKIE, cleared_cookie())],
        Redirect::to("/login"),
    )
}

/// `POST /logout`: the navigation bar's button, with the CSRF check of every form post.
pub(super) async fn logout_form(_posted: SessionForm) -> impl IntoResponse {
    logout().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(local_path(Some("/runs/1?expand=L1")), "/runs/1?expand=L1");
        for outside in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "runs",
            "",
        ] {
            assert_eq!(local_path(Some(outside)), "/", "{outside} is rejected");
        }
        assert_eq!(local_path(None), "/");
    }
}
