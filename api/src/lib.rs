//! The HTTP API and the `caraml` command line.

pub mod auth;
pub mod cli;
pub mod http;
