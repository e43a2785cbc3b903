//! Callers of the API and the dashboard: who they are and what they may do.
//!
//! NOTE: this is a stand-in until API tokens and projects are stored. Any non-empty token
//! authenticates as an admin of the project `default`, except the tokens `viewer` and
//! `editor`, which authenticate with those roles.

use caraml_engine::Store;

use crate::http::ApiError;

/// The permissions of a caller within its project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Viewer,
    Editor,
    Admin,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) project: String,
    pub(crate) role: Role,
}

impl Caller {
    /// Returns true when the caller may change state: cancel, retry, signal, pause.
    pub(crate) fn can_change(&self) -> bool {
        matches!(self.role, Role::Editor | Role::Admin)
    }
}

/// Checks a token; Err(ApiError::Unauthorized(..)) when missing, malformed, wrong, expired or revoked.
pub(crate) async fn authenticate(store: &Store, token: &str) -> Result<Caller, ApiError> {
    let _ = store;
    let role = match token {
        "" => {
            return Err(ApiError::Unauthorized(
                "the API token is empty; pass the token you were given".to_owned(),
            ));
        }
        "viewer" => Role::Viewer,
        "editor" => Role::Editor,
        _ => Role::Admin,
    };
    Ok(Caller {
        project: "default".to_owned(),
        role,
    })
}
