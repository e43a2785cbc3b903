//! The task kinds of the `flights` workflow: each decodes the run input and the upstream
//! outputs, then calls the plain function of its module that does the work.
//!
//! The kinds find their upstream outputs by the node names in [`super::nodes`], so a
//! workflow that reuses them must name its nodes the same way.

use std::future::Future;

use caraml_engine::{Task, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

use super::join::join_weather;
use super::load::{load_flights, load_weather};
use super::locations::{FlightsRunInput, Locations};
use super::monthly::{MonthOutput, month_statistics};
use super::nodes;
use super::report::{ReportOutput, build_report};
use super::tables::TableOutput;

/// `flights.load_flights`: unzips `flights.csv.zip` and converts it to Parquet.
pub struct LoadFlights;

/// `flights.load_weather`: converts `weather.csv` to Parquet.
pub struct LoadWeather;

/// `flights.join_weather`: adds the weather at departure to every flight.
pub struct JoinWeather;

/// `flights.month_statistics`: delay statistics of one month per carrier and per airport.
pub struct MonthStatistics;

/// `flights.report`: combines the month statistics into yearly reports.
pub struct Report;

/// The node input of `flights.month_statistics`, such as `{"month": 1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthInput {
    /// Month of 2013, from 1 for January to 12.
    pub month: u8,
}

impl Task for LoadFlights {
    type Input = ();
    type Output = TableOutput;
    const KIND: &'static str = "flights.load_flights";

    async fn run(&self, ctx: TaskContext, (): ()) -> Result<TableOutput, TaskError> {
        let locations = locations(&ctx)?;
        log_reading(&ctx, &locations.flights_zip());
        let output = until_cancelled(&ctx, load_flights(&locations)).await?;
        log_table(&ctx, &output);
        Ok(output)
    }
}

impl Task for LoadWeather {
    type Input = ();
    type Output = TableOutput;
    const KIND: &'static str = "flights.load_weather";

    async fn run(&self, ctx: TaskContext, (): ()) -> Result<TableOutput, TaskError> {
        let locations = locations(&ctx)?;
        log_reading(&ctx, &locations.weather_csv());
        let output = until_cancelled(&ctx, load_weather(&locations)).await?;
        log_table(&ctx, &output);
        Ok(output)
    }
}

impl Task for JoinWeather {
    type Input = ();
    type Output = TableOutput;
    const KIND: &'static str = "flights.join_weather";

    async fn run(&self, ctx: TaskContext, (): ()) -> Result<TableOutput, TaskError> {
        let locations = locations(&ctx)?;
        let flights: TableOutput = ctx.upstream_as(nodes::LOAD_FLIGHTS)?;
        let weather: TableOutput = ctx.upstream_as(nodes::LOAD_WEATHER)?;
        let work = join_weather(&flights.path, &weather.path, &locations);
        let output = until_cancelled(&ctx, work).await?;
        log_table(&ctx, &output);
        Ok(output)
    }
}

impl Task for MonthStatistics {
    type Input = MonthInput;
    type Output = MonthOutput;
    const KIND: &'static str = "flights.month_statistics";

    async fn run(&self, ctx: TaskContext, input: MonthInput) -> Result<MonthOutput, TaskError> {
        let locations = locations(&ctx)?;
        let joined: TableOutput = ctx.upstream_as(nodes::JOIN_WEATHER)?;
        let work = month_statistics(&joined.path, input.month, &locations);
        let output = until_cancelled(&ctx, work).await?;
        log_table(&ctx, &output.carriers);
        log_table(&ctx, &output.airports);
        Ok(output)
    }
}

impl Task for Report {
    type Input = ();
    type Output = ReportOutput;
    const KIND: &'static str = "flights.report";

    async fn run(&self, ctx: TaskContext, (): ()) -> Result<ReportOutput, TaskError> {
        let locations = locations(&ctx)?;
        // Every upstream node is a month: the report takes as many months as the workflow
        // has month nodes.
        let mut names: Vec<&String> = ctx.upstream().keys().collect();
        names.sort();
        let mut months = Vec::with_capacity(names.len());
        for name in names {
            months.push(ctx.upstream_as::<MonthOutput>(name)?);
        }
        let output = until_cancelled(&ctx, build_report(&months, &locations)).await?;
        log_table(&ctx, &output.carrier_report);
        log_table(&ctx, &output.airport_report);
        log_summary(&ctx, &output);
        Ok(output)
    }
}

fn locations(ctx: &TaskContext) -> Result<Locations, TaskError> {
    // A run submitted without input has a `null` run input, which means all defaults.
    let input: Option<FlightsRunInput> = ctx.run_input_as()?;
    input.unwrap_or_default().resolve()
}

/// Runs `work` until it finishes or the attempt is cancelled. Dropping `work` on
/// cancellation deletes its temporary files and leaves earlier outputs in place.
async fn until_cancelled<T>(
    ctx: &TaskContext,
    work: impl Future<Output = Result<T, TaskError>>,
) -> Result<T, TaskError> {
    tokio::select! {
        // Polling the cancellation first keeps an attempt that is already cancelled from
        // starting any work.
        biased;
        () = ctx.cancellation().cancelled() => Err(TaskError::retryable(format!(
            "task `{}` was cancelled before it finished",
            ctx.task_name()
        ))),
        result = work => result,
    }
}

fn log_reading(ctx: &TaskContext, path: &std::path::Path) {
    ctx.logger().info(&format!("reading {}", path.display()));
}

fn log_summary(ctx: &TaskContext, report: &ReportOutput) {
    let logger = ctx.logger();
    logger.info(&format!(
        "{} flights over {} months",
        report.total_flights,
        report.months.len()
    ));
    if let Some(worst) = report.worst_carriers.first() {
        logger.info(&format!(
            "highest mean arrival delay: {} ({}), {:.1} minutes over {} flights",
            worst.name.as_deref().unwrap_or("name unknown"),
            worst.carrier,
            worst.mean_arr_delay_minutes,
            worst.arr_delay_flights
        ));
    }
}

fn log_table(ctx: &TaskContext, table: &TableOutput) {
    ctx.logger().info(&format!(
        "wrote {} rows to {}",
        table.rows,
        table.path.display()
    ));
}
