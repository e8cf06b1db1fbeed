//! Property tests of what decodes input from outside: the event decoder
//! never panics on arbitrary bytes or on arbitrary JSON under a known event
//! type, and valid events round-trip; money parsing never panics and
//! round-trips every amount it prints.

use proptest::prelude::*;
use serde_json::{Map, Value};
use shared::kafka::events::{Decoded, EVENT_TYPES, Event, EventPayload, decode};
use shared::money::Money;
use shared::testing::inputs::json;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_decoder_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn the_decoder_never_panics_on_json_of_a_known_type(
        event_type in prop::sample::select(EVENT_TYPES),
        fields in prop::collection::btree_map("[a-z_]{1,16}", json(), 0..10),
        order_id in any::<Option<i64>>(),
    ) {
        let mut object: Map<String, Value> = fields.into_iter().collect();
        object.insert("event_type".into(), Value::from(event_type));
        if let Some(id) = order_id {
            object.insert("order_id".into(), Value::from(id));
        }
        let bytes = serde_json::to_vec(&Value::Object(object)).unwrap();
        match decode(&bytes) {
            Decoded::Unknown(t) => prop_assert!(false, "known type {t} reported unknown"),
            Decoded::Event(_) | Decoded::Malformed(_) => {}
        }
    }

    #[test]
    fn valid_events_round_trip(order_id in 1..i64::MAX, user_id in 1..i64::MAX, cents in 0i64..1_000_000_000_000) {
        let (order_id, user_id) = (shared::testing::order(order_id), shared::testing::user(user_id));
        let event = Event::new(order_id, user_id, EventPayload::OrderConfirmed { total_price: Money(cents) });
        let bytes = serde_json::to_vec(&event).unwrap();
        match decode(&bytes) {
            Decoded::Event(back) => {
                prop_assert_eq!(back.event_id, event.event_id);
                prop_assert_eq!(back.order_id, order_id);
                prop_assert_eq!(back.user_id, user_id);
                let EventPayload::OrderConfirmed { total_price } = back.payload else {
                    return Err(TestCaseError::fail("another payload"));
                };
                prop_assert_eq!(total_price, Money(cents));
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn money_parsing_never_panics(text in ".{0,40}") {
        let _ = Money::parse_decimal(&text);
        let _ = serde_json::from_str::<Money>(&text);
    }

    #[test]
    fn every_printed_amount_parses_back(cents in -1_000_000_000_000i64..1_000_000_000_000) {
        let printed = Money(cents).to_string();
        prop_assert_eq!(Money::parse_decimal(&printed), Some(Money(cents)), "{}", printed);
    }
}
