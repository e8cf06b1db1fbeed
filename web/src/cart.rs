//! The cart: product ids and quantities, kept in the browser in one cookie
//! (`minishop_cart`, `12:2.40:1`). It holds no price: prices and stock are
//! read from product-service each time the cart is shown, and the order
//! API checks both again. A cookie that does not parse is an empty cart.

use shared::id::ProductId;

use crate::backend::OrderLineBody;

/// The cookie's name.
pub const COOKIE: &str = "minishop_cart";
/// Most lines a cart holds (the order API takes up to 100).
pub const MAX_LINES: usize = 30;
/// Most units of one product in the cart (the order API's own limit).
pub const MAX_QUANTITY: i32 = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cart {
    lines: Vec<OrderLineBody>,
}

/// Why a change to the cart was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("a cart holds at most {MAX_LINES} different products")]
    TooManyLines,
    #[error("a quantity is 1 to {MAX_QUANTITY}")]
    BadQuantity,
}

impl Cart {
    /// The cart a cookie value holds; whatever does not parse is dropped.
    pub fn parse(value: &str) -> Self {
        let mut cart = Cart::default();
        for entry in value.split('.') {
            let Some((id, quantity)) = entry.split_once(':') else {
                continue;
            };
            let (Ok(id), Ok(quantity)) = (id.parse::<ProductId>(), quantity.parse::<i32>()) else {
                continue;
            };
            if cart.set(id, quantity).is_err() {
                break;
            }
        }
        cart
    }

    /// The cookie value.
    pub fn encode(&self) -> String {
        self.lines
            .iter()
            .map(|l| format!("{}:{}", l.product_id, l.quantity))
            .collect::<Vec<_>>()
            .join(".")
    }

    pub fn lines(&self) -> &[OrderLineBody] {
        &self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// How many units in all.
    pub fn units(&self) -> i64 {
        self.lines.iter().map(|l| i64::from(l.quantity)).sum()
    }

    /// Adds `quantity` units of `product` (up to the most one line holds).
    pub fn add(&mut self, product: ProductId, quantity: i32) -> Result<(), CartError> {
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(CartError::BadQuantity);
        }
        let now = self
            .lines
            .iter()
            .find(|l| l.product_id == product)
            .map_or(0, |l| l.quantity);
        self.set(product, now.saturating_add(quantity).min(MAX_QUANTITY))
    }

    /// Sets the quantity of `product`; 0 takes it out.
    pub fn set(&mut self, product: ProductId, quantity: i32) -> Result<(), CartError> {
        if !(0..=MAX_QUANTITY).contains(&quantity) {
            return Err(CartError::BadQuantity);
        }
        match self.lines.iter().position(|l| l.product_id == product) {
            Some(i) if quantity == 0 => {
                self.lines.remove(i);
            }
            Some(i) => self.lines[i].quantity = quantity,
            None if quantity == 0 => {}
            None if self.lines.len() >= MAX_LINES => return Err(CartError::TooManyLines),
            None => self.lines.push(OrderLineBody {
                product_id: product,
                quantity,
            }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: i64) -> ProductId {
        ProductId::new(n).unwrap()
    }

    #[test]
    fn a_cart_survives_its_cookie() {
        let mut cart = Cart::default();
        cart.add(id(12), 2).unwrap();
        cart.add(id(40), 1).unwrap();
        cart.add(id(12), 3).unwrap();
        assert_eq!(cart.encode(), "12:5.40:1");
        assert_eq!(Cart::parse(&cart.encode()), cart);
        assert_eq!(cart.units(), 6);
        cart.set(id(12), 0).unwrap();
        assert_eq!(cart.encode(), "40:1");
    }

    #[test]
    fn a_cookie_that_does_not_parse_gives_what_does() {
        assert!(Cart::parse("").is_empty());
        assert!(Cart::parse("garbage;<script>").is_empty());
        assert_eq!(Cart::parse("x:1.7:2.8:-1.9:99999999999").encode(), "7:2");
        assert_eq!(Cart::parse("0:1.-3:1").encode(), "");
    }

    #[test]
    fn quantities_and_lines_are_bounded() {
        let mut cart = Cart::default();
        assert_eq!(cart.add(id(1), 0), Err(CartError::BadQuantity));
        assert_eq!(
            cart.add(id(1), MAX_QUANTITY + 1),
            Err(CartError::BadQuantity)
        );
        cart.add(id(1), MAX_QUANTITY).unwrap();
        cart.add(id(1), MAX_QUANTITY).unwrap();
        assert_eq!(cart.lines()[0].quantity, MAX_QUANTITY);
        for n in 2..=MAX_LINES as i64 {
            cart.add(id(n), 1).unwrap();
        }
        assert_eq!(cart.add(id(1000), 1), Err(CartError::TooManyLines));
        let many = (1..=100)
            .map(|n| format!("{n}:1"))
            .collect::<Vec<_>>()
            .join(".");
        assert_eq!(Cart::parse(&many).lines().len(), MAX_LINES);
    }
}
