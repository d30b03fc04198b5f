//! [`Metrics`]: the counters behind `GET /metrics`, rendered as Prometheus
//! text; every name starts with `runbox_`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the run duration histogram.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// A pool gauge or counter: name, help, how to read it.
type PoolField = (
    &'static str,
    &'static str,
    fn(&orchestrator_core::PoolStats) -> u64,
);

#[derive(Debug, Default)]
struct Counts {
    runs: BTreeMap<String, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    sandboxes_created: u64,
    sandboxes_reaped: u64,
    rejected: BTreeMap<&'static str, u64>,
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
}

/// Gauges read when the metrics are rendered.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Commands executing.
    pub in_flight: usize,
    /// Commands waiting.
    pub queued: usize,
    /// Live sandboxes.
    pub sandboxes: usize,
    /// Per backend instance: (label, pool stats).
    pub pools: Vec<(String, orchestrator_core::PoolStats)>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A run ended with `status` (the result's status, or cancelled or
    /// failed) after `took`.
    pub fn run_ended(&self, status: &str, took: Duration) {
        let mut c = self.lock();
        *c.runs.entry(status.to_string()).or_default() += 1;
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                c.buckets[i] += 1;
            }
        }
        c.count += 1;
        c.sum += s;
    }

    /// A sandbox was created.
    pub fn sandbox_created(&self) {
        self.lock().sandboxes_created += 1;
    }

    /// The reaper removed a sandbox past its TTL.
    pub fn sandbox_reaped(&self) {
        self.lock().sandboxes_reaped += 1;
    }

    /// A request was refused for backpressure (`queue_full`,
    /// `too_many_sandboxes`).
    pub fn rejected(&self, code: &'static str) {
        *self.lock().rejected.entry(code).or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, g: &Gauges) -> String {
        let c = self.lock();
        let mut o = String::new();
        let _ = writeln!(o, "# HELP runbox_runs_total Runs ended, by status.");
        let _ = writeln!(o, "# TYPE runbox_runs_total counter");
        for (status, n) in &c.runs {
            let _ = writeln!(o, "runbox_runs_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP runbox_run_duration_seconds Wall time of runs, from admission to result."
        );
        let _ = writeln!(o, "# TYPE runbox_run_duration_seconds histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "runbox_run_duration_seconds_bucket{{le=\"{b}\"}} {}",
                c.buckets[i]
            );
        }
        let _ = writeln!(
            o,
            "runbox_run_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            c.count
        );
        let _ = writeln!(o, "runbox_run_duration_seconds_sum {}", c.sum);
        let _ = writeln!(o, "runbox_run_duration_seconds_count {}", c.count);
        let gauges = [
            (
                "runbox_runs_in_flight",
                "Commands executing now.",
                g.in_flight,
            ),
            (
                "runbox_queue_depth",
                "Commands waiting for a slot.",
                g.queued,
            ),
            ("runbox_sandboxes_live", "Sandboxes alive now.", g.sandboxes),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(o, "# HELP runbox_sandboxes_created_total Sandboxes created.\n# TYPE runbox_sandboxes_created_total counter\nrunbox_sandboxes_created_total {}", c.sandboxes_created);
        let _ = writeln!(o, "# HELP runbox_sandboxes_reaped_total Sandboxes removed past their TTL.\n# TYPE runbox_sandboxes_reaped_total counter\nrunbox_sandboxes_reaped_total {}", c.sandboxes_reaped);
        let _ = writeln!(o, "# HELP runbox_rejected_total Requests refused for backpressure, by code.\n# TYPE runbox_rejected_total counter");
        for (code, n) in &c.rejected {
            let _ = writeln!(o, "runbox_rejected_total{{code=\"{code}\"}} {n}");
        }
        let pool_fields: [PoolField; 5] = [
            ("runbox_pool_size", "Configured warm pool size.", |p| {
                p.size as u64
            }),
            ("runbox_pool_ready", "Prepared sandboxes waiting.", |p| {
                p.ready as u64
            }),
            (
                "runbox_pool_hits_total",
                "Workspaces handed out from the pool.",
                |p| p.hits,
            ),
            (
                "runbox_pool_misses_total",
                "Workspaces made fresh for an empty pool.",
                |p| p.misses,
            ),
            (
                "runbox_pool_refill_failures_total",
                "Refills that failed.",
                |p| p.refill_failures,
            ),
        ];
        for (name, help, f) in pool_fields {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (label, p) in &g.pools {
                let _ = writeln!(o, "{name}{{backend=\"{label}\"}} {}", f(p));
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.run_ended("exited", Duration::from_millis(3));
        m.run_ended("exited", Duration::from_millis(300));
        m.run_ended("cancelled", Duration::from_secs(100));
        let text = m.render(&Gauges {
            in_flight: 2,
            ..Gauges::default()
        });
        assert!(text.contains("runbox_runs_total{status=\"exited\"} 2"));
        assert!(text.contains("runbox_runs_total{status=\"cancelled\"} 1"));
        assert!(text.contains("runbox_run_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("runbox_run_duration_seconds_bucket{le=\"0.5\"} 2"));
        assert!(text.contains("runbox_run_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("runbox_runs_in_flight 2"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("runbox_"), "{line}");
        }
    }
}
