//! The `flights` task kinds called through `Task::run` with a detached context, for the
//! decoding of run inputs and upstream outputs, the output JSON and cancellation.

use std::path::{Path, PathBuf};

use caraml_engine::{Task, TaskContext};
use caraml_examples::flights::tasks::{
    JoinWeather, LoadWeather, MonthInput, MonthStatistics, Report,
};
use caraml_examples::flights::{TableOutput, nodes};
use serde_json::json;

fn fresh_out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("the previous test output is removed");
    }
    dir
}

fn context<T: Task>(name: &str, out_dir: &Path) -> TaskContext {
    TaskContext::detached(name, T::KIND).with_run_input(json!({"out_dir": out_dir}))
}

#[tokio::test]
async fn load_weather_task_outputs_path_and_rows() {
    let out_dir = fresh_out_dir("tasks-load-weather");
    let ctx = context::<LoadWeather>(nodes::LOAD_WEATHER, &out_dir);

    let output = LoadWeather
        .run(ctx, ())
        .await
        .expect("load_weather succeeds");

    let encoded = serde_json::to_value(&output).expect("the output encodes as JSON");
    let expected_path = out_dir.join("staging/weather.parquet");
    assert_eq!(
        encoded,
        json!({"path": expected_path, "rows": 26_115}),
        "the output JSON is {{path, rows}}"
    );
    assert!(expected_path.is_file());
}

#[tokio::test]
async fn cancelled_attempt_is_retryable() {
    // The run input is `null`, so the task would write under the working directory if it
    // started; cancelling before the call keeps it from starting.
    let ctx = TaskContext::detached(nodes::LOAD_WEATHER, LoadWeather::KIND);
    ctx.cancellation().cancel();

    let err = LoadWeather
        .run(ctx, ())
        .await
        .expect_err("a cancelled attempt fails");
    assert!(err.is_retryable(), "{}", err.message);
    assert!(err.message.contains("cancelled"), "{}", err.message);
}

#[tokio::test]
async fn misspelt_run_input_is_permanent() {
    let ctx = TaskContext::detached(nodes::LOAD_WEATHER, LoadWeather::KIND)
        .with_run_input(json!({"outdir": "/tmp/flights"}));

    let err = LoadWeather
        .run(ctx, ())
        .await
        .expect_err("an unknown field is rejected");
    assert!(!err.is_retryable());
    assert!(err.message.contains("outdir"), "{}", err.message);
}

#[tokio::test]
async fn join_without_upstream_is_permanent() {
    let out_dir = fresh_out_dir("tasks-join-no-upstream");
    let ctx = context::<JoinWeather>(nodes::JOIN_WEATHER, &out_dir);

    let err = JoinWeather
        .run(ctx, ())
        .await
        .expect_err("the join needs both loads");
    assert!(!err.is_retryable());
    assert!(err.message.contains(nodes::LOAD_FLIGHTS), "{}", err.message);
}

#[tokio::test]
async fn month_task_rejects_missing_joined_table() {
    let out_dir = fresh_out_dir("tasks-month-missing-table");
    let joined = TableOutput {
        path: out_dir.join("staging/flights_weather.parquet"),
        rows: 336_776,
    };
    let ctx = context::<MonthStatistics>(&nodes::month(1), &out_dir).with_upstream(
        nodes::JOIN_WEATHER,
        serde_json::to_value(&joined).expect("the upstream output encodes"),
    );

    let err = MonthStatistics
        .run(ctx, MonthInput { month: 1 })
        .await
        .expect_err("the joined table is missing");
    assert!(!err.is_retryable());
    assert!(
        err.message.contains("flights_weather.parquet"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn report_rejects_malformed_month_output() {
    let out_dir = fresh_out_dir("tasks-report-malformed");
    let ctx = context::<Report>(nodes::REPORT, &out_dir).with_upstream(
        nodes::month(1),
        json!({"month": 1, "carriers": "not a table"}),
    );

    let err = Report
        .run(ctx, ())
        .await
        .expect_err("the upstream output is invalid");
    assert!(!err.is_retryable());
    assert!(err.message.contains("month_01"), "{}", err.message);
}
