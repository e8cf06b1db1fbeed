//! Start-up and serving: database, Kafka consumer + delivery worker, HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use shared::auth::JwtVerifier;
use shared::http::{Readiness, ServiceRouter};
use shared::metrics::Metrics;
use shared::metrics::prometheus::IntCounterVec;
use shared::shutdown::CancellationToken;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::notifier::Notifier;
use crate::store::{Recorder, run_delivery};

pub const SERVICE: &str = "notification-service";
/// The consumer group (DESIGN.md §5).
pub const GROUP: &str = "notification-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

pub struct App {
    metrics: Arc<Metrics>,
    http: TcpListener,
    router: axum::Router,
    pool: PgPool,
    config: Config,
    notifier: Arc<dyn Notifier>,
    outcomes: IntCounterVec,
}

impl App {
    /// Connects and binds; `notifier` is where messages go (the log by default).
    pub async fn build(config: Config, notifier: Arc<dyn Notifier>) -> Result<Self, String> {
        let verifier = Arc::new(JwtVerifier::from_config(&config.jwt)?);
        let pool = shared::db::connect(&config.common).await?;
        let health = shared::db::DbHealth::watch(&config.common)?;
        shared::db::migrate(&pool, &MIGRATOR).await?;
        shared::kafka::migrate(&pool).await?;
        let metrics = Arc::new(Metrics::new(SERVICE));
        shared::db::observe(&pool, &metrics);
        let outcomes = metrics.counter_vec(
            "notifications_total",
            "Notification delivery attempts by result",
            &["status"],
        );
        let (api, openapi) = api::router(ApiState {
            pool: pool.clone(),
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
            notifier,
            outcomes,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves HTTP, consumes and delivers until `shutdown`, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), String> {
        let addr = self.http_addr();
        let wake = Arc::new(Notify::new());
        let recorder = Recorder {
            pool: self.pool.clone(),
            wake: wake.clone(),
        };
        let mut tasks = shared::kafka::start(
            &self.pool,
            &self.config.kafka,
            &self.metrics,
            Some((GROUP, recorder)),
            &shutdown,
        )
        .await?;
        tasks.push(tokio::spawn(run_delivery(
            self.pool.clone(),
            self.notifier,
            self.config.delivery,
            wake,
            self.outcomes,
            shutdown.clone(),
        )));
        tracing::info!(http = %addr, "notification-service listening");
        let served = shared::http::serve(self.http, self.router, shutdown).await;
        tasks.join().await?;
        served.map_err(|e| format!("HTTP server failed: {e}"))
    }
}
