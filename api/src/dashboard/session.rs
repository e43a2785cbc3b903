//! Sessions of the dashboard: the API token in an `HttpOnly` cookie, checked on every
//! request, and the CSRF checks of every form post.
//!
//! A form post is accepted only when
//! - its session cookie authenticates,
//! - its `csrf` field is the keyed hash of that cookie's token (a page of another site can
//!   make the browser send the cookie, but cannot read a page to learn the hash), and
//! - its `Origin` header names no other host, and `Sec-Fetch-Site` does not mark it
//!   `cross-site`.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::Settings;
use super::form::Form;
use super::page::PageError;
use crate::auth::{Caller, authenticate};
use crate::http::{ApiError, AppState};

/// Name of the cookie that contains the session's API token.
pub(super) const COOKIE: &str = "caraml_session";

/// Maximum length of a token the dashboard accepts, in bytes.
const MAX_TOKEN_BYTES: usize = 4096;

/// An authenticated dashboard request.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) caller: Caller,
    /// The CSRF token that this session's forms carry.
    pub(super) csrf: String,
}

impl Session {
    /// Rejects a caller whose role does not allow changes.
    pub(super) fn require_change(&self) -> Result<(), PageError> {
        if self.caller.can_change() {
            Ok(())
        } else {
            Err(PageError::from(ApiError::Forbidden(format!(
                "your token has the viewer role in project `{}`, which cannot change runs, services or schedules; log in with an editor's or admin's token",
                self.caller.project
            ))))
        }
    }
}

/// Returns the CSRF token of a session: an HMAC-SHA256 of its API token, in hex.
pub(super) fn csrf_token(settings: &Settings, token: &str) -> String {
    hex::encode(csrf_mac(settings, token).finalize().into_bytes())
}

fn csrf_mac(settings: &Settings, token: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(settings.csrf_key())
        .unwrap_or_else(|_| unreachable!("HMAC accepts a key of any length"));
    mac.update(token.as_bytes());
    mac
}

/// Checks a CSRF token in constant time.
fn csrf_matches(settings: &Settings, token: &str, presented: &str) -> bool {
    match hex::decode(presented) {
        Ok(bytes) => csrf_mac(settings, token).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// Returns the API token in the request's session cookie.
pub(super) fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| {
            form_urlencoded::parse(format!("t={value}").as_bytes())
                .map(|(_, token)| token.into_owned())
                .next()
                .unwrap_or_default()
        })
        .filter(|token| !token.is_empty() && token.len() <= MAX_TOKEN_BYTES)
}

/// Returns the `Set-Cookie` value that starts a session with `token`.
pub(super) fn session_cookie(token: &str) -> HeaderValue {
    let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    // NOTE: no `Secure` attribute, because the server speaks plain HTTP; put a TLS proxy
    // in front of it and add the attribute there when the dashboard leaves the machine.
    let value = format!("{COOKIE}={encoded}; HttpOnly; SameSite=Strict; Path=/");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Returns the `Set-Cookie` value that ends the session.
pub(super) fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("caraml_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Returns true when a token fits in a cookie: not empty, at most 4 KiB.
pub(super) fn token_fits(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_BYTES
}

/// A request without a valid session: pages send the browser to the login form, and
/// remember where it was going.
#[derive(Debug)]
pub(super) enum NoSession {
    Redirect(String),
    Failed(PageError),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::Redirect(next) => {
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &next)
                    .finish();
                Redirect::to(&format!("/login?{query}")).into_response()
            }
            NoSession::Failed(error) => error.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = NoSession;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NoSession> {
        // After logging in, the browser goes back to the page it asked for. A form post
        // cannot be repeated by a redirect, so it goes back to the runs list.
        let next = if parts.method == axum::http::Method::GET {
            parts
                .uri
                .path_and_query()
                .map_or("/", |path| path.as_str())
                .to_owned()
        } else {
            "/".to_owned()
        };
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(NoSession::Redirect(next));
        };
        match authenticate(&state.store, &token).await {
            Ok(caller) => Ok(Session {
                caller,
                csrf: csrf_token(&state.dashboard, &token),
            }),
            Err(ApiError::Unauthorized(_)) => Err(NoSession::Redirect(next)),
            Err(other) => Err(NoSession::Failed(PageError::from(other))),
        }
    }
}

/// Rejects a request that a page of another site made the browser send.
pub(super) fn check_same_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let forbidden = |reason: String| {
        Err(PageError::from(ApiError::Forbidden(format!(
            "{reason}; submit the form from the dashboard's own pages"
        ))))
    };
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site")
    {
        return forbidden("the browser marked this form post as cross-site".to_owned());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let host = headers
        .get(header::HOST)
        .map(|host| String::from_utf8_lossy(host.as_bytes()).to_ascii_lowercase());
    // NOTE: behind a proxy that rewrites `Host`, the origin is compared with the proxy's
    // target; such a proxy must pass the original `Host` on.
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/').to_ascii_lowercase());
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host == host => Ok(()),
        _ => forbidden(format!(
            "the form was posted from origin {}, which is not this server",
            crate::http::quoted(&origin)
        )),
    }
}

/// A form post of an authenticated session whose origin and CSRF token were checked.
pub(super) struct SessionForm {
    pub(super) session: Session,
    pub(super) form: Form,
}

impl FromRequest<AppState> for SessionForm {
    type Rejection = NoSession;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, NoSession> {
        let (mut parts, body) = request.into_parts();
        check_same_origin(&parts.headers).map_err(NoSession::Failed)?;
        let session = Session::from_request_parts(&mut parts, state).await?;
        let token = cookie_token(&parts.headers).unwrap_or_default();
        let request = Request::from_parts(parts, body);
        let form = Form::from_request(request, state)
            .await
            .map_err(NoSession::Failed)?;
        let presented = form.get("csrf").unwrap_or_default();
        if !csrf_matches(&state.dashboard, &token, presented) {
            return Err(NoSession::Failed(PageError::from(ApiError::Forbidden(
                "the form's CSRF token is missing or does not match your session; reload the page and submit the form again".to_owned(),
            ))));
        }
        Ok(SessionForm { session, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn csrf_token_depends_on_session_only() {
        let settings = Settings::new(CancellationToken::new());
        let other = Settings::new(CancellationToken::new());
        let token = csrf_token(&settings, "token-a");
        assert!(
            csrf_matches(&settings, "token-a", &token),
            "own token accepted"
        );
        assert!(
            !csrf_matches(&settings, "token-b", &token),
            "another session's token rejected"
        );
        assert!(
            csrf_matches(&other, "token-a", &token),
            "another process, or this one after a restart, accepts the form"
        );
        assert!(!csrf_matches(&settings, "token-a", ""), "empty rejected");
        assert!(
            !csrf_matches(&settings, "token-a", "zz"),
            "non-hex rejected"
        );
    }

    #[test]
    fn cookie_token_round_trips() {
        let cookie = session_cookie("a b;c=d%");
        let text = cookie.to_str().expect("ASCII cookie");
        assert!(text.contains("HttpOnly"), "{text}");
        assert!(text.contains("SameSite=Strict"), "{text}");
        assert!(text.contains("Path=/"), "{text}");
        let value = text.split(';').next().expect("name=value");
        let mut map = HeaderMap::new();
        map.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {value}")).expect("header"),
        );
        assert_eq!(cookie_token(&map).as_deref(), Some("a b;c=d%"));
        assert_eq!(cookie_token(&headers(&[("cookie", "other=1")])), None);
        assert_eq!(
            cookie_token(&headers(&[("cookie", "caraml_session=")])),
            None
        );
    }

    #[test]
    fn cross_origin_posts_rejected() {
        let same = headers(&[
            ("host", "127.0.0.1:7420"),
            ("origin", "http://127.0.0.1:7420"),
        ]);
        assert!(check_same_origin(&same).is_ok(), "same origin accepted");
        let no_origin = headers(&[("host", "127.0.0.1:7420")]);
        assert!(
            check_same_origin(&no_origin).is_ok(),
            "no Origin header accepted"
        );
        for (name, case) in [
            (
                "other host",
                headers(&[
                    ("host", "127.0.0.1:7420"),
                    ("origin", "http://evil.example"),
                ]),
            ),
            (
                "other port",
                headers(&[
                    ("host", "127.0.0.1:7420"),
                    ("origin", "http://127.0.0.1:9999"),
                ]),
            ),
            (
                "opaque origin",
                headers(&[("host", "127.0.0.1:7420"), ("origin", "null")]),
            ),
            (
                "cross-site fetch",
                headers(&[("host", "127.0.0.1:7420"), ("sec-fetch-site", "cross-site")]),
            ),
        ] {
            assert!(check_same_origin(&case).is_err(), "{name} rejected");
        }
    }
}
