//! The feature store: feature registry, DataFusion ingestion and point-in-time retrieval,
//! and online serving.
//!
//! NOTE: the crate contains no code yet. It exists so that the workspace has the layout the
//! task kinds in `caraml-tasks` build on.
