//! Registered workflows, task kinds and workers.

use std::collections::HashSet;
use std::sync::RwLock;

use uuid::Uuid;

use super::{DEFAULT_PROJECT, Store};
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::spec::{Dag, WorkflowSpec};

/// A worker process as it registered itself.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WorkerRecord {
    pub id: Uuid,
    pub hostname: String,
    pub pid: i32,
    pub queue: String,
    pub slots: i32,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
    pub stopped_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Catalog entries a process keeps in memory, to keep lookups off the submission path.
#[derive(Debug, Default)]
pub(super) struct Cache {
    kinds: RwLock<HashSet<String>>,
    /// Workflow versions known to be stored, as (project, name, version).
    workflows: RwLock<HashSet<(String, String, String)>>,
}

impl Store {
    /// Validates a spec against the registered kinds. The kinds are cached; a spec naming a
    /// kind missing from the cache reloads it once, since a worker may have just registered it.
    pub(crate) async fn compile(&self, spec: &WorkflowSpec) -> Result<Dag> {
        let cached = {
            let kinds = self.cache.kinds.read().unwrap_or_else(|p| p.into_inner());
            spec.compile(&|kind| kinds.contains(kind))
        };
        match cached {
            Ok(dag) => Ok(dag),
            Err(err) if err.problems.iter().any(|p| p.code == "unknown_kind") => {
                let fresh = self.known_kinds().await?;
                let dag = spec.compile(&|kind| fresh.contains(kind));
                *self.cache.kinds.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                Ok(dag?)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Records the registry's task kinds and stores its workflows, after checking each
    /// workflow against the registry's kinds.
    pub async fn register(&self, registry: &Registry) -> Result<()> {
        self.register_kinds(registry.kinds()).await?;
        let services: Vec<&str> = registry
            .kinds()
            .filter(|kind| registry.is_service(kind))
            .collect();
        if !services.is_empty() {
            sqlx::query(
                "UPDATE task_kinds SET service = true WHERE kind = ANY($1) AND NOT service",
            )
            .bind(&services)
            .execute(&self.pool)
            .await?;
        }
        for spec in registry.workflows() {
            spec.compile(&|kind| registry.has_kind(kind))?;
            self.store_workflow(spec, "rust").await?;
        }
        Ok(())
    }

    /// Records that some process can run these task kinds.
    pub async fn register_kinds<'a>(&self, kinds: impl Iterator<Item = &'a str>) -> Result<()> {
        let kinds: Vec<&str> = kinds.collect();
        sqlx::query(
            "INSERT INTO task_kinds (kind) SELECT unnest($1::text[])
             ON CONFLICT (kind) DO UPDATE SET last_seen_at = now()",
        )
        .bind(&kinds)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn known_kinds(&self) -> Result<HashSet<String>> {
        let kinds: Vec<(String,)> = sqlx::query_as("SELECT kind FROM task_kinds")
            .fetch_all(&self.pool)
            .await?;
        Ok(kinds.into_iter().map(|(kind,)| kind).collect())
    }

    /// Stores a workflow version and returns its version string; see [`Store::store_spec`].
    /// Workflows with source `rust` are shared by every project; other specs are stored in
    /// the project [`DEFAULT_PROJECT`].
    pub async fn store_workflow(&self, spec: &WorkflowSpec, source: &str) -> Result<String> {
        let project = if source == "rust" {
            ""
        } else {
            DEFAULT_PROJECT
        };
        self.store_version(project, spec, source).await
    }

    /// Stores a spec submitted to `project` and returns its version string, a hash of the
    /// spec: storing the same spec twice keeps one version. A spec may not take the name of
    /// a workflow defined in Rust.
    pub async fn store_spec(&self, project: &str, spec: &WorkflowSpec) -> Result<String> {
        self.store_version(project, spec, "spec").await
    }

    /// A worker registering a Rust workflow makes its version the latest again.
    async fn store_version(
        &self,
        project: &str,
        spec: &WorkflowSpec,
        source: &str,
    ) -> Result<String> {
        let document = serde_json::to_value(spec).map_err(|err| {
            Error::InvalidInput(format!(
                "workflow `{}` could not be encoded: {err}",
                spec.name
            ))
        })?;
        let version = spec_version(&document);
        let key = (project.to_owned(), spec.name.clone(), version.clone());
        if self
            .cache
            .workflows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(version);
        }
        if source == "spec" {
            let defined_in_code: Option<(String,)> = sqlx::query_as(
                "SELECT name FROM workflows WHERE name = $1 AND source = 'rust' LIMIT 1",
            )
            .bind(&spec.name)
            .fetch_optional(&self.pool)
            .await?;
            if defined_in_code.is_some() {
                return Err(Error::Conflict(format!(
                    "workflow `{}` is defined in Rust by a worker; give the spec another name, or submit {{\"workflow\": \"{}\"}} to run the registered one",
                    spec.name, spec.name
                )));
            }
        }
        sqlx::query(
            "INSERT INTO workflows (project, name, version, spec, source) VALUES ($5, $1, $2, $3, $4)
             ON CONFLICT (project, name, version) DO UPDATE SET created_at = now()
             WHERE workflows.source = 'rust'",
        )
        .bind(&spec.name)
        .bind(&version)
        .bind(&document)
        .bind(source)
        .bind(project)
        .execute(&self.pool)
        .await?;
        self.cache
            .workflows
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        Ok(version)
    }

    /// Returns the newest stored version of workflow `name` in the project
    /// [`DEFAULT_PROJECT`].
    pub async fn latest_workflow(&self, name: &str) -> Result<(WorkflowSpec, String)> {
        self.latest_workflow_in(DEFAULT_PROJECT, name).await
    }

    /// Returns the newest version of workflow `name` that `project` can run: a workflow
    /// defined in Rust, or a spec submitted to the project.
    pub async fn latest_workflow_in(
        &self,
        project: &str,
        name: &str,
    ) -> Result<(WorkflowSpec, String)> {
        let row: Option<(sqlx::types::Json<WorkflowSpec>, String)> = sqlx::query_as(
            "SELECT spec, version FROM workflows WHERE name = $1 AND project IN ('', $2)
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(name)
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        let (spec, version) = row.ok_or_else(|| Error::NotFound {
            what: "workflow",
            id: name.to_owned(),
        })?;
        Ok((spec.0, version))
    }

    pub(crate) async fn register_worker(&self, worker: &WorkerRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO workers (id, hostname, pid, queue, slots) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(worker.id)
        .bind(&worker.hostname)
        .bind(worker.pid)
        .bind(&worker.queue)
        .bind(worker.slots)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(crate) async fn stop_worker(&self, id: Uuid) -> Result<()> {
        sqlx::query("UPDATE workers SET stopped_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Lists workers that heartbeated in the last minute, or stopped in the last hour.
    pub async fn list_workers(&self) -> Result<Vec<WorkerRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, hostname, pid, queue, slots, started_at, heartbeat_at, stopped_at
             FROM workers
             WHERE heartbeat_at > now() - interval '1 minute' OR stopped_at > now() - interval '1 hour'
             ORDER BY started_at DESC LIMIT 500",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Hashes a spec document with 64-bit FNV-1a: stable across builds and platforms, which
/// `std`'s hasher does not promise. It names versions; it is not a security measure.
fn spec_version(document: &serde_json::Value) -> String {
    let text = document.to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
