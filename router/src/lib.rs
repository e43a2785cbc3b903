//! The router runtime and the experiment engine: traffic routing across model endpoints,
//! treatment assignment and outcome logging.
//!
//! NOTE: the crate contains no code yet. It exists so that the workspace has the layout the
//! task kinds in `caraml-tasks` build on.
