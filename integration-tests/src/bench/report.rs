//! The sweep's report: a Markdown table, the figures as JSON, and an SVG plot of latency
//! against the offered rate for the platform and for its two parts alone.

use std::path::Path;

use plotters::prelude::*;
use serde_json::json;

use super::Latencies;
use super::platform::PlatformRun;

/// One offered rate: the platform's run and its parts alone.
#[derive(Debug, Clone)]
pub struct RatePoint {
    /// The platform under load.
    pub platform: PlatformRun,
    /// A confirmed publish to RabbitMQ.
    pub publish: Latencies,
    /// A push-server REST trigger until a subscribed client has the event.
    pub trigger: Latencies,
}

impl RatePoint {
    /// End-to-end p50 over (confirm p50 + push p50): what the platform adds to its parts.
    pub fn overhead(&self) -> f64 {
        self.platform.end_to_end.percentile_ms(50.0)
            / (self.publish.percentile_ms(50.0) + self.trigger.percentile_ms(50.0))
    }

    /// CPU milliseconds per task of `process`.
    pub fn cpu(&self, process: &str) -> f64 {
        self.platform
            .cpu_ms_per_task
            .iter()
            .find(|(name, _)| *name == process)
            .map_or(f64::NAN, |(_, ms)| *ms)
    }

    /// Held: every accepted task delivered, none misrouted, and p99 under `p99_ms`.
    pub fn sustained(&self, p99_ms: f64) -> bool {
        let run = &self.platform;
        run.lost == 0 && run.misrouted == 0 && run.refused == 0 && run.end_to_end.percentile_ms(99.0) < p99_ms
    }
}

/// The processes whose CPU time the table shows, in its order.
pub const PROCESSES: [&str; 6] = ["api", "worker", "rabbitmq", "push", "redis", "loadgen"];

/// The Markdown table of the sweep, with the summary lines the issue asks for under it.
pub fn table(points: &[RatePoint]) -> String {
    let mut out = String::from(
        "| rate/s | sent | delivered | lost | misrouted | refused | submit p50 | submit p99 | e2e p50 | e2e p90 | e2e p99 | \
         e2e max | confirm p50/p99 | trigger p50/p99 | e2e p50 ÷ parts | CPU ms/task: api+worker | ",
    );
    out += &PROCESSES.join(" | ");
    out += " | api RSS max | push RSS max |\n|";
    out += &"---|".repeat(23);
    out += "\n";
    for point in points {
        let run = &point.platform;
        let ms = |l: &Latencies, p: f64| format!("{:.1}", l.percentile_ms(p));
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {}/{} | {:.2}× | {:.3} | {} | {:.1} MB | {:.1} MB |\n",
            run.rate,
            run.sent,
            run.delivered,
            run.lost,
            run.misrouted,
            run.refused,
            ms(&run.submit, 50.0),
            ms(&run.submit, 99.0),
            ms(&run.end_to_end, 50.0),
            ms(&run.end_to_end, 90.0),
            ms(&run.end_to_end, 99.0),
            format_args!("{:.1}", run.end_to_end.max_ms()),
            ms(&point.publish, 50.0),
            ms(&point.publish, 99.0),
            ms(&point.trigger, 50.0),
            ms(&point.trigger, 99.0),
            point.overhead(),
            point.cpu("api") + point.cpu("worker"),
            PROCESSES.iter().map(|p| format!("{:.3}", point.cpu(p))).collect::<Vec<_>>().join(" | "),
            run.rss_max("api") as f64 / 1e6,
            run.rss_max("push") as f64 / 1e6,
        );
    }
    out += "\nWhere the time goes, p50/p99 ms (the queue, run and push parts from each event's own `timings`):\n\n\
        | rate/s | send → 202 | accepted → started | started → result | result → client | end to end |\n|---|---|---|---|---|---|\n";
    for point in points {
        let run = &point.platform;
        let both = |l: &Latencies| format!("{:.1}/{:.1}", l.percentile_ms(50.0), l.percentile_ms(99.0));
        out += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            run.rate,
            both(&run.submit),
            both(&run.queued),
            both(&run.running),
            both(&run.pushing),
            both(&run.end_to_end)
        );
    }
    let best = points.iter().filter(|p| p.sustained(100.0)).map(|p| p.platform.rate).max();
    out += &format!(
        "\nHighest rate held with e2e p99 < 100 ms, nothing lost or refused: {}\n",
        best.map_or("none of the rates".to_owned(), |r| format!("{r} tasks/s"))
    );
    out
}

/// The sweep as JSON, for comparing runs.
pub fn json(points: &[RatePoint]) -> serde_json::Value {
    let latencies = |l: &Latencies| {
        json!({"count": l.len(), "p50_ms": l.percentile_ms(50.0), "p90_ms": l.percentile_ms(90.0),
               "p99_ms": l.percentile_ms(99.0), "max_ms": l.max_ms()})
    };
    let rates: Vec<_> = points
        .iter()
        .map(|p| {
            let run = &p.platform;
            json!({
                "rate": run.rate, "sent": run.sent, "accepted": run.accepted, "refused": run.refused,
                "delivered": run.delivered, "lost": run.lost, "misrouted": run.misrouted,
                "duplicates": run.duplicates, "submit": latencies(&run.submit),
                "end_to_end": latencies(&run.end_to_end), "queued": latencies(&run.queued),
                "running": latencies(&run.running), "pushing": latencies(&run.pushing), "confirmed_publish": latencies(&p.publish),
                "pusher_trigger": latencies(&p.trigger), "overhead_p50": p.overhead(),
                "cpu_ms_per_task": run.cpu_ms_per_task.iter().map(|(n, ms)| (n.to_string(), json!(ms))).collect::<serde_json::Map<_, _>>(),
                "rss_max_bytes": run.rss_max_bytes.iter().map(|(n, b)| (n.to_string(), json!(b))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    json!({ "rates": rates })
}

/// Which latencies of a rate point a plotted line shows.
type Series = &'static dyn Fn(&RatePoint) -> &Latencies;

/// Plots p50 and p99 against the offered rate (both axes logarithmic) into `path` (SVG).
pub fn plot(points: &[RatePoint], path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let rates: Vec<f64> = points.iter().map(|p| f64::from(p.platform.rate)).collect();
    let (low, high) =
        (rates.iter().copied().fold(f64::MAX, f64::min), rates.iter().copied().fold(0.0, f64::max));
    let series: [(&str, Series, RGBColor); 3] = [
        ("platform end to end", &|p| &p.platform.end_to_end, RED),
        ("confirmed publish alone", &|p| &p.publish, BLUE),
        ("push-server trigger → client alone", &|p| &p.trigger, GREEN),
    ];
    let top = points
        .iter()
        .flat_map(|p| series.iter().map(move |(_, get, _)| get(p).percentile_ms(99.0)))
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("inferpush: latency against offered rate (solid p50, dashed p99)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((low * 0.8..high * 1.25).log_scale(), (0.1..top * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("tasks per second")
        .y_desc("milliseconds")
        .x_labels(8)
        .x_label_formatter(&|rate| format!("{rate:.0}"))
        .y_label_formatter(&|ms| format!("{ms}"))
        .draw()?;
    for (name, get, color) in series {
        for (p, dashed) in [(50.0, false), (99.0, true)] {
            let line: Vec<(f64, f64)> = points
                .iter()
                .map(|point| (f64::from(point.platform.rate), get(point).percentile_ms(p)))
                .filter(|(_, v)| v.is_finite() && *v > 0.0)
                .collect();
            let style = color.stroke_width(2);
            if dashed {
                chart.draw_series(DashedLineSeries::new(line.clone(), 6, 4, style))?;
            } else {
                chart
                    .draw_series(LineSeries::new(line.clone(), style))?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            chart.draw_series(line.into_iter().map(|xy| Circle::new(xy, 3, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
