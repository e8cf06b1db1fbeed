//! One order is one trace: the five services run as their real binaries
//! (separate processes, as deployed) exporting OTLP to an in-process
//! collector; a client starts a trace and sends it along with register,
//! login and the order; the collector must then hold spans of that one
//! trace from all five services, each span's parent being a span of the
//! trace (or the client's), across HTTP, gRPC and Kafka.
//!
//! The binaries come from the same build (`cargo test --workspace
//! --all-targets`, which `make test` runs, builds them all).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::{Value, json};
use shared::auth::Role;
use shared::testing;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A received span: its service and ids, hex.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    /// The `db.system` attribute of a database or Redis call's span.
    db_system: Option<String>,
}

#[derive(Default, Clone)]
struct Collector(Arc<Mutex<Vec<Received>>>);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    AnyValue::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    kept.push(Received {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        db_system: span
                            .attributes
                            .iter()
                            .find(|a| a.key == "db.system")
                            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                                AnyValue::StringValue(s) => Some(s.clone()),
                                _ => None,
                            }),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Kills the service processes when the test ends, however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The service binaries next to this test's own (target/<profile>/).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the services first (cargo test --workspace --all-targets builds them)",
        path.display()
    );
    path
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{url}/ready")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready");
}

#[tokio::test]
async fn one_order_is_one_trace_across_the_five_services() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let topic = format!("test_trace_{}", uuid::Uuid::new_v4().simple());
    let brokers = std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let common: Vec<(String, String)> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("RUST_LOG", "warn".into()),
        ("JWT_PUBLIC_KEY", testing::TEST_PUBLIC_KEY.into()),
        // No user-service here: admin tokens are taken at their word.
        ("USER_SERVICE_URL", "none".into()),
        ("KAFKA_BROKERS", brokers),
        ("KAFKA_TOPIC", topic.clone()),
        ("KAFKA_GROUP_PREFIX", format!("{topic}.")),
        ("OUTBOX_POLL_MS", "200".into()),
        ("REDIS_URL", testing::redis_url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let product_grpc = free_port();
    let services: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "user-service",
            vec![
                ("JWT_PRIVATE_KEY", testing::TEST_PRIVATE_KEY.into()),
                ("ADMIN_PASSWORD", "trace-test-admin".into()),
                ("ARGON2_MEMORY_KIB", "8192".into()),
                ("ARGON2_ITERATIONS", "1".into()),
            ],
        ),
        (
            "product-service",
            vec![
                ("GRPC_ADDR", format!("127.0.0.1:{product_grpc}")),
                ("CACHE_KEY_PREFIX", format!("test:{topic}")),
            ],
        ),
        (
            "order-service",
            vec![
                ("GRPC_ADDR", format!("127.0.0.1:{}", free_port())),
                (
                    "PRODUCT_GRPC_URL",
                    format!("https://127.0.0.1:{product_grpc}"),
                ),
            ],
        ),
        (
            "payment-service",
            vec![("PAYMENT_SUCCESS_RATE", "1.0".into())],
        ),
        ("notification-service", vec![]),
    ];
    let mut children = Processes(Vec::new());
    let mut urls = HashMap::new();
    for (name, extra) in &services {
        let port = free_port();
        let database = testing::fresh_database(&name.replace("-service", "")).await;
        let child = Command::new(binary(name))
            .envs(common.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(testing::pki::trusted().vars(name))
            .envs(testing::event_vars(name))
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        children.0.push(child);
        urls.insert(*name, format!("http://127.0.0.1:{port}"));
    }
    let http = reqwest::Client::new();
    for url in urls.values() {
        wait_ready(&http, url).await;
    }

    // The client's trace travels with every request it makes.
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let send = |request: reqwest::RequestBuilder| {
        let traceparent = traceparent.clone();
        async move {
            let response = request
                .header("traceparent", traceparent)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{response:?}");
            response.json::<Value>().await.unwrap()
        }
    };
    let user = &urls["user-service"];
    send(http.post(format!("{user}/register")).json(
        &json!({"name": "Tracy", "email": "tracy@example.com", "password": "tracy-password"}),
    ))
    .await;
    let login = send(
        http.post(format!("{user}/login"))
            .json(&json!({"email": "tracy@example.com", "password": "tracy-password"})),
    )
    .await;
    let token = login["token"].as_str().unwrap().to_string();
    let product = send(
        http.post(format!("{}/products", urls["product-service"]))
            .bearer_auth(testing::token(1, Role::Admin))
            .json(&json!({"name": "Lamp", "price": 30.0, "stock": 3})),
    )
    .await;
    let order = send(
        http.post(format!("{}/orders", urls["order-service"]))
            .bearer_auth(&token)
            .json(&json!({"product_id": product["id"], "quantity": 1})),
    )
    .await;
    let order_url = format!("{}/orders/{}", urls["order-service"], order["id"]);

    // Paid, confirmed and notified; then every span of it reaches the collector.
    let mut status = Value::Null;
    for _ in 0..300 {
        status = http
            .get(&order_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["status"]
            .clone();
        if status == "paid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "paid");
    // Every step of its timeline was taken in this trace: the requests',
    // the consumers' and the relay's alike.
    let mut steps = Vec::new();
    for _ in 0..300 {
        let timeline: Value = http
            .get(format!("{order_url}/timeline"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        steps = timeline["steps"].as_array().cloned().unwrap_or_default();
        // placed, reserved, two publications, received, paid, committed.
        if steps.len() >= 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(steps.len(), 7, "{steps:#?}");
    for step in &steps {
        assert_eq!(step["trace_id"], TRACE_ID, "{steps:#?}");
    }
    let expected: HashSet<&str> = services.iter().map(|(name, _)| *name).collect();
    let mut spans = Vec::new();
    for _ in 0..300 {
        spans = collector
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .cloned()
            .collect::<Vec<_>>();
        let services: HashSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        // The notification of order_confirmed is the saga's last hop.
        let last_hop = spans
            .iter()
            .any(|s| s.service == "notification-service" && s.name == "order_confirmed process");
        // A parent is exported when it ends, after its children: wait for
        // every parent too, or a span looks orphaned when it is only early.
        let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
        let parents_in = spans
            .iter()
            .all(|s| s.parent == CLIENT_SPAN || ids.contains(s.parent.as_str()));
        if services == expected && last_hop && parents_in {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen: HashSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    let all = collector.0.lock().unwrap().len();
    assert_eq!(
        seen, expected,
        "{all} spans received in all; of this trace: {spans:#?}"
    );

    // Parent links: every span hangs off the client's span or another span of the trace.
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for span in &spans {
        assert!(
            span.parent == CLIENT_SPAN || ids.contains(span.parent.as_str()),
            "{span:?} has a parent outside the trace"
        );
    }
    // The hops are where they should be: gRPC into product-service under
    // order-service's client span, payment's consumer under order-service.
    let by_id: HashMap<&str, &Received> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent_service =
        |child: &Received| by_id.get(child.parent.as_str()).map(|p| p.service.clone());
    let reserve = spans
        .iter()
        .find(|s| s.service == "product-service" && s.name.contains("ReserveStock"))
        .expect("a ReserveStock span in product-service");
    assert_eq!(parent_service(reserve).as_deref(), Some("order-service"));
    let charge = spans
        .iter()
        .find(|s| s.service == "payment-service" && s.name == "order_created process")
        .expect("payment-service processing order_created");
    assert_eq!(parent_service(charge).as_deref(), Some("order-service"));
    let paid = spans
        .iter()
        .find(|s| s.service == "order-service" && s.name == "payment_success process")
        .expect("order-service processing payment_success");
    assert_eq!(parent_service(paid).as_deref(), Some("payment-service"));

    // Database and Redis calls are spans of the trace, under their service's
    // own spans: PostgreSQL in all five (register and login included), and the
    // product cache's invalidation after ReserveStock in Redis.
    for service in [
        "order-service",
        "product-service",
        "payment-service",
        "notification-service",
    ] {
        let db = spans
            .iter()
            .find(|s| s.service == service && s.db_system.as_deref() == Some("postgresql"))
            .unwrap_or_else(|| panic!("no PostgreSQL span of {service}: {spans:#?}"));
        assert_eq!(parent_service(db).as_deref(), Some(service), "{db:?}");
    }
    let redis = spans
        .iter()
        .find(|s| s.service == "product-service" && s.db_system.as_deref() == Some("redis"))
        .unwrap_or_else(|| panic!("no Redis span of product-service: {spans:#?}"));
    assert_eq!(parent_service(redis).as_deref(), Some("product-service"));
}
