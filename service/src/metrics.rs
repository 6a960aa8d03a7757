//! Prometheus metrics for both binaries: the `metrics` facade with one
//! metrics-exporter-prometheus recorder per process, histogram buckets chosen for what each
//! histogram measures, and the text both serve on `/metrics`.
//!
//! Names follow Prometheus' conventions as text-embeddings-inference does: a prefix per
//! binary (`inferpush_api_`, `inferpush_worker_`), the unit in the name (`_seconds`),
//! `_total` on counters.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Durations: from half a millisecond (a confirm on an idle broker) to 30 s (a task waiting
/// out a backlog, a push retried through an outage).
const SECONDS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Tasks in one forward pass (the batcher takes up to `INFERPUSH_MAX_BATCH_SIZE`).
const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Real (unpadded) tokens in one forward pass: a sentence is 10–60, a batch up to thousands.
const BATCH_TOKENS: &[f64] = &[16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0];

/// False when `INFERPUSH_METRICS` is `false` (or `off`, `0`): then no recorder is installed,
/// every recording call site does nothing, and `/metrics` answers 404. For measuring what
/// the metrics cost (`make bench-e2e` with `--metrics off`).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        let setting = std::env::var("INFERPUSH_METRICS").unwrap_or_default();
        !matches!(setting.to_ascii_lowercase().as_str(), "false" | "off" | "0")
    })
}

/// Installs the recorder at start, unless metrics are turned off ([`enabled`]).
pub fn start() {
    if enabled() {
        install();
    }
}

/// The recorder of this process, installed on the first call; later calls return it.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_SIZES))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_batch_tokens".into()), BATCH_TOKENS))
                .expect("the bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows this one's");
            }
            let upkeep = handle.clone();
            // Histograms are drained on render; upkeep bounds them when nobody scrapes.
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}

/// `/metrics`: the text format, as Prometheus scrapes it.
pub async fn serve_metrics() -> axum::response::Response {
    use axum::response::IntoResponse;
    if !enabled() {
        let off = "metrics are turned off (INFERPUSH_METRICS=false)\n";
        return (axum::http::StatusCode::NOT_FOUND, off).into_response();
    }
    let body = install().render();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Task states written, by `status`: the api writes queued, cancelled, and failed when it
/// gives up on an unconfirmed publish; the worker the rest.
pub const TASK_STATES: &str = "inferpush_task_states_total";

/// One task state written (either binary).
pub fn task_state(status: inferpush_protocol::TaskStatus) {
    metrics::counter!(TASK_STATES, "status" => status.as_str()).increment(1);
}

/// Registers the descriptions of what both binaries record.
pub fn describe_shared() {
    metrics::describe_counter!(TASK_STATES, "Task states written, by status");
}

/// The models of the repository, as labels (set once at start).
static MODEL_NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();

/// Makes the repository's model names known as labels (once; later calls are ignored).
pub fn know_models(names: Vec<String>) {
    let _ = MODEL_NAMES.set(names.into_iter().map(|name| &*Box::leak(name.into_boxed_str())).collect());
}

/// A model name as a label: one of the repository's, or `unknown` (never text from
/// outside, which would let anyone make new series).
pub fn model_label(model: &str) -> &'static str {
    MODEL_NAMES
        .get()
        .and_then(|names| names.iter().find(|name| **name == model).copied())
        .unwrap_or("unknown")
}

/// Seconds between two millisecond timestamps (0 when `to` is earlier).
pub fn seconds_between_ms(from_ms: u64, to_ms: u64) -> f64 {
    to_ms.saturating_sub(from_ms) as f64 / 1000.0
}
