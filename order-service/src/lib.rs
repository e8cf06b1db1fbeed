//! order-service: orders and the saga that orchestrates stock and payment.
//!
//! **Pending** (issue #4): for now the process starts, answers `/health`,
//! `/ready` and `/metrics`, and serves no API yet.

use std::net::SocketAddr;
use std::sync::Arc;

use shared::config::{ConfigError, Env};
use shared::http::{Readiness, ServiceRouter};
use shared::metrics::Metrics;
use shared::shutdown::CancellationToken;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "order-service";

/// `HTTP_ADDR` (default 0.0.0.0:8082).
pub fn http_addr(mut env: Env) -> Result<SocketAddr, ConfigError> {
    let addr = env.get("HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], 8082)));
    env.finish()?;
    Ok(addr)
}

/// Serves the operational endpoints on `listener` until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let router = ServiceRouter {
        service: SERVICE,
        api: axum::Router::new(),
        openapi: None,
        readiness: Readiness::default(),
        metrics: Arc::new(Metrics::new(SERVICE)),
    }
    .build();
    tracing::info!(addr = ?listener.local_addr().ok(), "{SERVICE} listening (pending: health only)");
    shared::http::serve(listener, router, shutdown)
        .await
        .map_err(|e| format!("HTTP server failed: {e}"))
}
