//! The payments table: the payment as the API shows it, its status, and
//! the reads of the API. The saga step that writes it is [`crate::saga`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::http::Page;
use shared::money::Money;
use sqlx::{PgPool, Row};
use utoipa::ToSchema;

shared::text_enum! {
    /// Where a payment stands.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum PaymentStatus {
        /// Charged: the order is paid.
        Succeeded = "succeeded",
        /// Declined by the gateway, or the order was cancelled first.
        Failed = "failed",
        /// Charged, then given back: the order was cancelled meanwhile.
        Refunded = "refunded",
    }
}

/// A payment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Payment {
    pub id: i64,
    pub order_id: i64,
    pub user_id: i64,
    pub amount: Money,
    pub status: PaymentStatus,
    pub transaction_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, order_id, user_id, (amount * 100)::bigint AS amount_cents, status, \
                       transaction_id, reason, created_at, updated_at";

fn payment_from_row(row: &sqlx::postgres::PgRow) -> Result<Payment, sqlx::Error> {
    Ok(Payment {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        amount: Money(row.try_get("amount_cents")?),
        status: shared::db::parsed(row, "status", PaymentStatus::parse)?,
        transaction_id: row.try_get("transaction_id")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Reads of the payments table.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    #[tracing::instrument(name = "SELECT payments", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn get(&self, id: i64) -> Result<Option<Payment>, sqlx::Error> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM payments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(payment_from_row)
        .transpose()
    }

    /// Payments by id, filtered by order and/or owner, and how many match.
    #[tracing::instrument(name = "SELECT payments", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn list(
        &self,
        order_id: Option<i64>,
        user_id: Option<i64>,
        page: Page,
    ) -> Result<(Vec<Payment>, i64), sqlx::Error> {
        let filter =
            "($1::bigint IS NULL OR order_id = $1) AND ($2::bigint IS NULL OR user_id = $2)";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM payments WHERE {filter} ORDER BY id LIMIT $3 OFFSET $4"
        )))
        .bind(order_id)
        .bind(user_id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM payments WHERE {filter}"
        )))
        .bind(order_id)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((
            rows.iter()
                .map(payment_from_row)
                .collect::<Result<_, _>>()?,
            total,
        ))
    }
}
