//! The document matches the router: every routed method and path is documented, every
//! documented operation is routed, `/v1` requires the bearer scheme and the rest is public,
//! and error responses have the shape [`ApiError`](crate::http::ApiError) sends.

use axum::http::Method;
use serde_json::Value;

use super::document;
use crate::http::routes::{self, Endpoint};

fn document_json() -> Value {
    serde_json::to_value(document()).expect("the document serializes")
}

/// Lists every (method, path) the document describes.
fn documented(document: &Value) -> Vec<(Method, String)> {
    let mut found = Vec::new();
    let paths = document["paths"].as_object().expect("paths object");
    for (path, item) in paths {
        for (method, _) in item.as_object().expect("path item object") {
            let method =
                Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method");
            found.push((method, path.clone()));
        }
    }
    found
}

fn operations(document: &Value) -> impl Iterator<Item = (String, &Value)> {
    document["paths"]
        .as_object()
        .expect("paths object")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item object")
                .values()
                .map(move |operation| (path.clone(), operation))
        })
}

#[test]
fn every_route_is_documented() {
    let document = document_json();
    let documented = documented(&document);
    for Endpoint { method, path } in routes::table().endpoints() {
        assert!(
            documented.contains(&(method.clone(), (*path).to_owned())),
            "{method} {path} is routed but has no documentation function in openapi.rs"
        );
    }
}

#[test]
fn every_documented_operation_is_routed() {
    let table = routes::table();
    for (method, path) in documented(&document_json()) {
        let routed = table
            .endpoints()
            .iter()
            .any(|endpoint| endpoint.method == method && endpoint.path == path);
        assert!(routed, "{method} {path} is documented but not routed");
    }
}

#[test]
fn document_is_openapi_3_1() {
    let document = document_json();
    let version = document["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "version {version}");
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[test]
fn v1_requires_bearer_and_the_rest_is_public() {
    let document = document_json();
    for (path, operation) in operations(&document) {
        let security = &operation["security"];
        if path.starts_with("/v1/") {
            assert_eq!(
                security,
                &serde_json::json!([{"bearer": []}]),
                "{path} requires the bearer scheme"
            );
            for status in ["401", "403"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{path} documents {status}"
                );
            }
        } else {
            assert!(security.is_null(), "{path} is public: {security}");
        }
    }
}

#[test]
fn path_parameters_get_404_and_bodies_get_415() {
    let document = document_json();
    for (path, operation) in operations(&document) {
        if !path.starts_with("/v1/") {
            continue;
        }
        if path.contains('{') {
            assert!(
                operation["responses"]["404"].is_object(),
                "{path} documents 404"
            );
        }
        if operation["requestBody"].is_object() {
            assert!(
                operation["responses"]["415"].is_object(),
                "{path} documents 415"
            );
        }
    }
}

#[test]
fn error_responses_have_the_error_shape() {
    let document = document_json();
    for (path, operation) in operations(&document) {
        if !path.starts_with("/v1/") {
            continue;
        }
        let responses = operation["responses"].as_object().expect("responses");
        for (status, response) in responses
            .iter()
            .filter(|(status, _)| status.as_str() >= "400")
        {
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorResponse",
                "{path} {status} has the error shape"
            );
        }
    }
    let detail = &document["components"]["schemas"]["ErrorDetail"];
    assert_eq!(detail["required"], serde_json::json!(["code", "message"]));
}

#[tokio::test]
async fn error_bodies_use_documented_fields() {
    use axum::response::IntoResponse;
    use caraml_engine::SpecProblem;

    let document = document_json();
    let documented = document["components"]["schemas"]["ErrorDetail"]["properties"]
        .as_object()
        .expect("ErrorDetail properties");
    let errors = [
        crate::http::ApiError::NotFound("no run".to_owned()),
        crate::http::ApiError::InvalidSpec(vec![SpecProblem {
            code: "cycle",
            message: "tasks a and b form a cycle".to_owned(),
            tasks: vec!["a".to_owned(), "b".to_owned()],
        }]),
        crate::http::ApiError::Internal("database failed".to_owned()),
    ];
    for error in errors {
        let response = error.into_response();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the error body is read");
        let body: Value = serde_json::from_slice(&bytes).expect("the error body is JSON");
        let detail = body["error"].as_object().expect("an `error` object");
        for field in detail.keys() {
            assert!(
                documented.contains_key(field),
                "ErrorDetail documents `{field}`: {body}"
            );
        }
        assert!(detail["code"].is_string(), "code is a string: {body}");
        assert!(detail["message"].is_string(), "message is a string: {body}");
    }
}

#[test]
#[ignore = "prints the document"]
fn print_document() {
    println!(
        "{}",
        serde_json::to_string_pretty(&document_json()).expect("json")
    );
}
