//! Start-up: what notification-service adds to the shared composition root
//! ([`shared::app`]): its consumer, which records one notification per
//! event, the delivery worker that sends them, and its REST API.

use std::sync::Arc;

use shared::app::{Application, Error, Infra, Spec};
use tokio::sync::Notify;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::delivery::run_delivery;
use crate::notifier::Notifier;
use crate::recorder::Recorder;

pub const SERVICE: &str = "notification-service";
/// The consumer group (docs/contracts.md, "Events").
pub const GROUP: &str = "notification-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// notification-service with the notifier its configuration asks for
/// (its `main`).
pub async fn start(config: Config) -> Result<Application, Error> {
    let notifier = config
        .notifier()
        .map_err(|e| Error::start("setting up the notifier", e))?;
    build(config, notifier).await
}

/// Connects, migrates and binds with `config`; `notifier` is where messages
/// go (the log by default). Serving starts in [`Application::run`].
pub async fn build(config: Config, notifier: Arc<dyn Notifier>) -> Result<Application, Error> {
    let infra = Infra::start(
        Spec::new(SERVICE, &MIGRATOR, &config.common, &config.jwt).on_kafka(&config.kafka),
    )
    .await?;
    let outcomes = infra.metrics.counter_vec(
        "notifications_total",
        "Notification delivery attempts by result",
        &["status"],
    );
    let wake = Arc::new(Notify::new());
    let recorder = Recorder {
        pool: infra.pool.clone(),
        wake: wake.clone(),
    };
    let pool = infra.pool.clone();
    let state = ApiState {
        pool: infra.pool.clone(),
    };
    infra
        .builder()
        .api(api::DESCRIPTION, api::routes(), state)
        .consumer(GROUP, recorder)
        .task(move |shutdown| {
            run_delivery(pool, notifier, config.delivery, wake, outcomes, shutdown)
        })
        .bind()
        .await
}
