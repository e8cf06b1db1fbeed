//! Start-up: what order-service adds to the shared composition root
//! ([`shared::app`]): the product client, the saga with its consumer and
//! recovery loop, the REST API with its write limits, and the gRPC service.

use shared::app::{Application, Error, Infra, Spec};
use shared::proto::order::order_service_server::OrderServiceServer;
use shared::ratelimit::RateLimits;
use shared::tls::ClientCerts;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::grpc::OrderGrpc;
use crate::product_client::ProductClient;
use crate::saga::{OrderHandler, Saga, SagaMetrics};
use crate::store::Store;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "order-service";
/// The consumer group (docs/contracts.md, "Events").
pub const GROUP: &str = "order-service";

/// The order database's migrations (also applied by tests that drive the saga directly).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Connects, migrates and binds both ports with `config`; serving starts
/// in [`Application::run`].
pub async fn build(config: Config) -> Result<Application, Error> {
    let infra = Infra::start(
        Spec::new(SERVICE, &MIGRATOR, &config.common, &config.jwt).on_kafka(&config.kafka),
    )
    .await?;
    let products = ProductClient::new(config.product.clone(), &infra.metrics)
        .map_err(|e| Error::start("reading PRODUCT_GRPC_URL", e))?;
    let saga = Saga::new(
        Store {
            pool: infra.pool.clone(),
        },
        products,
        SagaMetrics::new(&infra.metrics),
        config.saga.clone(),
    );
    // One budget per user for REST and gRPC writes alike.
    let limits = RateLimits::new(config.rate_limits, infra.verifier.clone());
    let grpc = OrderGrpc {
        saga: saga.clone(),
        verifier: infra.verifier.clone(),
        limits: limits.clone(),
        authority: infra.authority.clone(),
    };
    let recovery = saga.clone();
    infra
        .builder()
        .api(
            api::DESCRIPTION,
            api::routes(),
            ApiState { saga: saga.clone() },
        )
        .write_limits(limits)
        // Customers call with a Bearer token, not a certificate.
        .grpc(
            &config.grpc,
            ClientCerts::NotAsked,
            OrderServiceServer::new(grpc),
        )
        .consumer(GROUP, OrderHandler(saga))
        .task(move |shutdown| recovery.run_recovery(shutdown))
        .bind()
        .await
}
