//! Start-up: what user-service adds to the shared composition root
//! ([`shared::app`]): the signing key (checked against the published public
//! key), the password hasher, the bootstrap admin, and the REST API with its
//! per-IP and per-user limits.

use std::sync::Arc;

use shared::app::{Application, Error, Infra, Spec};
use shared::auth::{JwtSigner, JwtVerifier, Role, jwk_from_public_pem};
use shared::ratelimit::RateLimits;

use crate::api::{self, ApiState};
use crate::authority::LocalAuthority;
use crate::config::Config;
use crate::email::Email;
use crate::lockout::Lockout;
use crate::passwords::Passwords;
use crate::store::Store;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "user-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The private key and the published public key are not one key pair.
#[derive(Debug, thiserror::Error)]
#[error("JWT_PRIVATE_KEY and JWT_PUBLIC_KEY are not one key pair")]
pub struct KeyMismatch(#[source] shared::auth::AuthError);

/// Checks the key pair, connects, migrates, bootstraps the admin and binds
/// with `config`; serving starts in [`Application::run`].
pub async fn build(config: Config) -> Result<Application, Error> {
    let signer = JwtSigner::from_private_pem(
        &config.private_key_pem,
        &config.jwt.issuer,
        &config.jwt.audience,
        config.token_ttl_seconds,
    )?
    .with_kid(&config.key_id);
    let jwks = serde_json::json!({"keys": [jwk_from_public_pem(&config.jwt.public_key_pem, &config.key_id)?]});
    // A private key that doesn't match the published public key would
    // issue tokens nobody accepts: refuse to start, before connecting.
    let probe = signer
        .sign(1, "probe@minishop.local", Role::Customer, 0)
        .map_err(|e| Error::start("signing a probe token", e))?;
    JwtVerifier::from_config(&config.jwt)?
        .verify(&probe)
        .map_err(|e| Error::start("checking the key pair", KeyMismatch(e)))?;
    let mut infra =
        Infra::start(Spec::new(SERVICE, &MIGRATOR, &config.common, &config.jwt)).await?;
    let passwords = Passwords::new(config.hash_cost, &infra.metrics)
        .map_err(|e| Error::start("setting up password hashing", e))?;

    let store = Store {
        pool: infra.pool.clone(),
    };
    // Roles and token versions live here: checked in the database itself.
    infra.authority = Some(Arc::new(LocalAuthority::new(store.clone())));
    match &config.admin {
        Some((email, password)) => {
            let email = Email::parse(email).map_err(|e| Error::start("reading ADMIN_EMAIL", e))?;
            let existing = store
                .by_email(&email)
                .await
                .map_err(|e| Error::start("looking up the admin", e))?;
            // A restart with the same password keeps the admin's tokens; a
            // new password (or an account that was not an admin) ends them.
            let current = match existing {
                Some(c) if c.user.role == Role::Admin => passwords
                    .verify(password.clone(), Some(c.password_hash))
                    .await
                    .map_err(|e| Error::start("checking the admin's password", e))?,
                _ => false,
            };
            if current {
                tracing::info!(email = %email, "admin account ready (unchanged)");
            } else {
                let hash = passwords
                    .hash(password.clone())
                    .await
                    .map_err(|e| Error::start("hashing the admin's password", e))?;
                let admin = store
                    .upsert_admin(&email, &hash)
                    .await
                    .map_err(|e| Error::start("bootstrapping the admin", e))?;
                tracing::info!(user_id = admin.id, email = %admin.email, "admin account ready; its older tokens are revoked");
            }
        }
        None => tracing::warn!("ADMIN_PASSWORD is not set: no admin account is bootstrapped"),
    }

    let limits = RateLimits::new(config.rate_limits, infra.verifier.clone());
    let state = ApiState {
        store,
        passwords,
        lockout: Lockout::new(config.lockout),
        signer: Arc::new(signer),
        jwks: Arc::new(jwks),
        token_ttl_seconds: config.token_ttl_seconds,
    };
    infra
        .builder()
        .api(api::DESCRIPTION, api::routes(limits.clone()), state)
        .write_limits(limits)
        .bind()
        .await
}
