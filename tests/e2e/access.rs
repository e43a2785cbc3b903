//! Access control of the HTTP API: bearer tokens, project isolation and roles.
//!
//! Guarantees checked here:
//! - every `/v1` endpoint rejects with 401 a missing, malformed, unknown, expired and revoked
//!   token, while the probes and `/metrics` need none;
//! - a token of one project gets 404 for every object of another project (runs, their
//!   events and signals, workflow specs, services, schedules, retention), and lists and
//!   bulk actions never include them;
//! - a viewer reads but changes nothing, an editor changes runs, services and schedules,
//!   and only an admin sets retention.

use caraml::api::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::api::{Server, read, sleep_spec};
use super::token;

/// Returns every endpoint under `/v1`, with a request body where it takes one. The ids and names
/// need not exist: the token is checked before anything else.
fn endpoints() -> Vec<(Method, &'static str, Option<Value>)> {
    let run = "/v1/runs/01934a6e-7b1c-7d2e-8f90-123456789abc";
    let spec = json!({"spec": sleep_spec("access", 0.0)});
    vec![
        (Method::POST, "/v1/runs", Some(spec)),
        (Method::GET, "/v1/runs", None),
        (Method::GET, "/v1/runs/counts", None),
        (
            Method::POST,
            "/v1/runs/bulk/retry",
            Some(json!({"all": true})),
        ),
        (
            Method::POST,
            "/v1/runs/bulk/cancel",
            Some(json!({"all": true})),
        ),
        (Method::GET, run, None),
        (Method::POST, leak(format!("{run}/cancel")), None),
        (Method::POST, leak(format!("{run}/retry")), None),
        (Method::GET, leak(format!("{run}/events")), None),
        (Method::GET, leak(format!("{run}/signals")), None),
        (Method::GET, leak(format!("{run}/logs")), None),
        (Method::POST, leak(format!("{run}/signals/go")), None),
        (Method::GET, "/v1/workflows", None),
        (Method::GET, "/v1/workflows/flights/retention", None),
        (
            Method::PUT,
            "/v1/workflows/flights/retention",
            Some(json!({"retention": "30d"})),
        ),
        (Method::GET, "/v1/services", None),
        (
            Method::POST,
            "/v1/services",
            Some(json!({"name": "web", "workflow": "x"})),
        ),
        (Method::GET, "/v1/services/web", None),
        (
            Method::POST,
            "/v1/services/web/replace",
            Some(json!({"workflow": "x"})),
        ),
        (Method::POST, "/v1/services/web/restart", None),
        (Method::POST, "/v1/services/web/stop", None),
        (Method::GET, "/v1/schedules", None),
        (
            Method::POST,
            "/v1/schedules",
            Some(json!({"name": "s", "cron": "* * * * *", "workflow": "x"})),
        ),
        (Method::GET, "/v1/schedules/s", None),
        (Method::DELETE, "/v1/schedules/s", None),
        (Method::POST, "/v1/schedules/s/pause", None),
        (Method::POST, "/v1/schedules/s/resume", None),
        (Method::GET, "/v1/dead-letters", None),
        (Method::GET, "/v1/workers", None),
    ]
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// Sends a request with `authorization` as the Authorization header, or none.
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<&Value>,
    authorization: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.base));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    read(request.send().await.expect("request sent")).await
}

async fn call(
    server: &Server,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let bearer = format!("Bearer {token}");
    send(server, method, path, body.as_ref(), Some(&bearer)).await
}

#[tokio::test]
async fn every_endpoint_rejects_bad_tokens() {
    let server = Server::start().await;
    let pool = server.store.pool();

    let expired = token(&server.store, "default", Role::Admin).await;
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE secret_hash = sha256($1::text::bytea)")
        .bind(&expired)
        .execute(pool)
        .await
        .expect("expire token");
    let revoked = token(&server.store, "default", Role::Admin).await;
    sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE secret_hash = sha256($1::text::bytea)",
    )
    .bind(&revoked)
    .execute(pool)
    .await
    .expect("revoke token");
    let unknown = format!("cml_{}", "0".repeat(64));
    let cases: [(&str, Option<String>, &str); 7] = [
        ("missing", None, "no Authorization header"),
        (
            "basic scheme",
            Some("Basic dXNlcjpwYXNz".to_owned()),
            "Bearer TOKEN",
        ),
        (
            "bearer without token",
            Some("Bearer".to_owned()),
            "Bearer TOKEN",
        ),
        (
            "malformed",
            Some("Bearer not-a-token".to_owned()),
            "malformed",
        ),
        (
            "unknown",
            Some(format!("Bearer {unknown}")),
            "not a token of this server",
        ),
        ("expired", Some(format!("Bearer {expired}")), "expired"),
        ("revoked", Some(format!("Bearer {revoked}")), "revoked"),
    ];

    for (method, path, body) in endpoints() {
        for (case, header, message) in &cases {
            let (status, answer) = send(
                &server,
                method.clone(),
                path,
                body.as_ref(),
                header.as_deref(),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with a {case} token: {answer}"
            );
            let text = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(
                text.contains(message),
                "{method} {path} with a {case} token explains the problem: {text}"
            );
        }
    }

    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _) = send(&server, Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path} needs no token");
    }
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM runs")
        .fetch_one(pool)
        .await
        .expect("count runs");
    assert_eq!(count, 0, "no request without a valid token stored a run");
}

#[tokio::test]
async fn projects_do_not_see_each_other() {
    let server = Server::start().await;
    let own = server.token.clone();
    let other = token(&server.store, "other", Role::Admin).await;

    // Objects of every type in the project `default`.
    let failing = json!({"name": "fails", "tasks": [
        {"name": "boom", "kind": "sql.query", "input": {"sql": "SELECT * FROM nowhere"},
         "retry": {"max_attempts": 1}}
    ]});
    let (status, failed) = call(
        &server,
        &own,
        Method::POST,
        "/v1/runs",
        Some(json!({"spec": failing})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{failed}");
    let failed_id = failed["id"].as_str().expect("run id").to_owned();
    server.wait_finished(&failed_id).await;
    let (status, keyed) = call(
        &server,
        &own,
        Method::POST,
        "/v1/runs",
        Some(json!({"spec": sleep_spec("private", 30.0), "idempotency_key": "nightly"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{keyed}");
    let run = keyed["id"].as_str().expect("run id").to_owned();
    let service = json!({"name": "web", "spec": {"name": "web", "tasks": [
        {"name": "serve", "kind": "http.serve", "input": {"body": "hi"}}
    ]}});
    let (status, body) = call(&server, &own, Method::POST, "/v1/services", Some(service)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let schedule = json!({"name": "hourly", "cron": "0 * * * *", "workflow": "private"});
    let (status, body) = call(&server, &own, Method::POST, "/v1/schedules", Some(schedule)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Every object is a 404 for the other project, in the words used for a missing one.
    let hidden: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/runs/{run}"), None),
        (Method::POST, format!("/v1/runs/{run}/cancel"), None),
        (Method::POST, format!("/v1/runs/{failed_id}/retry"), None),
        (Method::GET, format!("/v1/runs/{run}/events"), None),
        (Method::GET, format!("/v1/runs/{run}/signals"), None),
        (Method::GET, format!("/v1/runs/{run}/logs"), None),
        (Method::POST, format!("/v1/runs/{run}/signals/go"), None),
        (Method::GET, "/v1/services/web".to_owned(), None),
        (
            Method::POST,
            "/v1/services/web/replace".to_owned(),
            Some(json!({"workflow": "web"})),
        ),
        (Method::POST, "/v1/services/web/restart".to_owned(), None),
        (Method::POST, "/v1/services/web/stop".to_owned(), None),
        (Method::GET, "/v1/schedules/hourly".to_owned(), None),
        (Method::POST, "/v1/schedules/hourly/pause".to_owned(), None),
        (Method::POST, "/v1/schedules/hourly/resume".to_owned(), None),
        (Method::DELETE, "/v1/schedules/hourly".to_owned(), None),
        (
            Method::GET,
            "/v1/workflows/private/retention".to_owned(),
            None,
        ),
        (
            Method::PUT,
            "/v1/workflows/private/retention".to_owned(),
            Some(json!({"retention": "1d"})),
        ),
        (
            Method::POST,
            "/v1/runs".to_owned(),
            Some(json!({"workflow": "private"})),
        ),
    ];
    for (method, path, body) in hidden {
        let (status, answer) = call(&server, &other, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_eq!(
            answer["error"]["code"], "not_found",
            "{method} {path}: {answer}"
        );
    }
    let (_, missing) = call(
        &server,
        &other,
        Method::GET,
        "/v1/runs/01934a6e-7b1c-7d2e-8f90-123456789abc",
        None,
    )
    .await;
    let (_, foreign) = call(
        &server,
        &other,
        Method::GET,
        &format!("/v1/runs/{run}"),
        None,
    )
    .await;
    assert_eq!(
        missing["error"]["message"]
            .as_str()
            .map(|m| m.replace("01934a6e-7b1c-7d2e-8f90-123456789abc", "ID")),
        foreign["error"]["message"]
            .as_str()
            .map(|m| m.replace(&run, "ID")),
        "a foreign run reads exactly like a missing one"
    );

    // Lists and counts hold nothing of the project `default`.
    for path in [
        "/v1/runs",
        "/v1/services",
        "/v1/schedules",
        "/v1/dead-letters",
        "/v1/runs/counts",
    ] {
        let (status, answer) = call(&server, &other, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        let text = answer.to_string();
        for secret in [run.as_str(), failed_id.as_str(), "\"web\"", "hourly"] {
            assert!(
                !text.contains(secret),
                "{path} shows {secret} to another project: {text}"
            );
        }
    }
    let (_, counts) = call(&server, &other, Method::GET, "/v1/runs/counts", None).await;
    assert_eq!(
        counts,
        json!({"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0})
    );
    let (_, workflows) = call(&server, &other, Method::GET, "/v1/workflows", None).await;
    let names: Vec<&str> = workflows["workflows"]
        .as_array()
        .expect("workflows")
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert!(
        names.contains(&"flights"),
        "workflows defined in Rust are shared: {names:?}"
    );
    for private in ["private", "fails", "web"] {
        assert!(
            !names.contains(&private),
            "spec {private} of another project is listed: {names:?}"
        );
    }

    // Bulk actions of the other project touch none of these runs.
    for action in ["retry", "cancel"] {
        let (status, outcome) = call(
            &server,
            &other,
            Method::POST,
            &format!("/v1/runs/bulk/{action}"),
            Some(json!({"all": true})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{outcome}");
        assert_eq!(outcome["affected"], 0, "bulk {action}: {outcome}");
        assert_eq!(outcome["run_ids"], json!([]), "bulk {action}: {outcome}");
    }

    // The same idempotency key and spec name in another project make a run of its own.
    let (status, theirs) = call(
        &server,
        &other,
        Method::POST,
        "/v1/runs",
        Some(json!({"spec": sleep_spec("private", 0.0), "idempotency_key": "nightly"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    assert_ne!(theirs["id"], keyed["id"]);
    let (_, mine) = call(&server, &own, Method::GET, &format!("/v1/runs/{run}"), None).await;
    assert_eq!(
        mine["status"], "running",
        "the first project's run is untouched: {mine}"
    );
}

#[tokio::test]
async fn roles_limit_what_a_token_changes() {
    let server = Server::start().await;
    let admin = server.token.clone();
    let viewer = token(&server.store, "default", Role::Viewer).await;
    let editor = token(&server.store, "default", Role::Editor).await;
    let (status, submitted) = call(
        &server,
        &admin,
        Method::POST,
        "/v1/runs",
        Some(json!({"spec": sleep_spec("roles", 30.0)})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{submitted}");
    let run = submitted["id"].as_str().expect("run id").to_owned();
    let (status, body) = call(
        &server,
        &admin,
        Method::POST,
        "/v1/schedules",
        Some(json!({"name": "nightly", "cron": "0 3 * * *", "workflow": "roles"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A viewer reads everything and changes nothing.
    for path in [
        format!("/v1/runs/{run}"),
        format!("/v1/runs/{run}/events"),
        "/v1/runs".to_owned(),
        "/v1/schedules/nightly".to_owned(),
        "/v1/workflows/roles/retention".to_owned(),
    ] {
        let (status, answer) = call(&server, &viewer, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "viewer reads {path}: {answer}");
    }
    let changes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/v1/runs".to_owned(),
            Some(json!({"workflow": "roles"})),
        ),
        (Method::POST, format!("/v1/runs/{run}/cancel"), None),
        (Method::POST, format!("/v1/runs/{run}/retry"), None),
        (Method::POST, format!("/v1/runs/{run}/signals/go"), None),
        (
            Method::POST,
            "/v1/runs/bulk/cancel".to_owned(),
            Some(json!({"all": true})),
        ),
        (
            Method::POST,
            "/v1/runs/bulk/retry".to_owned(),
            Some(json!({"all": true})),
        ),
        (
            Method::POST,
            "/v1/services".to_owned(),
            Some(json!({"name": "w", "workflow": "roles"})),
        ),
        (
            Method::POST,
            "/v1/schedules".to_owned(),
            Some(json!({"name": "n2", "cron": "0 3 * * *", "workflow": "roles"})),
        ),
        (Method::POST, "/v1/schedules/nightly/pause".to_owned(), None),
        (Method::DELETE, "/v1/schedules/nightly".to_owned(), None),
        (
            Method::PUT,
            "/v1/workflows/roles/retention".to_owned(),
            Some(json!({"retention": "1d"})),
        ),
    ];
    for (method, path, body) in changes {
        let (status, answer) = call(&server, &viewer, method.clone(), &path, body).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "viewer {method} {path}: {answer}"
        );
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            text.contains("viewer role"),
            "the 403 names the role: {text}"
        );
    }
    let (_, still) = call(
        &server,
        &admin,
        Method::GET,
        &format!("/v1/runs/{run}"),
        None,
    )
    .await;
    assert_eq!(
        still["status"], "running",
        "the viewer's cancel changed nothing: {still}"
    );

    // An editor changes runs and schedules, but not retention.
    let (status, answer) = call(
        &server,
        &editor,
        Method::POST,
        "/v1/schedules/nightly/pause",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = call(
        &server,
        &editor,
        Method::PUT,
        "/v1/workflows/roles/retention",
        Some(json!({"retention": "1d"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = call(
        &server,
        &editor,
        Method::POST,
        &format!("/v1/runs/{run}/cancel"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = call(
        &server,
        &admin,
        Method::PUT,
        "/v1/workflows/roles/retention",
        Some(json!({"retention": "1d"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Runs `caraml` with `DATABASE_URL` set to the server's database.
fn caraml(server: &Server, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_caraml"))
        .args(args)
        .env("DATABASE_URL", &server.url)
        .output()
        .expect("caraml runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn token_commands_create_list_revoke() {
    let server = Server::start().await;

    let (ok, token, stderr) = caraml(
        &server,
        &[
            "token",
            "create",
            "--project",
            "team-a",
            "--role",
            "editor",
            "--name",
            "ci",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        token.starts_with("cml_"),
        "stdout holds the token alone: {token}"
    );
    assert!(stderr.contains("created project `team-a`"), "{stderr}");
    let (status, runs) = call(&server, &token, Method::GET, "/v1/runs", None).await;
    assert_eq!(status, StatusCode::OK, "{runs}");

    let (ok, listed, stderr) = caraml(&server, &["token", "list", "--project", "team-a"]);
    assert!(ok, "{stderr}");
    assert!(listed.contains("team-a"), "{listed}");
    assert!(listed.contains("editor"), "{listed}");
    assert!(listed.contains(" ci "), "{listed}");
    assert!(
        !listed.contains(&token),
        "a list never shows a secret: {listed}"
    );
    let id = listed
        .split_whitespace()
        .next()
        .expect("token id")
        .to_owned();

    let (ok, revoked, stderr) = caraml(&server, &["token", "revoke", &id]);
    assert!(ok, "{stderr}");
    assert!(revoked.contains("revoked"), "{revoked}");
    let (status, answer) = call(&server, &token, Method::GET, "/v1/runs", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");

    let bad = [
        (
            vec!["token", "create", "--project", "team-a", "--role", "owner"],
            "viewer, editor or admin",
        ),
        (
            vec!["token", "create", "--project", "Team A", "--role", "viewer"],
            "project name `Team A` is invalid",
        ),
        (
            vec![
                "token",
                "create",
                "--project",
                "team-a",
                "--role",
                "viewer",
                "--expires-in",
                "soon",
            ],
            "not a valid duration",
        ),
        (
            vec![
                "token",
                "create",
                "--project",
                "team-a",
                "--role",
                "viewer",
                "--expires-in",
                "0s",
            ],
            "already passed",
        ),
        (
            vec![
                "token",
                "create",
                "--project",
                "team-b",
                "--role",
                "viewer",
                "--expires-in",
                "99999999999d",
            ],
            "up to 3650d",
        ),
        (
            vec![
                "token",
                "create",
                "--project",
                "team-b",
                "--role",
                "viewer",
                "--name",
                "a\nb",
            ],
            "token name",
        ),
        (vec!["token", "list", "--project", "BAD NAME"], "is invalid"),
        (
            vec!["token", "list", "--project", "nosuch"],
            "project `nosuch` not found",
        ),
        (vec!["token", "revoke", "nope"], "not a token id"),
        (
            vec!["token", "revoke", "01934a6e-7b1c-7d2e-8f90-123456789abc"],
            "no token with id",
        ),
    ];
    for (args, expected) in bad {
        let (ok, _, stderr) = caraml(&server, &args);
        assert!(!ok, "{args:?} fails");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let (projects,): (i64,) = sqlx::query_as("SELECT count(*) FROM projects WHERE name = 'team-b'")
        .fetch_one(server.store.pool())
        .await
        .expect("count projects");
    assert_eq!(projects, 0, "a rejected token leaves no project behind");
}

#[tokio::test]
async fn run_time_ranges_must_be_ordered() {
    let server = Server::start().await;
    let range = "from=2026-12-05T10:00:00Z&to=2026-12-05T09:00:00Z";
    for path in [
        format!("/v1/runs?{range}"),
        format!("/v1/runs/counts?{range}"),
    ] {
        let (status, answer) = call(&server, &server.token, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("is not before to"), "{message}");
    }
}
