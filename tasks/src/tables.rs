//! The tables a `sql.query` reads: how the input names them and how they are registered
//! with DataFusion.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use caraml_engine::TaskError;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::error::DataFusionError;
use datafusion::prelude::{
    CsvReadOptions, Expr, ParquetReadOptions, SessionContext, cast, ident, lit, when,
};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::errors::{cause_kind, io_error, task_error};

/// Source of one table's rows.
///
/// In the input it is either a path such as `"flights.csv"` or an object with `path` or
/// `upstream` and optional read settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSource {
    /// File, or directory of files in one format. Glob patterns are not supported.
    pub path: Option<String>,
    /// Name of an upstream node whose output contains a `path`, such as a `sql.query` with
    /// `output`.
    pub upstream: Option<String>,
    /// File format, inferred from the file extension when absent. Upstream outputs without a
    /// known extension are read as Parquet.
    pub format: Option<TableFormat>,
    /// CSV only: whether the first line contains the column names. Defaults to true.
    pub has_header: Option<bool>,
    /// CSV only: field separator, a single ASCII character. Defaults to `,`.
    pub delimiter: Option<char>,
    /// CSV only: values read as null, such as `NA`. An empty field is always null.
    pub null_values: Option<Vec<String>>,
}

/// File format of a table, written `"csv"` or `"parquet"` in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    Csv,
    Parquet,
}

impl TableFormat {
    fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }

    fn from_path(path: &str) -> Option<Self> {
        let extension = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(Self::Csv),
            "parquet" | "parq" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// Deserializes `TableSource` from either a bare path or the full object, so the common
/// case stays a one-liner in specs.
pub(crate) fn deserialize_tables<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, TableSource>, D::Error> {
    use serde::de::Error as _;
    let raw = BTreeMap::<String, Value>::deserialize(deserializer)?;
    let mut tables = BTreeMap::new();
    for (name, value) in raw {
        let source = match value {
            Value::String(path) => TableSource {
                path: Some(path),
                ..TableSource::default()
            },
            Value::Object(_) => TableSource::deserialize(value)
                .map_err(|err| D::Error::custom(format!("tables.{name}: {err}")))?,
            other => {
                return Err(D::Error::custom(format!(
                    "tables.{name} is {other}; use a path string or an object with `path` or `upstream`"
                )));
            }
        };
        tables.insert(name, source);
    }
    Ok(tables)
}

/// A table source with its path resolved and its settings checked.
#[derive(Debug)]
struct Resolved {
    path: String,
    format: TableFormat,
    /// Extension that DataFusion filters the listed files by.
    extension: String,
    has_header: bool,
    delimiter: u8,
    null_values: Vec<String>,
}

/// Names of the registered tables, for error messages about the query.
#[derive(Debug, Default)]
pub(crate) struct Registered {
    pub(crate) tables: Vec<String>,
    /// CSV tables read without `null_values`, where a marker such as `NA` turns a numeric
    /// column into text.
    pub(crate) csv_without_nulls: Vec<String>,
}

impl Registered {
    /// Builds a hint for errors that mention text values, which usually come from a numeric
    /// CSV column read as text because of a null marker.
    pub(crate) fn text_hint(&self, message: &str) -> String {
        if self.csv_without_nulls.is_empty()
            || !(message.contains("Utf8") || message.contains("cast string"))
        {
            return String::new();
        }
        format!(
            "; if a numeric column of {} contains a missing-value marker such as NA, the column is read as text, so list the marker in that table's `null_values`",
            self.csv_without_nulls.join(", ")
        )
    }
}

/// Registers every table with `ctx` under its own name.
pub(crate) async fn register_tables(
    ctx: &SessionContext,
    tables: &BTreeMap<String, TableSource>,
    upstream: &HashMap<String, Value>,
) -> Result<Registered, TaskError> {
    let mut registered = Registered::default();
    for (name, source) in tables {
        check_table_name(name)?;
        let resolved = resolve(name, source, upstream).await?;
        register(ctx, name, &resolved)
            .await
            .map_err(|err| registration_error(name, &resolved, &err))?;
        registered.tables.push(name.clone());
        if resolved.format == TableFormat::Csv && resolved.null_values.is_empty() {
            registered.csv_without_nulls.push(name.clone());
        }
    }
    Ok(registered)
}

fn check_table_name(name: &str) -> Result<(), TaskError> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        // SQL folds unquoted names to lower case, so any other name could only be reached
        // with quotes.
        Err(TaskError::permanent(format!(
            "sql.query table name `{name}` is not a plain SQL name; use lower-case letters, digits and `_`, starting with a letter, such as `flights_2013`"
        )))
    }
}

async fn resolve(
    name: &str,
    source: &TableSource,
    upstream: &HashMap<String, Value>,
) -> Result<Resolved, TaskError> {
    let (path, from_upstream) = match (&source.path, &source.upstream) {
        (Some(path), None) => (path.clone(), false),
        (None, Some(node)) => (upstream_path(name, node, upstream)?, true),
        (Some(_), Some(_)) => {
            return Err(TaskError::permanent(format!(
                "sql.query table `{name}` has both `path` and `upstream`; keep one of them"
            )));
        }
        (None, None) => {
            return Err(TaskError::permanent(format!(
                "sql.query table `{name}` has neither `path` nor `upstream`; give a file path or the name of an upstream node"
            )));
        }
    };
    if path.is_empty() {
        return Err(TaskError::permanent(format!(
            "sql.query table `{name}` has an empty path; give the path of a CSV or Parquet file"
        )));
    }

    let metadata = tokio::fs::metadata(&path).await.map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            TaskError::permanent(format!(
                "sql.query table `{name}`: file `{path}` not found{}; check the path",
                working_directory_note(&path)
            ))
        } else {
            io_error("read", &path, &err)
        }
    })?;

    let format = match source.format.or_else(|| TableFormat::from_path(&path)) {
        Some(format) => format,
        None if from_upstream => TableFormat::Parquet,
        None => {
            return Err(TaskError::permanent(format!(
                "sql.query cannot infer the format of table `{name}` from `{path}`; add \"format\": \"csv\" or \"format\": \"parquet\""
            )));
        }
    };

    let extension = if metadata.is_dir() {
        format!(".{}", format.name())
    } else {
        // DataFusion skips files whose name does not end in the extension it is given,
        // even a file named directly, so a file is given its own extension.
        Path::new(&path)
            .extension()
            .and_then(|extension| extension.to_str())
            .map_or_else(String::new, |extension| format!(".{extension}"))
    };

    let csv_only = [
        ("has_header", source.has_header.is_some()),
        ("delimiter", source.delimiter.is_some()),
        ("null_values", source.null_values.is_some()),
    ];
    if format == TableFormat::Parquet
        && let Some((setting, _)) = csv_only.iter().find(|(_, given)| *given)
    {
        return Err(TaskError::permanent(format!(
            "sql.query table `{name}` is Parquet, but `{setting}` only applies to CSV; remove it"
        )));
    }

    let delimiter = match source.delimiter {
        None => b',',
        Some(c) if c.is_ascii() && c != '\n' && c != '\r' && c != '"' => c as u8,
        Some(c) => {
            return Err(TaskError::permanent(format!(
                "sql.query table `{name}` has delimiter {c:?}; use one ASCII character other than a quote or line break, such as \",\" or \"\\t\""
            )));
        }
    };

    Ok(Resolved {
        path,
        format,
        extension,
        has_header: source.has_header.unwrap_or(true),
        delimiter,
        null_values: source.null_values.clone().unwrap_or_default(),
    })
}

fn upstream_path(
    name: &str,
    node: &str,
    upstream: &HashMap<String, Value>,
) -> Result<String, TaskError> {
    let Some(output) = upstream.get(node) else {
        let mut names: Vec<&str> = upstream.keys().map(String::as_str).collect();
        names.sort_unstable();
        return Err(TaskError::permanent(format!(
            "sql.query table `{name}` reads upstream node `{node}`, which this task does not depend on; add `{node}` to its depends_on (upstream nodes: [{}])",
            names.join(", ")
        )));
    };
    match output.get("path") {
        Some(Value::String(path)) => Ok(path.clone()),
        _ => Err(TaskError::permanent(format!(
            "sql.query table `{name}` reads upstream node `{node}`, but its output has no `path` string; read from a node that writes a file, such as a sql.query with `output`"
        ))),
    }
}

fn working_directory_note(path: &str) -> String {
    if Path::new(path).is_absolute() {
        return String::new();
    }
    match std::env::current_dir() {
        Ok(dir) => format!(" (relative to the worker's directory `{}`)", dir.display()),
        Err(_) => String::new(),
    }
}

async fn register(
    ctx: &SessionContext,
    name: &str,
    table: &Resolved,
) -> Result<(), DataFusionError> {
    let reference = TableReference::bare(name);
    match table.format {
        TableFormat::Parquet => {
            let options = ParquetReadOptions::default().file_extension(&table.extension);
            ctx.register_parquet(reference, &table.path, options).await
        }
        TableFormat::Csv => {
            let options = CsvReadOptions::new()
                .has_header(table.has_header)
                .delimiter(table.delimiter)
                .file_extension(&table.extension);
            if table.null_values.is_empty() {
                ctx.register_csv(reference, &table.path, options).await
            } else {
                register_csv_with_nulls(ctx, reference, table, options).await
            }
        }
    }
}

/// Registers a CSV table whose null markers become nulls.
///
/// DataFusion 55.2 applies `null_regex` when it infers a CSV schema, but `CsvSource::builder`
/// never passes it to the reader. A numeric column containing `NA` is therefore typed as a
/// number and then fails to parse. This function reads every column as text instead, and a
/// view turns the markers into nulls and casts each column to the type inferred with the regex.
///
/// NOTE: once DataFusion applies `null_regex` when reading, `CsvReadOptions::null_regex`
/// alone can replace this view.
async fn register_csv_with_nulls(
    ctx: &SessionContext,
    reference: TableReference,
    table: &Resolved,
    options: CsvReadOptions<'_>,
) -> Result<(), DataFusionError> {
    let mut markers = table.null_values.clone();
    markers.push(String::new());
    let null_regex = markers
        .iter()
        .map(|marker| escape_regex(marker))
        .collect::<Vec<_>>()
        .join("|");
    let inferred = ctx
        .read_csv(
            table.path.as_str(),
            options
                .clone()
                .null_regex(Some(format!("^(?:{null_regex})$"))),
        )
        .await?;
    let typed = inferred.schema().as_arrow().clone();

    let text = Schema::new(
        typed
            .fields()
            .iter()
            .map(|field| Field::new(field.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let raw = ctx
        .read_csv(table.path.as_str(), options.schema(&text))
        .await?;

    let markers: Vec<Expr> = table
        .null_values
        .iter()
        .map(|marker| lit(marker.as_str()))
        .collect();
    let mut columns = Vec::with_capacity(typed.fields().len());
    for field in typed.fields() {
        // Schema inference reads the first 1000 rows (DataFusion 55's default), and a column
        // without values there is inferred as Null. Text cannot be cast to Null, so such a
        // column stays text.
        // NOTE: values of that column after the first 1000 rows arrive as text, so a query
        // has to cast them.
        let data_type = match field.data_type() {
            DataType::Null => DataType::Utf8,
            other => other.clone(),
        };
        let column = ident(field.name());
        let nulled = when(
            column.clone().in_list(markers.clone(), false),
            lit(ScalarValue::Utf8(None)),
        )
        .otherwise(column)?;
        columns.push(cast(nulled, data_type).alias(field.name()));
    }
    let view = raw.select(columns)?.into_view();
    ctx.register_table(reference, view)?;
    Ok(())
}

/// Escapes the characters that have a meaning in a regular expression, so each null marker
/// matches only itself.
fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn registration_error(name: &str, table: &Resolved, err: &DataFusionError) -> TaskError {
    task_error(
        cause_kind(err),
        format!(
            "sql.query failed to read table `{name}` from `{}` as {}: {}",
            table.path,
            table.format.name(),
            err.strip_backtrace()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_regex_characters() {
        assert_eq!(escape_regex("N/A"), "N/A");
        assert_eq!(escape_regex("n.a."), r"n\.a\.");
        assert_eq!(escape_regex("(none)"), r"\(none\)");
    }

    #[test]
    fn formats_come_from_extensions() {
        assert_eq!(TableFormat::from_path("a/b.CSV"), Some(TableFormat::Csv));
        assert_eq!(
            TableFormat::from_path("b.parquet"),
            Some(TableFormat::Parquet)
        );
        assert_eq!(TableFormat::from_path("b.txt"), None);
        assert_eq!(TableFormat::from_path("b"), None);
    }

    #[test]
    fn table_names_must_be_plain_sql_names() {
        assert!(check_table_name("flights_2013").is_ok());
        assert!(check_table_name("_t").is_ok());
        for bad in ["Flights", "2013", "my-table", ""] {
            let err = check_table_name(bad).expect_err(bad);
            assert!(!err.is_retryable());
            assert!(err.message.contains(&format!("`{bad}`")), "{}", err.message);
        }
    }
}
