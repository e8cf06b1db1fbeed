//! The payments table and the event handling that writes it.
//!
//! Every effect happens in one transaction with the inbox claim and the
//! outbox event it causes, so an event's effect happens once however often
//! it is delivered, and no resulting event is lost.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::http::Page;
use shared::kafka::consumer::{Handler, HandlerError};
use shared::kafka::events::{Event, EventPayload};
use shared::kafka::{claim, outbox};
use shared::metrics::prometheus::IntCounterVec;
use shared::money::Money;
use sqlx::{PgPool, Row};
use utoipa::ToSchema;

use crate::gateway::{Charge, PaymentGateway};

/// A payment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Payment {
    pub id: i64,
    pub order_id: i64,
    pub user_id: i64,
    pub amount: Money,
    /// `succeeded`, `failed` or `refunded`.
    pub status: String,
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
        status: row.try_get("status")?,
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
            EventPayload::OrderCreated { total_price, .. } => {
                self.charge(event, *total_price).await
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
                reason: "order already cancelled".into(),
            }
        } else {
            self.gateway.charge(event.order_id, amount)
        };
        let (status, transaction_id, reason) = match &charge {
            Charge::Approved { transaction_id } => {
                ("succeeded", Some(transaction_id.clone()), None)
            }
            Charge::Declined { reason } => ("failed", None, Some(reason.clone())),
        };
        let payment_id: i64 = sqlx::query_scalar(
            "INSERT INTO payments (order_id, user_id, amount, status, transaction_id, reason) \
             VALUES ($1, $2, $3::bigint::numeric / 100, $4, $5, $6) RETURNING id",
        )
        .bind(event.order_id)
        .bind(event.user_id)
        .bind(amount.cents())
        .bind(status)
        .bind(&transaction_id)
        .bind(&reason)
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
        tx.commit().await?;
        self.outcomes.with_label_values(&[status]).inc();
        tracing::info!(
            order_id = event.order_id,
            payment_id,
            status,
            "payment decided"
        );
        Ok(())
    }

    /// order_cancelled: remember it; a payment that succeeded is refunded.
    async fn cancelled(&self, event: &Event) -> Result<(), HandlerError> {
        let mut tx = self.pool.begin().await?;
        if !claim(&mut tx, event).await? {
            return Ok(());
        }
        sqlx::query("INSERT INTO cancelled_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(event.order_id)
            .execute(&mut *tx)
            .await?;
        let refunded = sqlx::query(
            "UPDATE payments SET status = 'refunded', reason = 'order already cancelled', updated_at = now() \
             WHERE order_id = $1 AND status = 'succeeded' RETURNING id, (amount * 100)::bigint AS amount_cents",
        )
        .bind(event.order_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = &refunded {
            let refund = Event::new(
                event.order_id,
                event.user_id,
                EventPayload::PaymentRefunded {
                    payment_id: row.get("id"),
                    amount: Money(row.get("amount_cents")),
                    reason: "order already cancelled".into(),
                },
            );
            outbox::enqueue(&mut tx, &refund).await?;
        }
        tx.commit().await?;
        if refunded.is_some() {
            self.outcomes.with_label_values(&["refunded"]).inc();
            tracing::info!(
                order_id = event.order_id,
                "payment refunded: the order was cancelled"
            );
        }
        Ok(())
    }
}
