//! Who is calling: bearer tokens, their project and role.
//!
//! Every `/v1` request names a token. Objects of other projects get a 404, as if they did
//! not exist, so that a token never learns what another project holds.

pub mod tokens;

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use caraml_engine::Store;
use serde::Serialize;

use crate::http::{ApiError, AppState};
use tokens::Rejected;

/// The permission a token grants in its project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything in the project.
    Viewer,
    /// Also submits, cancels and retries runs, sends signals, and manages services and
    /// schedules.
    Editor,
    /// Also sets retention and manages the project's tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "role `{}` is not a role; use viewer, editor or admin",
                other.escape_debug()
            )),
        }
    }
}

/// The project and role of the token a request carries.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) project: String,
    pub(crate) role: Role,
}

impl Caller {
    /// Returns whether the caller may change state: submit, cancel, retry, signal.
    pub(crate) fn can_change(&self) -> bool {
        self.role >= Role::Editor
    }

    /// Fails with 403 unless the caller has at least `role`; `action` names what was
    /// refused.
    pub(crate) fn require(&self, role: Role, action: &str) -> Result<(), ApiError> {
        if self.role >= role {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "{action} needs the {role} role; this token has the {} role in project `{}`; ask a project admin for a token with `caraml token create --project {} --role {role}`",
            self.role, self.project, self.project
        )))
    }

    /// Fails with the 404 of a missing run when run `id` belongs to another project, so that
    /// a token learns nothing of other projects' runs.
    pub(crate) async fn require_run(&self, store: &Store, id: uuid::Uuid) -> Result<(), ApiError> {
        if store.run_project(id).await? != self.project {
            return Err(caraml_engine::Error::run_not_found(id).into());
        }
        Ok(())
    }

    /// Fails with 403 unless the caller may change state.
    pub(crate) fn require_editor(&self, action: &str) -> Result<(), ApiError> {
        if self.can_change() {
            return Ok(());
        }
        self.require(Role::Editor, action)
    }
}

/// Checks a token: `Err(ApiError::Unauthorized)` when it is malformed, unknown, expired or
/// revoked.
pub(crate) async fn authenticate(store: &Store, token: &str) -> Result<Caller, ApiError> {
    if !token.starts_with(tokens::TOKEN_PREFIX) || token.len() > 200 {
        return Err(ApiError::Unauthorized(format!(
            "the bearer token is malformed: CaraML tokens start with `{}`; create one with `caraml token create --project NAME --role viewer|editor|admin`",
            tokens::TOKEN_PREFIX
        )));
    }
    let verdict = tokens::verify(store.pool(), token)
        .await
        .map_err(|err| ApiError::from(caraml_engine::Error::Database(err)))?;
    match verdict {
        Ok((project, role)) => Ok(Caller { project, role }),
        Err(Rejected::Unknown) => Err(ApiError::Unauthorized(
            "the bearer token is not a token of this server; check that it was copied whole, or create one with `caraml token create`".to_owned(),
        )),
        Err(Rejected::Expired) => Err(ApiError::Unauthorized(
            "the bearer token has expired; create a new one with `caraml token create`".to_owned(),
        )),
        Err(Rejected::Revoked) => Err(ApiError::Unauthorized(
            "the bearer token was revoked; create a new one with `caraml token create`".to_owned(),
        )),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(ApiError::Unauthorized(
                "the request has no Authorization header; send `Authorization: Bearer TOKEN` with a token from `caraml token create` (or the one `caraml up` printed)".to_owned(),
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "the Authorization header is not of the form `Bearer TOKEN`".to_owned(),
                )
            })?;
        authenticate(&state.store, token).await
    }
}
