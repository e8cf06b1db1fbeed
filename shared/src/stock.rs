//! The values the stock calls carry between order-service and
//! product-service: a line of an order (a product and how many units), and
//! the product an order found short with the stock it had then.

/// One product of an order and how many units of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderLine {
    pub product_id: i64,
    pub quantity: i32,
}

impl OrderLine {
    pub const fn new(product_id: i64, quantity: i32) -> Self {
        Self {
            product_id,
            quantity,
        }
    }
}

/// The first product whose stock was short for an order, and its stock then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub product_id: i64,
    pub available: i32,
}

impl Shortfall {
    /// The shortfall a row records in its `short_product_id` and
    /// `available_stock` columns (both databases name them so), if any.
    pub fn from_row(row: &sqlx::postgres::PgRow) -> Result<Option<Self>, sqlx::Error> {
        use sqlx::Row;
        Ok(
            match (
                row.try_get::<Option<i64>, _>("short_product_id")?,
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

impl From<&crate::proto::product::StockItem> for OrderLine {
    fn from(item: &crate::proto::product::StockItem) -> Self {
        Self {
            product_id: item.product_id,
            quantity: item.quantity,
        }
    }
}

impl From<OrderLine> for crate::proto::product::StockItem {
    fn from(line: OrderLine) -> Self {
        Self {
            product_id: line.product_id,
            quantity: line.quantity,
        }
    }
}
