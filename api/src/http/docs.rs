//! The API reference page at `/docs`: the OpenAPI document rendered as one HTML page on
//! the server, with no scripts and nothing fetched from elsewhere. Endpoints are grouped
//! by tag and show their parameters, request and response schemas and examples. Every
//! text from the document is escaped.

use std::fmt::Write;
use std::sync::OnceLock;

use axum::response::Html;
use serde_json::{Map, Value, json};

use super::ApiError;
use super::openapi::document;

/// Deepest nesting of schemas that an example is built to; deeper schemas get `{}`.
const MAX_EXAMPLE_DEPTH: usize = 12;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

const STYLE: &str = "
body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d2330; }
header, main { max-width: 70rem; margin: 0 auto; padding: 0 1.5rem; }
header { border-bottom: 1px solid #d6dae3; padding-bottom: 1rem; }
nav ul { columns: 3; padding-left: 1.2rem; }
h2 { border-bottom: 2px solid #d6dae3; margin-top: 2.5rem; }
article { border: 1px solid #d6dae3; border-radius: 6px; padding: 0.2rem 1rem 1rem; margin: 1rem 0; }
h3 code { font-size: 1rem; }
.method { display: inline-block; min-width: 4.5rem; font: bold 0.85rem monospace; color: #fff;
  background: #4a5670; border-radius: 4px; padding: 0.1rem 0.4rem; text-align: center; }
.get { background: #2f7d4f; } .post { background: #2a5fa8; } .put { background: #8a5a12; }
.delete { background: #a33a3a; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0; }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid #e4e7ee; padding: 0.3rem 0.5rem; }
pre { background: #f4f5f8; padding: 0.6rem; overflow-x: auto; font-size: 0.85rem; }
.auth { color: #5b6475; font-size: 0.9rem; }
";

pub(crate) async fn serve_page() -> Result<impl axum::response::IntoResponse, ApiError> {
    static PAGE: OnceLock<String> = OnceLock::new();
    let page = match PAGE.get() {
        Some(page) => page,
        None => {
            let document = serde_json::to_value(document()).map_err(|err| {
                ApiError::Internal(format!("the OpenAPI document did not serialize: {err}"))
            })?;
            PAGE.get_or_init(|| render(&document))
        }
    };
    // The page has one inline style sheet and no script, and loads nothing else.
    let headers = [
        (
            axum::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    Ok((headers, Html(page.as_str())))
}

/// Renders an OpenAPI 3.1 document as an HTML page.
pub(crate) fn render(document: &Value) -> String {
    let mut page = String::new();
    let title = text(&document["info"]["title"]);
    let version = text(&document["info"]["version"]);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} {} reference</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n\
         <h1>{} <small>{}</small></h1>\n<p>{}</p>\n\
         <p>The same content as an OpenAPI 3.1 document: <a href=\"/openapi.json\">/openapi.json</a>.</p>\n",
        escape(title),
        escape(version),
        escape(title),
        escape(version),
        prose(text(&document["info"]["description"])),
    );

    let operations = collect_operations(document);
    let tags = tag_list(document, &operations);
    page.push_str("<nav>\n<ul>\n");
    for (tag, _) in &tags {
        let _ = writeln!(
            page,
            "<li><a href=\"#tag-{}\">{}</a></li>",
            anchor(tag),
            escape(tag)
        );
    }
    page.push_str("<li><a href=\"#schemas\">Schemas</a></li>\n</ul>\n</nav>\n</header>\n<main>\n");

    for (tag, description) in &tags {
        let _ = write!(
            page,
            "<section id=\"tag-{}\">\n<h2>{}</h2>\n<p>{}</p>\n",
            anchor(tag),
            escape(tag),
            prose(description)
        );
        for operation in operations.iter().filter(|operation| &operation.tag == tag) {
            render_operation(&mut page, document, operation);
        }
        page.push_str("</section>\n");
    }

    render_schemas(&mut page, document);
    page.push_str("</main>\n</body>\n</html>\n");
    page
}

struct OperationRef<'a> {
    method: &'static str,
    path: &'a str,
    tag: String,
    operation: &'a Value,
}

fn collect_operations(document: &Value) -> Vec<OperationRef<'_>> {
    let mut operations = Vec::new();
    let Some(paths) = document["paths"].as_object() else {
        return operations;
    };
    for (path, item) in paths {
        for method in METHODS {
            let operation = &item[method];
            if operation.is_null() {
                continue;
            }
            let tag = operation["tags"][0].as_str().unwrap_or("other").to_owned();
            operations.push(OperationRef {
                method,
                path,
                tag,
                operation,
            });
        }
    }
    operations
}

/// Tags in the document's order with their descriptions, then tags that only operations
/// name.
fn tag_list(document: &Value, operations: &[OperationRef<'_>]) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = document["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tag| {
            (
                text(&tag["name"]).to_owned(),
                text(&tag["description"]).to_owned(),
            )
        })
        .collect();
    for operation in operations {
        if !tags.iter().any(|(name, _)| name == &operation.tag) {
            tags.push((operation.tag.clone(), String::new()));
        }
    }
    tags.retain(|(name, _)| operations.iter().any(|operation| &operation.tag == name));
    tags
}

fn render_operation(page: &mut String, document: &Value, operation: &OperationRef<'_>) {
    let details = operation.operation;
    let id = text(&details["operationId"]);
    let _ = write!(
        page,
        "<article id=\"op-{}\">\n<h3><span class=\"method {}\">{}</span> <code>{}</code></h3>\n<p><strong>{}</strong></p>\n",
        anchor(id),
        operation.method,
        operation.method.to_uppercase(),
        escape(operation.path),
        escape(text(&details["summary"])),
    );
    let description = text(&details["description"]);
    if !description.is_empty() {
        let _ = writeln!(page, "<p>{}</p>", prose(description));
    }
    let auth = if details["security"].is_array() {
        "Requires <code>Authorization: Bearer TOKEN</code>."
    } else {
        "Public: no token needed."
    };
    let _ = writeln!(page, "<p class=\"auth\">{auth}</p>");

    if let Some(parameters) = details["parameters"]
        .as_array()
        .filter(|list| !list.is_empty())
    {
        page.push_str("<h4>Parameters</h4>\n<table>\n<tr><th>name</th><th>in</th><th>type</th><th>required</th><th>description</th></tr>\n");
        for parameter in parameters {
            let _ = writeln!(
                page,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(text(&parameter["name"])),
                escape(text(&parameter["in"])),
                type_label(&parameter["schema"]),
                if parameter["required"] == json!(true) {
                    "yes"
                } else {
                    "no"
                },
                prose(text(&parameter["description"])),
            );
        }
        page.push_str("</table>\n");
    }

    let body = &details["requestBody"];
    if body.is_object() {
        page.push_str("<h4>Request body</h4>\n");
        let description = text(&body["description"]);
        if !description.is_empty() {
            let _ = writeln!(page, "<p>{}</p>", prose(description));
        }
        render_content(page, document, &body["content"]);
    }

    page.push_str(
        "<h4>Responses</h4>\n<table>\n<tr><th>status</th><th>description</th><th>body</th></tr>\n",
    );
    let responses = details["responses"].as_object().into_iter().flatten();
    for (status, response) in responses {
        let bodies: Vec<String> = response["content"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(media_type, content)| {
                format!(
                    "{} <code>{}</code>",
                    type_label(&content["schema"]),
                    escape(media_type)
                )
            })
            .collect();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(status),
            prose(text(&response["description"])),
            bodies.join("<br>"),
        );
    }
    page.push_str("</table>\n");

    // One example per successful response; the error shape is shown once, under Schemas.
    let success = details["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(status, _)| status.starts_with('2'));
    for (status, response) in success {
        if let Some(content) = response["content"]["application/json"].as_object() {
            let value = Value::Object(content.clone());
            let _ = writeln!(page, "<p>Example {} response:</p>", escape(status));
            render_example(page, document, &value);
        }
    }
    page.push_str("</article>\n");
}

/// Renders a request body's media types, schemas and an example.
fn render_content(page: &mut String, document: &Value, content: &Value) {
    for (media_type, entry) in content.as_object().into_iter().flatten() {
        let _ = writeln!(
            page,
            "<p><code>{}</code>: {}</p>",
            escape(media_type),
            type_label(&entry["schema"])
        );
        render_example(page, document, entry);
    }
}

/// Shows the media type's own example, or one built from its schema.
fn render_example(page: &mut String, document: &Value, entry: &Value) {
    let example = if entry["example"].is_null() {
        example_of(document, &entry["schema"], 0)
    } else {
        entry["example"].clone()
    };
    let pretty = serde_json::to_string_pretty(&example).unwrap_or_default();
    let _ = writeln!(page, "<pre>{}</pre>", escape(&pretty));
}

fn render_schemas(page: &mut String, document: &Value) {
    page.push_str("<section id=\"schemas\">\n<h2>Schemas</h2>\n");
    let schemas = document["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten();
    for (name, schema) in schemas {
        let _ = write!(
            page,
            "<article id=\"schema-{}\">\n<h3>{}</h3>\n",
            anchor(name),
            escape(name)
        );
        let description = text(&schema["description"]);
        if !description.is_empty() {
            let _ = writeln!(page, "<p>{}</p>", prose(description));
        }
        if let Some(properties) = schema["properties"].as_object() {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            page.push_str("<table>\n<tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>\n");
            for (field, property) in properties {
                let _ = writeln!(
                    page,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(field),
                    type_label(property),
                    if required.contains(&field.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    prose(&property_description(property)),
                );
            }
            page.push_str("</table>\n");
        } else {
            let _ = writeln!(page, "<p>Type: {}</p>", type_label(schema));
        }
        page.push_str("<p>Example:</p>\n");
        let example = example_of(document, schema, 0);
        let pretty = serde_json::to_string_pretty(&example).unwrap_or_default();
        let _ = writeln!(page, "<pre>{}</pre>", escape(&pretty));
        page.push_str("</article>\n");
    }
    page.push_str("</section>\n");
}

/// A property's description, which the generator may put on a `oneOf` member.
fn property_description(property: &Value) -> String {
    let own = text(&property["description"]);
    if !own.is_empty() {
        return own.to_owned();
    }
    property["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|member| text(&member["description"]))
        .find(|description| !description.is_empty())
        .unwrap_or_default()
        .to_owned()
}

/// Describes a schema's type as HTML, with links to named schemas.
fn type_label(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = schema_name(reference);
        return format!("<a href=\"#schema-{}\">{}</a>", anchor(name), escape(name));
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(members) = schema[combinator].as_array() {
            let labels: Vec<String> = members.iter().map(type_label).collect();
            let joiner = if combinator == "allOf" {
                " and "
            } else {
                " or "
            };
            return labels.join(joiner);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|value| format!("<code>{}</code>", escape(&value.to_string())))
            .collect();
        return format!("one of {}", values.join(", "));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(name) => vec![name.as_str()],
        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        return "any JSON".to_owned();
    }
    let labels: Vec<String> = types
        .iter()
        .map(|name| match *name {
            "array" => format!("array of {}", type_label(&schema["items"])),
            other => match schema["format"].as_str() {
                Some(format) => format!("{} ({})", escape(other), escape(format)),
                None => escape(other),
            },
        })
        .collect();
    let mut label = labels.join(" or ");
    let bounds: Vec<String> = ["minimum", "maximum", "minLength"]
        .into_iter()
        .filter_map(|key| {
            schema[key]
                .as_number()
                .map(|bound| format!("{key} {bound}"))
        })
        .collect();
    if !bounds.is_empty() {
        let _ = write!(label, ", {}", bounds.join(", "));
    }
    label
}

/// Builds an example value for a schema: its own example where it has one, otherwise a
/// value of its type, with every property of an object.
fn example_of(document: &Value, schema: &Value, depth: usize) -> Value {
    if depth > MAX_EXAMPLE_DEPTH {
        return json!({});
    }
    if !schema["example"].is_null() {
        return schema["example"].clone();
    }
    if let Some(first) = schema["examples"].as_array().and_then(|list| list.first()) {
        return first.clone();
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let target = &document["components"]["schemas"][schema_name(reference)];
        return example_of(document, target, depth + 1);
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(members) = schema[combinator].as_array() {
            let member = members
                .iter()
                .find(|member| member["type"] != json!("null"))
                .unwrap_or(&Value::Null);
            return example_of(document, member, depth + 1);
        }
    }
    if let Some(first) = schema["enum"].as_array().and_then(|values| values.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::String(name) => name.as_str(),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .find(|name| *name != "null")
            .unwrap_or("null"),
        _ => return json!({}),
    };
    match kind {
        "object" => {
            let mut object = Map::new();
            for (field, property) in schema["properties"].as_object().into_iter().flatten() {
                object.insert(field.clone(), example_of(document, property, depth + 1));
            }
            Value::Object(object)
        }
        "array" => json!([example_of(document, &schema["items"], depth + 1)]),
        "string" => match schema["format"].as_str() {
            Some("uuid") => json!("01934a6e-7b1c-7d2e-8f90-123456789abc"),
            Some("date-time") => json!("2026-12-05T10:00:00Z"),
            _ => json!("text"),
        },
        "integer" => lower_bound_or(schema, json!(0)),
        "number" => lower_bound_or(schema, json!(1.5)),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

/// Returns a number schema's `minimum`, or `fallback` when it has none.
fn lower_bound_or(schema: &Value, fallback: Value) -> Value {
    if schema["minimum"].is_number() {
        schema["minimum"].clone()
    } else {
        fallback
    }
}

fn schema_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Escapes a description and shows the spans it puts in backticks as code. The text is
/// escaped first, so the only markup in the result is the `<code>` elements added here.
fn prose(text: &str) -> String {
    let escaped = escape(text);
    let mut html = String::with_capacity(escaped.len());
    let mut in_code = false;
    let mut spans = escaped.split('`').peekable();
    while let Some(span) = spans.next() {
        html.push_str(span);
        if spans.peek().is_none() {
            break;
        }
        // A backtick without a partner closes no span, so it stays as written.
        if !in_code && spans.clone().count() < 2 {
            html.push('`');
            continue;
        }
        html.push_str(if in_code { "</code>" } else { "<code>" });
        in_code = !in_code;
    }
    html
}

/// Turns a name into an `id` attribute value: letters, digits, `-` and `_` only.
fn anchor(name: &str) -> String {
    name.chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || character == '-' || character == '_' {
                character
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> String {
        render(&serde_json::to_value(document()).expect("the document serializes"))
    }

    #[test]
    fn page_lists_every_operation_and_schema() {
        let page = page();
        let document = serde_json::to_value(document()).expect("the document serializes");
        for operation in collect_operations(&document) {
            let id = text(&operation.operation["operationId"]);
            assert!(
                page.contains(&format!("id=\"op-{}\"", anchor(id))),
                "the page has a section for {id}"
            );
            assert!(
                page.contains(&format!("<code>{}</code>", escape(operation.path))),
                "the page shows the path {}",
                operation.path
            );
        }
        for name in document["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .keys()
        {
            assert!(
                page.contains(&format!("id=\"schema-{name}\"")),
                "the page describes the schema {name}"
            );
        }
        assert!(
            page.contains("id=\"tag-runs\""),
            "operations are grouped by tag"
        );
        assert!(
            page.contains("&quot;workflow&quot;: &quot;flights&quot;"),
            "the submit example is shown"
        );
    }

    #[test]
    fn page_loads_nothing_from_elsewhere() {
        let page = page();
        for needle in ["<script", "<link", "http://", "https://", "<img"] {
            assert!(!page.contains(needle), "the page has no {needle}");
        }
    }

    #[test]
    fn text_from_the_document_is_escaped() {
        let document = json!({
            "info": {"title": "<script>alert(1)</script>", "version": "1\"", "description": "a & b"},
            "tags": [{"name": "x<y", "description": "'quoted'"}],
            "paths": {"/v1/<p>": {"get": {
                "tags": ["x<y"],
                "operationId": "op\"id",
                "summary": "<b>bold</b>",
                "parameters": [{"name": "<n>", "in": "query", "schema": {"type": "string", "enum": ["<e>"]}}],
                "responses": {"200": {"description": "<d>", "content": {"application/json": {"schema": {"type": "string", "example": "</pre><script>"}}}}}
            }}},
            "components": {"schemas": {"<S>": {"type": "object", "properties": {"<f>": {"type": "string", "description": "<desc>"}}}}}
        });
        let page = render(&document);
        assert!(!page.contains("<script>"), "no raw script tag: {page}");
        for raw in [
            "<b>", "<p>/", "<n>", "<e>", "<d>", "<S>", "<f>", "<desc>", "x<y", "op\"id",
        ] {
            assert!(!page.contains(raw), "{raw} appears escaped");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a &amp; b"));
        assert!(page.contains("&#39;quoted&#39;"));
    }

    #[test]
    fn backticks_become_code() {
        assert_eq!(prose("pass `cursor` on"), "pass <code>cursor</code> on");
        assert_eq!(prose("`a` and `b`"), "<code>a</code> and <code>b</code>");
        assert_eq!(prose("a ` alone"), "a ` alone");
        assert_eq!(prose("`<x>` and `"), "<code>&lt;x&gt;</code> and `");
    }

    #[test]
    fn examples_follow_schemas() {
        let document = json!({"components": {"schemas": {
            "Run": {"type": "object", "properties": {
                "id": {"type": "string", "format": "uuid"},
                "at": {"type": ["string", "null"], "format": "date-time"},
                "limit": {"type": "integer", "minimum": 1},
                "tags": {"type": "array", "items": {"type": "string"}},
                "self": {"$ref": "#/components/schemas/Run"}
            }}
        }}});
        let example = example_of(&document, &json!({"$ref": "#/components/schemas/Run"}), 0);
        assert_eq!(example["id"], "01934a6e-7b1c-7d2e-8f90-123456789abc");
        assert_eq!(example["at"], "2026-12-05T10:00:00Z");
        assert_eq!(example["limit"], 1);
        assert_eq!(example["tags"], json!(["text"]));
        assert!(
            example["self"]["self"].is_object(),
            "a recursive schema stops at a depth limit"
        );
    }
}
