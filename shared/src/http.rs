//! HTTP plumbing every service shares: the unversioned + `/api/v1` mounting of
//! the API (docs/contracts.md, "HTTP conventions"), `/health`, `/ready`, `/metrics`, `/openapi.json`
//! and `/docs`, JSON 404/405, the body limit, RED metrics, request tracing,
//! pagination, and a server with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::error::{self, ApiError};
use crate::metrics::{self, Metrics};

/// Largest accepted request body; anything bigger is a 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Why a readiness check failed (reported in `/ready` as its message).
pub type CheckError = crate::app::BoxError;
type CheckFuture = Pin<Box<dyn Future<Output = Result<(), CheckError>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// The dependencies `/ready` checks. A required one that fails makes the
/// service unready (503); an optional one (a cache) is only reported.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, bool, CheckFn)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.checks.iter().map(|(n, _, _)| *n).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

/// How long one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Readiness {
    /// Adds a dependency the service cannot work without.
    pub fn required<F, Fut>(self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), CheckError>> + Send + 'static,
    {
        self.add(name, true, check)
    }

    /// Adds the service's own database (required); unreachable at once
    /// while `health` says so, instead of after the pool's timeout.
    pub fn database(self, pool: sqlx::PgPool, health: crate::db::DbHealth) -> Self {
        self.required("database", move || {
            let pool = pool.clone();
            let health = health.clone();
            async move {
                if !health.is_up() {
                    return Err("unreachable".into());
                }
                Ok(crate::db::ping(&pool).await?)
            }
        })
    }

    /// Adds the Kafka broker (required): a metadata request answered in time.
    pub fn broker(self, probe: crate::kafka::BrokerProbe) -> Self {
        self.required("broker", move || {
            let probe = probe.clone();
            async move { Ok(probe.check().await?) }
        })
    }

    /// Adds a dependency the service degrades without (reported, not fatal).
    pub fn optional<F, Fut>(self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), CheckError>> + Send + 'static,
    {
        self.add(name, false, check)
    }

    fn add<F, Fut>(mut self, name: &'static str, required: bool, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), CheckError>> + Send + 'static,
    {
        self.checks.push((
            name,
            required,
            Arc::new(move || Box::pin(check()) as CheckFuture),
        ));
        self
    }

    async fn run(&self) -> (bool, Map<String, Value>) {
        let results =
            futures::future::join_all(self.checks.iter().map(|(name, required, check)| {
                let check = check.clone();
                async move {
                    let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                        Ok(r) => r,
                        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}").into()),
                    };
                    (*name, *required, outcome)
                }
            }))
            .await;
        let mut ready = true;
        let mut report = Map::new();
        for (name, required, outcome) in results {
            let text = match outcome {
                Ok(()) => "ok".to_string(),
                Err(e) => {
                    ready &= !required;
                    if required {
                        format!("down: {e}")
                    } else {
                        format!("degraded: {e}")
                    }
                }
            };
            report.insert(name.into(), Value::String(text));
        }
        (ready, report)
    }
}

#[derive(Clone)]
struct OpsState {
    service: &'static str,
    readiness: Readiness,
    metrics: Arc<Metrics>,
}

async fn health(State(ops): State<OpsState>) -> Json<Value> {
    Json(json!({"status": "ok", "service": ops.service, "version": env!("CARGO_PKG_VERSION")}))
}

async fn ready(State(ops): State<OpsState>) -> Response {
    let (ready, checks) = ops.readiness.run().await;
    let body = json!({"status": if ready { "ready" } else { "unready" }, "service": ops.service, "checks": checks});
    if ready {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(5u32));
        response
    }
}

async fn render_metrics(State(ops): State<OpsState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.metrics.render(),
    )
}

/// Everything a service serves over HTTP, assembled from its API router.
pub struct ServiceRouter {
    /// The service's name, as in logs and metrics.
    pub service: &'static str,
    /// The service's API, mounted both at `/` and under `/api/v1`.
    pub api: Router,
    /// Its OpenAPI document, served at `/openapi.json` with Swagger UI at `/docs`.
    pub openapi: Option<utoipa::openapi::OpenApi>,
    /// What `/ready` checks.
    pub readiness: Readiness,
    /// Where RED metrics go and what `/metrics` renders.
    pub metrics: Arc<Metrics>,
    /// Per-user limits on authenticated writes, if the service takes writes.
    pub write_limits: Option<Arc<crate::ratelimit::RateLimits>>,
    /// The database every API route needs: while it is unreachable they are
    /// answered 503 with `Retry-After` at once. `None` for a service whose
    /// routes check it themselves (product-service serves cached reads).
    pub database: Option<crate::db::DbHealth>,
    /// What checks the callers' tokens: [`crate::auth::AuthUser`] finds it
    /// in the request's extensions.
    pub verifier: Option<Arc<crate::auth::JwtVerifier>>,
    /// What says a token's user's current role, found there too.
    pub authority: Option<Arc<dyn crate::auth::Authority>>,
    /// The AsyncAPI document of the events, for a service on the topic:
    /// served at `/asyncapi.yaml` ([`crate::kafka::contract`]).
    pub asyncapi: Option<String>,
}

/// Turns requests away at once while the database is unreachable.
async fn require_database(
    State(health): State<crate::db::DbHealth>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    match health.require() {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

impl ServiceRouter {
    /// The finished router.
    pub fn build(self) -> Router {
        let ops_routes = ops_routes(self.service, self.readiness, self.metrics.clone());
        let api = match self.database {
            Some(health) => self
                .api
                .layer(middleware::from_fn_with_state(health, require_database)),
            None => self.api,
        };
        let mut router = Router::new()
            .merge(api.clone())
            .nest("/api/v1", api)
            .merge(ops_routes);
        if let Some(mut openapi) = self.openapi {
            document_common_responses(&mut openapi, self.write_limits.is_some());
            openapi.servers = Some(vec![
                utoipa::openapi::Server::new("/api/v1"),
                utoipa::openapi::Server::new("/"),
            ]);
            router = router
                .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", openapi));
        }
        if let Some(document) = self.asyncapi {
            let document: Arc<str> = document.into();
            router = router.route(
                "/asyncapi.yaml",
                get(move || {
                    let document = document.clone();
                    async move {
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/yaml")],
                            document.to_string(),
                        )
                    }
                }),
            );
        }
        if let Some(limits) = self.write_limits {
            router = router.layer(middleware::from_fn_with_state(
                limits,
                crate::ratelimit::limit_writes_per_user,
            ));
        }
        if let Some(verifier) = self.verifier {
            router = router.layer(axum::Extension(verifier));
        }
        if let Some(authority) = self.authority {
            router = router.layer(axum::Extension(authority));
        }
        observed(
            router
                .fallback(error::no_route)
                .method_not_allowed_fallback(error::method_not_allowed)
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
            self.metrics,
        )
    }
}

/// `/health`, `/ready` (what `readiness` checks) and `/metrics`, as every
/// service serves them.
pub fn ops_routes(service: &'static str, readiness: Readiness, metrics: Arc<Metrics>) -> Router {
    let ops = OpsState {
        service,
        readiness,
        metrics,
    };
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(ops)
}

/// `router` with RED metrics into `metrics` and a server span per request
/// (joining the caller's trace), as every service's routes have them.
pub fn observed(router: Router, metrics: Arc<Metrics>) -> Router {
    router
        .layer(middleware::from_fn_with_state(metrics, metrics::track_http))
        .layer(TraceLayer::new_for_http().make_span_with(crate::telemetry::server_span))
}

/// What one HTTP client may hold of a server: a slow client (slowloris)
/// loses its connection once its headers take longer than
/// `header_timeout`; a request that takes longer than `request_timeout` in
/// all (its body included) is answered 503; a connection with no request
/// under way for `idle_timeout` is closed (HTTP/2 with a GOAWAY), whatever
/// pings it answers; at most `max_connections` are served at once (further
/// ones wait in the listen backlog), and at most `max_connections_per_client`
/// from one client address (further ones are closed at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `HTTP_HEADER_TIMEOUT_MS` (default 10 s).
    pub header_timeout: Duration,
    /// `HTTP_REQUEST_TIMEOUT_MS` (default 30 s).
    pub request_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_MS` (default 20 s).
    pub idle_timeout: Duration,
    /// `HTTP_MAX_CONNECTIONS` (default 1024).
    pub max_connections: usize,
    /// `HTTP_MAX_CONNECTIONS_PER_CLIENT` (default 512: half the slots, so
    /// one client, or one proxy in front, can never take them all).
    pub max_connections_per_client: usize,
}

impl ServerLimits {
    /// `HTTP_HEADER_TIMEOUT_MS`, `HTTP_REQUEST_TIMEOUT_MS`, `HTTP_IDLE_TIMEOUT_MS`,
    /// `HTTP_MAX_CONNECTIONS` and `HTTP_MAX_CONNECTIONS_PER_CLIENT`.
    pub fn read(env: &mut crate::config::Env) -> Self {
        Self {
            header_timeout: env.millis("HTTP_HEADER_TIMEOUT_MS", 10_000),
            request_timeout: env.millis("HTTP_REQUEST_TIMEOUT_MS", 30_000),
            idle_timeout: env.millis("HTTP_IDLE_TIMEOUT_MS", 20_000),
            max_connections: env.in_range("HTTP_MAX_CONNECTIONS", 1024, 1..=1_000_000),
            max_connections_per_client: env.in_range(
                "HTTP_MAX_CONNECTIONS_PER_CLIENT",
                512,
                1..=1_000_000,
            ),
        }
    }
}

/// A response body that keeps its request under way until it is sent or
/// dropped ([`crate::conn::Activity`]).
struct Tracked {
    inner: axum::body::Body,
    _busy: crate::conn::Busy,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` is
/// cancelled, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;

    let router = router.layer(middleware::from_fn_with_state(
        limits.request_timeout,
        limit_request_time,
    ));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_client = crate::conn::PerClient::new(limits.max_connections_per_client);
    // How often a connection looks whether it has been idle long enough.
    let look_every =
        (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    // Each connection holds a receiver; all gone means all connections ended.
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
            _ = shutdown.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up before
                    // the accept: not fatal, but don't spin on it.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(client) = per_client.admit(remote.ip()) else {
            tracing::debug!(client = %remote.ip(), "a client over its connection cap: closed");
            drop((stream, slot));
            continue;
        };
        let activity = Arc::new(crate::conn::Activity::default());
        let router = router.clone();
        let tracked = activity.clone();
        let service = tower::service_fn(
            move |request: axum::extract::Request<hyper::body::Incoming>| {
                let busy = tracked.begin();
                let mut request = request.map(axum::body::Body::new);
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(remote));
                let router = router.clone();
                async move {
                    let response = router.oneshot(request).await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|inner| Tracked { inner, _busy: busy }),
                    )
                }
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(service);
        let (builder, shutdown, done) = (builder.clone(), shutdown.clone(), done_rx.clone());
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let mut look = tokio::time::interval(look_every);
            look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    _ = shutdown.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                        break;
                    }
                    _ = look.tick() => {
                        if activity.idle_for() >= idle_timeout {
                            tracing::debug!(client = %remote, "closing an idle connection");
                            connection.as_mut().graceful_shutdown();
                            // A client that does not let go is cut after a grace.
                            let _ = tokio::time::timeout(idle_timeout, connection.as_mut()).await;
                            break;
                        }
                    }
                }
            }
            drop((slot, client, done));
        });
    }
    drop(listener);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Answers 503 when a request takes longer than the limit (see [`ServerLimits`]).
async fn limit_request_time(
    State(limit): State<Duration>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(format!(
            "the request took longer than {} ms",
            limit.as_millis()
        ))
        .into_response(),
    }
}

/// Binds `addr` with a clear error (a taken port is the usual start-up failure).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// A port that could not be listened on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The start of `service`'s OpenAPI document, before its routes: its
/// title, `description`, and what is the same for all (the bearer scheme,
/// the error body).
pub fn api_doc(service: &str, description: &str) -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(modifiers(&BearerSecurity), components(schemas(crate::error::ErrorBody)))]
    struct Common;
    let mut openapi = <Common as utoipa::OpenApi>::openapi();
    openapi.info.title = format!("minishop {service}");
    openapi.info.description = Some(format!(
        "{description} Every path is also served under /api/v1."
    ));
    openapi
}

/// `?limit=&offset=` of a list endpoint.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// How many items to return (1..=100, default 20).
    pub limit: Option<i64>,
    /// How many items to skip (default 0).
    pub offset: Option<i64>,
}

/// A validated page: also an extractor, which reads `?limit=&offset=` (a
/// 400 naming the parameter when it is out of range or not a number).
/// Document it with `params(PageParams)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let error::ApiQuery(params) =
            error::ApiQuery::<PageParams>::from_request_parts(parts, state).await?;
        params.page()
    }
}

/// Largest page a client may ask for.
pub const MAX_PAGE: i64 = 100;
/// Page size when the client does not say.
pub const DEFAULT_PAGE: i64 = 20;

impl PageParams {
    /// Checks the bounds: a 400 naming `limit` or `offset` when out of range.
    pub fn page(self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::invalid_field(
                "limit",
                format!("limit must be between 1 and {MAX_PAGE}"),
            ));
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::invalid_field(
                "offset",
                "offset must be 0 or more",
            ));
        }
        Ok(Page { limit, offset })
    }
}

/// A page of a list and how many items match in all: answered as a JSON
/// array with the total in `X-Total-Count`.
#[derive(Debug)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: i64,
}

impl<T> Listed<T> {
    /// `(items, total)` as the stores return them.
    pub fn new((items, total): (Vec<T>, i64)) -> Self {
        Listed { items, total }
    }

    /// The same page with each item turned into its view.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Listed<U> {
        Listed {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
        }
    }
}

impl<T: serde::Serialize> IntoResponse for Listed<T> {
    fn into_response(self) -> Response {
        (
            [("x-total-count", HeaderValue::from(self.total))],
            Json(self.items),
        )
            .into_response()
    }
}

/// Documents the answers every route may give besides its own, so the
/// document matches what clients really receive (schemathesis checks it):
/// 400 when it takes parameters or a body (a bad value names its field), 401
/// when it needs a token (403 when an admin's), 413 and 415 when it takes a body (too large, not
/// JSON), 404 when its path names an item (`{id}`: "No such order" for a
/// route tagged `orders`), 429 on writes when the service limits them. A route's own
/// description of a status wins. A list (a GET answering 200 with an array,
/// a [`Listed`]) has its `X-Total-Count` header documented.
fn document_common_responses(openapi: &mut utoipa::openapi::OpenApi, writes_limited: bool) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        let names_item = path.contains('{');
        let writes = [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        let reads = [&mut item.get];
        for (op, is_write) in writes
            .into_iter()
            .map(|op| (op, true))
            .chain(reads.into_iter().map(|op| (op, false)))
        {
            let Some(op) = op.as_mut() else { continue };
            let has_body = op.request_body.is_some();
            let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let responses = &mut op.responses.responses;
            let mut add = |code: &str, description: &str| {
                responses
                    .entry(code.to_owned())
                    .or_insert_with(|| error(description));
            };
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            // `security(("bearer" = ["admin"]))`: the role an operation needs
            // (OpenAPI 3.1 allows role names for non-OAuth schemes).
            let admin_only = op.security.iter().flatten().any(|req| {
                serde_json::to_value(req).is_ok_and(|v| {
                    v["bearer"]
                        .as_array()
                        .is_some_and(|r| r.contains(&json!("admin")))
                })
            });
            if has_body || has_params {
                add("400", "Bad input, naming the field");
            }
            if secured {
                add("401", "No valid token");
            }
            if admin_only {
                add("403", "Not an admin");
            }
            if names_item {
                let tag = op.tags.as_ref().and_then(|t| t.first()).map(String::as_str);
                let thing = tag.unwrap_or("item").trim_end_matches('s');
                add("404", &format!("No such {thing}"));
            }
            if has_body {
                add("413", "The body is larger than 64 KiB");
                add(
                    "415",
                    "The body is not JSON (Content-Type: application/json)",
                );
            }
            if is_write && writes_limited {
                add("429", "Too many writes by this user; see Retry-After");
            }
            if !is_write && let Some(RefOr::T(ok)) = responses.get_mut("200") {
                document_total_count(ok);
            }
        }
    }
}

/// Adds the `X-Total-Count` header to a 200 answer whose body is an array.
fn document_total_count(ok: &mut utoipa::openapi::Response) {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::{RefOr, Schema, header::HeaderBuilder};
    let is_array = matches!(
        ok.content.get("application/json"),
        Some(RefOr::T(content)) if matches!(content.schema, Some(RefOr::T(Schema::Array(_))))
    );
    if is_array {
        let count = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)));
        ok.headers
            .entry("X-Total-Count".to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    HeaderBuilder::new()
                        .schema(Some(count))
                        .description(Some("How many match in all"))
                        .build(),
                )
            });
    }
}

/// Adds the `bearer` (JWT) security scheme to an OpenAPI document.
#[derive(Debug)]
pub struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
