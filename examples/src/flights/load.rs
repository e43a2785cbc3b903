//! Conversion of the flights and weather CSV files into Parquet.

use std::path::Path;

use caraml_engine::TaskError;
use datafusion::arrow::datatypes::Schema;

use super::archive::extract_entry_blocking;
use super::errors::require_file;
use super::files::{TempFile, create_dir};
use super::locations::{DATA_DIR_FIX, Locations};
use super::schemas;
use super::tables::{TableOutput, read_csv, session, write_parquet};

/// Unzips `flights.csv` from `flights.csv.zip` into the staging folder and converts it to
/// `staging/flights.parquet`. The unzipped CSV is deleted afterwards.
pub async fn load_flights(locations: &Locations) -> Result<TableOutput, TaskError> {
    let archive = locations.flights_zip();
    require_file(&archive, "flights archive", DATA_DIR_FIX).await?;
    let staging = locations.staging_dir();
    create_dir(&staging).await?;

    let scratch = TempFile::beside(&staging.join("flights.csv"));
    let csv = extract_entry_blocking(archive, "flights.csv", scratch).await?;
    let target = staging.join("flights.parquet");
    csv_to_parquet(csv.path(), &schemas::flights(), &target).await
}

/// Converts `weather.csv` to `staging/weather.parquet`.
pub async fn load_weather(locations: &Locations) -> Result<TableOutput, TaskError> {
    let csv = locations.weather_csv();
    require_file(&csv, "weather file", DATA_DIR_FIX).await?;
    let target = locations.staging_dir().join("weather.parquet");
    csv_to_parquet(&csv, &schemas::weather(), &target).await
}

async fn csv_to_parquet(
    csv: &Path,
    schema: &Schema,
    target: &Path,
) -> Result<TableOutput, TaskError> {
    let ctx = session();
    let df = read_csv(&ctx, csv, schema).await?;
    write_parquet(df, target).await.map_err(|err| {
        // A row that does not fit the schema only shows up while writing, so the message
        // names the CSV file it came from.
        TaskError {
            message: format!("{} (converting {})", err.message, csv.display()),
            ..err
        }
    })
}
