//! notification-service configuration (environment variables, see README).

use std::time::Duration;

use shared::config::{CommonConfig, ConfigError, Env, JwtConfig};
use shared::kafka::KafkaConfig;

use crate::store::DeliveryConfig;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub jwt: JwtConfig,
    pub kafka: KafkaConfig,
    pub delivery: DeliveryConfig,
}

impl Config {
    pub fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let config = Self {
            common: CommonConfig::read(&mut env, 8084, "notificationdb"),
            jwt: JwtConfig::read(&mut env),
            kafka: KafkaConfig::read(&mut env),
            delivery: DeliveryConfig {
                max_attempts: env.in_range("NOTIFY_MAX_ATTEMPTS", 5, 1..=100),
                initial_backoff: env.millis("NOTIFY_BACKOFF_MS", 1_000),
                max_backoff: Duration::from_secs(300),
                send_timeout: env.millis("NOTIFY_SEND_TIMEOUT_MS", 10_000),
                poll_interval: env.millis("NOTIFY_POLL_MS", 1_000),
            },
        };
        env.finish()?;
        Ok(config)
    }
}
