//! The HTTP API as an OpenAPI 3.1 document, generated from the handlers' annotations and
//! the protocol's types (served at `GET /openapi.json`). The error answers every route
//! shares (401, 429, 503 for authenticated routes; 500 everywhere) are added here once
//! rather than repeated on each handler.

use axum::Router;
use axum::routing::get;
use inferpush_protocol::InferenceEvent;
use inferpush_protocol::http::Problem;
use inferpush_protocol::lifecycle::TASKS_PATH;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::AppState;
use crate::routes;

/// The media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "inferpush",
        description = "Asynchronous inference whose results are pushed over the Pusher Channels protocol. \
            Submit a task (`POST /v1/inference`, answered `202` at once), subscribe to the channel the answer \
            names with pusher-js or Laravel Echo, and receive `inference.started`, then `inference.completed` \
            or `inference.failed`, whose data is an `InferenceEvent`. The same events also come as server-sent \
            events (`GET /v1/events`), over MQTT and as signed webhooks (`GET /v1/delivery`). Errors are \
            `application/problem+json` (RFC 9457).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::inference::submit,
        routes::tasks::list,
        routes::tasks::status,
        routes::tasks::cancel,
        routes::models::list,
        routes::delivery::options,
        routes::events::user_events,
        routes::events::task_events,
        routes::openai::embeddings,
        routes::openai::chat::completions,
        routes::kserve::metadata,
        routes::kserve::ready,
        routes::kserve::infer,
        routes::channel_auth::authorize,
        routes::health::healthz,
        routes::health::readyz,
        document,
    ),
    components(schemas(InferenceEvent, Problem)),
    modifiers(&SharedAnswers),
    tags(
        (name = "tasks", description = "Submit tasks and follow them"),
        (name = "events", description = "Where a task's events go: server-sent events, and the sinks on offer"),
        (name = "openai", description = "OpenAI's embeddings and chat completions APIs over the same tasks (for OpenAI's SDKs and text-embeddings-inference clients)"),
        (name = "kserve", description = "KServe's Open Inference Protocol v2 for tensor models (any ONNX graph), over the same tasks"),
        (name = "pusher", description = "Sign Pusher channel subscriptions (pusher-js, Laravel Echo)"),
        (name = "operations", description = "Health, readiness and this document (metrics are on their own listener, INFERPUSH_API_METRICS_ADDR)"),
    ),
)]
pub struct ApiDoc;

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")),
)]
async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

/// An error answer with `description`, as problem+json.
pub fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
        .build()
}

fn header(description: &str, kind: Type) -> RefOr<utoipa::openapi::header::Header> {
    let schema = ObjectBuilder::new().schema_type(kind).build();
    RefOr::T(HeaderBuilder::new().schema(Some(schema)).description(Some(description)).build())
}

fn with_retry_after(response: Response) -> Response {
    let mut response = response;
    response.headers.insert("Retry-After".into(), header("Seconds to wait before retrying", Type::Integer));
    response
}

/// Adds the bearer scheme, the answers every route shares, and Laravel Echo's copy of the
/// channel-auth route.
struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key, or a JWT signed with the configured key"))
                    .build(),
            ),
        );
        if let Some(pusher) = openapi.paths.paths.get("/pusher/auth").cloned() {
            let mut echo = pusher;
            if let Some(operation) = echo.post.as_mut() {
                operation.operation_id = Some("authorize_echo".into());
                operation.summary = Some("The same, at Laravel Echo's default path".into());
            }
            openapi.paths.paths.insert("/broadcasting/auth".into(), echo);
        }
        link_submit_to_its_task(openapi);
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                add_shared_answers(operation);
            }
        }
    }
}

/// The `202` of a submit links to reading and cancelling the task it names (OpenAPI
/// links: clients and fuzzers follow them from a submit to its task).
fn link_submit_to_its_task(openapi: &mut utoipa::openapi::OpenApi) {
    let submit = openapi.paths.paths.get_mut(TASKS_PATH).and_then(|item| item.post.as_mut());
    let Some(RefOr::T(accepted)) = submit.and_then(|op| op.responses.responses.get_mut("202")) else {
        return;
    };
    for (name, operation) in [("ReadTask", "status"), ("CancelTask", "cancel")] {
        let link = LinkBuilder::new()
            .operation_id(operation)
            .parameter("task_id", "$response.body#/task_id")
            .description(format!("The task this submit created (`{operation}`)"))
            .build();
        accepted.links.insert(name.into(), RefOr::T(link));
    }
}

fn add_shared_answers(operation: &mut Operation) {
    let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let responses = &mut operation.responses.responses;
    let mut add = |status: &str, response: Response| {
        responses.entry(status.into()).or_insert(RefOr::T(response));
    };
    if authenticated {
        let mut unauthorized = problem("No credentials, or credentials this server does not know");
        unauthorized.headers.insert("WWW-Authenticate".into(), header("Always `Bearer`", Type::String));
        add("401", unauthorized);
        add("429", with_retry_after(problem("Over a rate or in-flight limit; retry after `Retry-After`")));
        add(
            "503",
            with_retry_after(problem(
                "RabbitMQ or Redis is unreachable, or the broker did not confirm a submit in time \
                 (then the problem names the task in `task_id` and `status_url`)",
            )),
        );
    }
    add("500", problem("An unexpected failure; it is logged, never shown"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_describes_every_route() {
        let json = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        let paths = json["paths"].as_object().unwrap();
        for path in [
            "/v1/inference",
            "/v1/inference/{task_id}",
            "/v1/models",
            "/v1/embeddings",
            "/pusher/auth",
            "/broadcasting/auth",
            "/healthz",
            "/readyz",
            "/openapi.json",
        ] {
            assert!(paths.contains_key(path), "{path} is missing");
        }
        let submit = &json["paths"]["/v1/inference"]["post"];
        assert!(submit["responses"]["202"]["headers"]["Location"].is_object(), "{submit}");
        assert_eq!(submit["responses"]["202"]["links"]["ReadTask"]["operationId"], "status");
        assert_eq!(
            submit["responses"]["401"]["content"][PROBLEM_JSON]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        assert!(submit["responses"]["503"]["headers"]["Retry-After"].is_object());
        let health = &json["paths"]["/healthz"]["get"]["responses"];
        assert!(health.get("401").is_none(), "an open route answers no 401");
        assert!(json["components"]["schemas"]["InferenceEvent"].is_object());
        assert_eq!(json["components"]["securitySchemes"][BEARER]["scheme"], "bearer");
    }
}
