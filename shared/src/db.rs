//! PostgreSQL: a pool with timeouts on every checkout and statement, a patient
//! first connection (the database may start after the service), and the
//! service's embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, IntGaugeVec, Opts};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::CommonConfig;

/// Connects with the service's settings, retrying until `db_connect_timeout`.
pub async fn connect(config: &CommonConfig) -> Result<PgPool, String> {
    let statement_timeout = config.db_timeout.as_millis().to_string();
    let mut options = PgConnectOptions::from_str(&config.database_url)
        .map_err(|e| format!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
    if let Some(password) = &config.database_password {
        options = options.password(password);
    }
    let options = options
        // A runaway statement must not hold a connection forever.
        .options([("statement_timeout", statement_timeout.as_str())]);
    let deadline = tokio::time::Instant::now() + config.db_connect_timeout;
    let mut wait = Duration::from_millis(100);
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(config.db_max_connections)
            .acquire_timeout(config.db_timeout)
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(e) if tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "database not reachable yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                return Err(format!(
                    "cannot connect to the database at {} within {:?}: {e}",
                    redact(&config.database_url),
                    config.db_connect_timeout
                ));
            }
        }
    }
}

/// Applies the service's migrations (`sqlx::migrate!()` in the service crate).
pub async fn migrate(pool: &PgPool, migrator: &sqlx::migrate::Migrator) -> Result<(), String> {
    migrator
        .run(pool)
        .await
        .map_err(|e| format!("database migration failed: {e}"))
}

/// Readiness: the database answers a trivial query in time.
pub async fn ping(pool: &PgPool) -> Result<(), String> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Exports the pool's connections at every scrape:
/// `db_pool_connections{state="in_use"|"idle"}` and `db_pool_max_connections`
/// (a pool always at its maximum, with requests waiting, wants a bigger one).
pub fn observe(pool: &PgPool, metrics: &crate::metrics::Metrics) {
    let collector = PoolCollector {
        pool: pool.clone(),
        connections: IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )
        .expect("static metric definition"),
        max: IntGauge::new(
            "db_pool_max_connections",
            "The database pool's maximum size (DB_MAX_CONNECTIONS)",
        )
        .expect("static metric definition"),
    };
    metrics.register(collector);
}

/// Reads the pool's state when Prometheus asks, so the figures are never stale.
struct PoolCollector {
    pool: PgPool,
    connections: IntGaugeVec,
    max: IntGauge,
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.connections.desc();
        descs.extend(self.max.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let size = i64::from(self.pool.size());
        let idle = i64::try_from(self.pool.num_idle()).unwrap_or(size);
        self.connections.with_label_values(&["idle"]).set(idle);
        self.connections
            .with_label_values(&["in_use"])
            .set((size - idle).max(0));
        self.max
            .set(i64::from(self.pool.options().get_max_connections()));
        let mut families = self.connections.collect();
        families.extend(self.max.collect());
        families
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
