//! The orders database. Every step of the saga is one transaction guarded
//! by the order's current state (`WHERE status = 'pending' AND stock = ...`),
//! so a late, repeated or concurrent step never moves an order twice; and
//! every event is written to the outbox in the transaction of the change it
//! announces, so none is lost.

use std::collections::HashMap;
use std::time::Duration;

use shared::db::Listing;
use shared::http::Page;
use shared::id::{OrderId, ProductId, UserId};
use shared::kafka::events::{Event, EventItem, EventPayload};
use shared::kafka::{claim, outbox};
use shared::money::Money;
use shared::stock::Shortfall;
use sqlx::{PgPool, Row};

use saga::order::{Call, Change, Decision, Outcome};

use crate::model::{
    IdempotencyKey, Lines, Order, OrderItem, OrderReason, OrderState, OrderStatus, StockState,
};
use crate::timeline::{self, Cause, MAX_STEPS, NewStep, Step, StepKind};

const COLUMNS: &str = "id, user_id, status, stock, (total_price * 100)::bigint AS total_cents, \
     currency, reason, short_product_id, available_stock, request_fingerprint, customer_email, \
     created_at, updated_at";

fn order_from_row(
    row: &sqlx::postgres::PgRow,
    items: Vec<OrderItem>,
) -> Result<Order, sqlx::Error> {
    Ok(Order {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        status: row.try_get("status")?,
        stock: row.try_get("stock")?,
        total_price: row.try_get("total_cents")?,
        currency: row.try_get("currency")?,
        reason: row.try_get("reason")?,
        short: Shortfall::from_row(row)?,
        request_fingerprint: row.try_get("request_fingerprint")?,
        customer_email: row.try_get("customer_email")?,
        items,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// What inserting a new order found.
#[derive(Debug)]
pub enum Inserted {
    /// A new pending order.
    New(Order),
    /// The order this user placed before with the same idempotency key.
    Existing(Order),
}

/// What a guarded status change did.
#[derive(Debug)]
pub enum Transition {
    /// The order moved; its event is in the outbox.
    Done(Order),
    /// The order had already left `pending`: nothing changed.
    Refused(Order),
    /// The inbox had this event already: nothing changed.
    AlreadyProcessed,
    /// No such order.
    NotFound,
    /// The cause says something of the order that the order contradicts:
    /// nothing changed, and the cause was not claimed.
    Contradicted(String),
}

/// The orders database.
#[derive(Debug, Clone)]
pub struct Store {
    pub pool: PgPool,
}

impl Store {
    /// Inserts a pending order with its lines, unless this user already used
    /// `key`: then that order comes back instead.
    #[tracing::instrument(name = "TX insert order", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn insert(
        &self,
        user_id: UserId,
        email: &str,
        lines: &Lines,
        key: Option<&IdempotencyKey>,
    ) -> Result<Inserted, sqlx::Error> {
        let key = key.map(IdempotencyKey::as_str);
        // Two rounds at most: the first order of a key may be rejected for an
        // outage between our insert and our lookup, which frees its key.
        for _ in 0..2 {
            let mut tx = self.pool.begin().await?;
            let step = [NewStep::new(StepKind::Placed, Cause::Request)];
            let row = NewStep::bind(
                    &step,
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "WITH placed AS (\
                         INSERT INTO orders (user_id, idempotency_key, request_fingerprint, customer_email) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, idempotency_key) DO NOTHING \
                         RETURNING {COLUMNS}), step AS ({}) SELECT * FROM placed",
                        NewStep::insert_from("placed", 5)
                    )))
                    .bind(user_id)
                    .bind(key)
                    .bind(key.map(|_| lines.fingerprint()))
                    .bind(email),
                )
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                tx.rollback().await?;
                let existing: Option<OrderId> = sqlx::query_scalar(
                    "SELECT id FROM orders WHERE user_id = $1 AND idempotency_key = $2",
                )
                .bind(user_id)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                match existing {
                    Some(id) => return self.must_get(id).await.map(Inserted::Existing),
                    None => continue,
                }
            };
            let id: OrderId = row.try_get("id")?;
            let (products, quantities): (Vec<ProductId>, Vec<i32>) = lines
                .as_slice()
                .iter()
                .map(|l| (l.product_id, l.quantity))
                .unzip();
            sqlx::query(
                "INSERT INTO order_items (order_id, product_id, quantity) \
                 SELECT $1, * FROM UNNEST($2::bigint[], $3::int[])",
            )
            .bind(id)
            .bind(&products)
            .bind(&quantities)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            // The order as written (RETURNING), without reading it back.
            let items = lines
                .as_slice()
                .iter()
                .map(|l| OrderItem {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    unit_price: None,
                })
                .collect();
            return order_from_row(&row, items).map(Inserted::New);
        }
        Err(sqlx::Error::Protocol(
            "idempotency key kept changing hands; try again".into(),
        ))
    }

    async fn must_get(&self, id: OrderId) -> Result<Order, sqlx::Error> {
        self.get(id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// One order with its lines.
    #[tracing::instrument(name = "SELECT orders", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn get(&self, id: OrderId) -> Result<Option<Order>, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM orders WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut items = self.items(&[id]).await?;
        order_from_row(&row, items.remove(&id).unwrap_or_default()).map(Some)
    }

    /// The lines of `ids`, by order.
    async fn items(
        &self,
        ids: &[OrderId],
    ) -> Result<HashMap<OrderId, Vec<OrderItem>>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT order_id, product_id, quantity, (unit_price * 100)::bigint AS price_cents \
             FROM order_items WHERE order_id = ANY($1) ORDER BY order_id, product_id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let mut by_order: HashMap<OrderId, Vec<OrderItem>> = HashMap::new();
        for row in rows {
            by_order
                .entry(row.try_get("order_id")?)
                .or_default()
                .push(OrderItem {
                    product_id: row.try_get("product_id")?,
                    quantity: row.try_get("quantity")?,
                    unit_price: row.try_get("price_cents")?,
                });
        }
        Ok(by_order)
    }

    async fn with_items(
        &self,
        rows: Vec<sqlx::postgres::PgRow>,
    ) -> Result<Vec<Order>, sqlx::Error> {
        let ids: Vec<OrderId> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut items = self.items(&ids).await?;
        rows.iter()
            .zip(&ids)
            .map(|(row, id)| order_from_row(row, items.remove(id).unwrap_or_default()))
            .collect()
    }

    /// Orders newest first, of one user or of everyone, optionally in one
    /// status, and how many match.
    #[tracing::instrument(name = "SELECT orders", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn list(
        &self,
        user_id: Option<UserId>,
        status: Option<OrderStatus>,
        page: Page,
    ) -> Result<(Vec<Order>, i64), sqlx::Error> {
        let (rows, total) = Listing::of("orders", COLUMNS)
            .filter("user_id", user_id)
            .filter("status", status)
            .order_by("id DESC")
            .fetch(&self.pool, page)
            .await?;
        Ok((self.with_items(rows).await?, total))
    }

    /// Stock is held for a pending order: records the reserved prices and
    /// total, the decision's steps and its event (`order_created`), in one
    /// transaction. `items` is the order's lines, in their order, with
    /// their prices. `None` when the order had already moved on (another
    /// path recorded it, or it was cancelled meanwhile).
    #[tracing::instrument(name = "TX hold order", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn hold(
        &self,
        id: OrderId,
        items: &[EventItem],
        total: Money,
        steps: &[NewStep],
        announce: EventPayload,
    ) -> Result<Option<Order>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let row = NewStep::bind(
            steps,
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH held AS (\
                 UPDATE orders SET stock = 'held', total_price = $2::bigint::numeric / 100, updated_at = now() \
                 WHERE id = $1 AND status = 'pending' AND stock = 'unknown' \
                 RETURNING {COLUMNS}), step AS ({}) SELECT * FROM held",
                NewStep::insert_from("held", 3)
            )))
            .bind(id)
            .bind(total.cents()),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let products: Vec<ProductId> = items.iter().map(|i| i.product_id).collect();
        let prices: Vec<i64> = items.iter().map(|i| i.unit_price.cents()).collect();
        sqlx::query(
            "UPDATE order_items SET unit_price = u.price::numeric / 100 \
             FROM UNNEST($2::bigint[], $3::bigint[]) AS u(product_id, price) \
             WHERE order_items.order_id = $1 AND order_items.product_id = u.product_id",
        )
        .bind(id)
        .bind(&products)
        .bind(&prices)
        .execute(&mut *tx)
        .await?;
        let created = Event::new(id, row.try_get("user_id")?, announce);
        outbox::enqueue(&mut tx, &created).await?;
        outbox::commit(tx).await?;
        // The order as written (RETURNING, and the lines at the prices just
        // set: `items` is the order's lines, in their order).
        let items = items
            .iter()
            .map(|i| OrderItem {
                product_id: i.product_id,
                quantity: i.quantity,
                unit_price: Some(i.unit_price),
            })
            .collect();
        order_from_row(&row, items).map(Some)
    }

    /// Rejects a pending order whose stock was never confirmed held, with
    /// the decision's steps ([`saga::order::Change::Reject`] says what its
    /// fields mean). `false` when the order had already moved on.
    #[tracing::instrument(name = "TX reject order", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    #[allow(clippy::too_many_arguments)]
    pub async fn reject(
        &self,
        id: OrderId,
        reason: OrderReason,
        short: Option<Shortfall>,
        stock: StockState,
        free_key: bool,
        steps: &[NewStep],
    ) -> Result<bool, sqlx::Error> {
        let done = NewStep::bind(
            steps,
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH rejected AS (\
                 UPDATE orders SET status = 'rejected', stock = $2, reason = $3, short_product_id = $4, \
                 available_stock = $5, updated_at = now(), \
                 idempotency_key = CASE WHEN $6 THEN NULL ELSE idempotency_key END \
                 WHERE id = $1 AND status = 'pending' AND stock = 'unknown' RETURNING id) {}",
                NewStep::insert_from("rejected", 7)
            )))
            .bind(id)
            .bind(stock.as_str())
            .bind(reason.as_str())
            .bind(short.map(|s| s.product_id))
            .bind(short.map(|s| s.available))
            .bind(free_key),
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    /// Decides what order `id`, locked as it is now, does about `cause`
    /// (`decide`, a call of [`saga::order::decide`]), and writes it: a
    /// pending order moves to its new status with its steps and its event;
    /// a finished one only gets the steps, if any. All in one transaction
    /// with the inbox claim of the event that caused it, if an event did.
    #[tracing::instrument(name = "TX transition order", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn transition(
        &self,
        id: OrderId,
        cause: Cause<'_>,
        decide: impl FnOnce(&OrderState) -> Decision,
    ) -> Result<(Transition, Option<Call>), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if let Cause::Event(event) = cause
            && !claim(&mut tx, event).await?
        {
            return Ok((Transition::AlreadyProcessed, None));
        }
        // NO KEY UPDATE: it serialises this order's transitions and updates
        // as FOR UPDATE would, without blocking the key-share lock the
        // relay's timeline step takes on the order (its foreign key).
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM orders WHERE id = $1 FOR NO KEY UPDATE"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok((Transition::NotFound, None));
        };
        let order = order_from_row(&row, Vec::new())?;
        let decision = decide(&order.state());
        if let Outcome::Contradicted(why) = decision.outcome {
            // Rolled back with the claim: the event is refused, not handled.
            return Ok((Transition::Contradicted(why), None));
        }
        timeline::record(&mut tx, id, &NewStep::all_decided(&decision.steps, cause)).await?;
        let Change::Finish { to, reason } = decision.change else {
            // Nothing moves; the claim is kept: the event is handled.
            tx.commit().await?;
            return Ok((Transition::Refused(self.must_get(id).await?), None));
        };
        sqlx::query("UPDATE orders SET status = $2, reason = $3, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(to.as_str())
            .bind(reason.map(OrderReason::as_str))
            .execute(&mut *tx)
            .await?;
        if let Some(announce) = decision.publish {
            let announced = Event::new(id, order.user_id, announce);
            outbox::enqueue(&mut tx, &announced).await?;
        }
        outbox::commit(tx).await?;
        Ok((Transition::Done(self.must_get(id).await?), decision.then))
    }

    /// Records that product-service now has the order's units in `to`,
    /// if they were in one of `from`, with the decision's steps.
    #[tracing::instrument(name = "UPDATE orders", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn set_stock(
        &self,
        id: OrderId,
        from: &[StockState],
        to: StockState,
        steps: &[NewStep],
    ) -> Result<bool, sqlx::Error> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let done = NewStep::bind(
            steps,
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH settled AS (\
                 UPDATE orders SET stock = $3, updated_at = now() WHERE id = $1 AND stock = ANY($2) \
                 RETURNING id) {}",
                NewStep::insert_from("settled", 4)
            )))
            .bind(id)
            .bind(&from)
            .bind(to.as_str()),
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    /// The steps of order `id`, first to last (at most [`MAX_STEPS`]).
    #[tracing::instrument(name = "SELECT order_steps", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn steps(&self, id: OrderId) -> Result<Vec<Step>, sqlx::Error> {
        sqlx::query_as(
            "SELECT seq, step, at, cause, event_id, event_type, trace_id, detail \
             FROM order_steps WHERE order_id = $1 ORDER BY seq LIMIT $2",
        )
        .bind(id)
        .bind(MAX_STEPS)
        .fetch_all(&self.pool)
        .await
    }

    /// How many orders are pending, and the age of the oldest (seconds).
    pub async fn pending(&self) -> Result<(i64, f64), sqlx::Error> {
        sqlx::query_as(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) \
             FROM orders WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Orders the recovery loop must finish, oldest first: pending without
    /// a confirmed reservation, and finished orders whose units are not
    /// committed or released yet. Only orders untouched for `grace`, so
    /// requests in flight finish their own, and not before their
    /// `recovery_after` (the backoff after a failed attempt, [`Self::defer`]).
    /// Payment timeouts are found by [`Self::awaiting_payment`].
    pub async fn unsettled(&self, grace: Duration, limit: i64) -> Result<Vec<Order>, sqlx::Error> {
        let condition = "((status = 'pending' AND stock = 'unknown') \
                OR (status <> 'pending' AND stock IN ('unknown', 'held'))) \
             AND (recovery_after IS NULL OR recovery_after <= now())";
        let oldest_first = "COALESCE(recovery_after, updated_at)";
        self.untouched_for(grace, condition, oldest_first, limit)
            .await
    }

    /// Pending orders whose stock has been held longer than `payment_timeout`
    /// without a payment result, oldest first, but for those backed off
    /// after a cancel that failed: the payment timeout cancels them.
    pub async fn awaiting_payment(
        &self,
        payment_timeout: Duration,
        limit: i64,
    ) -> Result<Vec<Order>, sqlx::Error> {
        let condition = "status = 'pending' AND stock = 'held' \
             AND (recovery_after IS NULL OR recovery_after <= now())";
        self.untouched_for(payment_timeout, condition, "updated_at", limit)
            .await
    }

    /// At most `limit` orders that match `condition` and have not changed for
    /// `age`, in `order_by` order.
    async fn untouched_for(
        &self,
        age: Duration,
        condition: &str,
        order_by: &str,
        limit: i64,
    ) -> Result<Vec<Order>, sqlx::Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM orders WHERE ({condition}) \
             AND updated_at < now() - $1 * interval '1 millisecond' \
             ORDER BY {order_by} LIMIT $2"
        )))
        .bind(age.as_millis() as f64)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        self.with_items(rows).await
    }

    /// The recovery loop could not finish order `id` this time: it is tried
    /// again after `base` doubled per failure so far, at most `max` later.
    pub async fn defer(
        &self,
        id: OrderId,
        base: Duration,
        max: Duration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE orders SET recovery_attempts = recovery_attempts + 1, \
             recovery_after = now() + LEAST($2 * power(2, LEAST(recovery_attempts, 20)), $3) \
                 * interval '1 millisecond' \
             WHERE id = $1",
        )
        .bind(id)
        .bind(base.as_millis() as f64)
        .bind(max.as_millis() as f64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
