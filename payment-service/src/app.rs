//! Start-up: what payment-service adds to the shared composition root
//! ([`shared::app`]): its consumer, which takes the saga's payment step,
//! and its REST API.

use shared::app::{Application, Error, Infra, Spec};

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::saga::PaymentHandler;
use crate::store::Store;

pub const SERVICE: &str = "payment-service";
/// The consumer group (docs/contracts.md, "Events").
pub const GROUP: &str = "payment-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Connects, migrates and binds with `config`; serving starts in
/// [`Application::run`].
pub async fn build(config: Config) -> Result<Application, Error> {
    let infra = Infra::start(
        Spec::new(SERVICE, &MIGRATOR, &config.common, &config.jwt).on_kafka(&config.kafka),
    )
    .await?;
    let handler = PaymentHandler {
        pool: infra.pool.clone(),
        gateway: config.gateway,
        outcomes: infra
            .metrics
            .counter_vec("payments_total", "Payments by outcome", &["outcome"]),
    };
    let state = ApiState {
        store: Store {
            pool: infra.pool.clone(),
        },
    };
    infra
        .builder()
        .api(api::DESCRIPTION, api::routes(), state)
        .consumer(GROUP, handler)
        .bind()
        .await
}
