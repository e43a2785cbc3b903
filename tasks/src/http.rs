//! `http.request`: one HTTP call whose response becomes the task's output.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::sync::OnceLock;
use std::time::Duration;

use caraml_engine::{Task, TaskContext, TaskError};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Maximum response body kept in the output. The engine caps inline outputs at 2 MiB of
/// JSON, so 1 MiB of body leaves room for escaping and the headers.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const DEFAULT_TIMEOUT_SECONDS: f64 = 30.0;
const MAX_TIMEOUT_SECONDS: f64 = 3600.0;
/// Maximum characters of an unexpected response's body quoted in the error message.
const ERROR_BODY_CHARS: usize = 300;

/// Task kind `http.request`, which sends one request and returns the status, headers and body.
///
/// The client is built on first use and shared by every attempt, so connections are reused.
#[derive(Default)]
pub struct HttpRequest {
    client: OnceLock<reqwest::Client>,
}

impl HttpRequest {
    pub fn new() -> Self {
        Self::default()
    }

    fn client(&self) -> Result<&reqwest::Client, TaskError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = build_client()?;
        Ok(self.client.get_or_init(|| client))
    }
}

/// Builds the HTTP client that [`execute`] expects. It sends a `caraml/<version>` User-Agent
/// and follows up to 10 redirects, which is reqwest's default.
pub fn build_client() -> Result<reqwest::Client, TaskError> {
    reqwest::Client::builder()
        .user_agent(concat!("caraml/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| {
            TaskError::retryable(format!(
                "http.request failed to build its HTTP client: {}",
                error_chain(&err)
            ))
        })
}

/// The input of `http.request`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestInput {
    /// HTTP method such as `GET` or `POST`, in any letter case. Defaults to `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Absolute `http` or `https` URL.
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body. A string is sent as it is, as `text/plain` unless a `Content-Type`
    /// header is set, and any other JSON value is sent as JSON.
    #[serde(default)]
    pub body: Option<Value>,
    /// Statuses that count as success. Defaults to any 2xx status.
    #[serde(default, deserialize_with = "deserialize_statuses")]
    pub expected_status: Option<Vec<u16>>,
    /// Limit in seconds for connecting, sending and reading the whole response. Defaults
    /// to 30.
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

fn default_method() -> String {
    "GET".to_owned()
}

/// Deserializes `200` or `[200, 201]`, so a single expected status needs no list.
fn deserialize_statuses<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<u16>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(u16),
        Many(Vec<u16>),
    }
    match Option::<Value>::deserialize(deserializer)? {
        None => Ok(None),
        Some(value) => match serde_json::from_value::<OneOrMany>(value.clone()) {
            Ok(OneOrMany::One(status)) => Ok(Some(vec![status])),
            Ok(OneOrMany::Many(statuses)) => Ok(Some(statuses)),
            Err(_) => Err(serde::de::Error::custom(format!(
                "expected_status is {value}; use a status code or a list of them, such as 200 or [200, 201]"
            ))),
        },
    }
}

/// The output of `http.request`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpRequestOutput {
    pub status: u16,
    /// Response headers with lower-case names. Repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// Parsed body when the response is JSON and complete, otherwise the body text.
    pub body: Value,
    /// Whether the body was cut at [`MAX_BODY_BYTES`]. A cut JSON body is returned as text.
    pub body_truncated: bool,
}

impl Task for HttpRequest {
    type Input = HttpRequestInput;
    type Output = HttpRequestOutput;
    const KIND: &'static str = "http.request";

    async fn run(
        &self,
        ctx: TaskContext,
        input: HttpRequestInput,
    ) -> Result<HttpRequestOutput, TaskError> {
        execute(self.client()?, input, ctx.cancellation()).await
    }
}

/// Request whose parts have all been validated, ready to send.
#[derive(Debug)]
struct Prepared {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    expected: Option<Vec<u16>>,
    timeout: Duration,
}

/// Sends the request described by `input` and reads the response, giving up when `cancel`
/// fires.
pub async fn execute(
    client: &reqwest::Client,
    input: HttpRequestInput,
    cancel: &CancellationToken,
) -> Result<HttpRequestOutput, TaskError> {
    let prepared = prepare(input)?;
    // Cancellation is checked first, so a cancelled attempt never starts the work.
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(TaskError::retryable("http.request was cancelled")),
        result = send(client, prepared) => result,
    }
}

fn prepare(input: HttpRequestInput) -> Result<Prepared, TaskError> {
    let method = Method::from_bytes(input.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
        TaskError::permanent(format!(
            "http.request method `{}` is invalid; use an HTTP method such as GET, POST, PUT, PATCH or DELETE",
            input.method
        ))
    })?;

    let url = Url::parse(&input.url).map_err(|err| {
        TaskError::permanent(format!(
            "http.request url `{}` is invalid ({err}); give an absolute URL such as https://example.com/path",
            input.url
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TaskError::permanent(format!(
            "http.request url `{}` uses the `{}` scheme; only http and https URLs are supported",
            input.url,
            url.scheme()
        )));
    }

    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            TaskError::permanent(format!(
                "http.request header name `{name}` is invalid; use letters, digits and `-`, such as `X-Request-Id`"
            ))
        })?;
        // The value is left out of the message because headers often carry credentials.
        let value = HeaderValue::from_str(value).map_err(|_| {
            TaskError::permanent(format!(
                "the value of http.request header `{name}` is invalid; remove line breaks, control characters and non-ASCII text from it"
            ))
        })?;
        headers.append(header, value);
    }

    let body = match input.body {
        None => None,
        Some(Value::String(text)) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
            Some(text.into_bytes())
        }
        Some(value) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            let bytes = serde_json::to_vec(&value).map_err(|err| {
                TaskError::permanent(format!(
                    "http.request failed to encode the body as JSON: {err}"
                ))
            })?;
            Some(bytes)
        }
    };

    if let Some(statuses) = &input.expected_status {
        if statuses.is_empty() {
            return Err(TaskError::permanent(
                "http.request expected_status is an empty list; list at least one status, or leave it out to accept any 2xx status",
            ));
        }
        if let Some(bad) = statuses
            .iter()
            .find(|status| !(100..=599).contains(*status))
        {
            return Err(TaskError::permanent(format!(
                "http.request expected_status contains {bad}, which is not an HTTP status; use status codes from 100 to 599"
            )));
        }
    }

    let seconds = input.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if !seconds.is_finite() || seconds <= 0.0 || seconds > MAX_TIMEOUT_SECONDS {
        return Err(TaskError::permanent(format!(
            "http.request timeout_seconds is {seconds}; use a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS}"
        )));
    }

    Ok(Prepared {
        method,
        url,
        headers,
        body,
        expected: input.expected_status,
        timeout: Duration::from_secs_f64(seconds),
    })
}

async fn send(
    client: &reqwest::Client,
    prepared: Prepared,
) -> Result<HttpRequestOutput, TaskError> {
    let target = describe_url(&prepared.url);
    let timeout = prepared.timeout;
    let mut request = client
        .request(prepared.method, prepared.url)
        .headers(prepared.headers)
        .timeout(timeout);
    if let Some(body) = prepared.body {
        request = request.body(body);
    }

    let mut response = request
        .send()
        .await
        .map_err(|err| transport_error(err, &target, timeout))?;
    let status = response.status();
    let headers = collect_headers(response.headers());
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(is_json_media_type);

    let mut bytes = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| transport_error(err, &target, timeout))?
    {
        let room = MAX_BODY_BYTES - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        bytes.extend_from_slice(&chunk);
    }

    check_status(status, prepared.expected.as_deref(), &target, &bytes)?;

    let body = if is_json && !truncated {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(text_of(&bytes)))
    } else {
        Value::String(text_of(&bytes))
    };
    Ok(HttpRequestOutput {
        status: status.as_u16(),
        headers,
        body,
        body_truncated: truncated,
    })
}

fn check_status(
    status: StatusCode,
    expected: Option<&[u16]>,
    target: &str,
    body: &[u8],
) -> Result<(), TaskError> {
    let is_expected = match expected {
        Some(statuses) => statuses.contains(&status.as_u16()),
        None => status.is_success(),
    };
    if is_expected {
        return Ok(());
    }
    let expectation = match expected {
        Some([one]) => one.to_string(),
        Some(many) => {
            let listed: Vec<String> = many.iter().map(u16::to_string).collect();
            format!("one of {}", listed.join(", "))
        }
        None => "a 2xx status".to_owned(),
    };
    let text = text_of(body);
    let mut excerpt: String = text.chars().take(ERROR_BODY_CHARS).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    let message = format!(
        "http.request to {target} returned status {status}, expected {expectation}; response body: {excerpt:?}"
    );
    // Statuses 408, 429 and 5xx describe the server's current state, so a later attempt can
    // succeed. Any other status is a verdict on the request itself and would repeat.
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(TaskError::retryable(message))
    } else {
        Err(TaskError::permanent(format!(
            "{message}; if this status is a success for this call, add it to expected_status"
        )))
    }
}

fn transport_error(err: reqwest::Error, target: &str, timeout: Duration) -> TaskError {
    let err = err.without_url();
    let detail = error_chain(&err);
    if err.is_timeout() {
        TaskError::retryable(format!(
            "http.request to {target} timed out after {} s; raise timeout_seconds if the server is slow",
            timeout.as_secs_f64()
        ))
    } else if err.is_connect() {
        TaskError::retryable(format!(
            "http.request failed to connect to {target}: {detail}"
        ))
    } else if err.is_redirect() {
        TaskError::permanent(format!(
            "http.request to {target} failed after too many redirects: {detail}; call the final URL directly"
        ))
    } else if err.is_builder() {
        TaskError::permanent(format!("http.request to {target} is invalid: {detail}"))
    } else {
        TaskError::retryable(format!("http.request to {target} failed: {detail}"))
    }
}

/// Formats the URL without credentials, query or fragment, because these often contain
/// secrets and error messages are stored with the run.
fn describe_url(url: &Url) -> String {
    let mut redacted = url.clone();
    // Both calls fail only for URLs that cannot have credentials, so nothing is left to hide.
    let _ = redacted.set_username("");
    let _ = redacted.set_password(None);
    redacted.set_query(None);
    redacted.set_fragment(None);
    redacted.to_string()
}

/// Joins an error with its sources, because reqwest's top-level message rarely names the
/// cause.
fn error_chain(err: &reqwest::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}

fn collect_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut collected: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        collected
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    collected
}

fn is_json_media_type(content_type: &str) -> bool {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media_type == "application/json" || media_type.ends_with("+json")
}

/// Decodes the body as UTF-8, dropping a character split by the size cap rather than
/// showing it as a replacement character.
fn text_of(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(err) if err.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..err.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests;
