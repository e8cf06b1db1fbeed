//! Start-up and serving: keys, database, bootstrap admin, HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use shared::auth::{JwtSigner, JwtVerifier, Role, jwk_from_public_pem};
use shared::http::{Readiness, ServiceRouter};
use shared::metrics::Metrics;
use shared::ratelimit::RateLimits;
use shared::shutdown::CancellationToken;
use tokio::net::TcpListener;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::passwords::Passwords;
use crate::store::Store;

/// The service's name in logs and metrics.
pub const SERVICE: &str = "user-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// A started but not yet serving user-service.
pub struct App {
    http: TcpListener,
    router: axum::Router,
}

impl App {
    /// Checks the key pair, connects, migrates, bootstraps the admin, binds.
    pub async fn build(config: Config) -> Result<Self, String> {
        let signer = JwtSigner::from_private_pem(
            &config.private_key_pem,
            &config.jwt.issuer,
            &config.jwt.audience,
            config.token_ttl_seconds,
        )?
        .with_kid(&config.key_id);
        let verifier = Arc::new(JwtVerifier::from_config(&config.jwt)?);
        // A private key that doesn't match the published public key would
        // issue tokens nobody accepts: refuse to start instead.
        let probe = signer.sign(1, "probe@minishop.local", Role::Customer)?;
        verifier.verify(&probe).map_err(|e| {
            format!("JWT_PRIVATE_KEY and JWT_PUBLIC_KEY are not one key pair ({e})")
        })?;
        let jwks = serde_json::json!({"keys": [jwk_from_public_pem(&config.jwt.public_key_pem, &config.key_id)?]});

        let passwords = Passwords::new(config.hash_cost)?;
        let pool = shared::db::connect(&config.common).await?;
        let health = shared::db::DbHealth::watch(&config.common)?;
        shared::db::migrate(&pool, &MIGRATOR).await?;
        let store = Store::new(pool.clone());
        match &config.admin {
            Some((email, password)) => {
                let email = api::normalize_email(email)
                    .map_err(|e| format!("ADMIN_EMAIL: {}", e.message))?;
                let hash = passwords.hash(password.clone()).await?;
                let admin = store
                    .upsert_admin(&email, &hash)
                    .await
                    .map_err(|e| format!("bootstrapping the admin failed: {e}"))?;
                tracing::info!(user_id = admin.id, email = %admin.email, "admin account ready");
            }
            None => tracing::warn!("ADMIN_PASSWORD is not set: no admin account is bootstrapped"),
        }

        let metrics = Arc::new(Metrics::new(SERVICE));
        shared::db::observe(&pool, &metrics);
        let limits = RateLimits::new(config.rate_limits, verifier.clone());
        let (api, openapi) = api::router(
            ApiState {
                store,
                passwords,
                signer: Arc::new(signer),
                verifier,
                jwks: Arc::new(jwks),
                token_ttl_seconds: config.token_ttl_seconds,
            },
            limits.clone(),
        );
        let readiness = Readiness::default().database(pool, health.clone());
        let router = ServiceRouter {
            service: SERVICE,
            api,
            openapi: Some(openapi),
            readiness,
            metrics,
            write_limits: Some(limits),
            database: Some(health),
        }
        .build();
        Ok(Self {
            http: shared::http::bind(config.common.http_addr).await?,
            router,
        })
    }

    /// Where the REST API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), String> {
        tracing::info!(http = %self.http_addr(), "user-service listening");
        shared::http::serve(self.http, self.router, shutdown)
            .await
            .map_err(|e| format!("HTTP server failed: {e}"))
    }
}
