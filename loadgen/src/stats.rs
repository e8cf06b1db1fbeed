//! Counting what happened: per operation a latency histogram (microseconds)
//! and outcomes by status; the report as a table or JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::api::Outcome;
use crate::mix::Op;

/// One operation's calls.
#[derive(Clone)]
pub struct OpStats {
    latency: Histogram<u64>,
    outcomes: BTreeMap<Outcome, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            // 1 µs .. 10 min, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"),
            outcomes: BTreeMap::new(),
        }
    }
}

impl OpStats {
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.max(1));
        *self.outcomes.entry(outcome).or_default() += 1;
    }
}

/// Every operation's calls.
#[derive(Clone, Default)]
pub struct Stats {
    pub ops: BTreeMap<Op, OpStats>,
}

impl Stats {
    pub fn record(&mut self, op: Op, outcome: Outcome, latency: Duration) {
        self.ops.entry(op).or_default().record(outcome, latency);
    }
}

/// Latency figures in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct OpReport {
    pub op: String,
    pub count: u64,
    pub ok: u64,
    /// Non-2xx answers by status (`io` for no answer).
    pub errors: BTreeMap<String, u64>,
    pub per_second: f64,
    pub latency: Latency,
}

/// How the orders placed during the run ended.
#[derive(Debug, Serialize, Default)]
pub struct SagaReport {
    pub orders_created: u64,
    /// Final status -> count (`pending` if it did not settle in time).
    pub outcomes: BTreeMap<String, u64>,
    /// Orders that reached a terminal status before the load ended, per
    /// second of load: the sustained saga throughput (a backlog finished
    /// afterwards does not count).
    pub completed_per_second: f64,
    /// created_at -> updated_at of the terminal orders (the server's clock).
    pub completion: Option<Latency>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub duration_s: f64,
    pub total_requests: u64,
    pub total_per_second: f64,
    pub operations: Vec<OpReport>,
    pub saga: SagaReport,
}

impl Report {
    pub fn new(mode: String, stats: &Stats, elapsed: Duration, saga: SagaReport) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let operations: Vec<OpReport> = stats
            .ops
            .iter()
            .map(|(op, s)| {
                let count: u64 = s.outcomes.values().sum();
                let ok = s
                    .outcomes
                    .iter()
                    .filter(|(o, _)| o.is_ok())
                    .map(|(_, n)| n)
                    .sum();
                OpReport {
                    op: op.name().to_owned(),
                    count,
                    ok,
                    errors: s
                        .outcomes
                        .iter()
                        .filter(|(o, _)| !o.is_ok())
                        .map(|(o, n)| (o.label(), *n))
                        .collect(),
                    per_second: count as f64 / secs,
                    latency: Latency::of(&s.latency),
                }
            })
            .collect();
        let total_requests = operations.iter().map(|o| o.count).sum();
        Self {
            mode,
            duration_s: secs,
            total_requests,
            total_per_second: total_requests as f64 / secs,
            operations,
            saga,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} for {:.1} s: {} requests, {:.1} req/s\n\n",
            self.mode, self.duration_s, self.total_requests, self.total_per_second
        );
        out += &format!(
            "{:<12} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}  errors\n",
            "operation", "count", "ok", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for o in &self.operations {
            let errors = if o.errors.is_empty() {
                "-".to_owned()
            } else {
                o.errors
                    .iter()
                    .map(|(k, v)| format!("{k}×{v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            out += &format!(
                "{:<12} {:>8} {:>8} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}\n",
                o.op,
                o.count,
                o.ok,
                o.per_second,
                o.latency.p50_ms,
                o.latency.p90_ms,
                o.latency.p99_ms,
                o.latency.max_ms,
                errors
            );
        }
        let s = &self.saga;
        out += &format!(
            "\nsaga: {} orders created; {}; {:.1} completed/s",
            s.orders_created,
            s.outcomes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            s.completed_per_second
        );
        if let Some(c) = &s.completion {
            out += &format!(
                "\nsaga completion (created -> terminal): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                c.p50_ms, c.p99_ms, c.max_ms
            );
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_counts_errors_by_status_and_quantiles_in_ms() {
        let mut a = Stats::default();
        for ms in 1..=100 {
            a.record(Op::View, Outcome::Status(200), Duration::from_millis(ms));
        }
        a.record(Op::View, Outcome::Status(503), Duration::from_millis(500));
        a.record(Op::Order, Outcome::Io, Duration::from_millis(5));
        let report = Report::new(
            "test".into(),
            &a,
            Duration::from_secs(2),
            SagaReport::default(),
        );
        let view = report.operations.iter().find(|o| o.op == "view").unwrap();
        assert_eq!((view.count, view.ok), (101, 100));
        assert_eq!(view.errors.get("503"), Some(&1));
        assert!(
            (view.latency.p50_ms - 51.0).abs() < 0.5,
            "{:?}",
            view.latency
        );
        assert!(
            (view.latency.max_ms - 500.0).abs() < 1.0,
            "{:?}",
            view.latency
        );
        assert!((view.per_second - 50.5).abs() < 1e-9);
        let order = report.operations.iter().find(|o| o.op == "order").unwrap();
        assert_eq!(order.errors.get("io"), Some(&1));
        assert_eq!(report.total_requests, 102);
        assert!(report.table().contains("503×1"));
    }
}
