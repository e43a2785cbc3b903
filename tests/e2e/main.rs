//! End-to-end tests across crates against a real PostgreSQL: the HTTP API and command line
//! with an in-process worker, task logs, operations on many runs (retention, dead letters,
//! bulk actions), and fault scenarios with worker processes.

mod api;
mod faults;
mod logs;
mod operations;
mod schedules;
mod services;
