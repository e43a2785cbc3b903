//! Delay statistics for one month, per carrier and per origin airport.

use std::path::Path;

use caraml_engine::TaskError;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use super::errors::query_error;
use super::locations::Locations;
use super::tables::{TableOutput, register_parquet, session, write_parquet};

/// The statistics columns of every month file and report, after the month and group key,
/// with the SQL that computes each over the joined flights of one group. Delays are in
/// minutes, and a flight with no departure time was cancelled.
pub const STATISTICS: [(&str, &str); 16] = [
    ("flights", "count(*)"),
    ("cancelled_flights", "count(*) - count(dep_time)"),
    ("dep_delay_flights", "count(dep_delay)"),
    ("arr_delay_flights", "count(arr_delay)"),
    ("mean_dep_delay_minutes", "avg(dep_delay)"),
    (
        "median_dep_delay_minutes",
        "median(CAST(dep_delay AS DOUBLE))",
    ),
    ("max_dep_delay_minutes", "max(dep_delay)"),
    ("mean_arr_delay_minutes", "avg(arr_delay)"),
    (
        "median_arr_delay_minutes",
        "median(CAST(arr_delay AS DOUBLE))",
    ),
    ("max_arr_delay_minutes", "max(arr_delay)"),
    // The share among flights with a known delay: a NULL delay gives a NULL that avg skips.
    (
        "share_dep_delayed_over_15_minutes",
        "avg(CASE WHEN dep_delay > 15 THEN 1.0 WHEN dep_delay IS NOT NULL THEN 0.0 END)",
    ),
    (
        "share_arr_delayed_over_15_minutes",
        "avg(CASE WHEN arr_delay > 15 THEN 1.0 WHEN arr_delay IS NOT NULL THEN 0.0 END)",
    ),
    // Flights that found a weather row, counted by visibility, which weather.csv records
    // in every row.
    ("weather_flights", "count(visib)"),
    ("mean_wind_speed_mph", "avg(wind_speed)"),
    ("mean_visibility_miles", "avg(visib)"),
    ("mean_precip_inches", "avg(precip)"),
];

/// A grouping of the month's flights: the column grouped by and the file name it gets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grouping {
    pub(crate) key: &'static str,
    pub(crate) file_stem: &'static str,
}

pub(crate) const BY_CARRIER: Grouping = Grouping {
    key: "carrier",
    file_stem: "carrier",
};

pub(crate) const BY_ORIGIN: Grouping = Grouping {
    key: "origin",
    file_stem: "airport",
};

/// The statistics files of one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthOutput {
    /// Month of 2013, from 1 for January to 12.
    pub month: u8,
    /// One row per carrier, with the columns `month`, `carrier` and [`STATISTICS`].
    pub carriers: TableOutput,
    /// One row per origin airport, with the columns `month`, `origin` and [`STATISTICS`].
    pub airports: TableOutput,
}

/// Checks that `month` is a month number.
pub fn check_month(month: u8) -> Result<(), TaskError> {
    if (1..=12).contains(&month) {
        Ok(())
    } else {
        Err(TaskError::permanent(format!(
            "month {month} is invalid; use a month number from 1 to 12"
        )))
    }
}

/// Computes the statistics of `month` from the joined table at `joined` into
/// `months/month_MM_carrier.parquet` and `months/month_MM_airport.parquet`.
pub async fn month_statistics(
    joined: &Path,
    month: u8,
    locations: &Locations,
) -> Result<MonthOutput, TaskError> {
    check_month(month)?;
    let ctx = session();
    register_parquet(&ctx, "flights", joined).await?;

    let carriers = write_grouping(&ctx, BY_CARRIER, month, locations).await?;
    let airports = write_grouping(&ctx, BY_ORIGIN, month, locations).await?;
    Ok(MonthOutput {
        month,
        carriers,
        airports,
    })
}

async fn write_grouping(
    ctx: &SessionContext,
    grouping: Grouping,
    month: u8,
    locations: &Locations,
) -> Result<TableOutput, TaskError> {
    let sql = statistics_sql(grouping.key, month);
    let df = ctx.sql(&sql).await.map_err(|err| {
        query_error(
            &format!("plan the month {month} statistics by {}", grouping.key),
            err,
        )
    })?;
    let target = locations
        .months_dir()
        .join(format!("month_{month:02}_{}.parquet", grouping.file_stem));
    write_parquet(df, &target).await
}

fn statistics_sql(key: &str, month: u8) -> String {
    let columns: Vec<String> = STATISTICS
        .iter()
        .map(|(name, expression)| format!("{expression} AS {name}"))
        .collect();
    format!(
        "SELECT month, {key}, {columns}
         FROM flights
         WHERE month = {month}
         GROUP BY month, {key}
         ORDER BY {key}",
        columns = columns.join(", "),
    )
}
