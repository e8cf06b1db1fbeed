//! user-service configuration (environment variables, listed in docs/contracts.md).

use shared::config::{
    CommonConfig, ConfigError, DEFAULT_PRIVATE_KEY_FILE, Env, FromEnv, JwtConfig, read_pem,
};
use shared::ratelimit::RateLimitConfig;

use crate::lockout::LockoutConfig;
use crate::passwords::HashCost;

/// Everything user-service reads at start-up.
/// The port of `HTTP_ADDR` when it is unset.
pub const DEFAULT_HTTP_PORT: u16 = 8080;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// Verification settings (public key, issuer, audience), shared with every service.
    pub jwt: JwtConfig,
    /// `JWT_PRIVATE_KEY` / `JWT_PRIVATE_KEY_FILE`: the Ed25519 key tokens are signed with.
    pub private_key_pem: String,
    /// `JWT_TTL_SECS`: how long a token is valid (default 1 h).
    pub token_ttl_seconds: i64,
    /// `JWT_KEY_ID`: the `kid` of tokens and of the published JWK.
    pub key_id: String,
    /// `ADMIN_EMAIL` / `ADMIN_PASSWORD`: the admin created (or reset) at start-up;
    /// without a password no admin is bootstrapped.
    pub admin: Option<(String, String)>,
    pub hash_cost: HashCost,
    pub rate_limits: RateLimitConfig,
    /// How password guessing is limited per account and per address.
    pub lockout: LockoutConfig,
}

impl FromEnv for Config {
    fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let admin_email: String = env.get("ADMIN_EMAIL", "admin@minishop.local".into());
        let admin = env
            .opt::<String>("ADMIN_PASSWORD")
            .map(|p| (admin_email, p));
        if let Some((_, password)) = &admin
            && !(8..=128).contains(&password.chars().count())
        {
            env.problem("ADMIN_PASSWORD: must be 8 to 128 characters");
        }
        let config = Self {
            common: CommonConfig::read(&mut env, DEFAULT_HTTP_PORT, "userdb"),
            jwt: JwtConfig::read(&mut env),
            private_key_pem: read_pem(&mut env, "JWT_PRIVATE_KEY", DEFAULT_PRIVATE_KEY_FILE),
            token_ttl_seconds: env.in_range("JWT_TTL_SECS", 3600, 60..=30 * 24 * 3600),
            key_id: env.get("JWT_KEY_ID", "minishop-1".into()),
            admin,
            hash_cost: HashCost {
                memory_kib: env.in_range("ARGON2_MEMORY_KIB", 19_456, 8_192..=1_048_576),
                iterations: env.in_range("ARGON2_ITERATIONS", 2, 1..=10),
                parallelism: env.in_range("ARGON2_PARALLELISM", 1, 1..=8),
                concurrency: env.in_range("HASH_CONCURRENCY", cores(), 1..=256),
                queue: env.in_range("HASH_QUEUE", 4 * cores(), 0..=10_000),
            },
            rate_limits: RateLimitConfig::read(&mut env),
            lockout: LockoutConfig::read(&mut env),
        };
        env.finish()?;
        Ok(config)
    }
}

/// The cores this process may use (1 if unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
