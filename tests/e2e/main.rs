//! End-to-end tests across crates against a real PostgreSQL: the HTTP API and command line
//! with an in-process worker, the dashboard in headless Chromium, operations on many runs
//! (retention, dead letters, bulk actions), and fault scenarios with worker processes.

mod api;
mod dashboard;
mod faults;
mod operations;
mod schedules;
mod services;
