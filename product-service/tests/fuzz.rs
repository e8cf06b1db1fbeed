//! Property tests of the request validators: whatever bytes a client sends as
//! a new product, a patch or an `If-Match`, parsing and validation never
//! panic, every rejection is a 400 naming what is wrong, and what is
//! accepted keeps the catalogue's rules.

use product_service::model::{MAX_NAME_CHARS, NewProduct, ProductPatch, etag, parse_if_match};
use proptest::prelude::*;
use shared::error::{ApiError, parse_json};
use shared::money::MAX_PRICE;
const MAX_CENTS: i64 = MAX_PRICE.0;
use shared::testing::inputs::{body, check_bad_request, object, text, value};

fn valid_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= MAX_NAME_CHARS && !name.contains('\0')
}

fn new_product(bytes: &[u8]) -> Result<NewProduct, ApiError> {
    let new: NewProduct = parse_json(bytes)?;
    new.validate()?;
    Ok(new)
}

fn patch(bytes: &[u8]) -> Result<ProductPatch, ApiError> {
    let patch: ProductPatch = parse_json(bytes)?;
    patch.validate()?;
    Ok(patch)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn new_products_are_accepted_only_within_the_rules(
        bytes in body(object(&[("name", value()), ("price", value()), ("stock", value())]))
    ) {
        match new_product(&bytes) {
            Ok(p) => {
                prop_assert!(valid_name(&p.name), "{:?}", p.name);
                prop_assert!((1..=MAX_CENTS).contains(&p.price.cents()), "{}", p.price);
                prop_assert!(p.stock >= 0);
            }
            Err(e) => check_bad_request(&e)?,
        }
    }

    #[test]
    fn patches_are_accepted_only_within_the_rules(
        bytes in body(object(&[
            ("name", value()), ("price", value()), ("stock", value()), ("version", value()),
        ]))
    ) {
        match patch(&bytes) {
            Ok(p) => {
                prop_assert!(p.name.is_some() || p.price.is_some() || p.stock.is_some());
                prop_assert!(p.name.as_deref().is_none_or(valid_name), "{:?}", p.name);
                prop_assert!(p.price.is_none_or(|m| (1..=MAX_CENTS).contains(&m.cents())));
                prop_assert!(p.stock.is_none_or(|s| s >= 0));
                prop_assert!(p.version.is_none_or(|v| v >= 1));
            }
            Err(e) => check_bad_request(&e)?,
        }
    }

    #[test]
    fn if_match_never_panics_and_reads_back_our_etags(raw in text(), version in any::<i64>()) {
        if let Err(e) = parse_if_match(&raw) {
            check_bad_request(&e)?;
        }
        prop_assert_eq!(parse_if_match(&etag(version)).ok(), Some(Some(version)));
    }
}
