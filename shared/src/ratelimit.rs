//! Rate limits (docs/contracts.md, "Rate limits"): per client IP on the credential routes
//! (`/register`, `/login`) and per user on authenticated writes. Limits are
//! configuration; an exceeded limit is a 429 with `Retry-After` and a JSON
//! error. Each key has its own GCRA bucket (the `governor` crate), so one
//! client at its limit never slows another.
//!
//! The client IP is the TCP peer, unless the peer is a proxy that
//! `TRUST_FORWARDED_FOR` trusts (`true`: any peer, when every request comes
//! through your own proxy; or a list of addresses and networks, such as web's):
//! then it is the last `X-Forwarded-For` entry, the one that proxy appended
//! (entries before it are whatever the client claimed, so never trusted).

use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::auth::JwtVerifier;
use crate::config::Env;
use crate::error::{ApiError, ErrorCode};

/// Above this many tracked keys, buckets that are full again are dropped.
const PRUNE_ABOVE_KEYS: usize = 10_000;

/// Limits as configured.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_AUTH_PER_MIN`: register/login requests per client IP per minute.
    pub auth_per_minute: u32,
    /// `RATE_LIMIT_AUTH_BURST`: how many of those may come at once.
    pub auth_burst: u32,
    /// `RATE_LIMIT_WRITES_PER_MIN`: authenticated writes per user per minute.
    pub writes_per_minute: u32,
    /// `RATE_LIMIT_WRITES_BURST`: how many of those may come at once.
    pub writes_burst: u32,
    /// `TRUST_FORWARDED_FOR`: whose `X-Forwarded-For` names the client.
    pub trust_forwarded_for: ForwardedFor,
}

/// Which peers' `X-Forwarded-For` says who the client is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ForwardedFor {
    /// No one's (`false`, the default): the client is the TCP peer.
    #[default]
    Never,
    /// Any peer's (`true`): every request comes through your own proxy.
    Anyone,
    /// Only these proxies' (`127.0.0.1,10.0.0.0/8`).
    From(Vec<ipnet::IpNet>),
}

impl std::str::FromStr for ForwardedFor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "" | "false" => Ok(Self::Never),
            "true" => Ok(Self::Anyone),
            list => list
                .split(',')
                .map(str::trim)
                .map(|entry| {
                    entry
                        .parse::<ipnet::IpNet>()
                        .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| format!("{entry:?} is not an address or a network"))
                })
                .collect::<Result<_, _>>()
                .map(Self::From),
        }
    }
}

impl ForwardedFor {
    /// The client behind a request from `peer` with these `headers`.
    pub fn client(&self, peer: Option<IpAddr>, headers: &axum::http::HeaderMap) -> Option<IpAddr> {
        let trusted = match (self, peer) {
            (Self::Never, _) => false,
            (Self::Anyone, _) => true,
            (Self::From(proxies), Some(peer)) => proxies.iter().any(|p| p.contains(&peer)),
            (Self::From(_), None) => false,
        };
        let forwarded = || {
            headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|last| last.trim().parse::<IpAddr>().ok())
        };
        trusted.then(forwarded).flatten().or(peer)
    }
}

impl RateLimitConfig {
    /// Reads the limits (defaults: 10/min burst 5 on auth, 60/min burst 20 on writes).
    pub fn read(env: &mut Env) -> Self {
        Self {
            auth_per_minute: env.in_range("RATE_LIMIT_AUTH_PER_MIN", 10, 1..=1_000_000),
            auth_burst: env.in_range("RATE_LIMIT_AUTH_BURST", 5, 1..=1_000_000),
            writes_per_minute: env.in_range("RATE_LIMIT_WRITES_PER_MIN", 60, 1..=1_000_000),
            writes_burst: env.in_range("RATE_LIMIT_WRITES_BURST", 20, 1..=1_000_000),
            trust_forwarded_for: env.get("TRUST_FORWARDED_FOR", ForwardedFor::Never),
        }
    }
}

/// One limit, kept per key.
pub struct KeyedLimit<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    what: &'static str,
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    /// `per_minute` requests a minute per key, `burst` at once.
    pub fn new(per_minute: u32, burst: u32, what: &'static str) -> Self {
        let period = Duration::from_secs(60) / per_minute.max(1);
        let quota = Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("burst is at least 1"));
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            what,
        }
    }

    /// Takes one request for `key`: a 429 with `Retry-After` when over the limit.
    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        let outcome = self.limiter.check_key(key);
        if self.limiter.len() > PRUNE_ABOVE_KEYS {
            self.limiter.retain_recent();
        }
        outcome.map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!("too many {}; retry in {} s", self.what, seconds.max(1)),
            )
            .retry_after(seconds.max(1))
        })
    }
}

/// The limits of one service instance.
pub struct RateLimits {
    per_ip: KeyedLimit<IpAddr>,
    per_user: KeyedLimit<crate::id::UserId>,
    trust_forwarded_for: ForwardedFor,
    verifier: Arc<JwtVerifier>,
}

impl RateLimits {
    pub fn new(config: RateLimitConfig, verifier: Arc<JwtVerifier>) -> Arc<Self> {
        Arc::new(Self {
            per_ip: KeyedLimit::new(
                config.auth_per_minute,
                config.auth_burst,
                "sign-in attempts from this address",
            ),
            per_user: KeyedLimit::new(
                config.writes_per_minute,
                config.writes_burst,
                "writes by this user",
            ),
            trust_forwarded_for: config.trust_forwarded_for,
            verifier,
        })
    }

    /// Takes one write of `user`'s budget (a 429 with `Retry-After` when
    /// spent): for writes that arrive other than by REST (gRPC).
    pub fn check_write(&self, user: &crate::auth::AuthUser) -> Result<(), ApiError> {
        let checked = self.per_user.check(&user.id);
        if checked.is_err() {
            tracing::warn!(user_id = %user.id, "rate limit hit on writes");
        }
        checked
    }

    fn client_ip(&self, req: &Request) -> Option<IpAddr> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        self.trust_forwarded_for.client(peer, req.headers())
    }
}

/// The client's address as the limits see it (the TCP peer, or the
/// trusted `X-Forwarded-For` entry), for handlers that count per address;
/// set by [`note_client_ip`], `None` where it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .unwrap_or(ClientIp(None)))
    }
}

/// Middleware that tells the handlers the client's address ([`ClientIp`]).
pub async fn note_client_ip(
    State(limits): State<Arc<RateLimits>>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = limits.client_ip(&req);
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

/// Middleware for the credential routes: limits per client IP.
pub async fn limit_per_ip(
    State(limits): State<Arc<RateLimits>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(ip) = limits.client_ip(&req)
        && let Err(e) = limits.per_ip.check(&ip)
    {
        tracing::warn!(%ip, "rate limit hit on credentials route");
        return e.into_response();
    }
    next.run(req).await
}

/// Middleware for every route: limits writes (not GET/HEAD/OPTIONS) per
/// authenticated user. A request without a valid token passes through, and
/// the handler answers it with its 401.
pub async fn limit_writes_per_user(
    State(limits): State<Arc<RateLimits>>,
    req: Request,
    next: Next,
) -> Response {
    let is_write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if is_write {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Some(header) = header
            && let Ok(user) = limits.verifier.authenticate(Some(header))
            && let Err(e) = limits.check_write(&user)
        {
            return e.into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_trusted_proxies_say_who_the_client_is() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        let peer = |ip: &str| Some(ip.parse::<IpAddr>().unwrap());
        let client = |trust: &str, from: &str| {
            trust
                .parse::<ForwardedFor>()
                .unwrap()
                .client(peer(from), &headers)
                .map(|ip| ip.to_string())
        };
        assert_eq!(client("false", "10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(client("true", "10.0.0.5").as_deref(), Some("203.0.113.9"));
        assert_eq!(
            client("10.0.0.0/8, ::1", "10.0.0.5").as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(client("127.0.0.1", "10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(
            client("127.0.0.1", "127.0.0.1").as_deref(),
            Some("203.0.113.9")
        );
        assert!("10.0.0.0/33".parse::<ForwardedFor>().is_err());
        assert!("proxy.local".parse::<ForwardedFor>().is_err());
        assert_eq!(
            ForwardedFor::Anyone.client(peer("10.0.0.5"), &axum::http::HeaderMap::new()),
            peer("10.0.0.5")
        );
    }

    #[test]
    fn a_key_over_its_burst_is_refused_with_a_retry_time_and_others_are_not() {
        let limit = KeyedLimit::new(60, 2, "requests");
        assert!(limit.check(&1).is_ok());
        assert!(limit.check(&1).is_ok());
        let err = limit.check(&1).unwrap_err();
        assert_eq!(err.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.retry_after, Some(1));
        assert!(limit.check(&2).is_ok(), "another key has its own bucket");
    }
}
