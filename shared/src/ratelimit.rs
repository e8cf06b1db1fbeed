//! Rate limits (docs/contracts.md, "Rate limits"): per client IP on the credential routes
//! (`/register`, `/login`) and per user on authenticated writes. Limits are
//! configuration; an exceeded limit is a 429 with `Retry-After` and a JSON
//! error. Each key has its own GCRA bucket (the `governor` crate), so one
//! client at its limit never slows another.
//!
//! The client IP is the TCP peer, unless `TRUST_FORWARDED_FOR` is set: then
//! it is the last `X-Forwarded-For` entry, the one our own proxy appended
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
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// `RATE_LIMIT_AUTH_PER_MIN`: register/login requests per client IP per minute.
    pub auth_per_minute: u32,
    /// `RATE_LIMIT_AUTH_BURST`: how many of those may come at once.
    pub auth_burst: u32,
    /// `RATE_LIMIT_WRITES_PER_MIN`: authenticated writes per user per minute.
    pub writes_per_minute: u32,
    /// `RATE_LIMIT_WRITES_BURST`: how many of those may come at once.
    pub writes_burst: u32,
    /// `TRUST_FORWARDED_FOR`: the service runs behind a proxy that appends `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
}

impl RateLimitConfig {
    /// Reads the limits (defaults: 10/min burst 5 on auth, 60/min burst 20 on writes).
    pub fn read(env: &mut Env) -> Self {
        Self {
            auth_per_minute: env.in_range("RATE_LIMIT_AUTH_PER_MIN", 10, 1..=1_000_000),
            auth_burst: env.in_range("RATE_LIMIT_AUTH_BURST", 5, 1..=1_000_000),
            writes_per_minute: env.in_range("RATE_LIMIT_WRITES_PER_MIN", 60, 1..=1_000_000),
            writes_burst: env.in_range("RATE_LIMIT_WRITES_BURST", 20, 1..=1_000_000),
            trust_forwarded_for: env.get("TRUST_FORWARDED_FOR", false),
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
    trust_forwarded_for: bool,
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
        if self.trust_forwarded_for
            && let Some(ip) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|last| last.trim().parse::<IpAddr>().ok())
        {
            return Some(ip);
        }
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
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
