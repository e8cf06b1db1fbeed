//! The payments table: the payment as the API shows it, its status, and
//! the reads of the API. The saga step that writes it is [`crate::saga`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::{Params, fetch_page};
use shared::http::Page;
use shared::id::{OrderId, UserId};
use shared::money::Money;
use sqlx::{FromRow, PgPool};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Payment {
    pub id: i64,
    pub order_id: OrderId,
    pub user_id: UserId,
    #[sqlx(rename = "amount_cents")]
    pub amount: Money,
    pub status: PaymentStatus,
    pub transaction_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl shared::auth::Owned for Payment {
    fn owner_id(&self) -> UserId {
        self.user_id
    }
}

const COLUMNS: &str = "id, order_id, user_id, (amount * 100)::bigint AS amount_cents, status, \
                       transaction_id, reason, created_at, updated_at";

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
        let select = format!("SELECT {COLUMNS} FROM payments WHERE id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    /// Payments by id, filtered by order and/or owner, and how many match.
    #[tracing::instrument(name = "SELECT payments", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn list(
        &self,
        order_id: Option<OrderId>,
        user_id: Option<UserId>,
        page: Page,
    ) -> Result<(Vec<Payment>, i64), sqlx::Error> {
        let from = "payments WHERE ($1::bigint IS NULL OR order_id = $1) \
                    AND ($2::bigint IS NULL OR user_id = $2)";
        let params = Params::default().bind(order_id).bind(user_id);
        let (rows, total) = fetch_page(&self.pool, COLUMNS, from, "id", params, page).await?;
        let payments = rows
            .iter()
            .map(Payment::from_row)
            .collect::<Result<_, _>>()?;
        Ok((payments, total))
    }
}
