//! The payments table: the payment as the API shows it, its status, and
//! the reads of the API. The saga step that writes it is [`crate::saga`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::Listing;
use shared::http::Page;
use shared::id::{OrderId, UserId};
use shared::money::Money;
use sqlx::PgPool;
use utoipa::ToSchema;

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

/// Where a payment stands (the saga decides it).
pub use saga::payment::PaymentStatus;

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
    pub pool: PgPool,
}

impl Store {
    /// Payments by id, filtered by order and/or owner, and how many match.
    #[tracing::instrument(name = "SELECT payments", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn list(
        &self,
        order_id: Option<OrderId>,
        user_id: Option<UserId>,
        page: Page,
    ) -> Result<(Vec<Payment>, i64), sqlx::Error> {
        Listing::of("payments", COLUMNS)
            .filter("order_id", order_id)
            .filter("user_id", user_id)
            .fetch_as(&self.pool, page)
            .await
    }

    #[tracing::instrument(name = "SELECT payments", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn get(&self, id: i64) -> Result<Option<Payment>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM payments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }
}
