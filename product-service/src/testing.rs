//! For other crates' tests (feature `testing`): a real product-service on
//! ports chosen by the OS, against a fresh database and the real Redis,
//! verifying tokens with the test key pair.

use std::net::SocketAddr;

use shared::config::{Env, FromEnv};
use shared::shutdown::CancellationToken;
use shared::testing;

use crate::Config;

/// Starts product-service until `stop`; returns its HTTP and gRPC addresses.
pub async fn spawn(stop: &CancellationToken) -> (SocketAddr, SocketAddr) {
    spawn_with(stop, &[]).await
}

/// [`spawn`], with `overrides` winning over the test defaults.
pub async fn spawn_with(
    stop: &CancellationToken,
    overrides: &[(&str, &str)],
) -> (SocketAddr, SocketAddr) {
    let database_url = testing::fresh_database("product").await;
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let redis_url = testing::redis_url();
    let mut vars = vec![
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("GRPC_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", database_url.as_str()),
        ("REDIS_URL", redis_url.as_str()),
        ("CACHE_KEY_PREFIX", prefix.as_str()),
        ("JWT_PUBLIC_KEY", testing::TEST_PUBLIC_KEY),
        // No user-service here: admin tokens are taken at their word.
        ("USER_SERVICE_URL", "none"),
    ];
    vars.extend(testing::pki::trusted().vars(crate::app::SERVICE));
    vars.extend_from_slice(overrides);
    let config = Config::from_env(Env::with_overrides(&vars)).expect("test configuration is valid");
    let app = crate::app::build(config)
        .await
        .expect("product-service starts");
    let addrs = (app.http_addr(), app.grpc_addr().expect("it serves gRPC"));
    tokio::spawn(app.run(stop.clone()));
    addrs
}
