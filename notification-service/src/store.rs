//! The notifications table as the API reads it: a notification, its
//! status, and the list query. [`crate::recorder`] writes the rows,
//! [`crate::delivery`] sends them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::http::Page;
use sqlx::{PgPool, Row};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Notification {
    pub id: i64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub order_id: i64,
    pub user_id: i64,
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

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Notification, sqlx::Error> {
    Ok(Notification {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        recipient: row.try_get("recipient")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        status: shared::db::parsed(row, "status", NotificationStatus::parse)?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}

/// Notifications by id, of one user or all, and how many there are.
#[tracing::instrument(name = "SELECT notifications", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
pub async fn list(
    pool: &PgPool,
    user_id: Option<i64>,
    page: Page,
) -> Result<(Vec<Notification>, i64), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT * FROM notifications WHERE ($1::bigint IS NULL OR user_id = $1) ORDER BY id LIMIT $2 OFFSET $3",
    )
    .bind(user_id)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE ($1::bigint IS NULL OR user_id = $1)",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
}
