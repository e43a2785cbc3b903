//! CaraML: an open MLOps platform on a durable task-graph engine in PostgreSQL.
//!
//! This facade re-exports the workspace's crates and assembles the registry that the
//! `caraml` binary runs with.

pub use caraml_api as api;
pub use caraml_engine as engine;
pub use caraml_examples as examples;
pub use caraml_tasks as tasks;

/// Returns a registry with every task kind and example workflow that ships with CaraML.
pub fn registry() -> Result<engine::Registry, engine::SpecError> {
    let mut registry = engine::Registry::with_builtins();
    tasks::register(&mut registry);
    examples::register(&mut registry)?;
    Ok(registry)
}
