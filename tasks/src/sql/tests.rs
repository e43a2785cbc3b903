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
async fn csv_query_returns_rows_inline() {
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
async fn text_column_error_suggests_null_values() {
    let dir = flights_dir();
    let err = query(json!({
        "tables": {"flights": path_in(dir.path(), "flights.csv")},
        "sql": "SELECT SUM(dep_delay) FROM flights",
    }))
    .await
    .expect_err("dep_delay is text without null_values");
    assert!(!err.is_retryable());
    assert!(err.message.contains("`null_values`"), "{}", err.message);
}

#[tokio::test]
async fn all_null_column_stays_text() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = path_in(dir.path(), "sparse.csv");
    std::fs::write(&path, "id,note\n1,NA\n2,\n").expect("write sparse.csv");
    let output = query(json!({
        "tables": {"sparse": {"path": path, "null_values": ["NA"]}},
        "sql": "SELECT id, note, arrow_typeof(note) AS type FROM sparse ORDER BY id",
    }))
    .await
    .expect("the query runs");
    let (_, _, data) = inline(output);
    assert_eq!(
        Value::from(data),
        json!([
            {"id": 1, "note": null, "type": "Utf8"},
            {"id": 2, "note": null, "type": "Utf8"},
        ])
    );
}

#[tokio::test]
async fn parquet_output_read_downstream() {
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
async fn invalid_sql_is_permanent() {
    let dir = flights_dir();
    let err = query(json!({
        "tables": {"flights": path_in(dir.path(), "flights.csv")},
        "sql": "SELEC carrier FROM flights",
    }))
    .await
    .expect_err("the SQL does not parse");
    assert!(!err.is_retryable());
    assert!(err.message.contains("failed to parse"), "{}", err.message);
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
    assert!(err.message.contains("(tables: flights)"), "{}", err.message);
}

#[tokio::test]
async fn missing_file_is_permanent() {
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
    assert!(err.message.contains("not found"), "{}", err.message);
}

#[tokio::test]
async fn too_many_inline_rows_rejected() {
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
async fn ddl_statement_rejected() {
    let err = query(json!({
        "sql": "CREATE TABLE t AS SELECT 1",
    }))
    .await
    .expect_err("DDL is rejected");
    assert!(!err.is_retryable());
    assert!(err.message.contains("runs only queries"), "{}", err.message);
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
async fn upstream_without_path_rejected() {
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
async fn csv_settings_on_parquet_rejected() {
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
fn table_sources_parse_paths_and_objects() {
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
}

#[test]
fn invalid_table_sources_are_named() {
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

#[tokio::test]
async fn parquet_directory_reads_every_file() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    for (name, value) in [("a", 1), ("b", 2)] {
        query(json!({
            "sql": format!("SELECT {value} AS v"),
            "output": path_in(dir.path(), &format!("parts/{name}.parquet")),
        }))
        .await
        .expect("write one part");
    }
    let parts = path_in(dir.path(), "parts");

    let err = query(json!({"tables": {"parts": parts}, "sql": "SELECT * FROM parts"}))
        .await
        .expect_err("a directory has no extension to infer the format from");
    assert!(!err.is_retryable());
    assert!(err.message.contains("\"format\""), "{}", err.message);

    let output = query(json!({
        "tables": {"parts": {"path": parts, "format": "parquet"}},
        "sql": "SELECT COUNT(*) AS n, SUM(v) AS total FROM parts",
    }))
    .await
    .expect("the query reads both parts");
    let (_, _, data) = inline(output);
    assert_eq!(Value::from(data), json!([{"n": 2, "total": 3}]));
}

#[tokio::test]
async fn tab_separated_text_without_header() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = path_in(dir.path(), "codes.txt");
    std::fs::write(&path, "1\tJFK\n2\tLGA\n").expect("write codes.txt");
    let output = query(json!({
        "tables": {"codes": {"path": path, "format": "csv", "delimiter": "\t", "has_header": false}},
        "sql": "SELECT column_1 AS id, column_2 AS code FROM codes ORDER BY id",
    }))
    .await
    .expect("the query runs");
    let (rows, columns, data) = inline(output);
    assert_eq!(rows, 2);
    assert_eq!(columns, ["id", "code"]);
    assert_eq!(
        Value::from(data),
        json!([{"id": 1, "code": "JFK"}, {"id": 2, "code": "LGA"}])
    );
}

#[tokio::test]
async fn task_reads_upstream_from_context() {
    let dir = flights_dir();
    let context = TaskContext::detached("carriers", SqlQuery::KIND);
    let written = SqlQuery
        .run(
            context,
            input(json!({
                "tables": {"flights": path_in(dir.path(), "flights.csv")},
                "sql": "SELECT DISTINCT carrier FROM flights",
                "output": path_in(dir.path(), "carriers.parquet"),
            })),
        )
        .await
        .expect("the first query writes Parquet");

    let upstream = serde_json::to_value(&written).expect("encode the output");
    let context =
        TaskContext::detached("count", SqlQuery::KIND).with_upstream("carriers", upstream);
    let output = SqlQuery
        .run(
            context,
            input(json!({
                "tables": {"carriers": {"upstream": "carriers"}},
                "sql": "SELECT COUNT(*) AS n FROM carriers",
            })),
        )
        .await
        .expect("the second query reads the upstream file");
    let (_, _, data) = inline(output);
    assert_eq!(Value::from(data), json!([{"n": 3}]));
}

#[tokio::test]
async fn task_stops_when_context_cancelled() {
    let context = TaskContext::detached("query", SqlQuery::KIND);
    context.cancellation().cancel();
    let err = SqlQuery
        .run(context, input(json!({"sql": "SELECT 1"})))
        .await
        .expect_err("the attempt is cancelled");
    assert!(err.is_retryable());
    assert!(err.message.contains("cancelled"), "{}", err.message);
}
