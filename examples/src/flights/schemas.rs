//! Column types of the nycflights13 CSV files.
//!
//! The types are fixed rather than inferred: inference reads a sample, and a column whose
//! sample holds only `NA` or only whole numbers would get the wrong type.

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::prelude::CsvReadOptions;

/// Matches the `NA` that marks a missing value in every nycflights13 file, and an empty
/// field for files edited by hand.
const NULL_PATTERN: &str = "^(NA)?$";

/// Returns CSV read options for a nycflights13 file with `schema`.
pub(crate) fn csv_options(schema: &Schema) -> CsvReadOptions<'_> {
    CsvReadOptions::new()
        .has_header(true)
        .schema(schema)
        .null_regex(Some(NULL_PATTERN.to_owned()))
}

/// `time_hour`: the hour in UTC, written as `2013-01-01T10:00:00Z`.
fn time_hour() -> Field {
    Field::new(
        "time_hour",
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

/// `flights.csv`: one row per scheduled departure. Times are local `HHMM`, delays and
/// `air_time` are minutes and `distance` is miles.
pub(crate) fn flights() -> Schema {
    let int = |name: &str, nullable: bool| Field::new(name, DataType::Int32, nullable);
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Schema::new(vec![
        int("year", false),
        int("month", false),
        int("day", false),
        int("dep_time", true),
        int("sched_dep_time", false),
        int("dep_delay", true),
        int("arr_time", true),
        int("sched_arr_time", false),
        int("arr_delay", true),
        text("carrier", false),
        int("flight", false),
        text("tailnum", true),
        text("origin", false),
        text("dest", false),
        int("air_time", true),
        int("distance", false),
        int("hour", false),
        int("minute", false),
        time_hour(),
    ])
}

/// `weather.csv`: one row per origin airport and hour. Temperatures are °F, `wind_speed`
/// and `wind_gust` mph, `precip` inches, `pressure` millibars and `visib` miles.
pub(crate) fn weather() -> Schema {
    let int = |name: &str| Field::new(name, DataType::Int32, false);
    let number = |name: &str| Field::new(name, DataType::Float64, true);
    Schema::new(vec![
        Field::new("origin", DataType::Utf8, false),
        int("year"),
        int("month"),
        int("day"),
        int("hour"),
        number("temp"),
        number("dewp"),
        number("humid"),
        number("wind_dir"),
        number("wind_speed"),
        number("wind_gust"),
        number("precip"),
        number("pressure"),
        number("visib"),
        time_hour(),
    ])
}

/// `airlines.csv`: carrier code and full name.
pub(crate) fn airlines() -> Schema {
    Schema::new(vec![
        Field::new("carrier", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
    ])
}

/// `airports.csv`: FAA code, name, position and time zone.
pub(crate) fn airports() -> Schema {
    Schema::new(vec![
        Field::new("faa", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        Field::new("alt", DataType::Float64, true),
        Field::new("tz", DataType::Float64, true),
        Field::new("dst", DataType::Utf8, true),
        Field::new("tzone", DataType::Utf8, true),
    ])
}
