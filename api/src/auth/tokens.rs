//! API tokens: created with a role in one project, shown once, stored as a hash, revocable,
//! with an optional expiry.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::Role;

/// Every token starts with this, so that a leaked one is easy to recognise in logs and
/// secret scanners.
pub const TOKEN_PREFIX: &str = "cml_";

/// Random bytes of a token's secret: 256 bits.
const SECRET_BYTES: usize = 32;

/// A token as lists show it: never the secret.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: Uuid,
    pub project: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token just created: the secret is in `token`, and nowhere else from now on.
#[derive(Debug, Clone, Serialize)]
pub struct NewToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// The reason a token did not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Unknown,
    Expired,
    Revoked,
}

/// Errors of token and project management.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("no token with id {0}; list the project's tokens with `caraml token list`")]
    NotFound(Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Hashes a token into the form stored in `api_tokens`.
pub(crate) fn secret_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a project unless it exists; returns whether it was created.
pub async fn ensure_project(pool: &PgPool, project: &str) -> Result<bool, TokenError> {
    check_project_name(project)?;
    let created = sqlx::query("INSERT INTO projects (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(project)
        .execute(pool)
        .await?;
    Ok(created.rows_affected() == 1)
}

/// Checks a project name: 1 to 63 characters of lowercase letters, digits, `-` and `_`,
/// starting with a letter or digit, so that it reads the same in URLs, logs and the shell.
pub fn check_project_name(project: &str) -> Result<(), TokenError> {
    let valid = !project.is_empty()
        && project.len() <= 63
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
        && project
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if valid {
        return Ok(());
    }
    Err(TokenError::Invalid(format!(
        "project name `{}` is invalid; use 1 to 63 lowercase letters, digits, `-` and `_`, starting with a letter or digit",
        project.escape_debug()
    )))
}

/// Checks a token's name: up to 200 characters without control characters.
pub fn check_token_name(name: &str) -> Result<(), TokenError> {
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(TokenError::Invalid(format!(
            "token name `{}` is invalid; use up to 200 characters without control characters",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Lists projects by name.
pub async fn list_projects(pool: &PgPool) -> Result<Vec<(String, DateTime<Utc>)>, TokenError> {
    Ok(
        sqlx::query_as("SELECT name, created_at FROM projects ORDER BY name")
            .fetch_all(pool)
            .await?,
    )
}

/// Creates a token with `role` in an existing `project`.
pub async fn create_token(
    pool: &PgPool,
    project: &str,
    role: Role,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<NewToken, TokenError> {
    check_token_name(name)?;
    if let Some(expiry) = expires_at
        && expiry <= Utc::now()
    {
        return Err(TokenError::Invalid(format!(
            "expiry {expiry} is in the past; give a time in the future, or none for a token that does not expire"
        )));
    }
    let exists: Option<(String,)> = sqlx::query_as("SELECT name FROM projects WHERE name = $1")
        .bind(project)
        .fetch_optional(pool)
        .await?;
    if exists.is_none() {
        return Err(TokenError::Invalid(format!(
            "project `{}` not found; `caraml token create --project {} ...` creates it with its first token",
            project.escape_debug(),
            project.escape_debug()
        )));
    }

    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|err| {
        TokenError::Invalid(format!(
            "the operating system's random source failed ({err}); no token was created"
        ))
    })?;
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let info: TokenInfo = sqlx::query_as(
        "INSERT INTO api_tokens (id, project, role, name, secret_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, project, role, name, created_at, expires_at, revoked_at",
    )
    .bind(Uuid::now_v7())
    .bind(project)
    .bind(role.as_str())
    .bind(name)
    .bind(secret_hash(&token))
    .bind(expires_at)
    .fetch_one(pool)
    .await?;
    tracing::info!(project, token.id = %info.id, role = role.as_str(), "API token created");
    Ok(NewToken { token, info })
}

/// Lists tokens, of one project or of all, oldest first.
pub async fn list_tokens(
    pool: &PgPool,
    project: Option<&str>,
) -> Result<Vec<TokenInfo>, TokenError> {
    Ok(sqlx::query_as(
        "SELECT id, project, role, name, created_at, expires_at, revoked_at
         FROM api_tokens WHERE $1::text IS NULL OR project = $1
         ORDER BY project, created_at",
    )
    .bind(project)
    .fetch_all(pool)
    .await?)
}

/// Revokes a token; when `project` is given, only a token of that project. Revoking a
/// revoked token changes nothing.
pub async fn revoke_token(
    pool: &PgPool,
    id: Uuid,
    project: Option<&str>,
) -> Result<TokenInfo, TokenError> {
    sqlx::query_as(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
         WHERE id = $1 AND ($2::text IS NULL OR project = $2)
         RETURNING id, project, role, name, created_at, expires_at, revoked_at",
    )
    .bind(id)
    .bind(project)
    .fetch_optional(pool)
    .await?
    .ok_or(TokenError::NotFound(id))
}

/// Looks a token up by its secret.
pub(crate) async fn verify(
    pool: &PgPool,
    token: &str,
) -> Result<Result<(String, Role), Rejected>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Stored {
        project: String,
        role: String,
        expires_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
    }
    let stored: Option<Stored> = sqlx::query_as(
        "SELECT project, role, expires_at, revoked_at FROM api_tokens WHERE secret_hash = $1",
    )
    .bind(secret_hash(token))
    .fetch_optional(pool)
    .await?;
    let Some(Stored {
        project,
        role,
        expires_at,
        revoked_at,
    }) = stored
    else {
        return Ok(Err(Rejected::Unknown));
    };
    if revoked_at.is_some() {
        return Ok(Err(Rejected::Revoked));
    }
    if expires_at.is_some_and(|expiry| expiry <= Utc::now()) {
        return Ok(Err(Rejected::Expired));
    }
    let Ok(role) = Role::try_from(role) else {
        return Ok(Err(Rejected::Unknown));
    };
    Ok(Ok((project, role)))
}
