//! The values the stock calls carry between order-service and
//! product-service: a line of an order (a product and how many units), and
//! the product an order found short with the stock it had then, and how a
//! finished order settles the stock it holds.

use crate::id::{InvalidId, ProductId};

/// One product of an order and how many units of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub quantity: i32,
}

impl OrderLine {
    pub const fn new(product_id: ProductId, quantity: i32) -> Self {
        Self {
            product_id,
            quantity,
        }
    }

    /// The lines of a gRPC message's items; the first bad product id is refused.
    pub fn all<'a, T: 'a>(items: &'a [T]) -> Result<Vec<Self>, InvalidId>
    where
        Self: TryFrom<&'a T, Error = InvalidId>,
    {
        items.iter().map(Self::try_from).collect()
    }
}

/// The first product whose stock was short for an order, and its stock then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub product_id: ProductId,
    pub available: i32,
}

impl Shortfall {
    /// The shortfall a row records in its `short_product_id` and
    /// `available_stock` columns (both databases name them so), if any.
    pub fn from_row(row: &sqlx::postgres::PgRow) -> Result<Option<Self>, sqlx::Error> {
        use sqlx::Row;
        Ok(
            match (
                row.try_get::<Option<ProductId>, _>("short_product_id")?,
                row.try_get::<Option<i32>, _>("available_stock")?,
            ) {
                (Some(product_id), Some(available)) => Some(Self {
                    product_id,
                    available,
                }),
                _ => None,
            },
        )
    }
}

/// How a finished order's reservation ends (docs/saga.md): a paid order's
/// held units are sold, everyone else's go back to stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Settlement {
    Commit,
    Release,
}

/// A stock call's line; a product id that is not positive is refused.
impl TryFrom<&crate::proto::product::StockItem> for OrderLine {
    type Error = InvalidId;
    fn try_from(item: &crate::proto::product::StockItem) -> Result<Self, InvalidId> {
        Ok(Self::new(ProductId::new(item.product_id)?, item.quantity))
    }
}

/// A gRPC order's line; a product id that is not positive is refused.
impl TryFrom<&crate::proto::order::OrderItem> for OrderLine {
    type Error = InvalidId;
    fn try_from(item: &crate::proto::order::OrderItem) -> Result<Self, InvalidId> {
        Ok(Self::new(ProductId::new(item.product_id)?, item.quantity))
    }
}

impl From<OrderLine> for crate::proto::product::StockItem {
    fn from(line: OrderLine) -> Self {
        Self {
            product_id: line.product_id.get(),
            quantity: line.quantity,
        }
    }
}
