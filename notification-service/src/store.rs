//! The notifications table as the API reads it: a notification, its
//! status, and the list query. [`crate::recorder`] writes the rows,
//! [`crate::delivery`] sends them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::Listing;
use shared::http::Page;
use shared::id::{OrderId, UserId};
use sqlx::PgPool;
use utoipa::ToSchema;

/// A notification as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Notification {
    pub id: i64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub order_id: OrderId,
    pub user_id: UserId,
    /// The email address mail goes to (from the order's `order_created`), if known.
    pub recipient: Option<String>,
    pub subject: String,
    pub body: String,
    pub status: NotificationStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

shared::text_enum! {
    /// Where a notification stands.
    pub enum NotificationStatus {
        /// Recorded; waiting for (another) delivery attempt.
        Pending = "pending",
        Sent = "sent",
        /// Every attempt failed.
        Failed = "failed",
    }
}

/// Notifications by id, of one user or all, and how many there are.
#[tracing::instrument(name = "SELECT notifications", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
pub async fn list(
    pool: &PgPool,
    user_id: Option<UserId>,
    page: Page,
) -> Result<(Vec<Notification>, i64), sqlx::Error> {
    Listing::of("notifications", "*")
        .filter("user_id", user_id)
        .fetch_as(pool, page)
        .await
}
