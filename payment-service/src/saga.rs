//! The payment service's saga step: `order_created` is charged once and
//! its outcome announced; `order_cancelled` is remembered, and a payment
//! that succeeded is refunded.
//!
//! What to do is the saga's decision ([`saga::payment`]); this is its
//! shell. Every effect happens in one transaction with the inbox claim and the
//! outbox event it causes, so an event's effect happens once however often
//! it is delivered, and no resulting event is lost.

use saga::payment::{Charge, Decision, Input, Ledger, Payment, PaymentStatus, Record, decide};
use shared::id::OrderId;
use shared::kafka::consumer::{Handler, HandlerError};
use shared::kafka::events::{Event, RefundReason};
use shared::kafka::{claim, outbox};
use shared::metrics::prometheus::IntCounterVec;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::gateway::PaymentGateway;

/// The saga step of the payment service.
pub struct PaymentHandler<G> {
    pub pool: PgPool,
    pub gateway: G,
    /// `payments_total{outcome}`: succeeded, failed, refunded.
    pub outcomes: IntCounterVec,
}

impl<G: PaymentGateway> Handler for PaymentHandler<G> {
    /// Reads what this service knows of the event's order, lets the saga
    /// decide ([`saga::payment::decide`]) and writes the decision, in one
    /// transaction with the event's inbox claim and the event it causes.
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await?;
        if !claim(&mut tx, event).await? {
            return Ok(());
        }
        let ledger = ledger(&mut tx, event.order_id).await?;
        let decision = match decide(&ledger, Input::Event(event)) {
            Decision::Charge(amount) => {
                let charge = self.gateway.charge(event.order_id.get(), amount);
                decide(
                    &ledger,
                    Input::Charged {
                        amount,
                        charge: &charge,
                    },
                )
            }
            decision => decision,
        };
        match decision {
            // Nothing to do: the claim is kept, the event is handled.
            Decision::Nothing => {
                tx.commit().await?;
                Ok(())
            }
            // Dropping the transaction rolls the inbox claim back too.
            Decision::Refuse(why) => Err(HandlerError::Refused(why.into())),
            Decision::Charge(_) => Err(HandlerError::Permanent(
                "the saga asked for a second charge of one event".into(),
            )),
            Decision::Record(record) => self.record(tx, event, record).await,
            Decision::Cancel { refund } => self.cancel(tx, event, refund).await,
        }
    }
}

/// What this service knows of order `order_id`: its payment and whether
/// it was cancelled.
async fn ledger(
    tx: &mut Transaction<'_, Postgres>,
    order_id: OrderId,
) -> Result<Ledger, sqlx::Error> {
    let row = sqlx::query(
        "SELECT p.id, p.user_id, (p.amount * 100)::bigint AS amount_cents, p.status, \
         EXISTS (SELECT 1 FROM cancelled_orders c WHERE c.order_id = $1) AS cancelled \
         FROM (SELECT 1) one LEFT JOIN payments p ON p.order_id = $1",
    )
    .bind(order_id)
    .fetch_one(&mut **tx)
    .await?;
    let payment = match row.try_get::<Option<i64>, _>("id")? {
        Some(id) => Some(Payment {
            id,
            user_id: row.try_get("user_id")?,
            amount: row.try_get("amount_cents")?,
            status: row.try_get("status")?,
        }),
        None => None,
    };
    Ok(Ledger {
        payment,
        cancelled: row.try_get("cancelled")?,
    })
}

impl<G: PaymentGateway> PaymentHandler<G> {
    /// Records the payment the saga decided on and announces it.
    async fn record(
        &self,
        mut tx: Transaction<'_, Postgres>,
        event: &Event,
        record: Record,
    ) -> Result<(), HandlerError> {
        let status = record.status();
        let (transaction_id, reason) = match &record.charge {
            Charge::Approved { transaction_id } => (Some(transaction_id.as_str()), None),
            Charge::Declined { reason } => (None, Some(reason.as_str())),
        };
        let payment_id: i64 = sqlx::query_scalar(
            "INSERT INTO payments (order_id, user_id, amount, status, transaction_id, reason) \
             VALUES ($1, $2, $3::bigint::numeric / 100, $4, $5, $6) RETURNING id",
        )
        .bind(event.order_id)
        .bind(event.user_id)
        .bind(record.amount.cents())
        .bind(status.as_str())
        .bind(transaction_id)
        .bind(reason)
        .fetch_one(&mut *tx)
        .await?;
        let outcome = Event::new(event.order_id, event.user_id, record.announce(payment_id));
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

    /// Remembers the cancel and refunds the payment the saga names, once
    /// (only a payment still `succeeded` is refunded).
    async fn cancel(
        &self,
        mut tx: Transaction<'_, Postgres>,
        event: &Event,
        refund: Option<Payment>,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO cancelled_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(event.order_id)
            .execute(&mut *tx)
            .await?;
        let mut refunded = false;
        if let Some(payment) = refund {
            refunded = sqlx::query(
                "UPDATE payments SET status = 'refunded', reason = $2, updated_at = now() \
                 WHERE id = $1 AND status = 'succeeded'",
            )
            .bind(payment.id)
            .bind(RefundReason::OrderCancelled)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if refunded {
                let announced = Event::new(
                    event.order_id,
                    event.user_id,
                    saga::payment::refund(&payment),
                );
                outbox::enqueue(&mut tx, &announced).await?;
            }
        }
        outbox::commit(tx).await?;
        if refunded {
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
