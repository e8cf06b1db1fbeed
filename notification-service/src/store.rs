//! The notifications table as the API reads it: a notification, its
//! status, and the list query. [`crate::recorder`] writes the rows,
//! [`crate::delivery`] sends them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::db::{Params, fetch_page};
use shared::http::Page;
use shared::id::{OrderId, UserId};
use sqlx::{FromRow, PgPool};
use utoipa::ToSchema;

shared::text_enum! {
    /// Where a notification stands.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum NotificationStatus {
        /// Recorded; waiting for (another) delivery attempt.
        Pending = "pending",
        Sent = "sent",
        /// Every attempt failed.
        Failed = "failed",
    }
}

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

/// Notifications by id, of one user or all, and how many there are.
#[tracing::instrument(name = "SELECT notifications", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
pub async fn list(
    pool: &PgPool,
    user_id: Option<UserId>,
    page: Page,
) -> Result<(Vec<Notification>, i64), sqlx::Error> {
    let from = "notifications WHERE ($1::bigint IS NULL OR user_id = $1)";
    let params = Params::default().bind(user_id);
    let (rows, total) = fetch_page(pool, "*", from, "id", params, page).await?;
    let items = rows
        .iter()
        .map(Notification::from_row)
        .collect::<Result<_, _>>()?;
    Ok((items, total))
}
