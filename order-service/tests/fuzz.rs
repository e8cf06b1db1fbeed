//! Property tests of the order request validators: arbitrary lines never
//! panic, and what the validator accepts keeps its rules (positive ids, one
//! line per product, quantities in range, nothing lost in the merge); any
//! bytes as a `POST /orders` body or an `Idempotency-Key` are accepted
//! within those rules or refused with a 400 that names the field.

use std::collections::BTreeMap;

use order_service::api::CreateOrderBody;
use order_service::model::{IdempotencyKey, MAX_KEY_LEN};
use order_service::model::{Lines, MAX_ITEMS, MAX_QUANTITY};
use proptest::prelude::*;
use serde_json::Value;
use shared::error::parse_json;
use shared::id::ProductId;
use shared::stock::OrderLine;
use shared::testing::inputs::{body, check_bad_request, number, object, text, value};

/// A field value for an order body: now and then an `items` array of
/// plausible (or not) lines, so the body gets past the parser to the rules.
fn order_value() -> BoxedStrategy<Value> {
    let item = object(&[("product_id", number()), ("quantity", number())]);
    prop_oneof![
        2 => prop::collection::vec(item, 0..(MAX_ITEMS + 3)).prop_map(Value::Array),
        1 => number(),
        1 => value(),
    ]
    .boxed()
}

fn line() -> impl Strategy<Value = OrderLine> {
    prop_oneof![
        // Mostly plausible lines, so merges and limits are exercised...
        (1i64..20, 1i32..=MAX_QUANTITY),
        // ...and any id (a product id is positive by its type) and any quantity.
        (1..=i64::MAX, any::<i32>()),
    ]
    .prop_map(|(product_id, quantity)| {
        OrderLine::new(shared::testing::product(product_id), quantity)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn lines_never_panic_and_keep_their_rules(requested in prop::collection::vec(line(), 0..120)) {
        match Lines::new(&requested) {
            Ok(lines) => {
                let lines = lines.as_slice();
                prop_assert!(!requested.is_empty() && requested.len() <= MAX_ITEMS);
                prop_assert!(lines.windows(2).all(|w| w[0].product_id < w[1].product_id), "sorted, one line per product");
                let mut wanted: BTreeMap<ProductId, i64> = BTreeMap::new();
                for l in &requested {
                    *wanted.entry(l.product_id).or_default() += i64::from(l.quantity);
                }
                for &OrderLine { product_id: p, quantity: q } in lines {
                    prop_assert!(p.get() > 0 && (1..=MAX_QUANTITY).contains(&q));
                    prop_assert_eq!(wanted.get(&p).copied(), Some(i64::from(q)), "merged quantities add up");
                }
                prop_assert_eq!(lines.len(), wanted.len());
            }
            Err(e) => prop_assert!(e.field == "items" || e.field.starts_with("items["), "{e:?}"),
        }
    }

    #[test]
    fn order_bodies_are_accepted_only_within_the_rules(
        bytes in body(object(&[
            ("user_id", number()),
            ("product_id", order_value()),
            ("quantity", order_value()),
            ("items", order_value()),
        ]))
    ) {
        let parsed: Result<CreateOrderBody, _> = parse_json(&bytes);
        match parsed.and_then(|b| b.lines()) {
            Ok(requested) => match Lines::new(&requested) {
                Ok(lines) => {
                    prop_assert!(!lines.as_slice().is_empty() && requested.len() <= MAX_ITEMS);
                    prop_assert!(lines.as_slice().iter().all(|l| l.product_id.get() > 0 && (1..=MAX_QUANTITY).contains(&l.quantity)));
                }
                Err(e) => prop_assert!(e.field == "items" || e.field.starts_with("items["), "{e:?}"),
            },
            Err(e) => check_bad_request(&e)?,
        }
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_of_bounded_length(raw in prop_oneof![text(), "[!-~]{250,260}"]) {
        let ok = IdempotencyKey::parse(&raw).is_ok();
        let rule = !raw.is_empty() && raw.len() <= MAX_KEY_LEN && raw.bytes().all(|b| b.is_ascii_graphic());
        prop_assert_eq!(ok, rule, "{:?}", raw);
    }
}
