use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use serde_json::json;

use super::*;

/// Serves one canned response per connection, in order, from a thread, and reports each
/// request it read (head and body) on the returned channel.
fn serve(responses: Vec<Vec<u8>>) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let address = listener.local_addr().expect("read the local address");
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for response in responses {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                request.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                request.push_str(&String::from_utf8_lossy(&body));
            }
            let _ = sender.send(request);
            let mut stream = reader.into_inner();
            // The client may hang up early, such as when it stops reading a long body.
            let _ = stream.write_all(&response);
        }
    });
    (format!("http://{address}"), receiver)
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn request(value: serde_json::Value) -> HttpRequestInput {
    serde_json::from_value(value).expect("a valid http.request input")
}

async fn call(value: serde_json::Value) -> Result<HttpRequestOutput, TaskError> {
    let client = build_client().expect("build the client");
    execute(&client, request(value), &CancellationToken::new()).await
}

#[tokio::test]
async fn json_response_is_parsed() {
    let (base, _requests) = serve(vec![response(
        "200 OK",
        "application/json; charset=utf-8",
        r#"{"model": "delays", "version": 3}"#,
    )]);
    let output = call(json!({"url": format!("{base}/models/delays")}))
        .await
        .expect("the request succeeds");
    assert_eq!(output.status, 200);
    assert_eq!(output.body, json!({"model": "delays", "version": 3}));
    assert!(!output.body_truncated);
    assert_eq!(
        output.headers.get("content-type").map(String::as_str),
        Some("application/json; charset=utf-8")
    );
}

#[tokio::test]
async fn text_response_stays_text() {
    let (base, _requests) = serve(vec![response("200 OK", "text/plain", "ok")]);
    let output = call(json!({"url": base}))
        .await
        .expect("the request succeeds");
    assert_eq!(output.body, json!("ok"));
}

#[tokio::test]
async fn request_sends_method_headers_body() {
    let (base, requests) = serve(vec![response("201 Created", "application/json", "{}")]);
    let output = call(json!({
        "method": "post",
        "url": format!("{base}/runs"),
        "headers": {"X-Trace": "abc"},
        "body": {"epochs": 2},
        "expected_status": 201,
    }))
    .await
    .expect("the request succeeds");
    assert_eq!(output.status, 201);
    let sent = requests.recv().expect("the server saw the request");
    assert!(sent.starts_with("POST /runs HTTP/1.1\r\n"), "{sent}");
    assert!(sent.to_ascii_lowercase().contains("x-trace: abc"), "{sent}");
    assert!(
        sent.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{sent}"
    );
    assert!(sent.ends_with(r#"{"epochs":2}"#), "{sent}");
}

#[tokio::test]
async fn unexpected_404_is_permanent() {
    let (base, _requests) = serve(vec![response(
        "404 Not Found",
        "text/plain",
        "no such model",
    )]);
    let err = call(json!({"url": format!("{base}/models/x")}))
        .await
        .expect_err("404 is not a success");
    assert!(!err.is_retryable());
    assert!(err.message.contains("404"), "{}", err.message);
    assert!(
        err.message.contains("expected a 2xx status"),
        "{}",
        err.message
    );
    assert!(err.message.contains("no such model"), "{}", err.message);
}

#[tokio::test]
async fn listed_status_counts_as_success() {
    let (base, _requests) = serve(vec![response("404 Not Found", "text/plain", "")]);
    let output = call(json!({"url": base, "expected_status": [200, 404]}))
        .await
        .expect("404 was expected");
    assert_eq!(output.status, 404);
}

#[tokio::test]
async fn status_503_is_retryable() {
    let (base, _requests) = serve(vec![response(
        "503 Service Unavailable",
        "text/plain",
        "busy",
    )]);
    let err = call(json!({"url": base}))
        .await
        .expect_err("503 is not a success");
    assert!(err.is_retryable());
    assert!(err.message.contains("503"), "{}", err.message);
}

#[tokio::test]
async fn status_429_is_retryable() {
    let (base, _requests) = serve(vec![response("429 Too Many Requests", "text/plain", "")]);
    let err = call(json!({"url": base}))
        .await
        .expect_err("429 is not a success");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn long_body_is_cut_and_marked() {
    let long = "x".repeat(MAX_BODY_BYTES + 10);
    let (base, _requests) = serve(vec![response("200 OK", "text/plain", &long)]);
    let output = call(json!({"url": base}))
        .await
        .expect("the request succeeds");
    assert!(output.body_truncated);
    assert_eq!(output.body.as_str().map(str::len), Some(MAX_BODY_BYTES));
}

#[tokio::test]
async fn invalid_url_is_permanent_and_named() {
    let err = call(json!({"url": "not a url"}))
        .await
        .expect_err("the URL is invalid");
    assert!(!err.is_retryable());
    assert!(err.message.contains("`not a url`"), "{}", err.message);

    let err = call(json!({"url": "ftp://127.0.0.1/file"}))
        .await
        .expect_err("ftp is not supported");
    assert!(!err.is_retryable());
    assert!(err.message.contains("ftp"), "{}", err.message);
}

#[tokio::test]
async fn invalid_method_and_header_are_permanent() {
    let err = call(json!({"method": "GE T", "url": "http://127.0.0.1/"}))
        .await
        .expect_err("the method is invalid");
    assert!(!err.is_retryable());
    assert!(err.message.contains("`GE T`"), "{}", err.message);

    let err = call(json!({"url": "http://127.0.0.1/", "headers": {"Bad Header": "x"}}))
        .await
        .expect_err("the header name is invalid");
    assert!(!err.is_retryable());
    assert!(err.message.contains("`Bad Header`"), "{}", err.message);
}

#[tokio::test]
async fn refused_connection_is_retryable() {
    // Binding and dropping a listener yields a local port that nothing listens on.
    let address = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port");
    let err = call(json!({"url": format!("http://{address}/")}))
        .await
        .expect_err("nothing listens there");
    assert!(err.is_retryable(), "{}", err.message);
}

#[tokio::test]
async fn slow_server_times_out_as_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let address = listener.local_addr().expect("read the local address");
    // The server accepts the connection and never responds. The thread ends with the test
    // process.
    thread::spawn(move || {
        let _connection = listener.accept();
        thread::park();
    });
    let err = call(json!({"url": format!("http://{address}/"), "timeout_seconds": 0.2}))
        .await
        .expect_err("the server never answers");
    assert!(err.is_retryable());
    assert!(err.message.contains("timed out"), "{}", err.message);
}

#[tokio::test]
async fn cancellation_is_retryable() {
    let client = build_client().expect("build the client");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = execute(
        &client,
        request(json!({"url": "http://127.0.0.1:9/"})),
        &cancel,
    )
    .await
    .expect_err("the call is cancelled");
    assert!(err.is_retryable());
    assert!(err.message.contains("cancelled"), "{}", err.message);
}

#[test]
fn expected_status_single_or_list() {
    let single = request(json!({"url": "http://x/", "expected_status": 204}));
    assert_eq!(single.expected_status, Some(vec![204]));
    let many = request(json!({"url": "http://x/", "expected_status": [200, 201]}));
    assert_eq!(many.expected_status, Some(vec![200, 201]));
    let err = serde_json::from_value::<HttpRequestInput>(
        json!({"url": "http://x/", "expected_status": "ok"}),
    )
    .expect_err("a string is not a status");
    assert!(err.to_string().contains("such as 200"), "{err}");
}

#[test]
fn error_urls_hide_credentials() {
    let url = Url::parse("https://user:secret@example.com/a?token=t#f").expect("a valid URL");
    assert_eq!(describe_url(&url), "https://example.com/a");
}

#[tokio::test]
async fn task_runs_with_detached_context() {
    let (base, _requests) = serve(vec![response("200 OK", "application/json", "[1, 2]")]);
    let context = TaskContext::detached("fetch", HttpRequest::KIND);
    let output = HttpRequest::new()
        .run(context, request(json!({"url": base})))
        .await
        .expect("the request succeeds");
    assert_eq!(output.body, json!([1, 2]));
}
