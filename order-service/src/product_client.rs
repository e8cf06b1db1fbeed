//! The order saga's client of product-service's stock calls.
//!
//! Every call carries a deadline; a transient failure (UNAVAILABLE,
//! DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, or a connection that broke under
//! the call) is retried a bounded number of
//! times with exponential backoff and jitter; and all calls go through one
//! `failsafe` circuit breaker that counts only those transient failures, so
//! a business answer (NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT) never
//! opens it. While it is open, calls fail at once with [`CallError::BreakerOpen`]
//! (the API answers 503 with `Retry-After` without waiting). The channel
//! connects lazily: product-service being down at start-up is not an error.
//!
//! With `PRODUCT_GRPC_RESOLVE_SECS` set, the calls are spread over every
//! address the URL's host name resolves to (in Kubernetes, a headless
//! Service's name resolves to each ready pod), and the name is resolved
//! again that often: a new pod gets calls, a gone one none. Without it, the
//! client keeps one HTTP/2 connection to the URL, and a load balancer in
//! front of product-service would see every call on that one connection.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use failsafe::futures::CircuitBreaker;
use failsafe::{Config, backoff, failure_policy};
use rand::Rng;
use shared::id::OrderId;
use shared::metrics::Metrics;
use shared::metrics::prometheus::IntGauge;
use shared::proto::product::product_service_client::ProductServiceClient;
use shared::proto::product::{
    CommitStockRequest, ReleaseStockRequest, ReservationStatus, ReserveStockRequest,
    ReserveStockResponse,
};
use shared::stock::{OrderLine, Settlement};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};
use tracing::Instrument;

/// The name product-service's certificate must carry.
pub const PRODUCT_SERVICE: &str = "product-service";

/// How the client behaves.
#[derive(Debug, Clone)]
pub struct ProductClientConfig {
    /// `PRODUCT_GRPC_URL`.
    pub url: String,
    /// This service's certificate and the CA that product-service's must
    /// chain to (the URL is then https://); `None` is plaintext.
    pub tls: Option<shared::tls::TlsConfig>,
    /// `PRODUCT_GRPC_DEADLINE_MS`: the deadline of each attempt.
    pub deadline: Duration,
    /// `PRODUCT_GRPC_ATTEMPTS`: attempts of one call on transient failures.
    pub attempts: u32,
    /// The first retry delay; doubles each retry.
    pub backoff: Duration,
    /// `PRODUCT_BREAKER_FAILURES`: consecutive transient failures that open the breaker.
    pub breaker_failures: u32,
    /// `PRODUCT_BREAKER_OPEN_MS`: how long the breaker stays open before it tries again (grows while failures go on).
    pub breaker_open: Duration,
    /// `PRODUCT_GRPC_RESOLVE_SECS`: how often the URL's host is resolved
    /// again, the calls being spread over all its addresses; zero (the
    /// default) dials the URL as it is.
    pub resolve_every: Duration,
}

/// Finds the addresses of a host and port: [`dns`], or a test's own.
pub type Resolver = Arc<
    dyn Fn(&str, u16) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system's resolver (in Kubernetes, the cluster's DNS).
pub fn dns() -> Resolver {
    Arc::new(|host, port| {
        let target = format!("{host}:{port}");
        Box::pin(async move { Ok(tokio::net::lookup_host(target).await?.collect()) })
    })
}

/// Why a call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// product-service did not answer in time, even after retries.
    #[error("product-service unavailable: {0}")]
    Unavailable(Status),
    /// The breaker is open: product-service has been failing; not even tried.
    #[error("product-service circuit breaker is open")]
    BreakerOpen,
    /// product-service answered with an error (not found, precondition, ...).
    #[error("product-service refused: {0}")]
    Refused(Status),
}

fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
    ) || broke_in_transport(status)
}

/// The status was made here because the connection failed under the call
/// (product-service killed mid-request: UNKNOWN "transport error"), not sent
/// by product-service. There was no answer, so it is as transient as
/// UNAVAILABLE; retrying is safe because every stock call is idempotent by
/// order id.
fn broke_in_transport(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::transport::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Exposes the breaker's state (0 closed, 1 open, 2 half-open).
#[derive(Clone)]
struct BreakerGauge(IntGauge);

impl failsafe::Instrument for BreakerGauge {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        tracing::warn!("product-service circuit breaker opened");
        self.0.set(1);
    }
    fn on_half_open(&self) {
        self.0.set(2);
    }
    fn on_closed(&self) {
        tracing::info!("product-service circuit breaker closed");
        self.0.set(0);
    }
}

type Breaker = failsafe::StateMachine<
    failure_policy::ConsecutiveFailures<backoff::EqualJittered>,
    BreakerGauge,
>;

/// A request with a deadline that carries the current trace context.
fn with_deadline<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    shared::telemetry::inject_grpc(&mut request);
    request
}

/// The endpoint of `url` with this client's TLS and deadlines. Whatever
/// address it dials, product-service's certificate must name
/// [`PRODUCT_SERVICE`].
fn endpoint(
    config: &ProductClientConfig,
    url: String,
) -> Result<Endpoint, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(url)?;
    if let Some(tls) = &config.tls {
        endpoint = endpoint.tls_config(tls.client(PRODUCT_SERVICE))?;
    }
    Ok(endpoint
        .connect_timeout(config.deadline)
        .timeout(config.deadline))
}

/// Keeps the balanced channel's endpoints those `uri`'s host resolves to,
/// resolving it every `resolve_every`, until the channel is dropped. A
/// failed or empty resolution keeps the last addresses.
async fn follow_addresses(
    config: ProductClientConfig,
    uri: Uri,
    resolver: Resolver,
    changes: tokio::sync::mpsc::Sender<Change<SocketAddr, Endpoint>>,
) {
    let scheme = uri.scheme_str().unwrap_or("https").to_owned();
    let host = uri.host().unwrap_or_default().to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let mut known = HashSet::new();
    while !changes.is_closed() {
        match resolver(&host, port).await {
            Ok(found) if !found.is_empty() => {
                let found: HashSet<SocketAddr> = found.into_iter().collect();
                let mut sent = Ok(());
                for &gone in known.difference(&found) {
                    sent = sent.and(changes.send(Change::Remove(gone)).await);
                }
                for &new in found.difference(&known) {
                    match endpoint(&config, format!("{scheme}://{new}")) {
                        Ok(e) => sent = sent.and(changes.send(Change::Insert(new, e)).await),
                        Err(e) => {
                            tracing::warn!(address = %new, error = %e, "cannot dial product-service there")
                        }
                    }
                }
                if sent.is_err() {
                    return;
                }
                if found != known {
                    tracing::info!(host, addresses = ?found, "product-service's addresses");
                }
                known = found;
            }
            Ok(_) => tracing::warn!(
                host,
                "product-service's name has no address; keeping the last ones"
            ),
            Err(e) => {
                tracing::warn!(host, error = %e, "cannot resolve product-service's name; keeping the last addresses")
            }
        }
        tokio::time::sleep(config.resolve_every).await;
    }
}

/// A cheap-to-clone client of product-service's stock calls.
#[derive(Clone)]
pub struct ProductClient {
    client: ProductServiceClient<Channel>,
    breaker: Breaker,
    breaker_state: IntGauge,
    config: ProductClientConfig,
    metrics: Metrics,
}

impl ProductClient {
    /// A client whose calls and breaker state (`product_breaker_state`) are
    /// recorded in `metrics`.
    pub fn new(
        config: ProductClientConfig,
        metrics: &Metrics,
    ) -> Result<Self, tonic::transport::Error> {
        Self::with_resolver(config, metrics, dns())
    }

    /// [`Self::new`], finding product-service's addresses with `resolver`
    /// (when `resolve_every` is set).
    pub fn with_resolver(
        config: ProductClientConfig,
        metrics: &Metrics,
        resolver: Resolver,
    ) -> Result<Self, tonic::transport::Error> {
        let breaker_state = metrics.int_gauge(
            "product_breaker_state",
            "The product-service circuit breaker: 0 closed, 1 open, 2 half-open",
        );
        let endpoint = endpoint(&config, config.url.clone())?;
        let channel = if config.resolve_every.is_zero() {
            endpoint.connect_lazy()
        } else {
            let (channel, changes) = Channel::balance_channel(16);
            tokio::spawn(follow_addresses(
                config.clone(),
                endpoint.uri().clone(),
                resolver,
                changes,
            ));
            channel
        };
        let policy = failure_policy::consecutive_failures(
            config.breaker_failures,
            backoff::equal_jittered(config.breaker_open, config.breaker_open * 10),
        );
        let breaker = Config::new()
            .failure_policy(policy)
            .instrument(BreakerGauge(breaker_state.clone()))
            .build();
        Ok(Self {
            client: ProductServiceClient::new(channel),
            breaker,
            breaker_state,
            config,
            metrics: metrics.clone(),
        })
    }

    /// The breaker's state: 0 closed, 1 open, 2 half-open.
    pub fn breaker_state(&self) -> i64 {
        self.breaker_state.get()
    }

    /// Runs one call of `message` with deadline, retries and breaker, in a
    /// client span `name` whose context travels in the request's metadata.
    async fn call<M, T, F, Fut>(
        &self,
        name: &'static str,
        message: M,
        op: F,
    ) -> Result<T, CallError>
    where
        M: Clone,
        F: Fn(ProductServiceClient<Channel>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let attempts = async {
            let mut wait = self.config.backoff;
            let mut attempt = 1;
            loop {
                let start = std::time::Instant::now();
                let request = with_deadline(message.clone(), self.config.deadline);
                let result = op(self.client.clone(), request).await;
                let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
                self.metrics
                    .observe_grpc_client(name, code, start.elapsed());
                match result {
                    Ok(response) => return Ok(response.into_inner()),
                    Err(status) if is_transient(&status) && attempt < self.config.attempts => {
                        let jittered = wait.mul_f64(rand::rng().random_range(0.5..1.5));
                        tracing::debug!(code = ?status.code(), attempt, "product-service call failed; retrying");
                        tokio::time::sleep(jittered).await;
                        wait *= 2;
                        attempt += 1;
                    }
                    Err(status) => return Err(status),
                }
            }
        };
        let span = tracing::info_span!(
            "grpc client",
            otel.name = name.trim_start_matches('/'),
            otel.kind = "client",
            rpc.service = "product.ProductService",
        );
        match self
            .breaker
            .call_with(is_transient, attempts.instrument(span))
            .await
        {
            Ok(v) => Ok(v),
            Err(failsafe::Error::Rejected) => Err(CallError::BreakerOpen),
            Err(failsafe::Error::Inner(status)) if is_transient(&status) => {
                Err(CallError::Unavailable(status))
            }
            Err(failsafe::Error::Inner(status)) => Err(CallError::Refused(status)),
        }
    }

    /// Holds stock for an order's items (idempotent by order id).
    pub async fn reserve(
        &self,
        order_id: OrderId,
        items: &[OrderLine],
    ) -> Result<ReserveStockResponse, CallError> {
        let message = ReserveStockRequest {
            order_id: order_id.get(),
            items: items.iter().map(|&line| line.into()).collect(),
        };
        self.call(
            "/product.ProductService/ReserveStock",
            message,
            |mut c, r| async move { c.reserve_stock(r).await },
        )
        .await
    }

    /// Settles an order's reservation (idempotent): commits its units, or
    /// gives them back (also before any reservation); the reservation's
    /// status after.
    pub async fn settle(
        &self,
        order_id: OrderId,
        how: Settlement,
    ) -> Result<ReservationStatus, CallError> {
        let name = match how {
            Settlement::Commit => "/product.ProductService/CommitStock",
            Settlement::Release => "/product.ProductService/ReleaseStock",
        };
        // Both calls carry just the order id; the request keeps its deadline
        // and trace context when it becomes the call's own message.
        self.call(name, order_id.get(), |mut c, r| async move {
            Ok(match how {
                Settlement::Commit => c
                    .commit_stock(r.map(|order_id| CommitStockRequest { order_id }))
                    .await?
                    .map(|m| m.status()),
                Settlement::Release => c
                    .release_stock(r.map(|order_id| ReleaseStockRequest { order_id }))
                    .await?
                    .map(|m| m.status()),
            })
        })
        .await
    }
}
