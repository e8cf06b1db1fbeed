//! order-service: orders and the saga that orchestrates stock and payment.
//!
//! **Pending** (issue #4): for now the process starts and answers
//! `/health`, `/ready` and `/metrics`; it serves no API yet. Built so far:
//! [`product_client`], the saga's resilient client of product-service.

pub mod product_client;

use std::net::SocketAddr;

use shared::config::{ConfigError, Env};
use shared::shutdown::CancellationToken;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "order-service";

/// `HTTP_ADDR` (default 0.0.0.0:8082).
pub fn http_addr(mut env: Env) -> Result<SocketAddr, ConfigError> {
    let addr = env.get("HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], 8082)));
    env.finish()?;
    Ok(addr)
}

/// Serves until `shutdown`.
pub async fn run(
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), String> {
    shared::http::serve_operational_only(SERVICE, listener, shutdown).await
}
