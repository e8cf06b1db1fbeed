//! Prometheus metrics: one registry per service instance (so tests can run
//! several services in one process), RED metrics per route *template* (never
//! the raw path, which would explode label cardinality), gRPC calls by
//! method and status code on both sides, rendered at `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Services define their own metrics with the same crate version.
pub use prometheus;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The registry of one service and its HTTP metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_in_flight: IntGauge,
    grpc_server: GrpcCalls,
    grpc_client: GrpcCalls,
}

/// Calls by method and code, and their latency by method, on one side.
#[derive(Clone)]
struct GrpcCalls {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl GrpcCalls {
    fn new(side: &str) -> Self {
        Self {
            requests: IntCounterVec::new(
                Opts::new(
                    format!("grpc_{side}_requests_total"),
                    format!("gRPC calls ({side} side) by method and status code"),
                ),
                &["method", "code"],
            )
            .expect("static metric definition"),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    format!("grpc_{side}_request_duration_seconds"),
                    format!("gRPC call latency ({side} side) by method"),
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["method"],
            )
            .expect("static metric definition"),
        }
    }

    fn observe(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        self.requests
            .with_label_values(&[method, code_name(code)])
            .inc();
        self.duration
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }
}

/// The canonical name of a gRPC status code (as gRPC's own tooling prints it).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
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
            grpc_server: GrpcCalls::new("server"),
            grpc_client: GrpcCalls::new("client"),
        };
        metrics.register(metrics.http_requests.clone());
        metrics.register(metrics.http_duration.clone());
        metrics.register(metrics.http_in_flight.clone());
        for calls in [&metrics.grpc_server, &metrics.grpc_client] {
            metrics.register(calls.requests.clone());
            metrics.register(calls.duration.clone());
        }
        metrics
    }

    /// Registers a service-specific collector. Names are static, so a clash is a bug.
    pub fn register<C: prometheus::core::Collector + 'static>(&self, collector: C) {
        self.registry
            .register(Box::new(collector))
            .expect("metric registered twice");
    }

    /// `metric`, registered; the definitions are the program's own, so a
    /// bad one is a bug found at start-up.
    fn registered<C>(&self, metric: Result<C, prometheus::Error>) -> C
    where
        C: prometheus::core::Collector + Clone + 'static,
    {
        let metric = metric.expect("static metric definition");
        self.register(metric.clone());
        metric
    }

    /// A registered counter with `labels`.
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.registered(IntCounterVec::new(Opts::new(name, help), labels))
    }

    /// A registered counter.
    pub fn int_counter(&self, name: &str, help: &str) -> prometheus::IntCounter {
        self.registered(prometheus::IntCounter::new(name, help))
    }

    /// A registered integer gauge with `labels`.
    pub fn int_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.registered(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    /// A registered gauge with `labels`.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
        self.registered(prometheus::GaugeVec::new(Opts::new(name, help), labels))
    }

    /// A registered integer gauge.
    pub fn int_gauge(&self, name: &str, help: &str) -> prometheus::IntGauge {
        self.registered(prometheus::IntGauge::new(name, help))
    }

    /// A registered gauge.
    pub fn gauge(&self, name: &str, help: &str) -> prometheus::Gauge {
        self.registered(prometheus::Gauge::new(name, help))
    }

    /// Records one outgoing gRPC call (one attempt) of `method`
    /// (`/package.Service/Method`) that ended with `code`.
    pub fn observe_grpc_client(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        self.grpc_client.observe(method, code, elapsed);
    }

    /// The tower layer that records every incoming gRPC call; add it to the
    /// tonic server with `Server::builder().layer(metrics.grpc_layer())`.
    pub fn grpc_layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            calls: self.grpc_server.clone(),
        }
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

/// The `method` label: a standard method's name, or `other`, so made-up
/// methods (anyone may send `ZZ1`, `ZZ2`, ...) cannot grow the series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Axum middleware recording the RED metrics of every request.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    metrics.http_in_flight.inc();
    let response = next.run(req).await;
    metrics.http_in_flight.dec();
    let status = response.status().as_u16().to_string();
    metrics
        .http_requests
        .with_label_values(&[method, route.as_str(), status.as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[method, route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}

/// Records incoming gRPC calls: `grpc_server_requests_total{method,code}` and
/// `grpc_server_request_duration_seconds{method}`.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    calls: GrpcCalls,
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            calls: self.calls.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around tonic's routes.
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    calls: GrpcCalls,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let calls = self.calls.clone();
        let start = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            // Our calls are unary: a failure is a "trailers-only" response
            // whose headers carry grpc-status; a response without it is a
            // success whose OK comes in the trailers.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unknown,
            };
            // An unknown path is the caller's invention: one label for all of them.
            let method = if code == tonic::Code::Unimplemented {
                "<unknown>"
            } else {
                method.as_str()
            };
            calls.observe(method, code, start.elapsed());
            result
        })
    }
}
