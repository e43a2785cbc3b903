use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::*;

const FLIGHTS: &str = "\
carrier,dep_delay,origin
AA,5,JFK
UA,NA,EWR
AA,15,JFK
DL,-3,LGA
";

fn flights_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    std::fs::write(dir.path().join("flights.csv"), FLIGHTS).expect("write flights.csv");
    dir
}

fn path_in(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn input(value: Value) -> SqlQueryInput {
    serde_json::from_value(value).expect("a valid sql.query input")
}

async fn query(value: Value) -> Result<SqlQueryOutput, TaskError> {
    execute(input(value), &HashMap::new(), &CancellationToken::new()).await
}

fn inline(output: SqlQueryOutput) -> (u64, Vec<String>, Vec<Map<String, Value>>) {
    match output {
        SqlQueryOutput::Inline {
            rows,
            columns,
            data,
        } => (rows, columns, data),
        other => panic!("expected inline rows, got {other:?}"),
    }
}

#[tokio::test]
async fn queries_a_csv_file_inline() {
    let dir = flights_dir();
    let output = query(json!({
        "tables": {"flights": path_in(dir.path(), "flights.csv")},
        "sql": "SELECT carrier, COUNT(*) AS n FROM flights GROUP BY carrier ORDER BY carrier",
    }))
    .await
    .expect("the query runs");
    let (rows, columns, data) = inline(output);
    assert_eq!(rows, 3);
    assert_eq!(columns, ["carrier", "n"]);
    assert_eq!(
        Value::from(data),
        json!([
            {"carrier": "AA", "n": 2},
            {"carrier": "DL", "n": 1},
            {"carrier": "UA", "n": 1},
        ])
    );
}

#[tokio::test]
async fn null_values_become_nulls_in_typed_columns() {
    let dir = flights_dir();
    let output = query(json!({
        "tables": {"flights": {
            "path": path_in(dir.path(), "flights.csv"),
            "null_values": ["NA"],
        }},
        "sql": "SELECT COUNT(dep_delay) AS known, SUM(dep_delay) AS total, \
                arrow_typeof(dep_delay) AS type \
                FROM flights GROUP BY arrow_typeof(dep_delay)",
    }))
    .await
    .expect("the query runs");
    let (_, _, data) = inline(output);
    assert_eq!(
        Value::from(data),
        json!([{"known": 3, "total": 17, "type": "Int64"}])
    );
}

#[tokio::test]
async fn without_null_values_na_stays_text() {
    let dir = flights_dir();
    let output = query(json!({
        "tables": {"flights": path_in(dir.path(), "flights.csv")},
        "sql": "SELECT DISTINCT arrow_typeof(dep_delay) AS type FROM flights",
    }))
    .await
    .expect("the query runs");
    let (_, _, data) = inline(output);
    assert_eq!(Value::from(data), json!([{"type": "Utf8"}]));
}

#[tokio::test]
async fn writes_parquet_that_a_downstream_query_reads() {
    let dir = flights_dir();
    let target = path_in(dir.path(), "out/nested/delays.parquet");
    let written = query(json!({
        "tables": {"flights": {"path": path_in(dir.path(), "flights.csv"), "null_values": ["NA"]}},
        "sql": "SELECT origin, AVG(dep_delay) AS mean_delay FROM flights GROUP BY origin",
        "output": target,
    }))
    .await
    .expect("the query writes Parquet");
    let SqlQueryOutput::Written {
        ref path,
        rows,
        ref columns,
    } = written
    else {
        panic!("expected a written result, got {written:?}");
    };
    assert_eq!(path, &target);
    assert_eq!(rows, 3);
    assert_eq!(columns, &["origin", "mean_delay"]);
    assert!(Path::new(&target).is_file());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("out/nested"))
        .expect("list the output directory")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let upstream = HashMap::from([(
        "delays".to_owned(),
        serde_json::to_value(&written).expect("encode the output"),
    )]);
    let output = execute(
        input(json!({
            "tables": {"delays": {"upstream": "delays"}},
            "sql": "SELECT origin, mean_delay FROM delays ORDER BY origin",
        })),
        &upstream,
        &CancellationToken::new(),
    )
    .await
    .expect("the downstream query runs");
    let (rows, _, data) = inline(output);
    assert_eq!(rows, 3);
    assert_eq!(
        Value::from(data),
        json!([
            {"origin": "EWR", "mean_delay": null},
            {"origin": "JFK", "mean_delay": 10.0},
            {"origin": "LGA", "mean_delay": -3.0},
        ])
    );
}

#[tokio::test]
async fn bad_sql_is_permanent_and_names_the_problem() {
    let dir = flights_dir();
    let err = query(json!({
        "tables": {"flights": path_in(dir.path(), "flights.csv")},
        "sql": "SELEC carrier FROM flights",
    }))
    .await
    .expect_err("the SQL does not parse");
    assert!(!err.is_retryable());
    assert!(err.message.contains("could not parse"), "{}", err.message);
    assert!(err.message.contains("SELEC"), "{}", err.message);
}

#[tokio::test]
async fn unknown_column_is_permanent_and_named() {
    let dir = flights_dir();
    let err = query(json!({
        "tables": {"flights": path_in(dir.path(), "flights.csv")},
        "sql": "SELECT arr_delay FROM flights",
    }))
    .await
    .expect_err("the column does not exist");
    assert!(!err.is_retryable());
    assert!(err.message.contains("arr_delay"), "{}", err.message);
    assert!(err.message.contains("[flights]"), "{}", err.message);
}

#[tokio::test]
async fn missing_file_is_permanent_and_names_the_path() {
    let dir = flights_dir();
    let missing = path_in(dir.path(), "no-such-file.csv");
    let err = query(json!({
        "tables": {"flights": missing},
        "sql": "SELECT * FROM flights",
    }))
    .await
    .expect_err("the file is missing");
    assert!(!err.is_retryable());
    assert!(err.message.contains(&missing), "{}", err.message);
    assert!(err.message.contains("does not exist"), "{}", err.message);
}

#[tokio::test]
async fn too_many_rows_inline_says_how_many_and_what_to_do() {
    let dir = flights_dir();
    let err = query(json!({
        "tables": {"flights": path_in(dir.path(), "flights.csv")},
        "sql": "SELECT * FROM flights",
        "max_rows": 2,
    }))
    .await
    .expect_err("four rows are over the limit");
    assert!(!err.is_retryable());
    assert!(err.message.contains("returned 4 rows"), "{}", err.message);
    assert!(err.message.contains("`output`"), "{}", err.message);
}

#[tokio::test]
async fn statements_that_change_things_are_refused() {
    let err = query(json!({
        "sql": "CREATE TABLE t AS SELECT 1",
    }))
    .await
    .expect_err("DDL is refused");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn missing_upstream_node_is_named() {
    let err = query(json!({
        "tables": {"t": {"upstream": "load"}},
        "sql": "SELECT * FROM t",
    }))
    .await
    .expect_err("there is no upstream node");
    assert!(!err.is_retryable());
    assert!(err.message.contains("`load`"), "{}", err.message);
}

#[tokio::test]
async fn upstream_output_without_a_path_is_refused() {
    let upstream = HashMap::from([("load".to_owned(), json!({"rows": 3}))]);
    let err = execute(
        input(json!({"tables": {"t": {"upstream": "load"}}, "sql": "SELECT * FROM t"})),
        &upstream,
        &CancellationToken::new(),
    )
    .await
    .expect_err("the upstream output has no path");
    assert!(!err.is_retryable());
    assert!(err.message.contains("no `path`"), "{}", err.message);
}

#[tokio::test]
async fn cancellation_stops_the_query() {
    let dir = flights_dir();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = execute(
        input(json!({
            "tables": {"flights": path_in(dir.path(), "flights.csv")},
            "sql": "SELECT * FROM flights",
        })),
        &HashMap::new(),
        &cancel,
    )
    .await
    .expect_err("the query is cancelled");
    assert!(err.is_retryable());
    assert!(err.message.contains("cancelled"), "{}", err.message);
}

#[tokio::test]
async fn csv_settings_on_parquet_are_refused() {
    let dir = flights_dir();
    let target = path_in(dir.path(), "t.parquet");
    query(json!({"sql": "SELECT 1 AS one", "output": target}))
        .await
        .expect("write a Parquet file");
    let err = query(json!({
        "tables": {"t": {"path": target, "has_header": false}},
        "sql": "SELECT * FROM t",
    }))
    .await
    .expect_err("has_header does not apply to Parquet");
    assert!(err.message.contains("has_header"), "{}", err.message);
}

#[test]
fn input_accepts_paths_and_objects_and_names_bad_tables() {
    let parsed = input(json!({
        "tables": {
            "a": "a.csv",
            "b": {"path": "b.txt", "format": "csv", "delimiter": "\t"},
        },
        "sql": "SELECT 1",
    }));
    assert_eq!(parsed.tables["a"].path.as_deref(), Some("a.csv"));
    assert_eq!(parsed.tables["b"].format, Some(crate::TableFormat::Csv));
    assert_eq!(parsed.tables["b"].delimiter, Some('\t'));

    let err = serde_json::from_value::<SqlQueryInput>(json!({
        "tables": {"a": {"file": "a.csv"}},
        "sql": "SELECT 1",
    }))
    .expect_err("`file` is not a table setting");
    assert!(err.to_string().contains("tables.a"), "{err}");
    assert!(err.to_string().contains("file"), "{err}");

    let err = serde_json::from_value::<SqlQueryInput>(json!({
        "tables": {"a": 3},
        "sql": "SELECT 1",
    }))
    .expect_err("a number is not a table");
    assert!(err.to_string().contains("tables.a is 3"), "{err}");
}
