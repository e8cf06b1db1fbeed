//! The stock ledger behind the gRPC stock calls: reservations per order id
//! (reserve, then settle: release or commit).
//!
//! Stock moves only through conditional UPDATEs (`... WHERE stock >= $n`),
//! never read-then-write, so concurrent reservations can't oversell; the
//! `CHECK (stock >= 0)` backs that up. Every transaction locks its
//! reservation row first and then products in ascending id order, so two
//! transactions never wait on each other in a cycle. A reservation row per
//! order id records the first outcome, which every repeat returns.

use std::collections::BTreeMap;

use shared::id::{OrderId, ProductId};
use shared::money::{Money, TotalTooLarge, order_total};
use shared::stock::{OrderLine, Settlement, Shortfall};
use sqlx::{Postgres, Row, Transaction};

use crate::store::Store;

/// Most line items one reservation may carry.
pub const MAX_ITEMS: usize = 100;

shared::text_enum! {
    /// What a reservation is now.
    pub enum ReservationStatus {
        Reserved = "reserved",
        Insufficient = "insufficient",
        Released = "released",
        Committed = "committed",
    }
}

/// One reserved line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedItem {
    pub product_id: ProductId,
    pub quantity: i32,
    pub unit_price: Money,
}

/// A reservation as the stock calls report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub status: ReservationStatus,
    pub items: Vec<ReservedItem>,
    /// For `Insufficient`: the first short product and its stock then.
    pub short: Option<Shortfall>,
}

impl Reservation {
    /// What its lines come to ([`order_total`]: checked, within the range
    /// of every total; a reservation over it is never made).
    pub fn total(&self) -> Result<Money, TotalTooLarge> {
        order_total(self.items.iter().map(|i| (i.unit_price, i.quantity)))
    }
}

/// The outcome of a stock call, with the products whose stock moved (their
/// new versions), so the caller can invalidate their cache entries.
#[derive(Debug, Clone)]
pub struct StockChange<T> {
    pub outcome: T,
    pub touched: Vec<(ProductId, i64)>,
}

impl<T> StockChange<T> {
    fn unchanged(outcome: T) -> Self {
        Self {
            outcome,
            touched: Vec::new(),
        }
    }
}

/// Why a stock call was refused.
#[derive(Debug, thiserror::Error)]
pub enum StockError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    #[error("no reservation for order {0}")]
    ReservationNotFound(OrderId),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    TotalTooLarge(#[from] TotalTooLarge),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl Store {
    /// Holds stock for every item of `order_id`, all or nothing. A repeat
    /// returns what the first call decided and changes nothing. Lines whose
    /// total at today's prices is over the largest order total hold nothing
    /// and record nothing ([`StockError::TotalTooLarge`]).
    #[tracing::instrument(name = "TX reserve stock", skip_all, fields(otel.kind = "client", db.system = "postgresql"))]
    pub async fn reserve(
        &self,
        order_id: OrderId,
        items: &[OrderLine],
    ) -> Result<StockChange<Reservation>, StockError> {
        let wanted = merge_items(items)?;
        let mut tx = self.live()?.begin().await?;
        if !claim(&mut tx, order_id, ReservationStatus::Reserved).await? {
            tx.rollback().await?;
            return Ok(StockChange::unchanged(self.load(order_id).await?));
        }
        let mut touched = Vec::with_capacity(wanted.len());
        let mut reserved = Vec::with_capacity(wanted.len());
        for (&product_id, &quantity) in &wanted {
            let row = sqlx::query(
                "UPDATE products SET stock = stock - $2, version = version + 1, updated_at = now() \
                 WHERE id = $1 AND deleted_at IS NULL AND stock >= $2 \
                 RETURNING (price * 100)::bigint AS price_cents, version",
            )
            .bind(product_id)
            .bind(quantity)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                let stock: Option<i32> = sqlx::query_scalar(
                    "SELECT stock FROM products WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(product_id)
                .fetch_optional(&mut *tx)
                .await?;
                tx.rollback().await?;
                return match stock {
                    None => Err(StockError::ProductNotFound(product_id)),
                    Some(available) => Ok(StockChange::unchanged(
                        self.record_insufficient(order_id, product_id, available)
                            .await?,
                    )),
                };
            };
            let unit_price: Money = row.try_get("price_cents")?;
            touched.push((product_id, row.try_get("version")?));
            sqlx::query(
                "INSERT INTO stock_reservation_items (order_id, product_id, quantity, unit_price) \
                 VALUES ($1, $2, $3, $4::bigint::numeric / 100)",
            )
            .bind(order_id)
            .bind(product_id)
            .bind(quantity)
            .bind(unit_price.cents())
            .execute(&mut *tx)
            .await?;
            reserved.push(ReservedItem {
                product_id,
                quantity,
                unit_price,
            });
        }
        let reservation = Reservation {
            status: ReservationStatus::Reserved,
            items: reserved,
            short: None,
        };
        if let Err(e) = reservation.total() {
            tx.rollback().await?;
            return Err(e.into());
        }
        tx.commit().await?;
        Ok(StockChange {
            outcome: reservation,
            touched,
        })
    }

    /// Records that `order_id` was refused for lack of stock (unless a
    /// concurrent call for the same order decided first) and returns the outcome.
    async fn record_insufficient(
        &self,
        order_id: OrderId,
        product_id: ProductId,
        available: i32,
    ) -> Result<Reservation, sqlx::Error> {
        sqlx::query(
            "INSERT INTO stock_reservations (order_id, status, short_product_id, available_stock) \
             VALUES ($1, 'insufficient', $2, $3) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id)
        .bind(product_id)
        .bind(available)
        .execute(self.live()?)
        .await?;
        self.load(order_id).await
    }

    /// The stored outcome of `order_id`.
    async fn load(&self, order_id: OrderId) -> Result<Reservation, sqlx::Error> {
        let row = sqlx::query(
            "SELECT status, short_product_id, available_stock FROM stock_reservations \
             WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_one(self.live()?)
        .await?;
        let status: ReservationStatus = row.try_get("status")?;
        let short = Shortfall::from_row(&row)?;
        let items = sqlx::query(
            "SELECT product_id, quantity, (unit_price * 100)::bigint AS price_cents \
             FROM stock_reservation_items WHERE order_id = $1 ORDER BY product_id",
        )
        .bind(order_id)
        .fetch_all(self.live()?)
        .await?
        .iter()
        .map(|r| {
            Ok(ReservedItem {
                product_id: r.try_get("product_id")?,
                quantity: r.try_get("quantity")?,
                unit_price: Money(r.try_get("price_cents")?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
        Ok(Reservation {
            status,
            items,
            short,
        })
    }

    /// Settles the reservation of `order_id` as `how` says: a commit makes
    /// the held units sold, a release gives them back to stock; a repeat
    /// returns the first outcome. Releasing an order that never reserved
    /// records a release, so a late ReserveStock for it holds nothing (a
    /// cancelled order must not keep stock). Releasing a committed order and
    /// committing a released or refused one are refused.
    #[tracing::instrument(name = "TX settle stock", skip_all, fields(otel.kind = "client", db.system = "postgresql", settlement = ?how))]
    pub async fn settle(
        &self,
        order_id: OrderId,
        how: Settlement,
    ) -> Result<StockChange<ReservationStatus>, StockError> {
        let target = ReservationStatus::from(how);
        let mut tx = self.live()?.begin().await?;
        // A release before any reservation leaves a tombstone.
        if how == Settlement::Release && claim(&mut tx, order_id, target).await? {
            tx.commit().await?;
            return Ok(StockChange::unchanged(target));
        }
        let status = lock_status(&mut tx, order_id)
            .await?
            .ok_or(StockError::ReservationNotFound(order_id))?;
        let touched = match (how, status) {
            (Settlement::Release, ReservationStatus::Reserved) => {
                restock(&mut tx, order_id).await?
            }
            // Sold units were already out of the stock: no product changes.
            (Settlement::Commit, ReservationStatus::Reserved) => Vec::new(),
            // A refused reservation held nothing, and stays refused.
            (Settlement::Release, ReservationStatus::Insufficient) => {
                return Ok(StockChange::unchanged(status));
            }
            _ if status == target => return Ok(StockChange::unchanged(status)),
            (Settlement::Commit, ReservationStatus::Insufficient) => {
                return Err(StockError::FailedPrecondition(format!(
                    "order {order_id} holds no stock (its reservation was refused)"
                )));
            }
            _ => {
                return Err(StockError::FailedPrecondition(format!(
                    "order {order_id}'s stock is already {status} and cannot be {target}"
                )));
            }
        };
        set_status(&mut tx, order_id, target).await?;
        tx.commit().await?;
        Ok(StockChange {
            outcome: target,
            touched,
        })
    }
}

impl From<Settlement> for ReservationStatus {
    fn from(how: Settlement) -> Self {
        match how {
            Settlement::Commit => Self::Committed,
            Settlement::Release => Self::Released,
        }
    }
}

/// Puts the units `order_id` holds back into stock, in ascending product id
/// order (the lock order); the products' new versions.
async fn restock(
    tx: &mut Transaction<'_, Postgres>,
    order_id: OrderId,
) -> Result<Vec<(ProductId, i64)>, sqlx::Error> {
    let items: Vec<(ProductId, i32)> = sqlx::query_as(
        "SELECT product_id, quantity FROM stock_reservation_items \
         WHERE order_id = $1 ORDER BY product_id",
    )
    .bind(order_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut touched = Vec::with_capacity(items.len());
    for (product_id, quantity) in items {
        let version: i64 = sqlx::query_scalar(
            "UPDATE products SET stock = stock + $2, version = version + 1, updated_at = now() \
             WHERE id = $1 RETURNING version",
        )
        .bind(product_id)
        .bind(quantity)
        .fetch_one(&mut **tx)
        .await?;
        touched.push((product_id, version));
    }
    Ok(touched)
}

/// Validates the items and merges repeats of one product, in ascending
/// product id order (the lock order).
fn merge_items(items: &[OrderLine]) -> Result<BTreeMap<ProductId, i32>, StockError> {
    if items.is_empty() {
        return Err(StockError::InvalidArgument(
            "items must not be empty".into(),
        ));
    }
    if items.len() > MAX_ITEMS {
        return Err(StockError::InvalidArgument(format!(
            "at most {MAX_ITEMS} items per reservation"
        )));
    }
    let mut merged = BTreeMap::new();
    for &OrderLine {
        product_id,
        quantity,
    } in items
    {
        if quantity <= 0 {
            return Err(StockError::InvalidArgument(format!(
                "quantity of product {product_id} must be at least 1"
            )));
        }
        let total: &mut i32 = merged.entry(product_id).or_insert(0);
        *total = total.checked_add(quantity).ok_or_else(|| {
            StockError::InvalidArgument(format!("quantity of product {product_id} is too large"))
        })?;
    }
    Ok(merged)
}

/// Records `order_id`'s reservation as `status` if the order has none yet;
/// whether it was the first.
async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    order_id: OrderId,
    status: ReservationStatus,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO stock_reservations (order_id, status) VALUES ($1, $2) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(status)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

async fn lock_status(
    tx: &mut Transaction<'_, Postgres>,
    order_id: OrderId,
) -> Result<Option<ReservationStatus>, sqlx::Error> {
    sqlx::query_scalar("SELECT status FROM stock_reservations WHERE order_id = $1 FOR UPDATE")
        .bind(order_id)
        .fetch_optional(&mut **tx)
        .await
}

async fn set_status(
    tx: &mut Transaction<'_, Postgres>,
    order_id: OrderId,
    status: ReservationStatus,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stock_reservations SET status = $2, updated_at = now() WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(status.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use shared::testing::lines as l;

    #[test]
    fn repeats_of_a_product_merge_and_bad_items_are_refused() {
        use shared::testing::product;
        let merged = merge_items(&l(&[(5, 1), (2, 3), (5, 2)])).unwrap();
        assert_eq!(
            merged.into_iter().collect::<Vec<_>>(),
            vec![(product(2), 3), (product(5), 3)]
        );
        for bad in [l(&[]), l(&[(1, 0)]), l(&[(1, i32::MAX), (1, 1)])] {
            assert!(
                matches!(merge_items(&bad), Err(StockError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
