//! Cron expressions evaluated in a time zone.

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::error::{Error, Result};

/// Example expressions quoted by error messages.
const CRON_HINT: &str = "use 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, such as `*/15 * * * *` or `*/10 * * * * *`";

/// A parsed cron expression and the time zone its fields are read in.
#[derive(Debug, Clone)]
pub(crate) struct CronSchedule {
    cron: Cron,
    timezone: Tz,
}

impl CronSchedule {
    /// Parses a cron expression of 5 fields, or 6 with seconds first, and an IANA time zone.
    pub(crate) fn parse(expression: &str, timezone: &str) -> Result<Self> {
        let timezone: Tz = timezone.parse().map_err(|_| {
            Error::InvalidInput(format!(
                "time zone `{}` is unknown; use an IANA time zone name such as `UTC`, `Europe/Berlin` or `America/New_York`",
                timezone.escape_debug()
            ))
        })?;

        let trimmed = expression.trim();
        let fields = trimmed.split_whitespace().count();
        // Aliases such as `@daily` are one field and parse below.
        if !trimmed.starts_with('@') && fields != 5 && fields != 6 {
            return Err(Error::InvalidInput(format!(
                "cron expression `{}` has {fields} fields; {CRON_HINT}",
                expression.escape_debug()
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(trimmed)
            .map_err(|err| {
                Error::InvalidInput(format!(
                    "cron expression `{}` is invalid ({err}); {CRON_HINT}",
                    expression.escape_debug()
                ))
            })?;
        Ok(Self { cron, timezone })
    }

    /// Returns the first tick strictly after `after`, or `None` when the expression matches
    /// no later time, such as `0 0 30 2 *` (February 30).
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Ticks fall on whole seconds, so the next one after a fractional time is also the
        // next one after the second it falls in.
        let start = after.trunc_subsecs(0).with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }

    /// Returns the last tick at or before `at`.
    pub(crate) fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = at.trunc_subsecs(0).with_timezone(&self.timezone);
        self.cron
            .find_previous_occurrence(&start, true)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::at;

    fn message(result: Result<CronSchedule>) -> String {
        match result {
            Err(Error::InvalidInput(message)) => message,
            other => panic!("expected an invalid input error, got {other:?}"),
        }
    }

    #[test]
    fn five_fields_tick_each_minute_at_second_zero() {
        let cron = CronSchedule::parse("* * * * *", "UTC").expect("valid");
        assert_eq!(
            cron.next_after(at("2031-01-01T00:00:30.250Z")),
            Some(at("2031-01-01T00:01:00Z"))
        );
    }

    #[test]
    fn six_fields_read_seconds_first() {
        let cron = CronSchedule::parse("*/10 * * * * *", "UTC").expect("valid");
        assert_eq!(
            cron.next_after(at("2031-01-01T00:00:10Z")),
            Some(at("2031-01-01T00:00:20Z")),
            "the next tick is strictly after the given time"
        );
        assert_eq!(
            cron.last_at_or_before(at("2031-01-01T00:00:29.900Z")),
            Some(at("2031-01-01T00:00:20Z"))
        );
        assert_eq!(
            cron.last_at_or_before(at("2031-01-01T00:00:20Z")),
            Some(at("2031-01-01T00:00:20Z")),
            "a tick at the given time counts"
        );
    }

    #[test]
    fn fields_read_in_the_time_zone() {
        let cron = CronSchedule::parse("0 9 * * *", "Europe/Berlin").expect("valid");
        assert_eq!(
            cron.next_after(at("2031-01-15T00:00:00Z")),
            Some(at("2031-01-15T08:00:00Z")),
            "09:00 in Berlin is 08:00 UTC in winter"
        );
        assert_eq!(
            cron.next_after(at("2031-07-15T00:00:00Z")),
            Some(at("2031-07-15T07:00:00Z")),
            "09:00 in Berlin is 07:00 UTC in summer"
        );
    }

    #[test]
    fn daylight_saving_days_run_a_fixed_time_once() {
        // Berlin skips 02:00 to 03:00 on 2031-03-30: the 02:00 tick moves to the end of the
        // gap, 03:00 CEST.
        let spring = CronSchedule::parse("0 2 * * *", "Europe/Berlin").expect("valid");
        assert_eq!(
            spring.next_after(at("2031-03-29T12:00:00Z")),
            Some(at("2031-03-30T01:00:00Z"))
        );
        // Berlin repeats 02:00 to 03:00 on 2031-10-26: 02:30 runs at its first pass only.
        let autumn = CronSchedule::parse("30 2 * * *", "Europe/Berlin").expect("valid");
        let first = autumn
            .next_after(at("2031-10-25T12:00:00Z"))
            .expect("a tick");
        assert_eq!(first, at("2031-10-26T00:30:00Z"));
        assert_eq!(
            autumn.next_after(first),
            Some(at("2031-10-27T01:30:00Z")),
            "the repeated 02:30 does not run again"
        );
    }

    #[test]
    fn day_of_week_zero_is_sunday() {
        let cron = CronSchedule::parse("0 12 * * 0", "UTC").expect("valid");
        // 2031-01-01 is a Wednesday; the next Sunday is January 5.
        assert_eq!(
            cron.next_after(at("2031-01-01T00:00:00Z")),
            Some(at("2031-01-05T12:00:00Z"))
        );
    }

    #[test]
    fn impossible_date_has_no_tick() {
        let cron = CronSchedule::parse("0 0 30 2 *", "UTC").expect("parses");
        assert_eq!(cron.next_after(at("2031-01-01T00:00:00Z")), None);
    }

    #[test]
    fn invalid_expressions_name_the_value_and_the_fix() {
        let wrong_count = message(CronSchedule::parse("* * *", "UTC"));
        assert!(
            wrong_count.contains("`* * *` has 3 fields"),
            "{wrong_count}"
        );
        assert!(wrong_count.contains("use 5 fields"), "{wrong_count}");

        let seven = message(CronSchedule::parse("0 0 0 1 1 * 2031", "UTC"));
        assert!(seven.contains("has 7 fields"), "{seven}");

        let out_of_range = message(CronSchedule::parse("61 * * * *", "UTC"));
        assert!(
            out_of_range.contains("`61 * * * *` is invalid"),
            "{out_of_range}"
        );
        assert!(out_of_range.contains("such as"), "{out_of_range}");

        let zone = message(CronSchedule::parse("* * * * *", "Mars/Olympus"));
        assert!(zone.contains("`Mars/Olympus` is unknown"), "{zone}");
        assert!(zone.contains("Europe/Berlin"), "{zone}");
    }
}
