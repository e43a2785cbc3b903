//! Retention of finished runs: how long a finished run is kept, and the background loop that
//! deletes older runs with their task runs, events and task logs.
//!
//! Every worker and API process runs the loop, once per [`RetentionOptions::interval`]. A
//! sweep deletes in batches of bounded size, one statement each, and pauses between
//! batches so that claims and completions keep their share of the database. A transaction
//! advisory lock lets one process sweep at a time, and `FOR UPDATE SKIP LOCKED` on the run
//! rows keeps two sweeps (or a sweep and a retry) from touching the same run.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::store::Store;

/// Age after which finished runs are deleted, unless a workflow sets its own: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// Maximum retention: 36,500 days, about 100 years. The bound keeps the cutoff, now minus
/// the age, inside PostgreSQL's timestamp range; use `off` to keep runs forever instead.
pub const MAX_RETENTION: Duration = Duration::from_secs(36_500 * 86_400);

/// Key of the advisory lock that a sweeping process takes during each batch: the ASCII
/// bytes of `caraml:r`. A session that holds it with `pg_advisory_lock` pauses every sweep
/// of that database. Advisory locks are scoped to a database, so databases on one server
/// sweep independently.
pub const SWEEP_LOCK_KEY: i64 = 0x6361_7261_6d6c_3a72;

/// Units accepted in durations, largest first, as (suffix, seconds).
const UNITS: [(char, u64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Settings of the retention sweep.
#[derive(Debug, Clone)]
pub struct RetentionOptions {
    /// Age after which a finished run is deleted when its workflow sets no retention of its
    /// own; `None` keeps such runs. Workflows with their own retention follow it either way.
    pub default: Option<Duration>,
    /// How often the background loop sweeps. The default, one minute, costs an idle process
    /// one statement a minute.
    pub interval: Duration,
    /// Maximum runs deleted in one transaction.
    pub batch_runs: u32,
    /// Maximum task runs deleted in one transaction. A run with more tasks than this is
    /// deleted alone in its batch.
    pub batch_tasks: u32,
    /// Shortest pause between two batches of one sweep. The pause is at least as long as
    /// the batch before it took, so a sweep keeps the database at most half busy.
    pub pause: Duration,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        Self {
            default: Some(DEFAULT_RETENTION),
            interval: Duration::from_secs(60),
            batch_runs: 1_000,
            batch_tasks: 20_000,
            pause: Duration::from_millis(100),
        }
    }
}

/// Retention a workflow may set for its own finished runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowRetention {
    /// Follow the default of the process that sweeps.
    Default,
    /// Delete finished runs once they are this old.
    After(Duration),
    /// Keep finished runs forever.
    Forever,
}

impl WorkflowRetention {
    /// Parses a retention as the API and command line accept it: a duration such as `30d`,
    /// `off` or `0` for forever, and no value (or `default`) for the process default.
    pub fn parse(text: Option<&str>) -> Result<Self> {
        match text.map(str::trim) {
            None => Ok(Self::Default),
            Some(text) if text.eq_ignore_ascii_case("default") => Ok(Self::Default),
            Some(text) => Ok(match parse_retention("retention", text)? {
                Some(age) => Self::After(age),
                None => Self::Forever,
            }),
        }
    }

    /// Formats the retention as [`WorkflowRetention::parse`] reads it; `None` for the default.
    pub fn to_text(self) -> Option<String> {
        match self {
            Self::Default => None,
            Self::After(age) => Some(format_duration(age)),
            Self::Forever => Some("off".to_owned()),
        }
    }
}

/// Counts of what a sweep deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepOutcome {
    pub runs: u64,
    pub tasks: u64,
    pub events: u64,
    /// Task log lines.
    pub logs: u64,
    /// Batches that deleted at least one run.
    pub batches: u32,
    /// Whether the sweep stopped because another process was sweeping the same database.
    pub contended: bool,
}

impl SweepOutcome {
    pub(crate) fn add(&mut self, batch: &SweepOutcome) {
        self.runs += batch.runs;
        self.tasks += batch.tasks;
        self.events += batch.events;
        self.logs += batch.logs;
        self.batches += batch.batches;
        self.contended |= batch.contended;
    }
}

/// Parses a duration: whole numbers with a unit of `s`, `m`, `h`, `d` or `w`, such as `12h`
/// or `7d`, or a sum of them such as `1d12h`. `what` names the value in the error.
pub fn parse_duration(what: &str, text: &str) -> Result<Duration> {
    let invalid = |reason: &str| {
        Error::InvalidInput(format!(
            "{what} `{}` is not a valid duration ({reason}); write whole numbers with a unit of s, m, h, d or w, such as `12h`, `7d` or `1d12h`",
            text.escape_debug()
        ))
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let mut seconds: u64 = 0;
    let mut digits = String::new();
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(&(_, unit)) = UNITS.iter().find(|(suffix, _)| *suffix == c) else {
            return Err(invalid(&format!("`{}` is not a unit", c.escape_debug())));
        };
        if digits.is_empty() {
            return Err(invalid(&format!("no number before `{c}`")));
        }
        let amount = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .and_then(|s| seconds.checked_add(s));
        seconds = amount.ok_or_else(|| invalid("the number is too large"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(invalid(&format!("`{digits}` has no unit")));
    }
    if seconds > MAX_RETENTION.as_secs() {
        return Err(Error::InvalidInput(format!(
            "{what} `{}` is longer than the maximum of {}; use a shorter duration, or `off` to keep runs forever",
            text.escape_debug(),
            format_duration(MAX_RETENTION)
        )));
    }
    Ok(Duration::from_secs(seconds))
}

/// Parses a retention age: a duration, or `off` or `0` for none.
pub fn parse_retention(what: &str, text: &str) -> Result<Option<Duration>> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("off") || trimmed == "0" {
        return Ok(None);
    }
    let age = parse_duration(what, trimmed)?;
    Ok((!age.is_zero()).then_some(age))
}

/// Formats whole seconds in the largest unit that divides them, such as `7d` or `90m`.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds == 0 {
        return "0s".to_owned();
    }
    // Days read better than weeks in listings, so weeks are only parsed.
    let (suffix, unit) = UNITS[1..]
        .iter()
        .copied()
        .find(|(_, unit)| seconds.is_multiple_of(*unit))
        .unwrap_or(('s', 1));
    format!("{}{suffix}", seconds / unit)
}

/// Sweeps once per interval until `stop` is cancelled. Workers run this loop themselves; a
/// process that runs only the API runs it with this function.
pub async fn run(store: Store, options: RetentionOptions, stop: CancellationToken) {
    // Start at a random point of the interval, so that processes started together spread
    // their sweeps over it.
    let offset = options.interval.mul_f64(fastrand::f64());
    tokio::select! {
        () = tokio::time::sleep(offset) => {}
        () = stop.cancelled() => return,
    }
    let mut interval = tokio::time::interval(options.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        let started = std::time::Instant::now();
        let swept = tokio::select! {
            swept = store.sweep_expired_runs(&options, Utc::now()) => swept,
            () = stop.cancelled() => return,
        };
        match swept {
            Ok(outcome) if outcome.runs > 0 => tracing::info!(
                runs = outcome.runs,
                tasks = outcome.tasks,
                events = outcome.events,
                logs = outcome.logs,
                batches = outcome.batches,
                took_ms = started.elapsed().as_millis() as u64,
                "deleted finished runs past their retention"
            ),
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "retention sweep failed; retrying at the next interval")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let cases = [
            ("90s", 90),
            ("30m", 1_800),
            ("12h", 43_200),
            ("7d", 604_800),
            ("2w", 1_209_600),
            ("1d12h", 129_600),
            (" 7d ", 604_800),
        ];
        for (text, seconds) in cases {
            let parsed = parse_duration("age", text);
            assert_eq!(
                parsed.ok(),
                Some(Duration::from_secs(seconds)),
                "`{text}` is {seconds} s"
            );
        }
    }

    #[test]
    fn invalid_durations_name_value() {
        for text in [
            "",
            "7",
            "d",
            "7x",
            "-1d",
            "1.5d",
            "7 d",
            "99999999999999999999d",
        ] {
            let err = parse_duration("--retention", text)
                .err()
                .unwrap_or_else(|| panic!("`{text}` is rejected"));
            let message = err.to_string();
            assert!(
                message.contains("--retention"),
                "the error names the option: {message}"
            );
            assert!(
                message.contains(&format!("`{}`", text.escape_debug())),
                "the error quotes the value: {message}"
            );
        }
    }

    #[test]
    fn retention_off_and_bounds() {
        assert_eq!(parse_retention("r", "off").ok(), Some(None));
        assert_eq!(parse_retention("r", "OFF").ok(), Some(None));
        assert_eq!(parse_retention("r", "0").ok(), Some(None));
        assert_eq!(parse_retention("r", "0d").ok(), Some(None));
        assert!(parse_retention("r", "36501d").is_err(), "past the maximum");
        assert!(parse_retention("r", "36500d").is_ok(), "the maximum itself");
    }

    #[test]
    fn durations_format_in_largest_unit() {
        assert_eq!(format_duration(Duration::from_secs(604_800)), "7d");
        assert_eq!(format_duration(Duration::from_secs(5_400)), "90m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(43_200)), "12h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn workflow_retention_round_trips() {
        for text in ["30d", "off", "12h"] {
            let parsed = WorkflowRetention::parse(Some(text)).ok();
            assert_eq!(
                parsed.and_then(WorkflowRetention::to_text).as_deref(),
                Some(text)
            );
        }
        assert_eq!(
            WorkflowRetention::parse(None).ok(),
            Some(WorkflowRetention::Default)
        );
        assert_eq!(
            WorkflowRetention::parse(Some("default")).ok(),
            Some(WorkflowRetention::Default)
        );
        assert_eq!(
            WorkflowRetention::parse(Some("0")).ok(),
            Some(WorkflowRetention::Forever)
        );
    }
}
