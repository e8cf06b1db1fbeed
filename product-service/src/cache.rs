//! The Redis read-through cache of `GET /products/{id}`.
//!
//! Each entry is a hash `{v: version, body: json}`. Writers never delete:
//! after a change they leave a *marker* `{v: new version, body: ""}`, and a
//! reader may only fill an entry with a version at least as new as the one
//! there (a Lua script compares atomically). So a reader that read the
//! database just before a write can't put back the older value after the
//! write's invalidation: the marker's version is higher and refuses it.
//! A delete leaves a marker with an unreachable version.
//!
//! Redis is optional: every call has a short timeout and goes through a
//! `failsafe` circuit breaker; when Redis is down or slow, the breaker opens
//! and reads go straight to PostgreSQL without waiting on Redis at all.
//! Entries expire after a TTL, which also bounds staleness if an
//! invalidation itself was lost to a Redis outage.

use std::sync::Arc;
use std::time::Duration;

use failsafe::futures::CircuitBreaker;
use failsafe::{Config, backoff, failure_policy};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use shared::metrics::prometheus::{IntCounterVec, IntGauge, Opts};

/// A version no product reaches: the marker of a deleted product.
const DELETED_VERSION: i64 = 9_007_199_254_740_991; // 2^53 - 1, exact in Lua numbers

/// Fills `body` at version ARGV[1] if the entry is absent, older, or a marker of that version.
const FILL: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'v')
local v = tonumber(ARGV[1])
if cur then
  cur = tonumber(cur)
  if cur > v then return 0 end
  if cur == v and redis.call('HGET', KEYS[1], 'body') ~= '' then return 0 end
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'body', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// Leaves a marker at version ARGV[1] unless the entry is already newer.
const INVALIDATE: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'body', '')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

type Breaker = failsafe::StateMachine<
    failure_policy::ConsecutiveFailures<backoff::EqualJittered>,
    BreakerMetrics,
>;

/// Cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `REDIS_TIMEOUT_MS`: longest wait for one Redis call before it counts as failed.
    pub timeout: Duration,
    /// `CACHE_TTL_MS`: how long an entry lives.
    pub ttl: Duration,
    /// `CACHE_KEY_PREFIX`: namespaces the keys (several deployments or test runs can share a Redis).
    pub key_prefix: String,
}

/// Counts and exposes the breaker's state (0 closed, 1 open, 2 half-open).
#[derive(Clone)]
struct BreakerMetrics {
    state: IntGauge,
}

impl failsafe::Instrument for BreakerMetrics {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        tracing::warn!("redis circuit breaker opened: reads go to PostgreSQL");
        self.state.set(1);
    }
    fn on_half_open(&self) {
        self.state.set(2);
    }
    fn on_closed(&self) {
        tracing::info!("redis circuit breaker closed: cache back in use");
        self.state.set(0);
    }
}

#[derive(Debug, thiserror::Error)]
enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis call timed out")]
    Timeout,
}

/// The product cache. Cheap to clone.
#[derive(Clone)]
pub struct ProductCache {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Option<ConnectionManager>,
    breaker: Breaker,
    config: CacheConfig,
    fill: redis::Script,
    invalidate: redis::Script,
    lookups: IntCounterVec,
}

impl ProductCache {
    /// A cache that connects lazily: Redis being down at start-up is not an error.
    pub fn new(config: CacheConfig, metrics: &shared::metrics::Metrics) -> Self {
        let conn = redis::Client::open(config.redis_url.as_str())
            .and_then(|client| {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.timeout))
                    .set_response_timeout(Some(config.timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(client, cfg)
            })
            .map_err(|e| tracing::error!(error = %e, "REDIS_URL unusable: the cache is off"))
            .ok();
        let state = IntGauge::new(
            "cache_breaker_state",
            "Redis circuit breaker: 0 closed, 1 open, 2 half-open",
        )
        .expect("static metric definition");
        let lookups = IntCounterVec::new(
            Opts::new("cache_lookups_total", "Product cache lookups by result"),
            &["result"],
        )
        .expect("static metric definition");
        metrics.register(state.clone());
        metrics.register(lookups.clone());
        let policy = failure_policy::consecutive_failures(
            3,
            backoff::equal_jittered(Duration::from_secs(1), Duration::from_secs(30)),
        );
        let breaker = Config::new()
            .failure_policy(policy)
            .instrument(BreakerMetrics { state })
            .build();
        Self {
            inner: Arc::new(Inner {
                conn,
                breaker,
                config,
                fill: redis::Script::new(FILL),
                invalidate: redis::Script::new(INVALIDATE),
                lookups,
            }),
        }
    }

    fn key(&self, id: i64) -> String {
        format!("{}:product:{id}", self.inner.config.key_prefix)
    }

    /// Runs one Redis call through the timeout and the breaker; `None` when
    /// Redis is off, failing, or the breaker is open.
    async fn call<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.inner.conn.clone()?;
        let timeout = self.inner.config.timeout;
        let attempt = async move {
            match tokio::time::timeout(timeout, op(conn)).await {
                Ok(result) => result.map_err(CacheError::from),
                Err(_) => Err(CacheError::Timeout),
            }
        };
        match self.inner.breaker.call(attempt).await {
            Ok(v) => Some(v),
            Err(failsafe::Error::Inner(e)) => {
                tracing::debug!(error = %e, "cache call failed");
                None
            }
            Err(failsafe::Error::Rejected) => None,
        }
    }

    /// The cached JSON body and version of a product, if there is one.
    #[tracing::instrument(name = "GET product cache", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn get(&self, id: i64) -> Option<(i64, String)> {
        let key = self.key(id);
        let found: Option<(Option<i64>, Option<String>)> = self
            .call(|mut conn| async move {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("v")
                    .arg("body")
                    .query_async(&mut conn)
                    .await
            })
            .await;
        let hit = match found {
            Some((Some(v), Some(body))) if !body.is_empty() => Some((v, body)),
            _ => None,
        };
        let result = if hit.is_some() { "hit" } else { "miss" };
        self.inner.lookups.with_label_values(&[result]).inc();
        hit
    }

    /// Puts a body read from the database, unless a newer write is known.
    #[tracing::instrument(name = "EVALSHA fill product cache", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn fill(&self, id: i64, version: i64, body: &str) {
        let _ = self.run(&self.inner.fill, id, version, Some(body)).await;
    }

    /// Marks a product as changed at `version`: older bodies can't come back.
    #[tracing::instrument(name = "EVALSHA invalidate product cache", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn invalidate(&self, id: i64, version: i64) {
        let done = self.run(&self.inner.invalidate, id, version, None).await;
        if done.is_none() {
            tracing::warn!(
                product_id = id,
                version,
                "cache invalidation skipped (Redis unavailable); the entry expires with its TTL"
            );
        }
    }

    /// Runs one of the scripts on product `id`'s entry: its arguments are
    /// the version, the body (for a fill) and the TTL in milliseconds.
    async fn run(
        &self,
        script: &redis::Script,
        id: i64,
        version: i64,
        body: Option<&str>,
    ) -> Option<i64> {
        let key = self.key(id);
        let ttl = self.inner.config.ttl.as_millis() as u64;
        self.call(|mut conn| async move {
            let mut invocation = script.key(&key);
            invocation.arg(version);
            if let Some(body) = body {
                invocation.arg(body);
            }
            invocation.arg(ttl).invoke_async(&mut conn).await
        })
        .await
    }

    /// Marks a product as deleted.
    #[tracing::instrument(name = "EVALSHA invalidate product cache", skip_all, fields(otel.kind = "client", db.system = "redis"))]
    pub async fn invalidate_deleted(&self, id: i64) {
        self.invalidate(id, DELETED_VERSION).await;
    }

    /// Readiness: whether Redis answers (reported, never fatal).
    pub async fn ping(&self) -> Result<(), CacheDown> {
        let pong: Option<String> = self
            .call(|mut conn| async move { redis::cmd("PING").query_async(&mut conn).await })
            .await;
        pong.map(|_| ()).ok_or(CacheDown)
    }
}

/// Redis did not answer, or its breaker is open (the cause was logged when
/// the call failed).
#[derive(Debug, thiserror::Error)]
#[error("redis unreachable or breaker open")]
pub struct CacheDown;
