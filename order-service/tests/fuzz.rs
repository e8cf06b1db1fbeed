//! Property test of the order request validator: arbitrary lines never
//! panic, and what it accepts keeps its rules (positive ids, one line per
//! product, quantities in range, nothing lost in the merge).

use std::collections::BTreeMap;

use order_service::model::{Lines, MAX_ITEMS, MAX_QUANTITY};
use proptest::prelude::*;

fn line() -> impl Strategy<Value = (i64, i32)> {
    prop_oneof![
        // Mostly plausible lines, so merges and limits are exercised...
        (1i64..20, 1i32..=MAX_QUANTITY),
        // ...and anything at all.
        (any::<i64>(), any::<i32>()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn lines_never_panic_and_keep_their_rules(requested in prop::collection::vec(line(), 0..120)) {
        match Lines::new(&requested) {
            Ok(lines) => {
                let lines = lines.as_slice();
                prop_assert!(!requested.is_empty() && requested.len() <= MAX_ITEMS);
                prop_assert!(lines.windows(2).all(|w| w[0].0 < w[1].0), "sorted, one line per product");
                let mut wanted: BTreeMap<i64, i64> = BTreeMap::new();
                for &(p, q) in &requested {
                    *wanted.entry(p).or_default() += i64::from(q);
                }
                for &(p, q) in lines {
                    prop_assert!(p > 0 && (1..=MAX_QUANTITY).contains(&q));
                    prop_assert_eq!(wanted.get(&p).copied(), Some(i64::from(q)), "merged quantities add up");
                }
                prop_assert_eq!(lines.len(), wanted.len());
            }
            Err(e) => prop_assert!(e.field == "items" || e.field.starts_with("items["), "{e:?}"),
        }
    }
}
