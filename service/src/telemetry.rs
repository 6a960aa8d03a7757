//! Tracing for a long-running process: lines on stderr filtered by `RUST_LOG` (default
//! `info`), human-readable, or JSON with `INFERPUSH_LOG_FORMAT=json`. In JSON each line
//! carries the span it was logged in: a task's lines name its `task_id` and `trace_id`
//! (the W3C trace id that travels with the task from the api through RabbitMQ to the
//! worker), so one task's lines from every process can be joined.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("INFERPUSH_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    if json {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
}

/// The trace id of a W3C `traceparent` (`00-{trace id}-{parent id}-{flags}`), if it is one.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace_id)
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
}
