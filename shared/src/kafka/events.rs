//! The saga's events (docs/contracts.md, "Events"): one JSON envelope per Kafka message,
//! readable as it is in Kafdrop, with one definition for producers and
//! consumers.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::id::{OrderId, ProductId, UserId};
use crate::money::{Currency, Money};

// Nothing a producer writes as free text reaches a customer: every field
// that notification-service puts into a message is a number, an id, or one
// of these enums, whose texts are this version's own.

crate::text_enum! {
    /// Why an order was rejected, failed or cancelled (its `reason`).
    pub enum OrderReason {
        /// Rejected: a product had fewer units than ordered.
        InsufficientStock = "insufficient_stock",
        /// Rejected: a product does not exist.
        ProductNotFound = "product_not_found",
        /// Rejected: product-service could not be reached.
        StockServiceUnavailable = "stock_service_unavailable",
        /// Rejected: product-service refused the reservation.
        StockRefused = "stock_refused",
        /// Rejected: the lines come to more than the largest order total.
        TotalTooLarge = "total_too_large",
        /// Rejected: a step of its saga failed for good (the database
        /// refused what it was to record); its units were released.
        StepFailed = "step_failed",
        /// Failed: the payment was declined.
        PaymentFailed = "payment_failed",
        /// Cancelled by its customer (or an admin).
        UserCancelled = "user_cancelled",
        /// Cancelled: no payment result within `PAYMENT_TIMEOUT_SECS`.
        Timeout = "timeout",
    }
}

impl OrderReason {
    /// How a customer reads it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::InsufficientStock => "not enough stock",
            Self::ProductNotFound => "a product does not exist",
            Self::StockServiceUnavailable => "the stock service was unavailable",
            Self::StockRefused => "the stock service refused it",
            Self::TotalTooLarge => "its total is over the largest order total",
            Self::StepFailed => "it could not be processed",
            Self::PaymentFailed => "the payment was declined",
            Self::UserCancelled => "cancelled at your request",
            Self::Timeout => "no payment arrived in time",
        }
    }
}

crate::text_enum! {
    /// Why the payment gateway (or payment-service) declined a charge.
    pub enum DeclineReason {
        /// The card was declined.
        CardDeclined = "card_declined",
        /// The amount is over what the gateway charges (`PAYMENT_MAX_AMOUNT`).
        OverLimit = "over_limit",
        /// The order had been cancelled before its charge.
        OrderCancelled = "order_cancelled",
    }
}

impl DeclineReason {
    /// How a customer reads it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::CardDeclined => "the card was declined",
            Self::OverLimit => "the amount is over the payment limit",
            Self::OrderCancelled => "the order had already been cancelled",
        }
    }
}

crate::text_enum! {
    /// Why a charge was refunded.
    pub enum RefundReason {
        /// The order was cancelled (no payment in time, or by its customer)
        /// before the charge's result reached it.
        OrderCancelled = "order_cancelled",
    }
}

impl RefundReason {
    /// How a customer reads it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::OrderCancelled => "the order had already been cancelled",
        }
    }
}

/// The gateway's reference of a charge: 1 to 64 ASCII letters, digits,
/// `-` and `_`, so that it can be shown to a customer as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(description = "1 to 64 ASCII letters, digits, - and _.")]
pub struct TransactionId(#[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))] String);

impl TransactionId {
    /// `text` if it is a valid reference.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TransactionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TransactionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom("a transaction id is 1 to 64 of A-Z, a-z, 0-9, - and _")
        })
    }
}

/// A line of an order as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventItem {
    pub product_id: ProductId,
    /// Units of the product, 1 or more.
    pub quantity: i32,
    /// The price product-service reserved the units at.
    pub unit_price: Money,
}

/// What happened, with the fields of its type (`event_type` is the tag).
/// Each variant's doc is its message's description in docs/asyncapi.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum EventPayload {
    /// The order's stock is held at product-service: payment may charge it.
    OrderCreated {
        /// Its lines at their reserved prices.
        items: Vec<EventItem>,
        /// The sum of the lines: what payment charges.
        total_price: Money,
        currency: Currency,
        /// Where the customer wants mail (their token's email); absent in
        /// events from older producers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer_email: Option<String>,
    },
    /// The order's total was charged.
    PaymentSuccess {
        /// payment-service's id of the payment.
        payment_id: i64,
        amount: Money,
        /// The gateway's reference of the charge.
        transaction_id: TransactionId,
    },
    /// The charge was declined: the order fails and its stock is released.
    PaymentFailed {
        payment_id: i64,
        amount: Money,
        reason: DeclineReason,
    },
    /// The order is paid and its stock committed.
    OrderConfirmed { total_price: Money },
    /// The order is over without a sale (declined, cancelled by its owner,
    /// or no payment in time); payment refunds what it charged.
    OrderCancelled { reason: OrderReason },
    /// A charge for an order cancelled meanwhile was refunded.
    PaymentRefunded {
        payment_id: i64,
        amount: Money,
        reason: RefundReason,
    },
}

crate::text_enum! {
    /// The services that produce events. Each event type has exactly one
    /// ([`producer_of`]), and consumers take it from no other
    /// ([`super::signing`]).
    pub enum Producer {
        OrderService = "order-service",
        PaymentService = "payment-service",
    }
}

/// Every `event_type` this version knows, with the one service that produces it.
pub const EVENT_PRODUCERS: &[(&str, Producer)] = &[
    ("order_created", Producer::OrderService),
    ("payment_success", Producer::PaymentService),
    ("payment_failed", Producer::PaymentService),
    ("order_confirmed", Producer::OrderService),
    ("order_cancelled", Producer::OrderService),
    ("payment_refunded", Producer::PaymentService),
];

/// Every `event_type` this version knows.
pub const EVENT_TYPES: &[&str] = &{
    let mut types = [""; EVENT_PRODUCERS.len()];
    let mut i = 0;
    while i < types.len() {
        types[i] = EVENT_PRODUCERS[i].0;
        i += 1;
    }
    types
};

/// The service that produces events of `event_type`, if this version knows the type.
pub fn producer_of(event_type: &str) -> Option<Producer> {
    EVENT_PRODUCERS
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, p)| *p)
}

impl EventPayload {
    /// The `event_type` string.
    pub fn event_type(&self) -> &'static str {
        match self {
            EventPayload::OrderCreated { .. } => "order_created",
            EventPayload::PaymentSuccess { .. } => "payment_success",
            EventPayload::PaymentFailed { .. } => "payment_failed",
            EventPayload::OrderConfirmed { .. } => "order_confirmed",
            EventPayload::OrderCancelled { .. } => "order_cancelled",
            EventPayload::PaymentRefunded { .. } => "payment_refunded",
        }
    }
}

/// The envelope: ids and time, then the type's fields, flat in one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Unique per event: consumers apply an event once by it (their inbox).
    pub event_id: Uuid,
    /// When the change it announces was made.
    pub occurred_at: DateTime<Utc>,
    /// The order it is about; also the message key.
    pub order_id: OrderId,
    /// The order's owner.
    pub user_id: UserId,
    #[serde(flatten)]
    pub payload: EventPayload,
}

impl Event {
    /// A new event with a fresh id, happening now.
    pub fn new(order_id: OrderId, user_id: UserId, payload: EventPayload) -> Self {
        Self {
            event_id: Uuid::new_v4(),
            occurred_at: Utc::now(),
            order_id,
            user_id,
            payload,
        }
    }

    /// The Kafka key: all events of one order go to one partition, in order.
    pub fn key(&self) -> String {
        self.order_id.to_string()
    }
}

/// What a consumer makes of a message's bytes.
#[derive(Debug)]
pub enum Decoded {
    /// A known event.
    Event(Box<Event>),
    /// Well-formed, but an `event_type` this version does not know: skipped.
    Unknown(String),
    /// Not an event at all: goes to the dead-letter topic.
    Malformed(String),
}

/// Decodes a message payload; never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Decoded {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return Decoded::Malformed(format!("not JSON: {e}")),
    };
    let event_type = match value.get("event_type").and_then(|t| t.as_str()) {
        Some(t) => t.to_string(),
        None => return Decoded::Malformed("no event_type".into()),
    };
    if !EVENT_TYPES.contains(&event_type.as_str()) {
        return Decoded::Unknown(event_type);
    }
    match serde_json::from_value::<Event>(value) {
        Ok(event) => Decoded::Event(Box::new(event)),
        Err(e) => Decoded::Malformed(format!("bad {event_type}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_flat_json_with_exact_money() {
        let event = Event::new(
            OrderId::new(42).unwrap(),
            UserId::new(7).unwrap(),
            EventPayload::OrderCreated {
                items: vec![EventItem {
                    product_id: ProductId::new(1).unwrap(),
                    quantity: 2,
                    unit_price: Money(1000),
                }],
                total_price: Money(2000),
                currency: Currency::Usd,
                customer_email: Some("ann@example.com".into()),
            },
        );
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""event_type":"order_created""#), "{json}");
        assert!(json.contains(r#""total_price":20.00"#), "{json}");
        assert!(json.contains(r#""order_id":42"#), "{json}");
        match decode(json.as_bytes()) {
            Decoded::Event(decoded) => assert_eq!(*decoded, event),
            other => panic!("{other:?}"),
        }
    }

    /// A producer of a newer version may add fields: this version reads
    /// the event as it knows it (docs/contracts.md, "Evolving the events").
    #[test]
    fn a_consumer_ignores_fields_it_does_not_know() {
        let event = Event::new(
            OrderId::new(5).unwrap(),
            UserId::new(2).unwrap(),
            EventPayload::OrderCancelled {
                reason: OrderReason::Timeout,
            },
        );
        let mut value = serde_json::to_value(&event).unwrap();
        value["schema_version"] = serde_json::json!(2);
        value["cancelled_by"] = serde_json::json!({"kind": "operator", "id": 9});
        let bytes = serde_json::to_vec(&value).unwrap();
        match decode(&bytes) {
            Decoded::Event(decoded) => assert_eq!(*decoded, event),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_types_are_skipped_and_garbage_is_malformed() {
        let unknown = br#"{"event_type":"order_shipped","order_id":1}"#;
        assert!(matches!(decode(unknown), Decoded::Unknown(t) if t == "order_shipped"));
        assert!(matches!(decode(b"\xff\x00"), Decoded::Malformed(_)));
        assert!(matches!(decode(b"{}"), Decoded::Malformed(_)));
        let missing = br#"{"event_type":"order_cancelled","order_id":1}"#;
        assert!(matches!(decode(missing), Decoded::Malformed(_)));
        let not_an_id = br#"{"event_id":"6f1d0a0e-8f5e-4d7e-9a43-2b0c8d1e0f11","occurred_at":"2026-01-01T00:00:00Z","event_type":"order_cancelled","order_id":0,"user_id":1,"reason":"x"}"#;
        assert!(
            matches!(decode(not_an_id), Decoded::Malformed(m) if m.contains("order_id must be a positive integer")),
            "an id that is not positive is refused at the edge"
        );
    }
}
