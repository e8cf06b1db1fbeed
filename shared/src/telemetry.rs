//! Logging: JSON lines on stdout through `tracing`, filtered by `RUST_LOG`
//! (default `info`). Safe to call more than once (tests start many services
//! in one process; the first call wins).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the JSON log subscriber for `service`.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info,h2=warn"));
    let json = fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true);
    if tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .try_init()
        .is_ok()
    {
        tracing::info!(
            service,
            version = env!("CARGO_PKG_VERSION"),
            "logging initialised"
        );
    }
}
