//! The consumer side: one notification for every event, recorded in one
//! transaction with the inbox claim, so each event gives exactly one.

use std::sync::Arc;

use shared::kafka::claim;
use shared::kafka::consumer::{Handler, HandlerError};
use shared::kafka::events::{Event, EventPayload};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::render::render;

/// The consumer: records a notification for every event.
pub struct Recorder {
    pub pool: PgPool,
    /// Wakes the delivery worker at once instead of at its next poll.
    pub wake: Arc<Notify>,
}

impl Handler for Recorder {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await?;
        if !claim(&mut tx, event).await? {
            return Ok(());
        }
        if let EventPayload::OrderCreated {
            customer_email: Some(email),
            ..
        } = &event.payload
        {
            // Later events of the order (same partition, so after this one) mail here too.
            sqlx::query(
                "INSERT INTO order_recipients (order_id, email) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(event.order_id)
            .bind(email)
            .execute(&mut *tx)
            .await?;
        }
        let (subject, body) = render(event);
        sqlx::query(
            "INSERT INTO notifications (event_id, event_type, order_id, user_id, subject, body, recipient) \
             VALUES ($1, $2, $3, $4, $5, $6, (SELECT email FROM order_recipients WHERE order_id = $3)) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.event_id)
        .bind(event.payload.event_type())
        .bind(event.order_id)
        .bind(event.user_id)
        .bind(subject)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
    }
}
