//! Task kinds of the CaraML platform that need more than the engine: `http.request` calls an
//! HTTP endpoint and `sql.query` runs SQL over CSV and Parquet files with DataFusion.
//!
//! Each kind keeps its work in a plain `execute` function that takes the parsed input, the
//! upstream outputs it needs and a cancellation token, so it runs and tests without a worker.

mod errors;
pub mod http;
mod rows;
pub mod sql;
mod tables;

use caraml_engine::Registry;

pub use http::{HttpRequest, HttpRequestInput, HttpRequestOutput};
pub use sql::{SqlQuery, SqlQueryInput, SqlQueryOutput};
pub use tables::{TableFormat, TableSource};

/// Adds `http.request` and `sql.query` to `registry`.
pub fn register(registry: &mut Registry) {
    registry.task(HttpRequest::new()).task(SqlQuery);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_adds_both_kinds() {
        let mut registry = Registry::with_builtins();
        register(&mut registry);
        assert!(registry.has_kind("http.request"));
        assert!(registry.has_kind("sql.query"));
        assert!(registry.has_kind("sleep"));
    }
}
