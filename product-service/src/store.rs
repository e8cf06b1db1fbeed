//! The product database: the [`Store`] both the catalogue
//! ([`crate::catalogue`]) and the stock ledger ([`crate::stock`]) work on.

use shared::db::DbHealth;
use sqlx::PgPool;

/// The product database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    health: DbHealth,
}

impl Store {
    pub fn new(pool: PgPool, health: DbHealth) -> Self {
        Self { pool, health }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool, or at once the error a checkout would give after its
    /// timeout while the database is unreachable. (product-service checks
    /// here rather than per route: a cached read needs no database.)
    pub(crate) fn live(&self) -> Result<&PgPool, sqlx::Error> {
        if self.health.is_up() {
            Ok(&self.pool)
        } else {
            Err(sqlx::Error::PoolTimedOut)
        }
    }
}
