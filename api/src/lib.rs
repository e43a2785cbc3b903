//! The HTTP API and the `caraml` command line.

mod auth;
pub mod cli;
mod dashboard;
pub mod http;
