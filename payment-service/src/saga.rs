//! The payment service's saga step: `order_created` is charged once and
//! its outcome announced; `order_cancelled` is remembered, and a payment
//! that succeeded is refunded.
//!
//! Every effect happens in one transaction with the inbox claim and the
//! outbox event it causes, so an event's effect happens once however often
//! it is delivered, and no resulting event is lost.

use shared::id::UserId;
use shared::kafka::consumer::{Handler, HandlerError};
use shared::kafka::events::{DeclineReason, Event, EventPayload, RefundReason};
use shared::kafka::{claim, outbox};
use shared::metrics::prometheus::IntCounterVec;
use shared::money::{Money, order_total};
use sqlx::{PgPool, Row};

use crate::gateway::{Charge, PaymentGateway};
use crate::store::PaymentStatus;

/// The saga step of the payment service.
pub struct PaymentHandler<G> {
    pub pool: PgPool,
    pub gateway: G,
    /// `payments_total{outcome}`: succeeded, failed, refunded.
    pub outcomes: IntCounterVec,
}

impl<G: PaymentGateway> Handler for PaymentHandler<G> {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        match &event.payload {
            EventPayload::OrderCreated {
                items, total_price, ..
            } => {
                // A total within the range of every total, and its lines':
                // anything else is refused before anything is charged.
                match order_total(items.iter().map(|i| (i.unit_price, i.quantity))) {
                    Ok(lines) if lines == *total_price => self.charge(event, lines).await,
                    Ok(lines) => Err(HandlerError::Refused(
                        format!("order_created's total {total_price} is not its lines' ({lines})")
                            .into(),
                    )),
                    Err(e) => Err(HandlerError::Refused(
                        format!("order_created's lines: {e}").into(),
                    )),
                }
            }
            EventPayload::OrderCancelled { .. } => self.cancelled(event).await,
            _ => Ok(()), // not ours
        }
    }
}

impl<G: PaymentGateway> PaymentHandler<G> {
    /// order_created: charge once, record the payment, announce the outcome.
    async fn charge(&self, event: &Event, amount: Money) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await?;
        if !claim(&mut tx, event).await? {
            return Ok(());
        }
        let already: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payments WHERE order_id = $1)")
                .bind(event.order_id)
                .fetch_one(&mut *tx)
                .await?;
        if already {
            // A second order_created for one order (a new event id): one payment only.
            tx.commit().await?;
            return Ok(());
        }
        let cancelled: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM cancelled_orders WHERE order_id = $1)",
        )
        .bind(event.order_id)
        .fetch_one(&mut *tx)
        .await?;
        let charge = if cancelled {
            Charge::Declined {
                reason: DeclineReason::OrderCancelled,
            }
        } else {
            self.gateway.charge(event.order_id.get(), amount)
        };
        let (status, transaction_id, reason) = match &charge {
            Charge::Approved { transaction_id } => (
                PaymentStatus::Succeeded,
                Some(transaction_id.as_str()),
                None,
            ),
            Charge::Declined { reason } => (PaymentStatus::Failed, None, Some(reason.as_str())),
        };
        let payment_id: i64 = sqlx::query_scalar(
            "INSERT INTO payments (order_id, user_id, amount, status, transaction_id, reason) \
             VALUES ($1, $2, $3::bigint::numeric / 100, $4, $5, $6) RETURNING id",
        )
        .bind(event.order_id)
        .bind(event.user_id)
        .bind(amount.cents())
        .bind(status.as_str())
        .bind(transaction_id)
        .bind(reason)
        .fetch_one(&mut *tx)
        .await?;
        let payload = match charge {
            Charge::Approved { transaction_id } => EventPayload::PaymentSuccess {
                payment_id,
                amount,
                transaction_id,
            },
            Charge::Declined { reason } => EventPayload::PaymentFailed {
                payment_id,
                amount,
                reason,
            },
        };
        let outcome = Event::new(event.order_id, event.user_id, payload);
        outbox::enqueue(&mut tx, &outcome).await?;
        outbox::commit(tx).await?;
        self.outcomes.with_label_values(&[status.as_str()]).inc();
        tracing::info!(
            order_id = %event.order_id,
            payment_id,
            status = status.as_str(),
            "payment decided"
        );
        Ok(())
    }

    /// order_cancelled: remember it; a payment that succeeded is refunded.
    /// Only a payment this service made can be refunded, so only an order
    /// it saw created; a cancel that names another owner than the
    /// payment's is refused (forged, or from a broken producer).
    async fn cancelled(&self, event: &Event) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await?;
        if !claim(&mut tx, event).await? {
            return Ok(());
        }
        let owner: Option<UserId> =
            sqlx::query_scalar("SELECT user_id FROM payments WHERE order_id = $1")
                .bind(event.order_id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(owner) = owner
            && owner != event.user_id
        {
            // Dropping the transaction rolls the inbox claim back too.
            return Err(HandlerError::Refused(
                format!(
                    "order_cancelled names user {} but order {}'s payment is user {owner}'s",
                    event.user_id, event.order_id
                )
                .into(),
            ));
        }
        sqlx::query("INSERT INTO cancelled_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(event.order_id)
            .execute(&mut *tx)
            .await?;
        let refunded = sqlx::query(
            "UPDATE payments SET status = 'refunded', reason = $2, updated_at = now() \
             WHERE order_id = $1 AND status = 'succeeded' RETURNING id, (amount * 100)::bigint AS amount_cents",
        )
        .bind(event.order_id)
        .bind(RefundReason::OrderCancelled)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = &refunded {
            let refund = Event::new(
                event.order_id,
                event.user_id,
                EventPayload::PaymentRefunded {
                    payment_id: row.get("id"),
                    amount: Money(row.get("amount_cents")),
                    reason: RefundReason::OrderCancelled,
                },
            );
            outbox::enqueue(&mut tx, &refund).await?;
        }
        outbox::commit(tx).await?;
        if refunded.is_some() {
            self.outcomes
                .with_label_values(&[PaymentStatus::Refunded.as_str()])
                .inc();
            tracing::info!(
                order_id = %event.order_id,
                "payment refunded: the order was cancelled"
            );
        }
        Ok(())
    }
}
