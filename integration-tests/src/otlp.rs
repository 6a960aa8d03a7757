//! An OTLP/HTTP trace receiver for one test: it takes the JSON export requests the api and
//! the worker send to `{endpoint}/v1/traces` and keeps every span, with the service that
//! sent it.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use serde_json::Value;

/// One received span.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// `service.name` of the process that sent it.
    pub service: String,
    /// The span as OTLP JSON (`traceId`, `spanId`, `parentSpanId`, `name`, `attributes`…).
    pub span: Value,
}

impl ReceivedSpan {
    /// A string field of the span (`name`, `traceId`, `spanId`, `parentSpanId`).
    pub fn field(&self, name: &str) -> &str {
        self.span[name].as_str().unwrap_or_default()
    }
}

/// The receiver; stops with the test's runtime.
pub struct OtlpReceiver {
    /// Base URL for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl OtlpReceiver {
    /// Listens on a free port.
    pub async fn start() -> Self {
        let spans: Arc<Mutex<Vec<ReceivedSpan>>> = Arc::default();
        let kept = spans.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                    kept.lock().unwrap().extend(spans_of(&request));
                    axum::Json(serde_json::json!({}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, spans }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// The settings that point a process's trace export here, flushing quickly.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ]
    }
}

/// The spans of one `ExportTraceServiceRequest` in OTLP's JSON encoding.
fn spans_of(request: &Value) -> Vec<ReceivedSpan> {
    let mut found = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                found.push(ReceivedSpan { service: service.clone(), span: span.clone() });
            }
        }
    }
    found
}
