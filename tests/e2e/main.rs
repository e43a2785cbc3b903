//! End-to-end tests across crates against a real PostgreSQL: the HTTP API and command line
//! with an in-process worker, and fault scenarios with worker processes.

mod api;
mod faults;
mod schedules;
mod services;
