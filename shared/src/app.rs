//! The composition root: how every service is put together and run.
//!
//! A service says only what is particular to it (its name, migrations, API,
//! gRPC services, consumer and background tasks). [`Infra::start`] and
//! [`Builder`] wire what they all share, once:
//! - the database pool, its health probe, and the migrations (with the
//!   outbox and inbox tables for a service on Kafka);
//! - metrics, token verification, readiness and the operational routes;
//! - rate limits on writes;
//! - the Kafka relay and consumer;
//! - gRPC health and metrics;
//! - the graceful drain on shutdown.
//!
//! [`main`] is every binary's `main`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{JwtVerifier, KeyError};
use crate::config::{CommonConfig, ConfigError, Env, FromEnv, JwtConfig};
use crate::db::{DbError, DbHealth};
use crate::http::{BindError, Readiness, ServiceRouter};
use crate::kafka::{KafkaConfig, KafkaMetrics};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::tls::{ClientCerts, GrpcConfig};

/// Any error, for what a service adds at start-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a service could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Kafka(#[from] crate::kafka::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("the gRPC server failed")]
    Grpc(#[source] tonic::transport::Error),
    #[error("the gRPC server's TLS certificate or key is unusable")]
    Tls(#[source] tonic::transport::Error),
    /// A service's own start-up step.
    #[error("{what} failed")]
    Start {
        what: &'static str,
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// A service's own start-up step `what` failed with `source`.
    pub fn start(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Start {
            what,
            source: source.into(),
        }
    }
}

/// What a service is, as far as its start-up goes.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// The name in logs, metrics and traces.
    service: &'static str,
    /// The service's own migrations (`sqlx::migrate!()` in its crate).
    migrator: &'static sqlx::migrate::Migrator,
    common: &'a CommonConfig,
    jwt: &'a JwtConfig,
    kafka: Option<&'a KafkaConfig>,
}

impl<'a> Spec<'a> {
    pub fn new(
        service: &'static str,
        migrator: &'static sqlx::migrate::Migrator,
        common: &'a CommonConfig,
        jwt: &'a JwtConfig,
    ) -> Self {
        Self {
            service,
            migrator,
            common,
            jwt,
            kafka: None,
        }
    }

    /// A service on the saga's topic: it gets the outbox and inbox tables,
    /// the relay, and the broker in `/ready`.
    pub fn on_kafka(mut self, kafka: &'a KafkaConfig) -> Self {
        self.kafka = Some(kafka);
        self
    }
}

/// What every service has once it is connected: its pool (migrated), the
/// database's health, its metrics registry, and the token verifier.
#[derive(Clone)]
pub struct Infra {
    pub service: &'static str,
    pub pool: PgPool,
    pub health: DbHealth,
    pub metrics: Arc<Metrics>,
    pub verifier: Arc<JwtVerifier>,
    /// What says a token's user's role now (user-service, asked remotely;
    /// user-service itself replaces it with its database).
    pub authority: Option<Arc<dyn crate::auth::Authority>>,
    http_addr: SocketAddr,
    http_limits: crate::http::ServerLimits,
    kafka: Option<KafkaConfig>,
}

impl Infra {
    /// Checks the public key, connects (patiently) and migrates the database,
    /// starts its health probe, and creates the metrics registry.
    pub async fn start(spec: Spec<'_>) -> Result<Self, Error> {
        let verifier = Arc::new(JwtVerifier::from_config(spec.jwt)?);
        let pool = crate::db::connect(spec.common).await?;
        let health = DbHealth::watch(spec.common)?;
        // The outbox and inbox first: a service's own tables may build on
        // them (order-service's timeline has a trigger on the outbox).
        if spec.kafka.is_some() {
            crate::kafka::migrate(&pool).await?;
        }
        crate::db::migrate(&pool, spec.migrator).await?;
        let metrics = Arc::new(Metrics::new(spec.service));
        crate::db::observe(&pool, &metrics);
        Ok(Self {
            service: spec.service,
            pool,
            health,
            metrics,
            verifier,
            authority: crate::authority::RemoteAuthority::new(&spec.jwt.session)
                .map(|a| Arc::new(a) as Arc<dyn crate::auth::Authority>),
            http_addr: spec.common.http_addr,
            http_limits: spec.common.http_limits,
            kafka: spec.kafka.cloned(),
        })
    }

    /// Starts describing what the service serves and runs.
    pub fn builder(&self) -> Builder {
        Builder {
            infra: self.clone(),
            api: None,
            readiness: Readiness::default(),
            write_limits: None,
            gate_on_database: true,
            grpc: None,
            consumer: None,
            tasks: Vec::new(),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// A background task, started when the service runs; it ends on shutdown.
type Task = Box<dyn FnOnce(CancellationToken) -> BoxFuture<()> + Send>;
/// Starts the consumer once the relay runs (it needs the shutdown token).
type StartConsumer = Box<
    dyn FnOnce(
            &KafkaConfig,
            KafkaMetrics,
            &CancellationToken,
        ) -> Result<JoinHandle<Result<(), crate::kafka::Error>>, crate::kafka::Error>
        + Send,
>;

/// The gRPC side: its address, its services, and their names for the
/// standard health service.
struct Grpc {
    addr: SocketAddr,
    tls: Option<tonic::transport::ServerTlsConfig>,
    routes: tonic::service::Routes,
    names: Vec<&'static str>,
}

/// What a service serves and runs beside the shared parts; [`Self::bind`]
/// turns it into an [`Application`].
pub struct Builder {
    infra: Infra,
    api: Option<(axum::Router, utoipa::openapi::OpenApi)>,
    readiness: Readiness,
    write_limits: Option<Arc<RateLimits>>,
    gate_on_database: bool,
    grpc: Option<Grpc>,
    consumer: Option<StartConsumer>,
    tasks: Vec<Task>,
}

impl Builder {
    /// The REST API: `routes` with `state`, served at `/` and under
    /// `/api/v1`, and documented with `description` at `/openapi.json`.
    pub fn api<S>(mut self, description: &str, routes: OpenApiRouter<S>, state: S) -> Self
    where
        S: Clone + Send + Sync + 'static,
    {
        let doc = crate::http::api_doc(self.infra.service, description);
        let (router, openapi) = OpenApiRouter::with_openapi(doc)
            .merge(routes)
            .split_for_parts();
        self.api = Some((router.with_state(state), openapi));
        self
    }

    /// A dependency `/ready` reports without being unready for it.
    pub fn optional_dependency<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), crate::http::CheckError>> + Send + 'static,
    {
        self.readiness = self.readiness.optional(name, check);
        self
    }

    /// Per-user limits on authenticated writes.
    pub fn write_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.write_limits = Some(limits);
        self
    }

    /// The routes check the database's health themselves (product-service
    /// serves cached reads while it is down), instead of every route
    /// answering 503 at once.
    pub fn routes_check_database(mut self) -> Self {
        self.gate_on_database = false;
        self
    }

    /// A gRPC service where `config` says (all of a service's gRPC services
    /// share its address and certificate), with the standard health
    /// service, tracing and RED metrics; over TLS unless `GRPC_TLS=off`,
    /// asking callers for certificates as `clients` says.
    pub fn grpc<S>(mut self, config: &GrpcConfig, clients: ClientCerts, service: S) -> Self
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        if config.tls.is_none() {
            tracing::warn!(
                service = S::NAME,
                "GRPC_TLS=off: gRPC is plaintext and no caller is authenticated by certificate"
            );
        }
        let grpc = self.grpc.take();
        self.grpc = Some(match grpc {
            Some(mut grpc) => {
                grpc.routes = grpc.routes.add_service(service);
                grpc.names.push(S::NAME);
                grpc
            }
            None => Grpc {
                addr: config.addr,
                tls: config.tls.as_ref().map(|tls| tls.server(clients)),
                routes: tonic::service::Routes::new(service),
                names: vec![S::NAME],
            },
        });
        self
    }

    /// The consumer of `group`, handling each event of the topic with
    /// `handler` (the service must be on Kafka: [`Spec::kafka`]).
    pub fn consumer<H: crate::kafka::consumer::Handler>(
        mut self,
        group: &'static str,
        handler: H,
    ) -> Self {
        self.consumer = Some(Box::new(move |config, metrics, shutdown| {
            let settings = config.consumer_config();
            crate::kafka::start_consumer(config, group, handler, settings, metrics, shutdown)
        }));
        self
    }

    /// A background task, run until shutdown and drained with the rest.
    pub fn task<F, Fut>(mut self, task: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .push(Box::new(move |shutdown| Box::pin(task(shutdown))));
        self
    }

    /// Binds the ports; the service starts serving in [`Application::run`].
    pub async fn bind(self) -> Result<Application, Error> {
        let infra = self.infra;
        let mut readiness = self
            .readiness
            .database(infra.pool.clone(), infra.health.clone());
        if let Some(kafka) = &infra.kafka {
            readiness = readiness.broker(crate::kafka::BrokerProbe::new(kafka)?);
        }
        let (api, openapi) = match self.api {
            Some((api, openapi)) => (api, Some(openapi)),
            None => (axum::Router::new(), None),
        };
        let router = ServiceRouter {
            service: infra.service,
            api,
            openapi,
            readiness,
            metrics: infra.metrics.clone(),
            write_limits: self.write_limits,
            database: self.gate_on_database.then(|| infra.health.clone()),
            verifier: Some(infra.verifier.clone()),
            authority: infra.authority.clone(),
            asyncapi: infra.kafka.as_ref().map(|kafka| {
                crate::kafka::contract::to_yaml(&crate::kafka::contract::asyncapi(&kafka.topic))
            }),
        }
        .build();
        let http = crate::http::bind(infra.http_addr).await?;
        let grpc = match self.grpc {
            Some(mut grpc) => {
                // A certificate or key that does not parse fails here, at
                // start-up, not at the first call.
                let mut server = tonic::transport::Server::builder();
                if let Some(tls) = grpc.tls.take() {
                    server = server.tls_config(tls).map_err(Error::Tls)?;
                }
                Some((crate::http::bind(grpc.addr).await?, server, grpc))
            }
            None => None,
        };
        Ok(Application {
            service: infra.service,
            pool: infra.pool,
            metrics: infra.metrics,
            kafka: infra.kafka,
            http,
            http_limits: infra.http_limits,
            router,
            grpc,
            consumer: self.consumer,
            tasks: self.tasks,
        })
    }
}

/// A service with its ports bound, not yet serving (tests read the bound
/// addresses from it).
pub struct Application {
    service: &'static str,
    pool: PgPool,
    metrics: Arc<Metrics>,
    kafka: Option<KafkaConfig>,
    http: TcpListener,
    http_limits: crate::http::ServerLimits,
    router: axum::Router,
    grpc: Option<(TcpListener, tonic::transport::Server, Grpc)>,
    consumer: Option<StartConsumer>,
    tasks: Vec<Task>,
}

/// Where a bound listener listens (it has an address once bound).
fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

impl Application {
    /// Where the REST API, health and metrics listen.
    pub fn http_addr(&self) -> SocketAddr {
        local_addr(&self.http)
    }

    /// Where the gRPC services listen, if the service has any.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc
            .as_ref()
            .map(|(listener, ..)| local_addr(listener))
    }

    /// Serves and runs everything until `shutdown`, then drains: HTTP and
    /// gRPC finish their requests, the consumer its events, the tasks
    /// their round. A consumer that stopped on a fatal error cancels
    /// `shutdown` and is returned as the error, so the service exits and
    /// is restarted.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut tasks = Tasks::default();
        if let Some(kafka) = &self.kafka {
            let metrics = KafkaMetrics::new(&self.metrics);
            tasks.push(crate::kafka::start_relay(&self.pool, kafka, &metrics, &shutdown).await?);
            if let Some(start) = self.consumer {
                tasks.consumer = Some(start(kafka, metrics, &shutdown)?);
            }
        }
        for task in self.tasks {
            tasks.push(tokio::spawn(task(shutdown.clone())));
        }
        let grpc_addr = self.grpc.as_ref().map(|(l, ..)| local_addr(l));
        tracing::info!(http = %local_addr(&self.http), grpc = ?grpc_addr, "{} listening", self.service);
        let grpc = async {
            let Some((listener, server, grpc)) = self.grpc else {
                return Ok(());
            };
            let (reporter, health) = tonic_health::server::health_reporter();
            for name in grpc.names {
                reporter
                    .set_service_status(name, tonic_health::ServingStatus::Serving)
                    .await;
            }
            // The HTTP server's per-client cap and idle time, here counted
            // by bytes (crate::conn).
            let per_client =
                crate::conn::PerClient::new(self.http_limits.max_connections_per_client);
            let idle = self.http_limits.idle_timeout;
            let incoming = tokio_stream::StreamExt::filter_map(
                TcpListenerStream::new(listener),
                move |accepted| match accepted {
                    Ok(stream) => {
                        let client = stream.peer_addr().ok()?.ip();
                        let Some(slot) = per_client.admit(client) else {
                            tracing::debug!(%client, "a gRPC client over its connection cap: closed");
                            return None;
                        };
                        Some(Ok(crate::conn::IdleStream::new(stream, idle, slot)))
                    }
                    Err(e) => Some(Err(e)),
                },
            );
            server
                .trace_fn(crate::telemetry::server_span)
                .layer(self.metrics.grpc_layer())
                .add_routes(grpc.routes.add_service(health))
                .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned())
                .await
                .map_err(Error::Grpc)
        };
        let http = crate::http::serve(self.http, self.router, self.http_limits, shutdown.clone());
        let (grpc, http) = tokio::join!(grpc, http);
        tasks.join().await?;
        grpc?;
        http.map_err(Error::Http)?;
        tracing::info!("{} stopped", self.service);
        Ok(())
    }
}

/// A service's background tasks: the relay, the consumer, and its own.
#[derive(Default)]
struct Tasks {
    others: Vec<JoinHandle<()>>,
    consumer: Option<JoinHandle<Result<(), crate::kafka::Error>>>,
}

impl Tasks {
    fn push(&mut self, task: JoinHandle<()>) {
        self.others.push(task);
    }

    /// Waits for every task; an error if the consumer stopped on a fatal
    /// error (it then shut the service down, so that it is restarted).
    async fn join(self) -> Result<(), crate::kafka::Error> {
        for task in self.others {
            let _ = task.await;
        }
        match self.consumer {
            Some(consumer) => consumer
                .await
                .unwrap_or_else(|e| Err(crate::kafka::Error::Task(e))),
            None => Ok(()),
        }
    }
}

/// What a binary serves until it is told to stop: an [`Application`], or
/// a front without a database of its own (web).
pub trait Serve {
    fn serve(self, shutdown: CancellationToken) -> impl Future<Output = Result<(), Error>> + Send;
}

impl Serve for Application {
    fn serve(self, shutdown: CancellationToken) -> impl Future<Output = Result<(), Error>> + Send {
        self.run(shutdown)
    }
}

/// Every service's `main`: answers the container health probe if asked
/// (`healthcheck` argument), else sets up telemetry, reads the service's
/// configuration from the environment, builds the service with `build`,
/// and serves until SIGTERM/SIGINT. A start-up or serving failure is logged
/// with its causes and exits 1.
pub async fn main<C, A, F, Fut>(service: &'static str, default_port: u16, build: F) -> ExitCode
where
    C: FromEnv,
    A: Serve,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<A, Error>>,
{
    if let Some(code) = crate::probe::run_if_requested(default_port) {
        return code;
    }
    let telemetry = crate::telemetry::init(service);
    let result = async {
        let app = build(C::from_env(Env::new())?).await?;
        app.serve(crate::shutdown::on_signal()).await
    }
    .await;
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let why = with_causes(&e);
            tracing::error!(error = %why, "{service} failed");
            eprintln!("{service}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// `error: cause: cause ...`, the whole chain on one line.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
