//! What signing events costs (docs/security.md, "Event signatures"): the
//! CPU of one signature and one verification of a typical `order_created`,
//! and from them the cost per paid order (3 events, each signed once by its
//! relay and checked by the 3 consumer groups).
//!
//! `cargo run --release -p shared --example sign_bound [iterations]`

use std::time::Instant;

use shared::kafka::events::{Event, EventItem, EventPayload, Producer};
use shared::kafka::signing::{EventSigner, Keyring};
use shared::money::{Currency, Money};

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let signer = EventSigner::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    let keyring = match Keyring::parse(&signer.keyring_line(Producer::OrderService)) {
        Ok(keyring) => keyring,
        Err(e) => panic!("the bench's keyring: {e}"),
    };
    let (Ok(order), Ok(user), Ok(product)) = (
        shared::id::OrderId::new(42),
        shared::id::UserId::new(7),
        shared::id::ProductId::new(3),
    ) else {
        panic!("the bench's ids are positive");
    };
    let event = Event::new(
        order,
        user,
        EventPayload::OrderCreated {
            items: vec![EventItem {
                product_id: product,
                quantity: 2,
                unit_price: Money(1250),
            }],
            total_price: Money(2500),
            currency: Currency::Usd,
            customer_email: Some("ann@example.com".into()),
        },
    );
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    let started = Instant::now();
    let mut signature = String::new();
    for _ in 0..iterations {
        signature = signer.sign(&payload);
    }
    let sign_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    let key_id = signer.key_id().as_str().as_bytes();
    let started = Instant::now();
    for _ in 0..iterations {
        let checked = keyring.verify(&event, &payload, Some(key_id), Some(signature.as_bytes()));
        assert!(checked.is_ok(), "{checked:?}");
    }
    let verify_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    let per_order_ms = 3.0 * (sign_us + 3.0 * verify_us) / 1000.0;
    println!(
        "payload {} bytes; sign {sign_us:.1} us, verify {verify_us:.1} us; \
         per paid order (3 events, 3 groups) {per_order_ms:.3} ms of CPU, against the 5 ms goal",
        payload.len()
    );
}
