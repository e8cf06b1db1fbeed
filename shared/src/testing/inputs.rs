//! proptest strategies for what clients send, shared by every service's
//! property tests of its request validators.
//!
//! Random bytes alone almost never get past the JSON parser, so they would
//! test the parser and not the validators. [`body`] therefore mostly builds
//! JSON objects over a body's own field names, with values near the limits
//! validators check (blank, long and NUL-carrying strings, 0, -1, the
//! integer bounds, decimals with three places), and only sometimes any JSON,
//! a truncated object or any bytes.

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};

/// Arbitrary JSON, a few levels deep.
pub fn json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
    .boxed()
}

/// A string a validator has to think about: any text, blank, at and around
/// length limits, with NUL or control characters, or shaped like an email.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => ".{0,40}",
        2 => "[a-zA-Z0-9 ]{1,12}",
        1 => "[ \t\n]{0,4}",
        1 => "[a-z]{0,3}\u{0}[a-z]{0,3}",
        1 => "é{95,105}",
        1 => "a{120,260}",
        2 => "[ A-Za-z0-9._+-]{0,10}@[A-Za-z0-9.-]{0,10}",
    ]
    .boxed()
}

/// A number a validator has to think about: small, zero, negative, at the
/// integer bounds, with cents or with one decimal place too many.
pub fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => (-2i64..=2).prop_map(Value::from),
        3 => (-3i64..200).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => prop::sample::select(vec![
            i64::from(i32::MAX), i64::from(i32::MAX) + 1, i64::from(i32::MIN), i64::from(i32::MIN) - 1,
            i64::MAX, i64::MIN, 0, -1, 1,
        ]).prop_map(Value::from),
        1 => (-100_000i64..100_000_000).prop_map(|c| Value::from(c as f64 / 100.0)),
        1 => (0i64..1_000_000).prop_map(|m| Value::from(m as f64 / 1000.0)),
        1 => any::<f64>().prop_map(Value::from),
    ]
    .boxed()
}

/// A value for a field: mostly text or a number, sometimes anything.
pub fn value() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => text().prop_map(Value::String),
        3 => number(),
        1 => json(),
    ]
    .boxed()
}

/// An email-shaped string: mostly a valid address (in any case, perhaps
/// with spaces around it), sometimes one that is nearly valid.
pub fn email() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[ ]{0,1}[A-Za-z0-9._+-]{1,10}@[A-Za-z0-9-]{1,10}\\.[A-Za-z]{2,5}[ ]{0,1}",
        1 => "[A-Za-z0-9.@ -]{0,6}@[A-Za-z0-9.@-]{0,8}",
    ]
    .boxed()
}

/// A JSON object over `fields`, each with the strategy of its values: each
/// field present or not, now and then with a field the body does not know.
pub fn object(fields: &[(&'static str, BoxedStrategy<Value>)]) -> BoxedStrategy<Value> {
    let names: Vec<&'static str> = fields.iter().map(|(name, _)| *name).collect();
    let present: Vec<_> = fields
        .iter()
        .map(|(_, value)| prop::option::weighted(0.85, value.clone()))
        .collect();
    let stranger = prop::option::weighted(0.05, ("[a-z_]{1,12}", json()));
    (present, stranger)
        .prop_map(move |(values, stranger)| {
            let mut map: Map<String, Value> = names
                .iter()
                .zip(values)
                .filter_map(|(name, v)| v.map(|v| ((*name).to_string(), v)))
                .collect();
            if let Some((name, v)) = stranger {
                map.entry(name).or_insert(v);
            }
            Value::Object(map)
        })
        .boxed()
}

/// A request body: mostly `object` as JSON, sometimes that JSON cut short,
/// any JSON, or any bytes.
pub fn body(object: BoxedStrategy<Value>) -> BoxedStrategy<Vec<u8>> {
    let encoded = object.prop_map(|v| v.to_string().into_bytes());
    prop_oneof![
        6 => encoded.clone(),
        1 => (encoded, any::<prop::sample::Index>()).prop_map(|(bytes, cut)| {
            let at = cut.index(bytes.len().max(1));
            bytes[..at].to_vec()
        }),
        1 => json().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
    .boxed()
}

/// Checks that a rejection of client input is what docs/contracts.md ("HTTP conventions") asks for:
/// a 400 with a snake_case code and a message, naming the field when it has one.
pub fn check_bad_request(e: &ApiError) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.status.as_u16(), 400, "{}", e);
    let code = e.code.as_str();
    prop_assert!(
        !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "code {:?}",
        code
    );
    prop_assert!(!e.message.is_empty());
    if e.code == ErrorCode::InvalidField {
        let field = e.extra.get("field").and_then(Value::as_str);
        prop_assert!(field.is_some_and(|f| !f.is_empty()), "{:?}", e.extra);
    }
    Ok(())
}
