//! Start-up and serving: database, Kafka (relay + consumer), HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use shared::auth::JwtVerifier;
use shared::http::{Readiness, ServiceRouter};
use shared::metrics::Metrics;
use shared::metrics::prometheus::IntCounterVec;
use shared::shutdown::CancellationToken;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::store::{PaymentHandler, Store};

pub const SERVICE: &str = "payment-service";
/// The consumer group (DESIGN.md §5).
pub const GROUP: &str = "payment-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub struct App {
    metrics: Arc<Metrics>,
    http: TcpListener,
    router: axum::Router,
    pool: PgPool,
    config: Config,
    outcomes: IntCounterVec,
}

impl App {
    pub async fn build(config: Config) -> Result<Self, String> {
        let verifier = Arc::new(JwtVerifier::from_config(&config.jwt)?);
        let pool = shared::db::connect(&config.common).await?;
        let health = shared::db::DbHealth::watch(&config.common)?;
        shared::db::migrate(&pool, &MIGRATOR).await?;
        shared::kafka::migrate(&pool).await?;
        let metrics = Arc::new(Metrics::new(SERVICE));
        shared::db::observe(&pool, &metrics);
        let outcomes = metrics.counter_vec("payments_total", "Payments by outcome", &["outcome"]);
        let (api, openapi) = api::router(ApiState {
            store: Store::new(pool.clone()),
            verifier,
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
            write_limits: None,
            database: Some(health),
        }
        .build();
        Ok(Self {
            metrics,
            http: shared::http::bind(config.common.http_addr).await?,
            router,
            pool,
            config,
            outcomes,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves HTTP and runs the Kafka side until `shutdown`, then drains both.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), String> {
        let addr = self.http_addr();
        let handler = PaymentHandler {
            pool: self.pool.clone(),
            gateway: self.config.gateway,
            outcomes: self.outcomes,
        };
        let tasks = shared::kafka::start(
            &self.pool,
            &self.config.kafka,
            &self.metrics,
            Some((GROUP, handler)),
            &shutdown,
        )
        .await?;
        tracing::info!(http = %addr, "payment-service listening");
        let served = shared::http::serve(self.http, self.router, shutdown).await;
        tasks.join().await?;
        served.map_err(|e| format!("HTTP server failed: {e}"))
    }
}
