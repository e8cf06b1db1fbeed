//! Start-up and serving: connect, migrate, bind both ports, serve until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use shared::auth::JwtVerifier;
use shared::http::{Readiness, ServiceRouter};
use shared::metrics::Metrics;
use shared::proto::product::product_service_server::ProductServiceServer;
use shared::shutdown::CancellationToken;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::api::{self, ApiState};
use crate::cache::ProductCache;
use crate::config::Config;
use crate::grpc::ProductGrpc;
use crate::store::Store;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "product-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// A started but not yet serving product-service (tests read its addresses).
pub struct App {
    http: TcpListener,
    grpc: TcpListener,
    router: axum::Router,
    grpc_service: ProductGrpc,
    grpc_metrics: shared::metrics::GrpcMetricsLayer,
}

impl App {
    /// Connects to the database, migrates it, and binds the HTTP and gRPC ports.
    pub async fn build(config: Config) -> Result<Self, String> {
        let verifier = Arc::new(JwtVerifier::from_config(&config.jwt)?);
        let pool = shared::db::connect(&config.common).await?;
        let health = shared::db::DbHealth::watch(&config.common)?;
        shared::db::migrate(&pool, &MIGRATOR).await?;
        let metrics = Arc::new(Metrics::new(SERVICE));
        shared::db::observe(&pool, &metrics);
        let store = Store::new(pool.clone(), health.clone());
        let cache = ProductCache::new(config.cache.clone(), &metrics);
        let readiness = Readiness::default()
            .database(pool, health.clone())
            .optional("redis", {
                let cache = cache.clone();
                move || {
                    let cache = cache.clone();
                    async move { cache.ping().await }
                }
            });
        let write_limits = shared::ratelimit::RateLimits::new(config.rate_limits, verifier.clone());
        let (api, openapi) = api::router(ApiState {
            store: store.clone(),
            cache: cache.clone(),
            verifier,
        });
        let router = ServiceRouter {
            service: SERVICE,
            api,
            openapi: Some(openapi),
            readiness,
            metrics: metrics.clone(),
            write_limits: Some(write_limits),
            database: None,
        }
        .build();
        Ok(Self {
            http: shared::http::bind(config.common.http_addr).await?,
            grpc: shared::http::bind(config.grpc_addr).await?,
            router,
            grpc_service: ProductGrpc { store, cache },
            grpc_metrics: metrics.grpc_layer(),
        })
    }

    /// Where the REST API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Where the gRPC service listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves HTTP and gRPC until `shutdown` is cancelled, then drains both.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), String> {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<ProductServiceServer<ProductGrpc>>()
            .await;
        tracing::info!(http = %self.http_addr(), grpc = %self.grpc_addr(), "product-service listening");
        let grpc = tonic::transport::Server::builder()
            .trace_fn(shared::telemetry::server_span)
            .layer(self.grpc_metrics)
            .add_service(health_service)
            .add_service(ProductServiceServer::new(self.grpc_service))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.grpc),
                shutdown.clone().cancelled_owned(),
            );
        let http = shared::http::serve(self.http, self.router, shutdown);
        let (grpc, http) = tokio::join!(grpc, http);
        grpc.map_err(|e| format!("gRPC server failed: {e}"))?;
        http.map_err(|e| format!("HTTP server failed: {e}"))?;
        tracing::info!("product-service stopped");
        Ok(())
    }
}
