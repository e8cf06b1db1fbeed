//! Start-up and serving: database, product client, Kafka (relay +
//! consumer), the recovery loop, HTTP and gRPC.

use std::net::SocketAddr;
use std::sync::Arc;

use shared::auth::JwtVerifier;
use shared::http::{Readiness, ServiceRouter};
use shared::metrics::Metrics;
use shared::proto::order::order_service_server::OrderServiceServer;
use shared::shutdown::CancellationToken;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::grpc::OrderGrpc;
use crate::product_client::ProductClient;
use crate::saga::{OrderHandler, Saga, SagaMetrics};
use crate::store::Store;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "order-service";
/// The consumer group (DESIGN.md §5).
pub const GROUP: &str = "order-service";

/// The order database's migrations (also applied by tests that drive the saga directly).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// A started but not yet serving order-service (tests read its addresses).
pub struct App {
    metrics: Arc<Metrics>,
    http: TcpListener,
    grpc: TcpListener,
    router: axum::Router,
    grpc_service: OrderGrpc,
    saga: Saga,
    pool: PgPool,
    config: Config,
}

impl App {
    /// Connects and migrates the database and binds both ports.
    pub async fn build(config: Config) -> Result<Self, String> {
        let verifier = Arc::new(JwtVerifier::from_config(&config.jwt)?);
        let pool = shared::db::connect(&config.common).await?;
        let health = shared::db::DbHealth::watch(&config.common)?;
        shared::db::migrate(&pool, &MIGRATOR).await?;
        shared::kafka::migrate(&pool).await?;
        let metrics = Arc::new(Metrics::new(SERVICE));
        shared::db::observe(&pool, &metrics);
        let products = ProductClient::new(config.product.clone(), &metrics)?;
        let saga = Saga::new(
            Store::new(pool.clone()),
            products,
            SagaMetrics::new(&metrics),
            config.saga.clone(),
        );
        let (api, openapi) = api::router(ApiState {
            saga: saga.clone(),
            verifier: verifier.clone(),
        });
        let broker = shared::kafka::BrokerProbe::new(&config.kafka)?;
        let readiness = Readiness::default()
            .database(pool.clone(), health.clone())
            .broker(broker);
        let router = ServiceRouter {
            service: SERVICE,
            api,
            openapi: Some(openapi),
            readiness,
            metrics: metrics.clone(),
            write_limits: Some(shared::ratelimit::RateLimits::new(
                config.rate_limits,
                verifier.clone(),
            )),
            database: Some(health),
        }
        .build();
        Ok(Self {
            metrics,
            http: shared::http::bind(config.common.http_addr).await?,
            grpc: shared::http::bind(config.grpc_addr).await?,
            router,
            grpc_service: OrderGrpc {
                saga: saga.clone(),
                verifier,
            },
            saga,
            pool,
            config,
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

    /// Serves until `shutdown`, then drains HTTP, gRPC, the consumer, the
    /// relay and the recovery loop.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), String> {
        let mut tasks = shared::kafka::start(
            &self.pool,
            &self.config.kafka,
            &self.metrics,
            Some((GROUP, OrderHandler(self.saga.clone()))),
            &shutdown,
        )
        .await?;
        tasks.push(tokio::spawn(
            self.saga.clone().run_recovery(shutdown.clone()),
        ));
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<OrderServiceServer<OrderGrpc>>()
            .await;
        tracing::info!(http = %self.http_addr(), grpc = %self.grpc_addr(), "order-service listening");
        let grpc = tonic::transport::Server::builder()
            .trace_fn(shared::telemetry::server_span)
            .layer(self.metrics.grpc_layer())
            .add_service(health_service)
            .add_service(OrderServiceServer::new(self.grpc_service))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.grpc),
                shutdown.clone().cancelled_owned(),
            );
        let http = shared::http::serve(self.http, self.router, shutdown);
        let (grpc, http) = tokio::join!(grpc, http);
        tasks.join().await?;
        grpc.map_err(|e| format!("gRPC server failed: {e}"))?;
        http.map_err(|e| format!("HTTP server failed: {e}"))?;
        tracing::info!("order-service stopped");
        Ok(())
    }
}
