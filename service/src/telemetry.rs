//! Tracing for a long-running process: lines on stderr filtered by `RUST_LOG` (default
//! `info`), human-readable, or JSON with `INFERPUSH_LOG_FORMAT=json`. In JSON each line
//! carries the span it was logged in: a task's lines name its `task_id` and `trace_id`
//! (the W3C trace id that travels with the task from the api through RabbitMQ to the
//! worker), so one task's lines from every process can be joined.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, the
//! spans are also exported as OpenTelemetry traces over OTLP/HTTP (JSON encoding), one trace
//! per task: the api's `submit` span, then the worker's `task` span with `queue_wait`,
//! `inference` (and `batch` for a batched model) and `push` under it. The standard `OTEL_*`
//! variables (headers, timeout, `OTEL_SERVICE_NAME`, sampling) apply.

use std::collections::HashMap;
use std::time::SystemTime;

use opentelemetry::Context;
pub use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The instrumentation scope of inferpush's spans.
const SCOPE: &str = "inferpush";

/// Keeps the trace exporter alive; dropping it (at the end of `main`) flushes the spans
/// not yet exported.
#[must_use = "dropping it stops the trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("flushing the trace exporter: {error}");
        }
    }
}

/// True when an OTLP endpoint is configured.
fn otlp_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.is_empty()))
}

fn tracer_provider(service: &'static str) -> anyhow::Result<SdkTracerProvider> {
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpJson).build()?;
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(name).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// Installs the global subscriber (and, when an OTLP endpoint is configured, the trace
/// export as `service`); call once, first thing in `main`, and keep what it returns.
pub fn init_tracing(service: &'static str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("INFERPUSH_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let lines = if json {
        tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    let (provider, failure) = match otlp_configured().then(|| tracer_provider(service)) {
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(error)) => (None, Some(error)),
        None => (None, None),
    };
    let otel = provider.as_ref().map(|provider| {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer().with_tracer(provider.tracer(SCOPE))
    });
    tracing_subscriber::registry().with(filter).with(lines).with(otel).init();
    if let Some(error) = failure {
        tracing::error!(error = format!("{error:#}"), "OTLP trace export is configured but could not start");
    }
    Telemetry { provider }
}

/// The trace id of a W3C `traceparent` (`00-{trace id}-{parent id}-{flags}`), if it is one.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace_id)
}

/// Makes `span` a child of the remote span `traceparent` names (a no-op without trace
/// export, or when `traceparent` is not a valid one).
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` that makes a remote span a child of `span`: `None` without trace
/// export (then the caller's own `traceparent` travels on unchanged).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Records a finished span `name` under `parent` that ran from `start` to `end`: for a
/// stretch no code ran in, like a task's wait in the queue, or a batch that served several
/// tasks. A no-op without trace export.
pub fn record_span(
    parent: &tracing::Span,
    name: &'static str,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
) {
    let parent: Context = parent.context();
    if !parent.span().span_context().is_valid() {
        return;
    }
    let tracer = opentelemetry::global::tracer(SCOPE);
    let mut span = tracer
        .span_builder(name)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent);
    span.end_with_timestamp(end);
}

/// `ms` since the Unix epoch as a time.
pub fn unix_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_id_is_the_second_field_of_a_traceparent() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(traceparent), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-short-00f067aa0ba902b7-01"), None);
    }

    #[test]
    fn a_span_continues_a_remote_trace_and_names_itself_as_the_next_parent() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer(SCOPE)));
        tracing::subscriber::with_default(subscriber, || {
            let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let span = tracing::info_span!("submit");
            continue_trace(&span, incoming);
            let outgoing = traceparent_of(&span).expect("a traceparent while tracing");
            assert_eq!(trace_id(&outgoing), trace_id(incoming), "{outgoing}");
            assert_ne!(outgoing, incoming, "the outgoing parent is this span, not the caller's");
        });
        assert_eq!(traceparent_of(&tracing::info_span!("untraced")), None);
    }
}
