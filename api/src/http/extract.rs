//! Request extractors whose rejections are [`ApiError`]s: each names the offending parameter
//! or field, the value it got, and how to fix it, instead of the framework's default text.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde_json::Value;
use uuid::Uuid;

use super::ApiError;

/// An example run id for messages.
const EXAMPLE_RUN_ID: &str = "01934a6e-7b1c-7d2e-8f90-123456789abc";

/// Maximum number of characters of a client's value that a message repeats.
const MAX_QUOTED_CHARS: usize = 80;

/// Quotes a value from a request for a message, cut short when long.
pub(crate) fn quoted(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => format!("{:?}...", &value[..end]),
        None => format!("{value:?}"),
    }
}

/// Describes a JSON value for a message: scalars as written, containers by their type.
pub(crate) fn describe_json(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => quoted(text),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The run id in a request path.
pub(crate) struct RunId(pub(crate) Uuid);

impl<S: Send + Sync> FromRequestParts<S> for RunId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| match rejection {
                PathRejection::FailedToDeserializePathParams(_) => ApiError::BadRequest(format!(
                    "the run id in the path is not valid UTF-8 once percent-decoded; run ids are UUIDs such as {EXAMPLE_RUN_ID}"
                )),
                // Only a route without an `{id}` segment gets here, which is a bug of ours.
                other => ApiError::Internal(format!("run id path extraction failed: {other}")),
            })?;
        let id = text.parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "{} is not a run id; run ids are UUIDs such as {EXAMPLE_RUN_ID}",
                quoted(&text)
            ))
        })?;
        Ok(RunId(id))
    }
}

/// The query parameters of a request. A parameter given twice is rejected, because which of
/// the two values wins would otherwise be a guess.
#[derive(Debug)]
pub(crate) struct QueryParams {
    values: HashMap<String, String>,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        QueryParams::parse(parts.uri.query().unwrap_or_default())
    }
}

impl QueryParams {
    /// Decodes a query string. Bytes that are not UTF-8 once percent-decoded become U+FFFD,
    /// so decoding never fails, and the check of the parameter reports a garbled value.
    fn parse(query: &str) -> Result<Self, ApiError> {
        let mut values = HashMap::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if values.contains_key(name.as_ref()) {
                return Err(ApiError::BadRequest(format!(
                    "query parameter `{}` is given more than once; give it once",
                    name.escape_debug()
                )));
            }
            values.insert(name.into_owned(), value.into_owned());
        }
        Ok(Self { values })
    }

    /// Rejects parameters that `endpoint` does not take.
    pub(crate) fn allow_only(&self, endpoint: &str, names: &[&str]) -> Result<(), ApiError> {
        let mut unknown: Vec<&str> = self
            .values
            .keys()
            .map(String::as_str)
            .filter(|name| !names.contains(name))
            .collect();
        unknown.sort_unstable();
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        let takes = match names {
            [] => "it takes no query parameters".to_owned(),
            [only] => format!("it takes only `{only}`"),
            _ => format!("it takes {}", code_list(names)),
        };
        Err(ApiError::BadRequest(format!(
            "unknown query parameter `{}` for {endpoint}; {takes}",
            first.escape_debug()
        )))
    }

    /// Returns a text parameter, rejecting an empty value with `when_empty` as the fix.
    pub(crate) fn text(&self, name: &str, when_empty: &str) -> Result<Option<String>, ApiError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(value) if value.is_empty() => Err(ApiError::BadRequest(format!(
                "{name} is empty; {when_empty}"
            ))),
            Some(value) => Ok(Some(value.clone())),
        }
    }

    /// Returns a parameter that must be one of `allowed`.
    pub(crate) fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(value) if allowed.contains(&value.as_str()) => Ok(Some(value.clone())),
            Some(value) => Err(ApiError::BadRequest(format!(
                "{name} must be one of {}, got {}",
                allowed.join(", "),
                quoted(value)
            ))),
        }
    }

    /// Returns a parameter that must be `true` or `false`.
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        Ok(self
            .one_of(name, &["true", "false"])?
            .map(|value| value == "true"))
    }

    /// Returns a whole-number parameter within `min..=max`.
    pub(crate) fn whole_number<T>(&self, name: &str, min: T, max: T) -> Result<Option<T>, ApiError>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Some(value) = self.values.get(name) else {
            return Ok(None);
        };
        match value.parse::<T>() {
            Ok(number) if number >= min && number <= max => Ok(Some(number)),
            _ => Err(ApiError::BadRequest(format!(
                "{name} must be a whole number from {min} to {max}, got {}",
                quoted(value)
            ))),
        }
    }

    /// Returns a parameter that must be an event id, or 0 for the start of a run's history.
    pub(crate) fn event_id(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.position(name, "an event id")
    }

    /// Returns a parameter that must be a log line id, or 0 for a run's first line.
    pub(crate) fn log_line_id(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.position(name, "a log line id")
    }

    /// Returns a cursor into an ordered history: an id of `id_kind`, or 0.
    fn position(&self, name: &str, id_kind: &str) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.values.get(name) else {
            return Ok(None);
        };
        match value.parse::<i64>() {
            Ok(id) if id >= 0 => Ok(Some(id)),
            _ => Err(ApiError::BadRequest(format!(
                "{name} must be {id_kind}, a whole number of 0 or more such as the next_after of the previous page, got {}",
                quoted(value)
            ))),
        }
    }

    /// Returns a parameter that must be an RFC 3339 time.
    pub(crate) fn time(
        &self,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        self.text(
            name,
            "give an RFC 3339 time such as 2026-12-05T10:00:00Z, or leave it out",
        )?
        .as_deref()
        .map(|text| super::parse_time(name, text))
        .transpose()
    }

    /// Returns a parameter that must be a run id, with `meaning` saying which run it names.
    pub(crate) fn run_id(&self, name: &str, meaning: &str) -> Result<Option<Uuid>, ApiError> {
        let Some(value) = self.values.get(name) else {
            return Ok(None);
        };
        value.parse().map(Some).map_err(|_| {
            ApiError::BadRequest(format!(
                "{name} must be {meaning}, a run id such as {EXAMPLE_RUN_ID}, got {}",
                quoted(value)
            ))
        })
    }
}

/// Formats names as "`a`, `b` and `c`".
fn code_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// A JSON request body parsed into a [`Value`]. The handler checks its shape.
pub(crate) struct JsonBody(pub(crate) Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        check_json_content_type(request.headers().get(header::CONTENT_TYPE))?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Maps a failure to read a request body to the API's error shape.
pub(crate) fn body_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!(
            "the request body is larger than the server's limit of {} bytes; send a smaller body or raise --body-limit-bytes",
            super::body_limit()
        ))
    } else {
        ApiError::BadRequest(
            "the request body could not be read to its end; send the request again".to_owned(),
        )
    }
}

/// Accepts `application/json` and `application/*+json`, with any parameters.
pub(crate) fn check_json_content_type(
    content_type: Option<&axum::http::HeaderValue>,
) -> Result<(), ApiError> {
    const FIX: &str = "send the body as JSON with `Content-Type: application/json`";
    let Some(content_type) = content_type else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the request has no Content-Type header; {FIX}"
        )));
    };
    let text = String::from_utf8_lossy(content_type.as_bytes());
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let is_json = match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    };
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "the request's Content-Type is {}; {FIX}",
            quoted(&text)
        )))
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the request body is empty; send a JSON object".to_owned(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|err| {
        let (line, column) = (err.line(), err.column());
        ApiError::BadRequest(if err.is_eof() {
            format!(
                "the request body is not valid JSON: it ends at line {line}, column {column} before the JSON value is complete; send the whole document"
            )
        } else {
            format!(
                "the request body is not valid JSON at line {line}, column {column}; correct the JSON there"
            )
        })
    })
}

/// Reads a JSON body into `T`, naming the expected `shape` when it does not fit.
pub(crate) fn body_as<T: serde::de::DeserializeOwned>(
    body: Value,
    shape: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|err| {
        ApiError::BadRequest(format!(
            "the request body does not fit: {err}; send JSON of the form {shape}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        match result {
            Err(ApiError::BadRequest(message) | ApiError::UnsupportedMediaType(message)) => message,
            other => panic!("expected a client error, got {other:?}"),
        }
    }

    #[test]
    fn whole_number_names_range_and_value() {
        let params = QueryParams::parse("limit=abc").expect("parsed");
        assert_eq!(
            message(params.whole_number("limit", 1u32, 500)),
            "limit must be a whole number from 1 to 500, got \"abc\""
        );
        for out_of_range in ["limit=0", "limit=501", "limit=-1", "limit=1.5", "limit="] {
            let params = QueryParams::parse(out_of_range).expect("parsed");
            assert!(
                params.whole_number("limit", 1u32, 500).is_err(),
                "{out_of_range} is rejected"
            );
        }
        let params = QueryParams::parse("limit=500").expect("parsed");
        assert_eq!(
            params.whole_number("limit", 1u32, 500).expect("in range"),
            Some(500)
        );
    }

    #[test]
    fn unknown_and_repeated_parameters_rejected() {
        let params = QueryParams::parse("limit=2&colour=red").expect("parsed");
        let text = message(params.allow_only("GET /v1/runs", &["status", "limit"]));
        assert!(text.contains("`colour`"), "names the parameter: {text}");
        assert!(
            text.contains("`status` and `limit`"),
            "lists what it takes: {text}"
        );

        let text = message(QueryParams::parse("limit=1&limit=2"));
        assert!(text.contains("`limit`"), "{text}");
        assert!(text.contains("once"), "{text}");
    }

    #[test]
    fn one_of_lists_choices() {
        let params = QueryParams::parse("status=bogus").expect("parsed");
        assert_eq!(
            message(params.one_of("status", &["queued", "failed"])),
            "status must be one of queued, failed, got \"bogus\""
        );
    }

    #[test]
    fn long_values_are_cut_short() {
        let long = "x".repeat(500);
        let text = quoted(&long);
        assert!(text.len() < 100, "{text}");
        assert!(text.ends_with("..."));
    }

    #[test]
    fn content_type_must_be_json() {
        for accepted in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            let value = axum::http::HeaderValue::from_static(accepted);
            assert!(
                check_json_content_type(Some(&value)).is_ok(),
                "{accepted} is JSON"
            );
        }
        let text = message(check_json_content_type(Some(
            &axum::http::HeaderValue::from_static("text/plain"),
        )));
        assert!(text.contains("\"text/plain\""), "names the value: {text}");
        assert!(text.contains("application/json"), "gives the fix: {text}");
        let text = message(check_json_content_type(None));
        assert!(text.contains("no Content-Type"), "{text}");
    }

    #[test]
    fn invalid_json_gives_position() {
        let text = message(parse_json(b"{not json"));
        assert!(text.contains("not valid JSON"), "{text}");
        assert!(text.contains("line 1, column 2"), "{text}");
        let text = message(parse_json(b"{\"workflow\": "));
        assert!(text.contains("before the JSON value is complete"), "{text}");
        let text = message(parse_json(b"  "));
        assert!(text.contains("empty"), "{text}");
    }
}
