//! The metrics reference: every metric the api and the worker describe when they start,
//! caught by a recorder that keeps the descriptions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use crate::{cell, generated_from};

/// One described metric.
#[derive(Clone)]
struct Metric {
    name: String,
    kind: &'static str,
    unit: Option<Unit>,
    description: String,
}

#[derive(Default)]
struct Described(Mutex<Vec<Metric>>);

impl Described {
    fn note(&self, kind: &'static str, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let metric =
            Metric { name: key.as_str().to_owned(), kind, unit, description: description.into_owned() };
        self.0.lock().expect("not poisoned").push(metric);
    }
}

impl Recorder for Described {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.note("counter", key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.note("gauge", key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.note("histogram", key, unit, description);
    }
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn described(describe: fn()) -> Vec<Metric> {
    let recorder = Arc::new(Described::default());
    metrics::with_local_recorder(recorder.as_ref(), describe);
    recorder.0.lock().expect("not poisoned").clone()
}

/// The page.
pub fn page() -> String {
    // Each metric with the binaries that describe it.
    let mut all: BTreeMap<String, (Metric, Vec<&'static str>)> = BTreeMap::new();
    for (binary, describe) in [
        ("api", inferpush_api::metrics::describe as fn()),
        ("worker", inferpush_worker::metrics::describe as fn()),
    ] {
        for metric in described(describe) {
            all.entry(metric.name.clone()).or_insert((metric, Vec::new())).1.push(binary);
        }
    }
    let mut out = generated_from(
        "the metrics the binaries describe (`api/src/metrics.rs`, `worker/src/metrics.rs`, `service/src/metrics.rs`)",
    );
    out.push_str("| metric | type | unit | from | what it counts |\n| --- | --- | --- | --- | --- |\n");
    for (name, (metric, from)) in &all {
        let unit = metric.unit.map_or(String::new(), |u| u.as_canonical_label().to_owned());
        out.push_str(&format!(
            "| `{name}` | {} | {unit} | {} | {} |\n",
            metric.kind,
            from.join(", "),
            cell(&metric.description)
        ));
    }
    out
}
