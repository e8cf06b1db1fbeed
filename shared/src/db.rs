//! PostgreSQL: a pool with timeouts on every checkout and statement, a patient
//! first connection (the database may start after the service), and the
//! service's embedded migrations.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, IntGaugeVec, Opts};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::CommonConfig;

/// Why the database could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL")]
    InvalidUrl(#[source] sqlx::Error),
    #[error("cannot connect to the database at {url} within {within:?}")]
    Unreachable {
        /// The URL without its password.
        url: String,
        within: Duration,
        #[source]
        source: sqlx::Error,
    },
    #[error("the {which} migrations failed")]
    Migration {
        /// Whose migrations: the service's own, or the outbox/inbox tables.
        which: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// The connection settings of `config`.
fn connect_options(config: &CommonConfig) -> Result<PgConnectOptions, DbError> {
    let statement_timeout = config.db_timeout.as_millis().to_string();
    let mut options =
        PgConnectOptions::from_str(&config.database_url).map_err(DbError::InvalidUrl)?;
    if let Some(password) = &config.database_password {
        options = options.password(password);
    }
    // A runaway statement must not hold a connection forever.
    Ok(options.options([("statement_timeout", statement_timeout.as_str())]))
}

/// Connects with the service's settings, retrying until `db_connect_timeout`.
pub async fn connect(config: &CommonConfig) -> Result<PgPool, DbError> {
    let options = connect_options(config)?;
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
            Err(source) => {
                return Err(DbError::Unreachable {
                    url: redact(&config.database_url),
                    within: config.db_connect_timeout,
                    source,
                });
            }
        }
    }
}

/// Whether the database can be reached, as a probe connection of its own
/// (outside the pool) finds every [`PROBE_INTERVAL`].
///
/// While PostgreSQL is stopped or unreachable, a pool checkout retries the
/// refused connection until its timeout (`DB_TIMEOUT_MS`, 5 s): every request
/// would hang that long before its 503. With this, requests that need the
/// database are answered 503 with `Retry-After` at once
/// ([`crate::http::ServiceRouter::database`]) and `/ready` says so, and all
/// resumes by itself when the probe reaches it again. A database that is
/// merely slow or locked is not "down" (its ping still answers): those
/// requests run into the statement timeout, and the consumer retries.
/// Two failed probes in a row are needed, so one slow ping on a busy
/// machine does not turn requests away.
#[derive(Debug, Clone)]
pub struct DbHealth {
    up: Arc<AtomicBool>,
}

/// How often the probe connection is pinged.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// How long one probe (a ping, or a reconnect) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl DbHealth {
    /// Starts probing the database of `config` (it ends when the last clone is dropped).
    pub fn watch(config: &CommonConfig) -> Result<Self, DbError> {
        let up = Arc::new(AtomicBool::new(true));
        tokio::spawn(probe(Arc::downgrade(&up), connect_options(config)?));
        Ok(Self { up })
    }

    /// Whether the last probes reached the database.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A 503 with `Retry-After` at once while the database is unreachable.
    pub fn require(&self) -> Result<(), crate::error::ApiError> {
        if self.is_up() {
            Ok(())
        } else {
            Err(crate::error::ApiError::unavailable(
                "the database is unreachable, try again shortly",
            ))
        }
    }
}

async fn probe(up: Weak<AtomicBool>, options: PgConnectOptions) {
    use sqlx::Connection;
    let mut connection: Option<sqlx::PgConnection> = None;
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(up) = up.upgrade() else { return };
        let mut reached = match connection.as_mut() {
            Some(c) => matches!(
                tokio::time::timeout(PROBE_TIMEOUT, c.ping()).await,
                Ok(Ok(()))
            ),
            None => false,
        };
        if !reached {
            connection = match tokio::time::timeout(
                PROBE_TIMEOUT,
                sqlx::PgConnection::connect_with(&options),
            )
            .await
            {
                Ok(Ok(c)) => Some(c),
                _ => None,
            };
            reached = connection.is_some();
        }
        failures = if reached { 0 } else { failures + 1 };
        let now_up = failures < 2;
        if up.swap(now_up, Ordering::Relaxed) != now_up {
            if now_up {
                tracing::info!("the database is reachable again");
            } else {
                tracing::error!(
                    "the database is unreachable: requests that need it get 503 until it is back"
                );
            }
        }
    }
}

/// Applies the service's migrations (`sqlx::migrate!()` in the service crate).
pub async fn migrate(pool: &PgPool, migrator: &sqlx::migrate::Migrator) -> Result<(), DbError> {
    migrator
        .run(pool)
        .await
        .map_err(|source| DbError::Migration {
            which: "service's",
            source,
        })
}

/// The name of the unique constraint `e` violated, if it is a unique
/// violation (SQLSTATE 23505): callers map it to a 409 by the constraint's
/// name, so another unique index on the table is not taken for it.
pub fn unique_violation(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => db.constraint(),
        _ => None,
    }
}

/// A page of one table's rows, and how many match in all: the one listing
/// query of every service's `GET /<things>`, as in
/// `Listing::of("payments", COLUMNS).filter("user_id", owner).fetch_as(&pool, page)`.
///
/// A filter whose value is `None` is left out of the SQL rather than written
/// `($1 IS NULL OR col = $1)`, so the plan PostgreSQL makes for each query
/// can use the index of the columns it really filters on.
#[derive(Debug)]
pub struct Listing<'a> {
    table: &'a str,
    columns: &'a str,
    order_by: &'a str,
    conditions: Vec<String>,
    args: sqlx::postgres::PgArguments,
    error: Option<sqlx::error::BoxDynError>,
}

impl<'a> Listing<'a> {
    /// Every row of `table` as `columns`, by `id`.
    pub fn of(table: &'a str, columns: &'a str) -> Self {
        Self {
            table,
            columns,
            order_by: "id",
            conditions: Vec::new(),
            args: Default::default(),
            error: None,
        }
    }

    /// Only rows that meet `condition`, a fixed SQL condition without
    /// parameters (`"deleted_at IS NULL"`).
    pub fn condition(mut self, condition: &str) -> Self {
        self.conditions.push(condition.to_owned());
        self
    }

    /// Only rows whose `column` contains `text` (case-insensitive; `%`,
    /// `_` and backslashes in it are matched as themselves), if there is a text.
    pub fn containing(self, column: &str, text: Option<&str>) -> Self {
        let pattern = text.map(|t| {
            let escaped = t
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        self.compare(column, "ILIKE", pattern)
    }

    /// Only rows whose `column` is `value`, if there is a value.
    pub fn filter<'t, T>(self, column: &str, value: Option<T>) -> Self
    where
        T: sqlx::Encode<'t, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        self.compare(column, "=", value)
    }

    fn compare<'t, T>(mut self, column: &str, operator: &str, value: Option<T>) -> Self
    where
        T: sqlx::Encode<'t, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        use sqlx::Arguments;
        let Some(value) = value else { return self };
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert(e);
        }
        self.conditions
            .push(format!("{column} {operator} ${}", self.args.len()));
        self
    }

    /// In `order_by` order (SQL, `"id DESC"`) instead of by `id`.
    pub fn order_by(mut self, order_by: &'a str) -> Self {
        self.order_by = order_by;
        self
    }

    /// The rows of `page`, and how many rows match in all.
    pub async fn fetch(
        self,
        pool: &PgPool,
        page: crate::http::Page,
    ) -> Result<(Vec<sqlx::postgres::PgRow>, i64), sqlx::Error> {
        use sqlx::{Arguments, AssertSqlSafe};
        if let Some(e) = self.error {
            return Err(sqlx::Error::Encode(e));
        }
        let from = if self.conditions.is_empty() {
            self.table.to_owned()
        } else {
            format!("{} WHERE {}", self.table, self.conditions.join(" AND "))
        };
        let n = self.args.len();
        let mut page_args = self.args.clone();
        page_args.add(page.limit).map_err(sqlx::Error::Encode)?;
        page_args.add(page.offset).map_err(sqlx::Error::Encode)?;
        let select = format!(
            "SELECT {} FROM {from} ORDER BY {} LIMIT ${} OFFSET ${}",
            self.columns,
            self.order_by,
            n + 1,
            n + 2
        );
        let rows = sqlx::query_with(AssertSqlSafe(select), page_args)
            .fetch_all(pool)
            .await?;
        let count = format!("SELECT count(*) FROM {from}");
        let total = sqlx::query_scalar_with(AssertSqlSafe(count), self.args)
            .fetch_one(pool)
            .await?;
        Ok((rows, total))
    }

    /// [`Self::fetch`], each row read as `R`.
    pub async fn fetch_as<R>(
        self,
        pool: &PgPool,
        page: crate::http::Page,
    ) -> Result<(Vec<R>, i64), sqlx::Error>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let (rows, total) = self.fetch(pool, page).await?;
        let items = rows.iter().map(R::from_row).collect::<Result<_, _>>()?;
        Ok((items, total))
    }
}

/// Readiness: the database answers a trivial query in time.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// Whether retrying what failed with `e` can succeed: the database could not
/// be reached or went away (connection and I/O errors, a pool that timed out,
/// a server shutting down or starting), it stalled (statement or lock
/// timeout, so a lock held elsewhere), it is short of resources, or the
/// transaction lost a serialization conflict or a deadlock. Everything else
/// (a constraint violated, a value that does not decode, a missing row) will
/// fail the same way however often it is tried.
///
/// It decides both a 503 with `Retry-After` (rather than a 500) at the API
/// and a retry (rather than a dead letter) in the consumer.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs (PostgreSQL appendix A) that a retry can get past.
fn transient_sqlstate(code: &str) -> bool {
    matches!(
        code,
        "40001" // serialization_failure
            | "40P01" // deadlock_detected
            | "55P03" // lock_not_available (lock_timeout)
            | "57014" // query_canceled (statement_timeout)
            | "57P01" // admin_shutdown
            | "57P02" // crash_shutdown
            | "57P03" // cannot_connect_now (starting up, or recovery)
            | "25006" // read_only_sql_transaction (a failover's old primary)
    ) || code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections, disk full)
        || code.starts_with("58") // system error (I/O)
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
    fn transient_errors_are_told_from_permanent_ones() {
        use super::is_transient;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(is_transient(&sqlx::Error::Io(io)));
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_transient(&sqlx::Error::Decode("bad".into())));
        for code in [
            "40001", "40P01", "55P03", "57014", "57P01", "08006", "53300", "58030",
        ] {
            assert!(super::transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "23514", "22P02", "42P01", "XX000"] {
            assert!(!super::transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
