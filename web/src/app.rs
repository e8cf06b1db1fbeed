//! How web is put together: its state, its routes, and serving them with
//! the limits, metrics, traces and drain every service has.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use shared::app::Error;
use shared::auth::JwtVerifier;
use shared::http::Readiness;
use shared::metrics::Metrics;
use shared::shutdown::CancellationToken;
use tokio::net::TcpListener;

use shared::kafka::KafkaConfig;

use crate::backend::Backend;
use crate::config::Config;
use crate::console;
use crate::feed::Feed;
use crate::pages::PageError;
use crate::session::Sessions;
use crate::shop;
use crate::traces::TraceStore;

/// The name in logs, metrics and traces.
pub const SERVICE: &str = "web";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub backend: Backend,
    pub sessions: Sessions,
    pub live_poll: Duration,
    /// Where trace links go: Jaeger's UI if configured, else the console.
    pub jaeger_url: Option<String>,
    pub console: Arc<ConsoleState>,
}

/// What the console reads besides the APIs.
#[derive(Debug)]
pub struct ConsoleState {
    pub kafka: KafkaConfig,
    pub feed: Arc<Feed>,
    pub watch: Arc<crate::watch::Watch>,
    pub watch_every: Duration,
    pub traces: Arc<TraceStore>,
    pub trace_capacity: usize,
    pub instances: Vec<crate::config::Instance>,
    pub prometheus_url: Option<String>,
}

impl AppState {
    /// The link that shows trace `trace_id`.
    pub fn trace_link(&self, trace_id: &str) -> String {
        match &self.jaeger_url {
            Some(jaeger) => format!("{jaeger}/trace/{trace_id}"),
            None => format!("/console/traces/{trace_id}"),
        }
    }
}

/// web with its ports bound, not yet serving.
pub struct Web {
    http: TcpListener,
    otlp: Option<(TcpListener, Option<String>)>,
    router: Router,
    limits: shared::http::ServerLimits,
    console: Arc<ConsoleState>,
}

impl Web {
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where it receives spans, if it does.
    pub fn otlp_addr(&self) -> Option<SocketAddr> {
        self.otlp.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown`, then finishes the requests under way; reads
    /// the topic and receives spans meanwhile.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        tracing::info!(http = %self.http_addr(), otlp = ?self.otlp_addr(), "{SERVICE} listening");
        self.console
            .feed
            .start(&self.console.kafka, shutdown.clone());
        self.console.watch.start(
            &self.console.kafka,
            self.console.watch_every,
            shutdown.clone(),
        );
        let otlp = self.otlp.map(|(listener, token)| {
            tokio::spawn(crate::traces::receive(
                listener,
                self.console.traces.clone(),
                token,
                shutdown.clone(),
            ))
        });
        let served =
            shared::http::serve(self.http, self.router, self.limits, shutdown.clone()).await;
        shutdown.cancel();
        if let Some(otlp) = otlp {
            let _ = otlp.await;
        }
        served.map_err(Error::Http)?;
        tracing::info!("{SERVICE} stopped");
        Ok(())
    }
}

impl shared::app::Serve for Web {
    fn serve(self, shutdown: CancellationToken) -> impl Future<Output = Result<(), Error>> + Send {
        self.run(shutdown)
    }
}

const APP_CSS: &str = include_str!("../static/app.css");
const APP_JS: &str = include_str!("../static/app.js");

fn asset(body: &'static str, content_type: &'static str) -> axum::response::Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn not_found() -> PageError {
    PageError::NotFound("There is no such page.".into())
}

/// The pages and their assets.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/", get(shop::catalogue))
        .route("/products/{id}", get(shop::product))
        .route("/cart", get(shop::cart_page))
        .route("/cart/add", post(shop::cart_add))
        .route("/cart/update", post(shop::cart_update))
        .route("/checkout", post(shop::checkout))
        .route("/signin", get(shop::sign_in_page).post(shop::sign_in))
        .route("/signup", get(shop::sign_up_page).post(shop::sign_up))
        .route("/signout", post(shop::sign_out))
        .route("/orders", get(shop::orders))
        .route("/orders/{id}", get(shop::order))
        .route("/orders/{id}/live", get(shop::order_live))
        .route("/orders/{id}/cancel", post(shop::cancel))
        .route("/console", get(console::overview))
        .route("/console/feed/live", get(console::feed_live))
        .route("/console/orders/{id}", get(console::order))
        .route("/console/dlq", get(console::letters))
        .route("/console/dlq/replay", post(console::replay))
        .route("/console/traces", get(console::traces))
        .route("/console/traces/{id}", get(console::trace))
        .route(
            "/static/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.sessions.clone(),
            crate::session::visitor_layer,
        ))
        .with_state(state)
}

/// Checks the key, binds the port, and assembles the routes.
pub async fn build(config: Config) -> Result<Web, Error> {
    let verifier = Arc::new(JwtVerifier::from_config(&config.jwt)?);
    let authority = shared::authority::RemoteAuthority::new(&config.jwt.session)
        .map(|a| Arc::new(a) as Arc<dyn shared::auth::Authority>);
    let backend = Backend::new(config.services.clone(), config.api_timeout)
        .map_err(|e| Error::start("the HTTP client", e))?;
    let state = AppState {
        backend: backend.clone(),
        sessions: Sessions {
            verifier,
            authority,
            secure: config.cookie_secure,
            forwarded_for: config.trust_forwarded_for.clone(),
        },
        live_poll: config.live_poll,
        jaeger_url: config.jaeger_url.clone(),
        console: Arc::new(ConsoleState {
            kafka: config.kafka.clone(),
            feed: Feed::new(config.feed_capacity),
            watch: crate::watch::Watch::new(),
            watch_every: config.watch_every,
            traces: TraceStore::new(config.trace_capacity),
            trace_capacity: config.trace_capacity,
            instances: config.instances.clone(),
            prometheus_url: config.prometheus_url.clone(),
        }),
    };
    let console = state.console.clone();
    let metrics = Arc::new(Metrics::new(SERVICE));
    let readiness = Readiness::default()
        .optional("user-service", upstream(&backend, &config.services.user))
        .optional(
            "product-service",
            upstream(&backend, &config.services.product),
        )
        .optional("order-service", upstream(&backend, &config.services.order));
    let router = routes(state).merge(shared::http::ops_routes(
        SERVICE,
        readiness,
        metrics.clone(),
    ));
    let router = shared::http::observed(router, metrics);
    let http = shared::http::bind(config.http_addr).await?;
    let otlp = match config.otlp_addr {
        Some(addr) => Some((shared::http::bind(addr).await?, config.otlp_token.clone())),
        None => None,
    };
    Ok(Web {
        http,
        otlp,
        router,
        limits: config.http_limits,
        console,
    })
}

/// A readiness check: `base`'s `/health` answers.
fn upstream(
    backend: &Backend,
    base: &str,
) -> impl Fn() -> futures::future::BoxFuture<'static, Result<(), shared::http::CheckError>>
+ Send
+ Sync
+ 'static {
    let http = backend.http().clone();
    let url = format!("{base}/health");
    move || {
        let http = http.clone();
        let url = url.clone();
        Box::pin(async move {
            http.get(&url).send().await?.error_for_status()?;
            Ok(())
        })
    }
}
