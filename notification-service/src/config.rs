//! notification-service configuration (environment variables, listed in docs/contracts.md).

use std::time::Duration;

use shared::config::{CommonConfig, ConfigError, Env, FromEnv, JwtConfig};
use shared::kafka::KafkaConfig;
use shared::kafka::signing::EventKeys;

use crate::delivery::DeliveryConfig;

/// The port of `HTTP_ADDR` when it is unset.
pub const DEFAULT_HTTP_PORT: u16 = 8084;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub jwt: JwtConfig,
    pub kafka: KafkaConfig,
    pub delivery: DeliveryConfig,
    /// `SMTP_URL`: mail notifications through this server; unset, they go to the log.
    pub smtp_url: Option<String>,
    /// `SMTP_FROM`: the sender of those mails.
    pub smtp_from: String,
}

impl FromEnv for Config {
    fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let config = Self {
            common: CommonConfig::read(&mut env, DEFAULT_HTTP_PORT, "notificationdb"),
            jwt: JwtConfig::read(&mut env),
            kafka: {
                let kafka = KafkaConfig::read(&mut env);
                let events = EventKeys::read(&mut env, None);
                kafka.with_events(events)
            },
            smtp_url: env.opt("SMTP_URL").filter(|u: &String| !u.is_empty()),
            smtp_from: env.get(
                "SMTP_FROM",
                "minishop <no-reply@minishop.local>".to_string(),
            ),
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

impl Config {
    /// The notifier this configuration asks for: SMTP when `SMTP_URL` is set, else the log.
    pub fn notifier(
        &self,
    ) -> Result<std::sync::Arc<dyn crate::notifier::Notifier>, crate::notifier::SmtpError> {
        Ok(match &self.smtp_url {
            Some(url) => {
                std::sync::Arc::new(crate::notifier::SmtpNotifier::new(url, &self.smtp_from)?)
            }
            None => std::sync::Arc::new(crate::notifier::LogNotifier),
        })
    }
}
