//! `shared`: what every minishop service needs, written once.
//!
//! - [`app`]: the composition root: start-up, serving and drain of a service.
//! - [`config`]: typed, validated environment configuration.
//! - [`telemetry`]: JSON logs through `tracing`.
//! - [`error`]: the API error type and the extractors that produce it.
//! - [`auth`]: JWT verification (public key only) as axum extractors, and signing.
//! - [`http`]: versioned mounting, health/readiness/metrics/docs, serving, pagination.
//! - [`kafka`]: events, transactional outbox + relay, inbox, consumer with DLQ.
//! - [`metrics`]: a Prometheus registry per service and RED metrics per route.
//! - [`db`]: the PostgreSQL pool and migrations.
//! - [`ratelimit`]: per-IP and per-user rate limits (429 + `Retry-After`).
//! - [`money`]: exact amounts in cents, two decimals in JSON.
//! - [`shutdown`]: graceful shutdown on SIGTERM/SIGINT.
//! - [`proto`]: the generated gRPC code of `proto/`.
//! - [`probe`]: the `healthcheck` argument every binary takes (container health probe).

pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod money;
pub mod probe;
pub mod proto;
pub mod ratelimit;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

/// Every binary that links `shared` allocates with mimalloc: a request
/// allocates and frees many small objects across worker threads, where
/// glibc's malloc spent about a sixth of a cached `GET /products/{id}`
/// (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
