//! Formatting of times, durations and long values for the pages.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::http::ApiError;

/// Formats a time as `2026-12-05 10:00:03` in UTC.
pub(super) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Formats an optional time, with a dash for none.
pub(super) fn maybe_time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "–".to_owned(), time)
}

/// Formats the time from `start` to `end`, or to `now` while `end` is unknown.
pub(super) fn duration(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    let Some(start) = start else {
        return "–".to_owned();
    };
    let millis = (end.unwrap_or(now) - start).num_milliseconds().max(0);
    human_millis(millis)
}

/// Formats milliseconds as `850 ms`, `12.3 s`, `4 m 05 s`, `2 h 03 m` or `3 d 04 h`.
pub(super) fn human_millis(millis: i64) -> String {
    let seconds = millis / 1000;
    match millis {
        0..1_000 => format!("{millis} ms"),
        1_000..60_000 => format!("{:.1} s", millis as f64 / 1000.0),
        60_000..3_600_000 => format!("{} m {:02} s", seconds / 60, seconds % 60),
        3_600_000..86_400_000 => format!("{} h {:02} m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {:02} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// Cuts `text` to at most `max_chars` characters. The flag is true when it was cut.
pub(super) fn shorten(text: &str, max_chars: usize) -> (String, bool) {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => (format!("{}…", &text[..end]), true),
        None => (text.to_owned(), false),
    }
}

/// Parses a time from a filter field: RFC 3339, or the `YYYY-MM-DDTHH:MM[:SS]` of a
/// `datetime-local` input, read as UTC.
pub(super) fn parse_time_input(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    for pattern in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, pattern) {
            return Ok(time.and_utc());
        }
    }
    Err(ApiError::BadRequest(format!(
        "{name} is {}, which is not a time; use 2026-12-05T10:00 (UTC) or an RFC 3339 time",
        crate::http::quoted(text)
    )))
}

/// Formats a time for a `datetime-local` input.
pub(super) fn time_input(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_readable_units() {
        let cases = [
            (0, "0 ms"),
            (850, "850 ms"),
            (12_345, "12.3 s"),
            (245_000, "4 m 05 s"),
            (7_380_000, "2 h 03 m"),
            (273_600_000, "3 d 04 h"),
        ];
        for (millis, expected) in cases {
            assert_eq!(human_millis(millis), expected, "{millis} ms");
        }
    }

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("héllo", 10), ("héllo".to_owned(), false));
        assert_eq!(shorten("héllo", 2), ("hé…".to_owned(), true));
    }

    #[test]
    fn time_inputs_accept_both_forms() {
        let local = parse_time_input("from", "2026-12-05T10:00").expect("datetime-local");
        let rfc = parse_time_input("from", "2026-12-05T10:00:00Z").expect("RFC 3339");
        assert_eq!(local, rfc);
        let message = match parse_time_input("from", "yesterday") {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("expected a 400, got {other:?}"),
        };
        assert!(message.contains("\"yesterday\""), "{message}");
    }
}
