//! Example workflows defined in Rust, with the sample data they run on.
//!
//! [`register`] adds every example's task kinds and workflows to a worker's registry.

pub mod flights;

use caraml_engine::{Registry, SpecError};

/// Adds the task kinds and workflows of every example to `registry`.
///
/// Fails only when a workflow definition in this crate is itself invalid, which the tests
/// of this crate rule out.
pub fn register(registry: &mut Registry) -> Result<(), SpecError> {
    flights::register(registry)
}
