//! Start-up: what product-service adds to the shared composition root
//! ([`shared::app`]): the store and the Redis cache, the REST API with its
//! write limits, and the gRPC stock service order-service calls.

use shared::app::{Application, Error, Infra, Spec};
use shared::proto::product::product_service_server::ProductServiceServer;
use shared::ratelimit::RateLimits;
use shared::tls::ClientCerts;

use crate::api::{self, ApiState};
use crate::cache::ProductCache;
use crate::config::Config;
use crate::grpc::ProductGrpc;
use crate::store::Store;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "product-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Connects, migrates and binds both ports with `config`; serving starts
/// in [`Application::run`].
pub async fn build(config: Config) -> Result<Application, Error> {
    let infra = Infra::start(Spec::new(SERVICE, &MIGRATOR, &config.common, &config.jwt)).await?;
    let store = Store::new(infra.pool.clone(), infra.health.clone());
    let cache = ProductCache::new(config.cache.clone(), &infra.metrics);
    let redis = cache.clone();
    let state = ApiState {
        store: store.clone(),
        cache: cache.clone(),
    };
    infra
        .builder()
        .api(api::DESCRIPTION, api::routes(), state)
        .write_limits(RateLimits::new(config.rate_limits, infra.verifier.clone()))
        // Cached reads are served while the database is down.
        .routes_check_database()
        .optional_dependency("redis", move || {
            let cache = redis.clone();
            async move { Ok(cache.ping().await?) }
        })
        // Only services with a certificate from the CA get past the handshake.
        .grpc(
            &config.grpc,
            ClientCerts::Required,
            ProductServiceServer::new(ProductGrpc {
                store,
                cache,
                check_caller: config.grpc.tls.is_some(),
            }),
        )
        .bind()
        .await
}
