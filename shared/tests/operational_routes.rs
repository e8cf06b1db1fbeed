//! The routes every service serves beside its API: on a real port, a
//! router with no API answers health, readiness and metrics, gives JSON
//! 404s, and stops on shutdown.

use std::sync::Arc;

use shared::http::{Readiness, ServiceRouter};
use shared::metrics::Metrics;
use shared::shutdown::CancellationToken;

#[tokio::test]
async fn answers_health_ready_and_metrics_until_shut_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let router = ServiceRouter {
        service: "pending-service",
        api: axum::Router::new(),
        openapi: None,
        readiness: Readiness::default(),
        metrics: Arc::new(Metrics::new("pending-service")),
        write_limits: None,
        database: None,
        verifier: None,
    }
    .build();
    let server = tokio::spawn(shared::http::serve(listener, router, shutdown.clone()));
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("http://{addr}{path}")).send();

    let health: serde_json::Value = get("/health").await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["service"], "pending-service");
    assert_eq!(get("/ready").await.unwrap().status(), 200);

    let missing = get("/api/v1/nothing").await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "not_found");

    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/health\""), "{metrics}");
    assert!(metrics.contains("service=\"pending-service\""), "{metrics}");

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
