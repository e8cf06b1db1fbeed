//! Prometheus metrics: one registry per service instance (so tests can run
//! several services in one process), RED metrics per route *template* (never
//! the raw path, which would explode label cardinality), rendered at `/metrics`.

use std::sync::Arc;
use std::time::Instant;

/// Services define their own metrics with the same crate version.
pub use prometheus;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The registry of one service and its HTTP metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_in_flight: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Latency buckets (seconds) that resolve both cache hits (~1 ms) and slow writes.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// A registry whose every series carries `service="<name>"`.
    pub fn new(service: &str) -> Self {
        let labels = std::iter::once(("service".to_string(), service.to_string())).collect();
        let registry =
            Registry::new_custom(None, Some(labels)).expect("static registry labels are valid");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route template and status",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("static metric definition");
        let http_in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being served")
            .expect("static metric definition");
        let metrics = Self {
            registry,
            http_requests,
            http_duration,
            http_in_flight,
        };
        metrics.register(metrics.http_requests.clone());
        metrics.register(metrics.http_duration.clone());
        metrics.register(metrics.http_in_flight.clone());
        metrics
    }

    /// Registers a service-specific collector. Names are static, so a clash is a bug.
    pub fn register<C: prometheus::core::Collector + 'static>(&self, collector: C) {
        self.registry
            .register(Box::new(collector))
            .expect("metric registered twice");
    }

    /// A registered counter with `labels`.
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::IntCounterVec {
        let counter = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), labels)
            .expect("static metric definition");
        self.register(counter.clone());
        counter
    }

    /// A registered integer gauge.
    pub fn int_gauge(&self, name: &str, help: &str) -> prometheus::IntGauge {
        let gauge = prometheus::IntGauge::new(name, help).expect("static metric definition");
        self.register(gauge.clone());
        gauge
    }

    /// A registered gauge.
    pub fn gauge(&self, name: &str, help: &str) -> prometheus::Gauge {
        let gauge = prometheus::Gauge::new(name, help).expect("static metric definition");
        self.register(gauge.clone());
        gauge
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Axum middleware recording the RED metrics of every request.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    metrics.http_in_flight.inc();
    let response = next.run(req).await;
    metrics.http_in_flight.dec();
    let status = response.status().as_u16().to_string();
    metrics
        .http_requests
        .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[method.as_str(), route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}
