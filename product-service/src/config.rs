//! product-service configuration (environment variables, listed in docs/contracts.md).

use shared::config::{CommonConfig, ConfigError, Env, FromEnv, JwtConfig};
use shared::ratelimit::RateLimitConfig;
use shared::tls::GrpcConfig;

use crate::cache::CacheConfig;

/// Everything product-service reads at start-up.
/// The port of `HTTP_ADDR` when it is unset.
pub const DEFAULT_HTTP_PORT: u16 = 8081;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `GRPC_ADDR` and TLS: where and as whom `product.ProductService` listens.
    pub grpc: GrpcConfig,
    pub cache: CacheConfig,
    pub jwt: JwtConfig,
    pub rate_limits: RateLimitConfig,
}

impl FromEnv for Config {
    fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let config = Self {
            common: CommonConfig::read(&mut env, DEFAULT_HTTP_PORT, "productdb"),
            grpc: GrpcConfig::read(&mut env, crate::app::SERVICE, 50052),
            cache: CacheConfig {
                redis_url: env.get("REDIS_URL", "redis://127.0.0.1:6379".to_string()),
                timeout: env.millis("REDIS_TIMEOUT_MS", 200),
                ttl: env.millis("CACHE_TTL_MS", 60_000),
                key_prefix: env.get("CACHE_KEY_PREFIX", "minishop".to_string()),
            },
            jwt: JwtConfig::read(&mut env),
            rate_limits: RateLimitConfig::read(&mut env),
        };
        env.finish()?;
        Ok(config)
    }
}
