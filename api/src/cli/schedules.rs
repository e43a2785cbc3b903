//! `caraml schedule ...`: cron schedules through the HTTP API.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::ClientArgs;
use super::client::{Api, parse_input, pretty, print_call, print_post, segment};

#[derive(Debug, Subcommand)]
pub(super) enum ScheduleCommand {
    /// Create a schedule that runs a registered workflow on each tick of a cron expression.
    Create {
        /// Unique name of the schedule.
        name: String,
        /// Cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6
        /// with seconds first.
        #[arg(long)]
        cron: String,
        /// Registered workflow each tick runs.
        #[arg(long)]
        workflow: String,
        /// IANA time zone the cron fields are read in, such as Europe/Berlin.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Input of each run, as JSON.
        #[arg(long)]
        input: Option<String>,
        /// Ticks that passed while no scheduler ran: `skip` starts no run for them,
        /// `run_once` starts one run for all of them.
        #[arg(long, default_value = "skip", value_parser = ["skip", "run_once"])]
        missed: String,
        /// Create the schedule paused.
        #[arg(long)]
        paused: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List schedules by name.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a schedule.
    Get {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pause a schedule: it starts no runs until resumed.
    Pause {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume a paused schedule from its next tick; ticks that passed while paused start no runs.
    Resume {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a schedule; the runs it started are kept.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) async fn run(command: ScheduleCommand) -> Result<ExitCode, String> {
    match command {
        ScheduleCommand::Create {
            name,
            cron,
            workflow,
            timezone,
            input,
            missed,
            paused,
            client,
        } => {
            let body = json!({
                "name": name,
                "cron": cron,
                "workflow": workflow,
                "timezone": timezone,
                "input": parse_input(input)?,
                "missed": missed,
                "paused": paused,
            });
            let api = Api::new(&client)?;
            let created = api.call(Method::POST, "/v1/schedules", Some(body)).await?;
            say!("{}", pretty(&created));
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::List { client } => {
            let api = Api::new(&client)?;
            let page = api.call(Method::GET, "/v1/schedules", None).await?;
            for schedule in page["schedules"].as_array().into_iter().flatten() {
                print_line(schedule);
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Get { name, client } => {
            print_call(&client, Method::GET, &schedule_path(&name, "")).await
        }
        ScheduleCommand::Pause { name, client } => {
            print_post(&client, &schedule_path(&name, "/pause")).await
        }
        ScheduleCommand::Resume { name, client } => {
            print_post(&client, &schedule_path(&name, "/resume")).await
        }
        ScheduleCommand::Delete { name, client } => {
            print_call(&client, Method::DELETE, &schedule_path(&name, "")).await
        }
    }
}

fn schedule_path(name: &str, action: &str) -> String {
    format!("/v1/schedules/{}{action}", segment(name))
}

/// Prints one schedule of `caraml schedule list`, with its last error on a line of its own.
fn print_line(schedule: &Value) {
    let text = |key: &str| schedule[key].as_str().unwrap_or("-").to_owned();
    let state = if schedule["paused"].as_bool() == Some(true) {
        "paused"
    } else {
        "active"
    };
    say!(
        "{:<24} {:<7} {:<20} {:<16} {:<24} missed={:<9} next {}  last run {}",
        text("name"),
        state,
        text("cron"),
        text("timezone"),
        text("workflow"),
        text("missed"),
        text("next_tick_at"),
        text("last_run_id"),
    );
    if let Some(error) = schedule["last_error"].as_str() {
        say!("  last error: {error}");
    }
}
