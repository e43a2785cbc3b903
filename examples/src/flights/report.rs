//! The yearly reports that combine the month statistics, and their summary.

use std::collections::BTreeSet;

use caraml_engine::TaskError;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde::{Deserialize, Serialize};

use super::errors::{query_error, require_file, utf8_path};
use super::locations::{DATA_DIR_FIX, Locations};
use super::monthly::{BY_CARRIER, BY_ORIGIN, Grouping, MonthOutput, STATISTICS};
use super::schemas;
use super::tables::{
    TableOutput, collect, float_column, integer_column, read_csv, register_parquet, session,
    text_column, write_parquet,
};

/// How many carriers the summary lists.
const WORST_CARRIER_COUNT: usize = 3;

/// The report files and a summary of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportOutput {
    /// `reports/carrier_delays.parquet`: one row per month and carrier, with the carrier's
    /// full name in `carrier_name`.
    pub carrier_report: TableOutput,
    /// `reports/airport_delays.parquet`: one row per month and origin airport, with the
    /// airport's name in `airport_name`.
    pub airport_report: TableOutput,
    /// Months covered, in order.
    pub months: Vec<u8>,
    /// Flights in those months, cancelled ones included.
    pub total_flights: u64,
    /// The carriers with the highest mean arrival delay over those months, worst first.
    pub worst_carriers: Vec<CarrierDelay>,
}

/// A carrier's mean arrival delay over the months of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarrierDelay {
    pub carrier: String,
    /// Full name from `airlines.csv`, absent for a code that file does not list.
    pub name: Option<String>,
    pub mean_arr_delay_minutes: f64,
    /// Flights with a known arrival delay, which the mean is over.
    pub arr_delay_flights: u64,
}

/// A report: the grouping of its month files, the name table to join and its file name.
struct ReportKind {
    grouping: Grouping,
    names_table: &'static str,
    names_key: &'static str,
    name_column: &'static str,
    file_name: &'static str,
}

const CARRIER_REPORT: ReportKind = ReportKind {
    grouping: BY_CARRIER,
    names_table: "airlines",
    names_key: "carrier",
    name_column: "carrier_name",
    file_name: "carrier_delays.parquet",
};

const AIRPORT_REPORT: ReportKind = ReportKind {
    grouping: BY_ORIGIN,
    names_table: "airports",
    names_key: "faa",
    name_column: "airport_name",
    file_name: "airport_delays.parquet",
};

/// Combines the month files of `months` into the carrier and airport reports, adds the
/// carrier and airport names from `airlines.csv` and `airports.csv`, and summarizes the
/// carrier report.
pub async fn build_report(
    months: &[MonthOutput],
    locations: &Locations,
) -> Result<ReportOutput, TaskError> {
    let month_numbers = check_months(months)?;
    let ctx = session();
    register_names(&ctx, locations).await?;

    let carrier_files: Vec<&TableOutput> = months.iter().map(|month| &month.carriers).collect();
    let carrier_report = write_report(&ctx, &CARRIER_REPORT, &carrier_files, locations).await?;
    let airport_files: Vec<&TableOutput> = months.iter().map(|month| &month.airports).collect();
    let airport_report = write_report(&ctx, &AIRPORT_REPORT, &airport_files, locations).await?;

    register_parquet(&ctx, "carrier_report", &carrier_report.path).await?;
    let total_flights = total_flights(&ctx).await?;
    let worst_carriers = worst_carriers(&ctx).await?;
    Ok(ReportOutput {
        carrier_report,
        airport_report,
        months: month_numbers,
        total_flights,
        worst_carriers,
    })
}

/// Rejects an empty or repeated month, either of which would make the report wrong.
fn check_months(months: &[MonthOutput]) -> Result<Vec<u8>, TaskError> {
    if months.is_empty() {
        return Err(TaskError::permanent(
            "the report has no month statistics to combine; make the report node depend on the month nodes",
        ));
    }
    let mut seen = BTreeSet::new();
    for month in months {
        if !seen.insert(month.month) {
            return Err(TaskError::permanent(format!(
                "month {} appears more than once among the report's inputs; give each month one node",
                month.month
            )));
        }
    }
    Ok(seen.into_iter().collect())
}

async fn register_names(ctx: &SessionContext, locations: &Locations) -> Result<(), TaskError> {
    let tables = [
        ("airlines", locations.airlines_csv(), schemas::airlines()),
        ("airports", locations.airports_csv(), schemas::airports()),
    ];
    for (name, path, schema) in tables {
        require_file(&path, &format!("{name} file"), DATA_DIR_FIX).await?;
        let df = read_csv(ctx, &path, &schema).await?;
        ctx.register_table(name, df.into_view())
            .map_err(|err| query_error(&format!("register table `{name}`"), err))?;
    }
    Ok(())
}

async fn write_report(
    ctx: &SessionContext,
    report: &ReportKind,
    files: &[&TableOutput],
    locations: &Locations,
) -> Result<TableOutput, TaskError> {
    let mut paths = Vec::with_capacity(files.len());
    for file in files {
        require_file(
            &file.path,
            "month statistics file",
            "the month task that wrote it must run again, so start a new run of the workflow",
        )
        .await?;
        paths.push(utf8_path(&file.path)?);
    }
    let key = report.grouping.key;
    let action = format!("combine the month statistics by {key}");
    let months = ctx
        .read_parquet(paths, ParquetReadOptions::default())
        .await
        .map_err(|err| query_error(&action, err))?;
    let months_table = format!("{key}_months");
    ctx.register_table(months_table.as_str(), months.into_view())
        .map_err(|err| query_error(&action, err))?;

    let statistics: Vec<String> = STATISTICS
        .iter()
        .map(|(name, _)| format!("m.{name}"))
        .collect();
    let sql = format!(
        "SELECT m.month, m.{key}, n.name AS {name_column}, {statistics}
         FROM {months_table} m
         LEFT JOIN {names_table} n ON m.{key} = n.{names_key}
         ORDER BY m.month, m.{key}",
        name_column = report.name_column,
        statistics = statistics.join(", "),
        names_table = report.names_table,
        names_key = report.names_key,
    );
    let df = ctx
        .sql(&sql)
        .await
        .map_err(|err| query_error(&action, err))?;
    write_parquet(df, &locations.reports_dir().join(report.file_name)).await
}

async fn total_flights(ctx: &SessionContext) -> Result<u64, TaskError> {
    let action = "sum the flights of the carrier report";
    let df = ctx
        .sql("SELECT sum(flights) AS total FROM carrier_report")
        .await
        .map_err(|err| query_error(action, err))?;
    let mut total = 0_i64;
    for batch in collect(df, action).await? {
        total += integer_column(&batch, "total")?
            .into_iter()
            .flatten()
            .sum::<i64>();
    }
    u64::try_from(total).map_err(|_| {
        TaskError::permanent(format!(
            "the carrier report sums to {total} flights, below zero"
        ))
    })
}

async fn worst_carriers(ctx: &SessionContext) -> Result<Vec<CarrierDelay>, TaskError> {
    let action = "rank the carriers by mean arrival delay";
    // The yearly mean is the mean of the month means weighted by the flights each is over.
    let sql = format!(
        "SELECT carrier, carrier_name,
                sum(arr_delay_flights) AS arr_delay_flights,
                sum(mean_arr_delay_minutes * arr_delay_flights) / sum(arr_delay_flights)
                    AS mean_arr_delay_minutes
         FROM carrier_report
         GROUP BY carrier, carrier_name
         HAVING sum(arr_delay_flights) > 0
         ORDER BY mean_arr_delay_minutes DESC, carrier
         LIMIT {WORST_CARRIER_COUNT}"
    );
    let df = ctx
        .sql(&sql)
        .await
        .map_err(|err| query_error(action, err))?;

    let mut carriers = Vec::with_capacity(WORST_CARRIER_COUNT);
    for batch in collect(df, action).await? {
        let codes = text_column(&batch, "carrier")?;
        let names = text_column(&batch, "carrier_name")?;
        let counts = integer_column(&batch, "arr_delay_flights")?;
        let means = float_column(&batch, "mean_arr_delay_minutes")?;
        for (((code, name), count), mean) in codes.into_iter().zip(names).zip(counts).zip(means) {
            // The query groups by a non-NULL carrier and keeps only groups with a positive
            // count, so a NULL or negative value here means the month files are corrupt.
            let (Some(carrier), Some(count), Some(mean)) = (code, count, mean) else {
                return Err(TaskError::permanent(
                    "the carrier ranking returned a NULL carrier, count or mean; rebuild the month statistics with a new run",
                ));
            };
            let arr_delay_flights = u64::try_from(count).map_err(|_| {
                TaskError::permanent(format!(
                    "carrier {carrier} has {count} flights with an arrival delay, below zero; rebuild the month statistics with a new run"
                ))
            })?;
            carriers.push(CarrierDelay {
                carrier,
                name,
                mean_arr_delay_minutes: mean,
                arr_delay_flights,
            });
        }
    }
    Ok(carriers)
}
