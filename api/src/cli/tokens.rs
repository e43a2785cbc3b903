//! `caraml token create|list|revoke`: API tokens, managed directly in the database, so that
//! the first token of a project needs no token.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use uuid::Uuid;

use super::DatabaseArgs;
use super::serve::{connect, require_url};
use crate::auth::Role;
use crate::auth::tokens::{self, TokenInfo};

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Create a token with a role in a project (created when missing) and print it; it is
    /// shown only this once.
    Create {
        /// The project the token grants access to.
        #[arg(long)]
        project: String,
        /// viewer reads; editor also submits, cancels, retries and signals; admin also
        /// sets retention.
        #[arg(long)]
        role: Role,
        /// A note on what the token is for, shown by `caraml token list`.
        #[arg(long, default_value = "")]
        name: String,
        /// Time after which the token stops working: a duration such as 30d or 12h.
        #[arg(long)]
        expires_in: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List tokens (never their secrets), of one project or of all.
    List {
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a token by its id; requests with it fail from now on.
    Revoke {
        id: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

pub(super) async fn run(command: TokenCommand) -> Result<ExitCode, String> {
    match command {
        TokenCommand::Create {
            project,
            role,
            name,
            expires_in,
            database,
        } => {
            tokens::check_project_name(&project).map_err(|err| err.to_string())?;
            tokens::check_token_name(&name).map_err(|err| err.to_string())?;
            let expires_at = expires_in
                .as_deref()
                .map(|text| expiry(text, Utc::now()))
                .transpose()?;
            let store = connect(&require_url(&database)?).await?;
            if tokens::ensure_project(store.pool(), &project)
                .await
                .map_err(|err| err.to_string())?
            {
                eprintln!("created project `{project}`");
            }
            let created = tokens::create_token(store.pool(), &project, role, &name, expires_at)
                .await
                .map_err(|err| err.to_string())?;
            eprintln!(
                "token {} ({role} in project `{project}`{}); it is shown only now:",
                created.info.id,
                created
                    .info
                    .expires_at
                    .map(|at| format!(", expires {}", at.to_rfc3339()))
                    .unwrap_or_default()
            );
            say!("{}", created.token);
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { project, database } => {
            if let Some(project) = &project {
                tokens::check_project_name(project).map_err(|err| err.to_string())?;
            }
            let store = connect(&require_url(&database)?).await?;
            let tokens = tokens::list_tokens(store.pool(), project.as_deref())
                .await
                .map_err(|err| err.to_string())?;
            for token in &tokens {
                say!("{}", describe(token, Utc::now()));
            }
            if tokens.is_empty() {
                let known = tokens::list_projects(store.pool())
                    .await
                    .map_err(|err| err.to_string())?;
                match &project {
                    Some(name) if !known.iter().any(|(known, _)| known == name) => {
                        return Err(format!(
                            "project `{name}` not found; `caraml token create --project {name} --role admin` creates it with its first token"
                        ));
                    }
                    _ => eprintln!(
                        "no tokens; create one with `caraml token create --project NAME --role admin`"
                    ),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { id, database } => {
            let id: Uuid = id.parse().map_err(|_| {
                format!(
                    "`{}` is not a token id; token ids are the UUIDs `caraml token list` shows",
                    id.escape_debug()
                )
            })?;
            let store = connect(&require_url(&database)?).await?;
            let token = tokens::revoke_token(store.pool(), id, None)
                .await
                .map_err(|err| err.to_string())?;
            say!("revoked {}", describe(&token, Utc::now()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Longest `--expires-in`: ten years.
const MAX_EXPIRY_SECONDS: u64 = 3650 * 24 * 3600;

fn expiry(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let duration = caraml_engine::retention::parse_duration("--expires-in", text)
        .ok()
        .filter(|duration| duration.as_secs() <= MAX_EXPIRY_SECONDS)
        .ok_or_else(|| {
            format!(
                "--expires-in `{}` is not a valid duration; give whole numbers with a unit of s, m, h, d or w, up to 3650d, such as 90d",
                text.escape_debug()
            )
        })?;
    if duration.is_zero() {
        return Err(format!(
            "--expires-in is `{}`, which has already passed; give a duration such as 30d",
            text.escape_debug()
        ));
    }
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| now.checked_add_signed(duration))
        .ok_or_else(|| {
            format!(
                "--expires-in `{}` is too far in the future; give at most a few years, such as 365d",
                text.escape_debug()
            )
        })
}

fn describe(token: &TokenInfo, now: DateTime<Utc>) -> String {
    let state = match (token.revoked_at, token.expires_at) {
        (Some(at), _) => format!("revoked {}", at.to_rfc3339()),
        (None, Some(at)) if at <= now => format!("expired {}", at.to_rfc3339()),
        (None, Some(at)) => format!("expires {}", at.to_rfc3339()),
        (None, None) => "no expiry".to_owned(),
    };
    format!(
        "{}  {:<20} {:<6}  {:<32} created {}  {state}",
        token.id,
        token.project,
        token.role,
        token.name,
        token.created_at.to_rfc3339()
    )
}
