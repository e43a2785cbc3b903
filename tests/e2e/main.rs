//! End-to-end tests across crates against a real PostgreSQL: the HTTP API and command line
//! with an in-process worker, operations on many runs (retention, dead letters, bulk
//! actions), fault scenarios with worker processes, and the API against its OpenAPI document.

mod api;
mod contract;
mod faults;
mod operations;
mod schedules;
mod services;
