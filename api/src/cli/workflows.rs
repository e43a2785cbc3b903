//! `caraml workflow ...`: stored workflows, read through the HTTP API.

use std::process::ExitCode;

use reqwest::Method;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::WorkflowCommand;
use super::client::Api;

/// A workflow as `GET /v1/workflows` lists it, reduced to what the listing shows.
#[derive(Debug, Deserialize)]
struct Listed {
    name: String,
    version: String,
    source: String,
    spec: ListedSpec,
}

#[derive(Debug, Deserialize)]
struct ListedSpec {
    tasks: Vec<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct Listing {
    workflows: Vec<Listed>,
}

/// One row of `caraml workflow list`, and one element of its `--json` array.
#[derive(Debug, PartialEq, Serialize)]
struct Row {
    name: String,
    version: String,
    source: String,
    task_count: usize,
}

pub(super) async fn run(command: WorkflowCommand) -> Result<ExitCode, String> {
    match command {
        WorkflowCommand::Retention { .. } => {
            Err("only `caraml workflow list` is handled here".to_owned())
        }
        WorkflowCommand::List { json, client } => {
            let api = Api::new(&client)?;
            let listing: Listing =
                serde_json::from_value(api.call(Method::GET, "/v1/workflows", None).await?)
                    .map_err(|err| format!("unexpected workflow list from the API: {err}"))?;
            let rows: Vec<Row> = listing
                .workflows
                .into_iter()
                .map(|workflow| Row {
                    name: workflow.name,
                    version: workflow.version,
                    source: workflow.source,
                    task_count: workflow.spec.tasks.len(),
                })
                .collect();
            if json {
                let text = serde_json::to_string_pretty(&rows)
                    .map_err(|err| format!("cannot encode the workflow list as JSON: {err}"))?;
                say!("{text}");
            } else if rows.is_empty() {
                say!(
                    "no workflows stored; workers store their registered workflows when they start, and submitted specs are stored when they run"
                );
            } else {
                say!("{}", table(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Lays rows out in aligned columns under a header, with the task count right-aligned.
fn table(rows: &[Row]) -> String {
    let counts: Vec<String> = rows.iter().map(|row| row.task_count.to_string()).collect();
    let name = column_width("NAME", rows.iter().map(|row| row.name.as_str()));
    let version = column_width("VERSION", rows.iter().map(|row| row.version.as_str()));
    let source = column_width("SOURCE", rows.iter().map(|row| row.source.as_str()));
    let tasks = column_width("TASKS", counts.iter().map(String::as_str));

    let mut lines = vec![format!(
        "{:<name$}  {:<version$}  {:<source$}  {:>tasks$}",
        "NAME", "VERSION", "SOURCE", "TASKS"
    )];
    for (row, count) in rows.iter().zip(&counts) {
        lines.push(format!(
            "{:<name$}  {:<version$}  {:<source$}  {:>tasks$}",
            row.name, row.version, row.source, count
        ));
    }
    lines.join("\n")
}

/// Returns the width in characters of the widest cell, header included.
fn column_width<'a>(header: &str, cells: impl Iterator<Item = &'a str>) -> usize {
    cells
        .map(|cell| cell.chars().count())
        .fold(header.len(), usize::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = [
            Row {
                name: "flights".to_owned(),
                version: "00aa11bb22cc33dd".to_owned(),
                source: "rust".to_owned(),
                task_count: 17,
            },
            Row {
                name: "d".to_owned(),
                version: "1".to_owned(),
                source: "spec".to_owned(),
                task_count: 4,
            },
        ];
        assert_eq!(
            table(&rows),
            "NAME     VERSION           SOURCE  TASKS\n\
             flights  00aa11bb22cc33dd  rust       17\n\
             d        1                 spec        4"
        );
    }

    #[test]
    fn listing_counts_spec_tasks() {
        let listing: Listing = serde_json::from_value(serde_json::json!({
            "workflows": [{
                "name": "diamond", "version": "v1", "source": "spec",
                "created_at": "2026-01-01T00:00:00Z",
                "spec": {"name": "diamond", "tasks": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
            }],
            "kinds": ["sleep"],
        }))
        .expect("the API's shape parses");
        assert_eq!(listing.workflows[0].spec.tasks.len(), 3);
    }
}
