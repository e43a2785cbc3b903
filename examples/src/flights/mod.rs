//! The `flights` workflow: delay statistics of every flight that left New York City in 2013,
//! from the nycflights13 data.
//!
//! ```text
//! load_flights ─┐                 ┌─ month_01 ─┐
//!               ├─ join_weather ──┼─ …        ─┼─ report
//! load_weather ─┘                 └─ month_12 ─┘
//! ```
//!
//! A run's input is [`FlightsRunInput`], such as `{"data_dir": "...", "out_dir": "..."}`.
//! Every task writes under `out_dir` and returns the paths it wrote. `staging/` contains the
//! Parquet copies of the CSV files and their join, `months/` the statistics of each month,
//! and `reports/` the yearly `carrier_delays.parquet` and `airport_delays.parquet`.
//!
//! Each step is a plain `async fn` ([`load_flights`], [`load_weather`], [`join_weather`],
//! [`month_statistics`], [`build_report`]) that the [`tasks`] wrap, so the steps also run
//! without a worker or a database.

mod archive;
mod errors;
mod files;
mod join;
mod load;
mod locations;
mod monthly;
mod report;
mod schemas;
mod tables;
pub mod tasks;

use caraml_engine::{Node, Registry, SpecError, WorkflowBuilder, WorkflowSpec};

pub use join::{WEATHER_COLUMNS, join_weather};
pub use load::{load_flights, load_weather};
pub use locations::{DEFAULT_DATA_DIR, DEFAULT_OUT_DIR, FlightsRunInput, Locations};
pub use monthly::{MonthOutput, STATISTICS, check_month, month_statistics};
pub use report::{CarrierDelay, ReportOutput, build_report};
pub use tables::TableOutput;
use tasks::{JoinWeather, LoadFlights, LoadWeather, MonthInput, MonthStatistics, Report};

/// Name of the workflow.
pub const WORKFLOW: &str = "flights";

/// Node names of the workflow, which the task kinds use to find their upstream outputs.
pub mod nodes {
    pub const LOAD_FLIGHTS: &str = "load_flights";
    pub const LOAD_WEATHER: &str = "load_weather";
    pub const JOIN_WEATHER: &str = "join_weather";
    pub const REPORT: &str = "report";

    /// Returns the node name of `month`, from `month_01` to `month_12`.
    pub fn month(month: u8) -> String {
        format!("month_{month:02}")
    }
}

/// Returns the `flights` workflow.
pub fn workflow() -> Result<WorkflowSpec, SpecError> {
    let mut builder = WorkflowBuilder::new(WORKFLOW)
        .description(
            "Delay statistics per month, carrier and origin airport for the flights that left New York City in 2013 (nycflights13)",
        )
        .task(Node::of::<LoadFlights>(nodes::LOAD_FLIGHTS))
        .task(Node::of::<LoadWeather>(nodes::LOAD_WEATHER))
        .task(
            Node::of::<JoinWeather>(nodes::JOIN_WEATHER)
                .after([nodes::LOAD_FLIGHTS, nodes::LOAD_WEATHER]),
        );

    let months: Vec<String> = (1..=12).map(nodes::month).collect();
    for (month, name) in (1..=12).zip(&months) {
        builder = builder.task(
            Node::of::<MonthStatistics>(name.as_str())
                .input(MonthInput { month })
                .after([nodes::JOIN_WEATHER]),
        );
    }

    builder
        .task(Node::of::<Report>(nodes::REPORT).after(months))
        .build()
}

/// Adds the task kinds of the `flights` workflow, and the workflow, to `registry`.
pub fn register(registry: &mut Registry) -> Result<(), SpecError> {
    registry
        .task(LoadFlights)
        .task(LoadWeather)
        .task(JoinWeather)
        .task(MonthStatistics)
        .task(Report);
    registry.workflow(workflow()?);
    Ok(())
}
