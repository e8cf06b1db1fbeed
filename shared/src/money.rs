//! Exact money: an amount in integer cents that reads and writes JSON as a
//! number with two decimals (`1999.99`), per docs/contracts.md.
//!
//! JSON numbers arrive as f64; the shortest decimal that round-trips an f64
//! is exactly what the client wrote for any amount of up to 15 significant
//! digits, so that text is parsed as a decimal, and more than two decimal
//! places is an error rather than a silent rounding.
//!
//! Money has one range, end to end (docs/contracts.md, "Money"): a price is
//! at most [`MAX_PRICE`] and an order's total at most [`MAX_ORDER_TOTAL`],
//! which every column that holds a total (`orders.total_price`,
//! `payments.amount`: `NUMERIC(14,2)`) and every event (a JSON number exact
//! to 15 significant digits) can hold. A total is only ever made by
//! [`order_total`], whose arithmetic is checked.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

crate::text_enum! {
    /// A currency, by its ISO 4217 code: the ones the shop takes.
    pub enum Currency {
        Usd = "USD",
    }
}

/// An amount of money in cents. In SQL it is a `bigint` of cents: the
/// stores read `NUMERIC(12,2)` columns as `(amount * 100)::bigint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, sqlx::Type)]
#[sqlx(transparent)]
pub struct Money(pub i64);

/// The largest price of a product: what `NUMERIC(12,2)` holds (9,999,999,999.99).
pub const MAX_PRICE: Money = Money(999_999_999_999);

/// The largest total of one order: what `NUMERIC(14,2)` holds
/// (999,999,999,999.99), the columns of every total and of every payment.
pub const MAX_ORDER_TOTAL: Money = Money(99_999_999_999_999);

/// An order's lines come to more than [`MAX_ORDER_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the order's total is over the largest total accepted ({MAX_ORDER_TOTAL})")]
pub struct TotalTooLarge;

/// The total of lines of `(unit price, quantity)`, checked: no overflow, and
/// not over [`MAX_ORDER_TOTAL`]. A negative quantity or price is no line of
/// an order either way, and is refused the same.
pub fn order_total(lines: impl IntoIterator<Item = (Money, i32)>) -> Result<Money, TotalTooLarge> {
    let mut total = 0i64;
    for (price, quantity) in lines {
        // Each on its own: a negative price times a negative quantity is positive.
        if price.0 < 0 || quantity < 0 {
            return Err(TotalTooLarge);
        }
        let line = price
            .0
            .checked_mul(i64::from(quantity))
            .ok_or(TotalTooLarge)?;
        total = total.checked_add(line).ok_or(TotalTooLarge)?;
    }
    let total = Money(total);
    if total > MAX_ORDER_TOTAL {
        return Err(TotalTooLarge);
    }
    Ok(total)
}

/// A number in the event contract (docs/asyncapi.yaml), as on the wire.
impl schemars::JsonSchema for Money {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Money".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "description": "An amount in the currency's units with at most two decimals (25.5 is 25.50); exact to the cent.",
        })
    }
}

impl Money {
    /// The amount in cents.
    pub fn cents(self) -> i64 {
        self.0
    }

    /// Parses `"12.5"`, `"12.50"` or `"12"`; `None` for anything else,
    /// including more than two decimals.
    pub fn parse_decimal(text: &str) -> Option<Money> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if fraction.len() > 2 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let whole: i64 = whole.parse().ok()?;
        let fraction: i64 = format!("{fraction:0<2}").parse().ok()?;
        let cents = whole.checked_mul(100)?.checked_add(fraction)?;
        Some(Money(if negative { -cents } else { cents }))
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A raw JSON number keeps the two decimals (`10.00`, not `10.0`).
        let raw = serde_json::value::RawValue::from_string(self.to_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MoneyVisitor;
        impl Visitor<'_> for MoneyVisitor {
            type Value = Money;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an amount as a number with at most two decimals")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Money, E> {
                v.checked_mul(100)
                    .map(Money)
                    .ok_or_else(|| E::custom("amount out of range"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Money, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(|v| v.checked_mul(100))
                    .map(Money)
                    .ok_or_else(|| E::custom("amount out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Money, E> {
                if !v.is_finite() || v.abs() > 1e15 {
                    return Err(E::custom("amount out of range"));
                }
                Money::parse_decimal(&format!("{v}"))
                    .ok_or_else(|| E::custom("amount must have at most two decimal places"))
            }
        }
        deserializer.deserialize_any(MoneyVisitor)
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .description(Some("An amount with at most two decimals"))
            .multiple_of(Some(0.01))
            .examples([serde_json::json!(19.99)])
            .into()
    }
}

impl utoipa::ToSchema for Money {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every amount an order can hold reads back from its text and its JSON.
        #[test]
        fn every_amount_survives_its_text_and_its_json(cents in -MAX_ORDER_TOTAL.0..=MAX_ORDER_TOTAL.0) {
            let money = Money(cents);
            prop_assert_eq!(Money::parse_decimal(&money.to_string()), Some(money));
            let json = serde_json::to_string(&money).unwrap();
            prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), money);
        }

        /// A total is the exact sum of its lines (computed in i128, where
        /// nothing overflows), or refused: when it is over the largest
        /// total, or when a line has a negative price or quantity.
        #[test]
        fn a_total_is_the_exact_sum_or_refused(
            lines in proptest::collection::vec(
                (
                    prop_oneof![0..=MAX_PRICE.0, -10_000..0i64, any::<i64>()].prop_map(Money),
                    prop_oneof![0..=10_000i32, -100..0i32, any::<i32>()],
                ),
                0..8,
            )
        ) {
            let exact = lines.iter().try_fold(0i128, |sum, (price, quantity)| {
                (price.0 >= 0 && *quantity >= 0)
                    .then(|| sum + i128::from(price.0) * i128::from(*quantity))
            });
            let expected = exact
                .filter(|total| *total <= i128::from(MAX_ORDER_TOTAL.0))
                .map(|total| Money(i64::try_from(total).unwrap()));
            prop_assert_eq!(order_total(lines.clone()).ok(), expected, "{:?}", lines);
        }
    }

    #[test]
    fn json_round_trip_keeps_two_decimals() {
        let m: Money = serde_json::from_str("1999.99").unwrap();
        assert_eq!(m, Money(199_999));
        assert_eq!(serde_json::to_string(&Money(1000)).unwrap(), "10.00");
        assert_eq!(serde_json::to_string(&Money(5)).unwrap(), "0.05");
        assert_eq!(serde_json::from_str::<Money>("12").unwrap(), Money(1200));
        assert_eq!(serde_json::from_str::<Money>("0.1").unwrap(), Money(10));
    }

    #[test]
    fn a_total_is_checked_against_overflow_and_the_largest_total() {
        assert_eq!(
            order_total([(Money(250), 4), (Money(1), 1)]),
            Ok(Money(1001))
        );
        assert_eq!(order_total([]), Ok(Money(0)));
        // Two units at the largest price fit; 101 do not.
        assert_eq!(order_total([(MAX_PRICE, 2)]), Ok(Money(1_999_999_999_998)));
        assert_eq!(
            order_total([(MAX_PRICE, 100)]),
            Ok(Money(99_999_999_999_900))
        );
        assert_eq!(order_total([(MAX_PRICE, 101)]), Err(TotalTooLarge));
        assert_eq!(order_total([(MAX_ORDER_TOTAL, 1)]), Ok(MAX_ORDER_TOTAL));
        assert_eq!(
            order_total([(MAX_ORDER_TOTAL, 1), (Money(1), 1)]),
            Err(TotalTooLarge)
        );
        // Lines that each fit but overflow i64 together, and one that overflows alone.
        assert_eq!(
            order_total(std::iter::repeat_n((Money(i64::MAX / 4), 1), 5)),
            Err(TotalTooLarge)
        );
        assert_eq!(order_total([(Money(i64::MAX), 2)]), Err(TotalTooLarge));
        assert_eq!(order_total([(Money(100), -1)]), Err(TotalTooLarge));
        // The largest total is exact as a JSON number (an f64).
        let json = serde_json::to_string(&MAX_ORDER_TOTAL).unwrap();
        assert_eq!(json, "999999999999.99");
        assert_eq!(
            serde_json::from_str::<Money>(&json).unwrap(),
            MAX_ORDER_TOTAL
        );
    }

    #[test]
    fn more_than_two_decimals_and_strings_are_refused() {
        assert!(serde_json::from_str::<Money>("1.999").is_err());
        assert!(serde_json::from_str::<Money>("\"1.99\"").is_err());
        assert!(serde_json::from_str::<Money>("1e300").is_err());
    }
}
