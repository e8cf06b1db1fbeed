//! Orders as the service keeps them, and the validated shape of a new one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::id::{OrderId, ProductId, UserId};
use shared::money::{Currency, Money};
use shared::stock::{OrderLine, Shortfall};
use utoipa::ToSchema;

/// Most lines one order may have (product-service's reservation limit).
pub const MAX_ITEMS: usize = 100;
/// Most units of one product in one order.
pub const MAX_QUANTITY: i32 = 10_000;

/// The saga's view of an order and its vocabulary (the `saga` crate).
pub use saga::order::{OrderState, OrderStatus, StockState};

/// Why an order was rejected, failed or cancelled: the events carry it too.
pub use shared::kafka::events::OrderReason;

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    pub product_id: ProductId,
    pub quantity: i32,
    /// The price reserved for the order; `null` until stock is held.
    pub unit_price: Option<Money>,
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub stock: StockState,
    pub total_price: Option<Money>,
    pub currency: Currency,
    pub reason: Option<OrderReason>,
    /// For a rejection for lack of stock: the short product and its stock then.
    pub short: Option<Shortfall>,
    pub request_fingerprint: Option<String>,
    /// Where the customer wants mail (their token's email when they ordered).
    pub customer_email: Option<String>,
    pub items: Vec<OrderItem>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// Its lines as the stock calls carry them.
    pub fn lines(&self) -> Vec<OrderLine> {
        self.items
            .iter()
            .map(|i| OrderLine::new(i.product_id, i.quantity))
            .collect()
    }

    /// What the saga decides on.
    pub fn state(&self) -> OrderState {
        OrderState {
            id: self.id,
            user_id: self.user_id,
            status: self.status,
            stock: self.stock,
            total: self.total_price,
            currency: self.currency,
            customer_email: self.customer_email.clone(),
        }
    }
}

impl shared::auth::Owned for Order {
    fn owner_id(&self) -> UserId {
        self.user_id
    }
}

/// An order as the API shows it (docs/contracts.md, "HTTP conventions").
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    /// The sum of the reserved lines; `null` until stock is held.
    pub total_price: Option<Money>,
    pub currency: Currency,
    pub items: Vec<OrderItem>,
    /// The first item's product, for clients of the single-item API.
    pub product_id: i64,
    /// The first item's quantity, for clients of the single-item API.
    pub quantity: i32,
    /// Why the order was rejected, failed or cancelled.
    pub reason: Option<OrderReason>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> Self {
        let first = o.items.first();
        Self {
            id: o.id,
            user_id: o.user_id,
            status: o.status,
            total_price: o.total_price,
            currency: o.currency,
            items: o.items.clone(),
            product_id: first.map_or(0, |i| i.product_id.get()),
            quantity: first.map_or(0, |i| i.quantity),
            reason: o.reason,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// The validated lines of a new order: one per product (repeats merged),
/// in product id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines(Vec<OrderLine>);

/// Why requested lines are not acceptable; names the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub field: String,
    pub message: String,
}

impl Lines {
    /// Checks ids and quantities and merges repeats of one product.
    pub fn new(requested: &[OrderLine]) -> Result<Self, LineError> {
        let err = |field: String, message: String| Err(LineError { field, message });
        if requested.is_empty() {
            return err("items".into(), "an order needs at least one item".into());
        }
        if requested.len() > MAX_ITEMS {
            return err(
                "items".into(),
                format!("an order has at most {MAX_ITEMS} items"),
            );
        }
        let mut merged: BTreeMap<ProductId, i32> = BTreeMap::new();
        for (
            i,
            &OrderLine {
                product_id,
                quantity,
            },
        ) in requested.iter().enumerate()
        {
            if !(1..=MAX_QUANTITY).contains(&quantity) {
                return err(
                    format!("items[{i}].quantity"),
                    format!("quantity must be between 1 and {MAX_QUANTITY}"),
                );
            }
            let total = merged.entry(product_id).or_insert(0);
            *total += quantity;
            if *total > MAX_QUANTITY {
                return err(
                    format!("items[{i}].quantity"),
                    format!("at most {MAX_QUANTITY} units of product {product_id} per order"),
                );
            }
        }
        Ok(Self(
            merged
                .into_iter()
                .map(|(product_id, quantity)| OrderLine {
                    product_id,
                    quantity,
                })
                .collect(),
        ))
    }

    pub fn as_slice(&self) -> &[OrderLine] {
        &self.0
    }

    /// A canonical text of the lines: equal for requests that mean the same order.
    pub fn fingerprint(&self) -> String {
        self.0
            .iter()
            .map(|l| format!("{}x{}", l.product_id, l.quantity))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use shared::testing::lines as l;

    #[test]
    fn lines_are_validated_merged_and_sorted() {
        let lines = Lines::new(&l(&[(5, 1), (2, 3), (5, 2)])).unwrap();
        assert_eq!(lines.as_slice(), l(&[(2, 3), (5, 3)]));
        assert_eq!(lines.fingerprint(), "2x3,5x3");
        assert_eq!(Lines::new(&[]).unwrap_err().field, "items");
        assert_eq!(
            Lines::new(&l(&[(1, 0)])).unwrap_err().field,
            "items[0].quantity"
        );
        assert_eq!(
            Lines::new(&l(&[(1, MAX_QUANTITY), (1, 1)]))
                .unwrap_err()
                .field,
            "items[1].quantity"
        );
        assert!(Lines::new(&l(&vec![(1, 1); MAX_ITEMS + 1])).is_err());
    }
}

/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// An `Idempotency-Key`: 1 to [`MAX_KEY_LEN`] visible ASCII characters,
/// parsed where a request comes in (REST header or gRPC field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// A key that is not 1 to [`MAX_KEY_LEN`] visible ASCII characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters")]
pub struct InvalidKey;

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidKey> {
        if raw.is_empty() || raw.len() > MAX_KEY_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidKey);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
