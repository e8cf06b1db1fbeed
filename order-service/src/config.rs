//! order-service configuration (environment variables, listed in docs/contracts.md).

use std::time::Duration;

use shared::config::{CommonConfig, ConfigError, Env, FromEnv, JwtConfig};
use shared::kafka::KafkaConfig;
use shared::kafka::events::Producer;
use shared::kafka::signing::EventKeys;
use shared::ratelimit::RateLimitConfig;
use shared::tls::GrpcConfig;

use crate::product_client::ProductClientConfig;
use crate::saga::SagaConfig;

/// Everything order-service reads at start-up.
/// The port of `HTTP_ADDR` when it is unset.
pub const DEFAULT_HTTP_PORT: u16 = 8082;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `GRPC_ADDR` and TLS: where and as whom `order.OrderService` listens.
    pub grpc: GrpcConfig,
    pub jwt: JwtConfig,
    pub kafka: KafkaConfig,
    pub rate_limits: RateLimitConfig,
    pub product: ProductClientConfig,
    pub saga: SagaConfig,
}

impl FromEnv for Config {
    fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let mut config = Self {
            common: CommonConfig::read(&mut env, DEFAULT_HTTP_PORT, "orderdb"),
            grpc: GrpcConfig::read(&mut env, crate::app::SERVICE, 50051),
            jwt: JwtConfig::read(&mut env),
            kafka: {
                let kafka = KafkaConfig::read(&mut env);
                let events = EventKeys::read(&mut env, Some(Producer::OrderService));
                kafka.with_events(events)
            },
            rate_limits: RateLimitConfig::read(&mut env),
            product: ProductClientConfig {
                url: env.get("PRODUCT_GRPC_URL", "https://127.0.0.1:50052".to_string()),
                tls: None,
                deadline: env.millis("PRODUCT_GRPC_DEADLINE_MS", 2000),
                attempts: env.in_range("PRODUCT_GRPC_ATTEMPTS", 3, 1..=10),
                backoff: env.millis("PRODUCT_GRPC_BACKOFF_MS", 100),
                breaker_failures: env.in_range("PRODUCT_BREAKER_FAILURES", 5, 1..=1000),
                // failsafe's backoff needs at least a second.
                breaker_open: Duration::from_millis(env.in_range(
                    "PRODUCT_BREAKER_OPEN_MS",
                    5000,
                    1000..=3_600_000,
                )),
                resolve_every: Duration::from_secs(env.in_range(
                    "PRODUCT_GRPC_RESOLVE_SECS",
                    0,
                    0..=3600,
                )),
            },
            saga: SagaConfig {
                payment_timeout: Duration::from_secs(env.in_range(
                    "PAYMENT_TIMEOUT_SECS",
                    60,
                    1..=86_400,
                )),
                recovery_interval: env.millis("RECOVERY_INTERVAL_MS", 1000),
                recovery_grace: env.millis("RECOVERY_GRACE_MS", 10_000),
                max_pending: env.in_range("ORDER_MAX_PENDING", 1000, 1..=10_000_000),
            },
        };
        // The stock calls go out with this service's own certificate.
        config.product.tls = config.grpc.tls.clone();
        let https = config.product.url.starts_with("https://");
        if https != config.product.tls.is_some() {
            env.problem(format!(
                "PRODUCT_GRPC_URL={:?}: must be https:// with GRPC_TLS=on (the default), \
                 http:// with GRPC_TLS=off",
                config.product.url
            ));
        }
        env.finish()?;
        Ok(config)
    }
}
