//! Logs and traces.
//!
//! Logs are JSON lines on stdout through `tracing`, filtered by `RUST_LOG`
//! (default `info`); inside a span every line carries `trace_id` and
//! `span_id`. Spans are OpenTelemetry spans (`tracing-opentelemetry`), with
//! the service's name and version as resource attributes, exported over
//! OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Without it, or with
//! the collector down, trace context is still made and propagated (W3C
//! TraceContext + Baggage) across HTTP, gRPC and Kafka; only the export is
//! skipped, and a collector that is down never stops a service.
//!
//! [`init`] is safe to call more than once (tests start many services in
//! one process; the first call wins).

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// The tracer provider; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "flushing traces failed");
        }
    }
}

fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

/// Installs logging and tracing for `service`.
pub fn init(service: &'static str) -> Telemetry {
    global::set_text_map_propagator(propagator());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty());
    let mut export = Ok(());
    if let Some(endpoint) = &endpoint {
        use opentelemetry_otlp::WithExportConfig;
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => export = Err(e.to_string()),
        }
    }
    let provider = builder.build();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info,h2=warn"));
    // RUST_LOG filters the log lines only: spans are traced at INFO
    // whatever the log level, or a quiet service would vanish from traces.
    let installed = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(service))
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .with(trace_ids_layer())
        .with(
            fmt::layer()
                .event_format(JsonLines { service })
                .with_filter(filter),
        )
        .try_init()
        .is_ok();
    if !installed {
        return Telemetry { provider: None };
    }
    global::set_tracer_provider(provider.clone());
    match (&endpoint, export) {
        (Some(endpoint), Ok(())) => {
            tracing::info!(version = env!("CARGO_PKG_VERSION"), otlp = %endpoint, "telemetry initialised; exporting traces")
        }
        (Some(endpoint), Err(e)) => {
            tracing::warn!(otlp = %endpoint, error = %e, "cannot export traces; going on without")
        }
        (None, _) => tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            "telemetry initialised; OTEL_EXPORTER_OTLP_ENDPOINT unset, traces not exported"
        ),
    }
    Telemetry {
        provider: Some(provider),
    }
}

/// The W3C `traceparent` of the current span, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    let mut carrier = std::collections::HashMap::new();
    global::get_text_map_propagator(|p| {
        p.inject_context(&tracing::Span::current().context(), &mut carrier)
    });
    carrier.remove("traceparent")
}

/// The trace id (32 hex digits) of the current span, if it belongs to a
/// trace: what Jaeger finds the trace by.
pub fn current_trace_id() -> Option<String> {
    let id = tracing::Span::current()
        .context()
        .span()
        .span_context()
        .trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
}

/// The trace context carried by `headers` (HTTP or gRPC metadata as HTTP headers).
pub fn extract_http(headers: &http::HeaderMap) -> Context {
    global::get_text_map_propagator(|p| p.extract(&opentelemetry_http::HeaderExtractor(headers)))
}

/// Writes the current span's trace context into `headers`.
pub fn inject_http(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers))
    });
}

/// The trace context of a `traceparent` value (from a Kafka header).
pub fn extract_traceparent(traceparent: &str) -> Context {
    let carrier: std::collections::HashMap<String, String> =
        [("traceparent".to_string(), traceparent.to_string())].into();
    global::get_text_map_propagator(|p| p.extract(&carrier))
}

/// Makes `span` a child of `parent` (a no-op when `parent` holds no trace).
pub fn set_parent(span: &tracing::Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The span of an incoming HTTP request or gRPC call, continuing the
/// caller's trace from its `traceparent` header.
pub fn server_span<B>(request: &http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        http.method = %request.method(),
        http.path = %request.uri().path(),
    );
    set_parent(&span, extract_http(request.headers()));
    span
}

/// Writes the current span's trace context into a gRPC request's metadata.
pub fn inject_grpc<T>(request: &mut tonic::Request<T>) {
    let mut headers = http::HeaderMap::new();
    inject_http(&mut headers);
    for (key, value) in &headers {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_str().as_bytes()),
            value.to_str().map(tonic::metadata::MetadataValue::try_from),
        ) && let Ok(value) = value
        {
            request.metadata_mut().insert(key, value);
        }
    }
}

/// Links `span` to the span of `other` (the producer of a consumed event).
pub fn link(span: &tracing::Span, other: &Context) {
    let context = other.span().span_context().clone();
    if context.is_valid() {
        span.add_link(context);
    }
}

/// The OpenTelemetry ids of a span, as its log lines show them.
struct TraceIds {
    trace_id: String,
    span_id: String,
}

fn trace_ids_layer() -> TraceIdsLayer {
    TraceIdsLayer {
        dispatch: std::sync::OnceLock::new(),
    }
}

/// Records the current span's [`TraceIds`] before each event is written.
/// (A formatter can't ask for them itself: while an event is dispatched,
/// `tracing` hides the dispatcher from code it calls.) They are read at
/// each event, not at span creation, because a span's parent — and so its
/// trace — may be set after it is created.
struct TraceIdsLayer {
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl<S> tracing_subscriber::Layer<S> for TraceIdsLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(
        &self,
        _event: &tracing::Event<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = ctx.lookup_current() else {
            return;
        };
        let Some(dispatch) = self.dispatch.get().and_then(|d| d.upgrade()) else {
            return;
        };
        let Some(cx) = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch) else {
            return;
        };
        let otel_span = cx.span();
        let context = otel_span.span_context();
        if context.is_valid() {
            span.extensions_mut().replace(TraceIds {
                trace_id: context.trace_id().to_string(),
                span_id: context.span_id().to_string(),
            });
        }
    }
}

/// A JSON object per line: time, level, target, the event's fields, the
/// current span's name and, inside a trace, `trace_id` and `span_id`.
struct JsonLines {
    service: &'static str,
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("service".into(), self.service.into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut Fields(&mut line));
        if let Some(span) = ctx.lookup_current() {
            line.insert("span".into(), span.name().into());
            if let Some(ids) = span.extensions().get::<TraceIds>() {
                line.insert("trace_id".into(), ids.trace_id.clone().into());
                line.insert("span_id".into(), ids.span_id.clone().into());
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_inside_a_span_carry_its_trace_and_span_ids() {
        global::set_text_map_propagator(propagator());
        let sink = Sink::default();
        let provider = SdkTracerProvider::builder().build();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(trace_ids_layer())
            .with(
                fmt::layer()
                    .event_format(JsonLines { service: "test" })
                    .with_writer(move || writer.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("work");
            set_parent(
                &span,
                extract_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            );
            let _entered = span.enter();
            tracing::info!(answer = 42, "inside");
            let traceparent = current_traceparent().unwrap();
            assert!(traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "outside");
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["answer"], 42);
        assert_eq!(lines[1]["service"], "test");
        assert_eq!(lines[1]["span"], "work");
        assert_eq!(lines[1]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        let span_id = lines[1]["span_id"].as_str().unwrap();
        assert_eq!(span_id.len(), 16);
        assert_ne!(
            span_id, "b7ad6b7169203331",
            "its own span, a child of the caller's"
        );
    }
}
