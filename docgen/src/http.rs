//! The HTTP reference: every route of the api's OpenAPI document, with its parameters,
//! body and answers.

use serde_json::Value;
use utoipa::OpenApi;

use crate::{cell, generated_from};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// A `$ref`'s last part, or the schema's type.
fn schema_name(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return format!("`{}`", reference.rsplit('/').next().unwrap_or(reference));
    }
    schema
        .get("type")
        .map(|t| format!("`{}`", t.as_str().map_or_else(|| t.to_string(), str::to_owned)))
        .unwrap_or_default()
}

fn contents(content: Option<&Value>) -> String {
    let Some(content) = content.and_then(Value::as_object) else { return String::new() };
    content
        .iter()
        .map(|(media, body)| {
            let schema = body.get("schema").map(schema_name).unwrap_or_default();
            if schema.is_empty() { format!("`{media}`") } else { format!("`{media}` {schema}") }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The page.
pub fn page() -> String {
    let document =
        serde_json::to_value(inferpush_api::openapi::ApiDoc::openapi()).expect("the document is JSON");
    let mut out = generated_from(
        "the api's OpenAPI document (`GET /openapi.json`, `api/src/openapi.rs` and the handlers' annotations)",
    );
    let paths = document["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        for method in METHODS {
            let Some(operation) = item.get(method) else { continue };
            out.push_str(&format!("## `{} {path}`\n\n", method.to_uppercase()));
            let description =
                operation.get("description").or(operation.get("summary")).and_then(Value::as_str);
            if let Some(description) = description {
                out.push_str(&format!("{}\n\n", description.trim()));
            }
            if operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty()) {
                out.push_str("Needs `Authorization: Bearer` (an API key or a JWT).\n\n");
            }
            if let Some(parameters) = operation.get("parameters").and_then(Value::as_array) {
                out.push_str("| parameter | in | required | meaning |\n| --- | --- | --- | --- |\n");
                for parameter in parameters {
                    out.push_str(&format!(
                        "| `{}` | {} | {} | {} |\n",
                        parameter["name"].as_str().unwrap_or_default(),
                        parameter["in"].as_str().unwrap_or_default(),
                        if parameter["required"].as_bool().unwrap_or(false) { "yes" } else { "no" },
                        cell(parameter["description"].as_str().unwrap_or_default())
                    ));
                }
                out.push('\n');
            }
            if let Some(body) = operation.get("requestBody") {
                out.push_str(&format!("Body: {}\n\n", contents(body.get("content"))));
            }
            out.push_str("| answer | meaning | body |\n| --- | --- | --- |\n");
            for (status, response) in operation["responses"].as_object().cloned().unwrap_or_default() {
                out.push_str(&format!(
                    "| {status} | {} | {} |\n",
                    cell(response["description"].as_str().unwrap_or_default()),
                    contents(response.get("content"))
                ));
            }
            out.push('\n');
        }
    }
    out
}
