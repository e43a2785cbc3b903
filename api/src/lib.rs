//! The HTTP API and the `caraml` command line.

pub mod auth;
pub mod cli;
mod dashboard;
pub mod http;
