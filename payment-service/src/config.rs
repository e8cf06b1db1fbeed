//! payment-service configuration (environment variables, listed in docs/contracts.md).

use shared::config::{CommonConfig, ConfigError, Env, FromEnv, JwtConfig};
use shared::kafka::KafkaConfig;
use shared::kafka::events::Producer;
use shared::kafka::signing::EventKeys;
use shared::money::Money;

use crate::gateway::SimulatedGateway;

/// The port of `HTTP_ADDR` when it is unset.
pub const DEFAULT_HTTP_PORT: u16 = 8083;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub jwt: JwtConfig,
    pub kafka: KafkaConfig,
    /// `PAYMENT_SUCCESS_RATE` (0.8) and `PAYMENT_MAX_AMOUNT` (10000.00).
    pub gateway: SimulatedGateway,
}

impl FromEnv for Config {
    fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let success_rate = env.in_range("PAYMENT_SUCCESS_RATE", 0.8, 0.0..=1.0);
        let max_amount = match env.opt::<String>("PAYMENT_MAX_AMOUNT") {
            None => Money(1_000_000),
            Some(text) => Money::parse_decimal(&text).unwrap_or_else(|| {
                env.problem(format!(
                    "PAYMENT_MAX_AMOUNT={text:?}: not an amount like 10000.00"
                ));
                Money(0)
            }),
        };
        let config = Self {
            common: CommonConfig::read(&mut env, DEFAULT_HTTP_PORT, "paymentdb"),
            jwt: JwtConfig::read(&mut env),
            kafka: {
                let kafka = KafkaConfig::read(&mut env);
                let events = EventKeys::read(&mut env, Some(Producer::PaymentService));
                kafka.with_events(events)
            },
            gateway: SimulatedGateway {
                success_rate,
                max_amount,
            },
        };
        env.finish()?;
        Ok(config)
    }
}
