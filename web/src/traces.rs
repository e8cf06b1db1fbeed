//! Traces without Docker: web receives the services' spans over OTLP/gRPC
//! (`OTLP_ADDR`; the services' `OTEL_EXPORTER_OTLP_ENDPOINT` points there
//! under `make up`), keeps the last `TRACE_CAPACITY` traces in memory, and
//! the console draws one as a waterfall, as .NET Aspire's dashboard does.
//! A sender must present `OTLP_TOKEN` in the `x-otlp-token` header (the
//! services send it with `OTEL_EXPORTER_OTLP_HEADERS`) when one is set.
//! Under compose and Kubernetes the services send to the collector and
//! Jaeger instead, and trace links open Jaeger (`JAEGER_URL`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use shared::shutdown::CancellationToken;
use subtle::ConstantTimeEq;

/// Most spans kept of one trace; more are counted, not kept.
pub const MAX_SPANS_PER_TRACE: usize = 2000;
/// Attributes kept of one span.
const MAX_ATTRIBUTES: usize = 24;

/// One span as the waterfall draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub span_id: String,
    pub parent_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: &'static str,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
    pub attributes: Vec<(String, String)>,
}

impl Span {
    pub fn duration_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }
}

/// A trace kept: its spans, and how many more came than were kept.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub spans: Vec<Span>,
    pub dropped: usize,
}

impl Trace {
    pub fn start_ns(&self) -> u64 {
        self.spans.iter().map(|s| s.start_ns).min().unwrap_or(0)
    }

    pub fn end_ns(&self) -> u64 {
        self.spans.iter().map(|s| s.end_ns).max().unwrap_or(0)
    }

    /// The services it crosses, in the order they first appear.
    pub fn services(&self) -> Vec<String> {
        let mut spans: Vec<&Span> = self.spans.iter().collect();
        spans.sort_by_key(|s| s.start_ns);
        let mut services: Vec<String> = Vec::new();
        for span in spans {
            if !services.contains(&span.service) {
                services.push(span.service.clone());
            }
        }
        services
    }

    /// The spans in waterfall order: each after its parent, siblings by
    /// start; with each its depth.
    pub fn waterfall(&self) -> Vec<(usize, &Span)> {
        let ids: std::collections::HashSet<&str> =
            self.spans.iter().map(|s| s.span_id.as_str()).collect();
        let mut children: HashMap<Option<&str>, Vec<&Span>> = HashMap::new();
        for span in &self.spans {
            // A parent not (yet) received: the span is drawn as a root.
            let parent = span.parent_id.as_deref().filter(|p| ids.contains(p));
            children.entry(parent).or_default().push(span);
        }
        for list in children.values_mut() {
            list.sort_by_key(|s| (s.start_ns, s.end_ns));
        }
        let mut out = Vec::with_capacity(self.spans.len());
        let mut stack: Vec<(usize, &Span)> = children
            .get(&None)
            .map(|roots| roots.iter().rev().map(|s| (0, *s)).collect())
            .unwrap_or_default();
        while let Some((depth, span)) = stack.pop() {
            out.push((depth, span));
            if let Some(kids) = children.get(&Some(span.span_id.as_str())) {
                stack.extend(kids.iter().rev().map(|s| (depth + 1, *s)));
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct Kept {
    traces: HashMap<String, Trace>,
    /// Trace ids, the least recently started first.
    order: VecDeque<String>,
}

/// The last traces received.
#[derive(Debug)]
pub struct TraceStore {
    kept: Mutex<Kept>,
    capacity: usize,
}

/// A line of the list of recent traces.
#[derive(Debug, Clone)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root: String,
    pub services: Vec<String>,
    pub spans: usize,
    pub duration_ms: f64,
    pub error: bool,
}

impl TraceStore {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            kept: Mutex::new(Kept::default()),
            capacity,
        })
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `spans` of trace `trace_id`; the oldest traces go over capacity.
    pub fn add(&self, trace_id: &str, spans: Vec<Span>) {
        let mut kept = self.kept();
        if !kept.traces.contains_key(trace_id) {
            kept.order.push_back(trace_id.to_string());
            while kept.order.len() > self.capacity {
                if let Some(old) = kept.order.pop_front() {
                    kept.traces.remove(&old);
                }
            }
        }
        let trace = kept.traces.entry(trace_id.to_string()).or_default();
        for span in spans {
            if trace.spans.len() < MAX_SPANS_PER_TRACE {
                trace.spans.push(span);
            } else {
                trace.dropped += 1;
            }
        }
    }

    pub fn get(&self, trace_id: &str) -> Option<Trace> {
        self.kept().traces.get(trace_id).cloned()
    }

    /// The newest `n` traces, newest first.
    pub fn recent(&self, n: usize) -> Vec<TraceSummary> {
        let kept = self.kept();
        kept.order
            .iter()
            .rev()
            .take(n)
            .filter_map(|id| {
                let trace = kept.traces.get(id)?;
                let root = trace
                    .waterfall()
                    .first()
                    .map(|(_, s)| format!("{}: {}", s.service, s.name))
                    .unwrap_or_default();
                Some(TraceSummary {
                    trace_id: id.clone(),
                    root,
                    services: trace.services(),
                    spans: trace.spans.len(),
                    duration_ms: trace.end_ns().saturating_sub(trace.start_ns()) as f64 / 1e6,
                    error: trace.spans.iter().any(|s| s.error),
                })
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.kept().traces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn kind(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// The spans of an export, by trace id.
pub fn spans_of(request: ExportTraceServiceRequest) -> HashMap<String, Vec<Span>> {
    let mut traces: HashMap<String, Vec<Span>> = HashMap::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a: &KeyValue| text(&a.value))
            .unwrap_or_else(|| "unknown".into());
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                if span.trace_id.len() != 16 {
                    continue;
                }
                let error = span.status.as_ref().is_some_and(|s| s.code == 2);
                traces.entry(hex(&span.trace_id)).or_default().push(Span {
                    span_id: hex(&span.span_id),
                    parent_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
                    service: service.clone(),
                    name: span.name,
                    kind: kind(span.kind),
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano.max(span.start_time_unix_nano),
                    error,
                    attributes: span
                        .attributes
                        .iter()
                        .take(MAX_ATTRIBUTES)
                        .map(|a| (a.key.clone(), text(&a.value)))
                        .collect(),
                });
            }
        }
    }
    traces
}

/// The OTLP trace service web runs.
#[derive(Clone)]
struct Receiver {
    store: Arc<TraceStore>,
    token: Option<Arc<str>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if let Some(token) = &self.token {
            let sent = request
                .metadata()
                .get("x-otlp-token")
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !bool::from(sent.ct_eq(token.as_bytes())) {
                return Err(tonic::Status::unauthenticated(
                    "x-otlp-token is missing or wrong",
                ));
            }
        }
        for (trace_id, spans) in spans_of(request.into_inner()) {
            self.store.add(&trace_id, spans);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves OTLP/gRPC on `listener` into `store` until `shutdown`.
pub async fn receive(
    listener: tokio::net::TcpListener,
    store: Arc<TraceStore>,
    token: Option<String>,
    shutdown: CancellationToken,
) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(otlp = ?addr, "receiving traces over OTLP/gRPC");
    let receiver = Receiver {
        store,
        token: token.map(Into::into),
    };
    let served = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver).max_decoding_message_size(16 * 1024 * 1024))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await;
    if let Err(e) = served {
        tracing::error!(error = %shared::app::with_causes(&e), "the OTLP receiver failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, service: &str, start: u64, end: u64) -> Span {
        Span {
            span_id: id.into(),
            parent_id: parent.map(Into::into),
            service: service.into(),
            name: format!("span {id}"),
            kind: "server",
            start_ns: start,
            end_ns: end,
            error: false,
            attributes: Vec::new(),
        }
    }

    #[test]
    fn a_waterfall_puts_each_span_under_its_parent() {
        let trace = Trace {
            spans: vec![
                span("c", Some("a"), "product-service", 30, 40),
                span("a", None, "web", 0, 100),
                span("b", Some("a"), "order-service", 10, 90),
                span("d", Some("b"), "order-service", 20, 25),
                span("e", Some("missing"), "payment-service", 50, 60),
            ],
            dropped: 0,
        };
        let order: Vec<(usize, &str)> = trace
            .waterfall()
            .into_iter()
            .map(|(depth, s)| (depth, s.span_id.as_str()))
            .collect();
        assert_eq!(order, [(0, "a"), (1, "b"), (2, "d"), (1, "c"), (0, "e")]);
        assert_eq!(
            trace.services(),
            ["web", "order-service", "product-service", "payment-service"]
        );
    }

    fn export(trace_id: [u8; 16]) -> ExportTraceServiceRequest {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                            value: Some(AnyValue::StringValue("order-service".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![OtlpSpan {
                        trace_id: trace_id.to_vec(),
                        span_id: vec![1; 8],
                        name: "POST /api/v1/orders".into(),
                        kind: 2,
                        start_time_unix_nano: 10,
                        end_time_unix_nano: 30,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn spans_are_taken_only_with_the_token() {
        let store = TraceStore::new(10);
        let receiver = Receiver {
            store: store.clone(),
            token: Some("secret-token".into()),
        };
        let refused = receiver.export(tonic::Request::new(export([7; 16]))).await;
        assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
        let mut wrong = tonic::Request::new(export([7; 16]));
        wrong
            .metadata_mut()
            .insert("x-otlp-token", "not-it".parse().unwrap());
        assert!(receiver.export(wrong).await.is_err());
        assert!(store.is_empty());
        let mut right = tonic::Request::new(export([7; 16]));
        right
            .metadata_mut()
            .insert("x-otlp-token", "secret-token".parse().unwrap());
        receiver.export(right).await.unwrap();
        let trace = store.get(&"07".repeat(16)).unwrap();
        assert_eq!(trace.spans[0].service, "order-service");
        assert_eq!(
            (trace.spans[0].kind, trace.spans[0].duration_ms()),
            ("server", 0.00002)
        );
    }

    #[test]
    fn the_store_keeps_the_newest_traces_and_bounds_each() {
        let store = TraceStore::new(2);
        store.add("t1", vec![span("a", None, "web", 0, 1)]);
        store.add("t2", vec![span("a", None, "web", 0, 1)]);
        store.add("t1", vec![span("b", Some("a"), "web", 0, 1)]);
        store.add("t3", vec![span("a", None, "web", 0, 1)]);
        assert!(store.get("t1").is_none());
        assert_eq!(store.len(), 2);
        assert_eq!(store.recent(5)[0].trace_id, "t3");
        let many = (0..MAX_SPANS_PER_TRACE + 5)
            .map(|i| span(&i.to_string(), None, "web", 0, 1))
            .collect();
        store.add("t4", many);
        let t4 = store.get("t4").unwrap();
        assert_eq!((t4.spans.len(), t4.dropped), (MAX_SPANS_PER_TRACE, 5));
    }
}
