//! Holds what is on a topic to the event contract: every message read back
//! is checked against the AsyncAPI document (docs/asyncapi.yaml, which
//! `shared::kafka::contract`'s drift test holds equal to what the types
//! generate): its payload against its type's JSON Schema, its headers
//! against the headers' schema, its key against its order.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

use crate::kafka::KafkaConfig;
use crate::kafka::events::{Decoded, decode};

/// One message as it was on the topic.
#[derive(Debug, Clone)]
pub struct Raw {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

/// Every message on `kafka`'s topic now, in partition and offset order.
pub async fn read_topic(kafka: &KafkaConfig) -> Vec<Raw> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(10);
        let consumer: BaseConsumer = kafka
            .client()
            .set("group.id", "contract-check")
            .set("enable.auto.commit", "false")
            .create()
            .expect("a test client");
        let metadata = consumer
            .fetch_metadata(Some(&kafka.topic), timeout)
            .expect("the topic's metadata");
        let mut assignment = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in metadata.topics()[0].partitions() {
            let (low, high) = consumer
                .fetch_watermarks(&kafka.topic, p.id(), timeout)
                .expect("the partition's offsets");
            if high > low {
                assignment
                    .add_partition_offset(&kafka.topic, p.id(), Offset::Offset(low))
                    .expect("an offset to start at");
                ends.insert(p.id(), high);
            }
        }
        let mut messages = Vec::new();
        if ends.is_empty() {
            return messages;
        }
        consumer.assign(&assignment).expect("the assignment");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ends.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "reading the topic took over 60 s"
            );
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message.expect("a message");
            if ends
                .get(&message.partition())
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                ends.remove(&message.partition());
            }
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            messages.push(Raw {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(text),
                headers: message
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_string(), h.value.map(text).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default(),
                payload: message.payload().unwrap_or_default().to_vec(),
            });
        }
        messages.sort_by_key(|m| (m.partition, m.offset));
        messages
    })
    .await
    .expect("the reader")
}

/// A validator of the document's schema `name`, resolving its `$ref`s
/// against the whole document.
fn validator(document: &Value, name: &str) -> jsonschema::Validator {
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "components": document["components"],
        "allOf": [{"$ref": format!("#/components/schemas/{name}")}],
    });
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("the document's schema {name} compiles: {e}"))
}

/// What [`check_topic`] counts messages that are no event at all under
/// (a poison message a test put there): no JSON object with an `event_type`.
pub const NOT_AN_EVENT: &str = "(not an event)";

/// Why `message` breaks the contract `document` states, if it does. A
/// message that is not an event at all is [`NOT_AN_EVENT`], not a breach:
/// consumers dead-letter it.
pub fn violation(document: &Value, message: &Raw) -> Option<String> {
    let at = format!("{}@{}", message.partition, message.offset);
    let value = serde_json::from_slice::<Value>(&message.payload).ok()?;
    let event_type = value["event_type"].as_str()?;
    let schemas = &document["components"]["schemas"];
    let name = format!("{event_type}_payload");
    if schemas.get(&name).is_none() {
        return Some(format!("{at}: the document has no message {event_type}"));
    }
    let errors: Vec<String> = validator(document, &name)
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if !errors.is_empty() {
        return Some(format!(
            "{at}: {event_type} breaks its schema: {errors:?} in {value}"
        ));
    }
    let headers = serde_json::to_value(&message.headers).unwrap_or_default();
    let errors: Vec<String> = validator(document, "headers")
        .iter_errors(&headers)
        .map(|e| e.to_string())
        .collect();
    if !errors.is_empty() {
        return Some(format!(
            "{at}: headers break their schema: {errors:?} in {headers}"
        ));
    }
    if message.headers.get("event_type").map(String::as_str) != Some(event_type)
        || message.headers.get("event_id").map(String::as_str) != value["event_id"].as_str()
    {
        return Some(format!(
            "{at}: headers {headers} do not match the payload {value}"
        ));
    }
    if message.key.as_deref() != Some(value["order_id"].to_string().as_str()) {
        return Some(format!(
            "{at}: key {:?} is not the order of {value}",
            message.key
        ));
    }
    if !matches!(decode(&message.payload), Decoded::Event(_)) {
        return Some(format!(
            "{at}: valid by the document, yet the consumers cannot decode it"
        ));
    }
    None
}

/// Checks every message on `kafka`'s topic against the contract; returns
/// how many events of each type it found (and of [`NOT_AN_EVENT`]). Panics
/// naming the first that breaks it.
pub async fn check_topic(kafka: &KafkaConfig) -> BTreeMap<String, usize> {
    let document = crate::kafka::contract::asyncapi(&kafka.topic);
    let mut seen = BTreeMap::new();
    for message in read_topic(kafka).await {
        if let Some(why) = violation(&document, &message) {
            panic!("an event off the saga's topic breaks docs/asyncapi.yaml: {why}");
        }
        let value: Value = serde_json::from_slice(&message.payload).unwrap_or_default();
        let event_type = value["event_type"].as_str().unwrap_or(NOT_AN_EVENT);
        *seen.entry(event_type.to_string()).or_insert(0) += 1;
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::events::{Event, EventPayload};
    use crate::money::Money;

    fn message(payload: Value, key: &str, event_type: &str, event_id: &str) -> Raw {
        let payload = serde_json::to_vec(&payload).unwrap();
        let signer = crate::testing::event_signer(crate::kafka::events::Producer::OrderService);
        let signature = signer.sign(&payload);
        Raw {
            partition: 0,
            offset: 7,
            key: Some(key.into()),
            headers: [
                ("event_type", event_type),
                ("event_id", event_id),
                ("signature_key_id", signer.key_id().as_str()),
                ("signature", signature.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            payload,
        }
    }

    /// The check passes what the saga sends and fails each way a message
    /// can break the contract.
    #[test]
    fn a_message_breaking_the_contract_is_caught() {
        let document = crate::kafka::contract::asyncapi("order_events");
        let event = Event::new(
            crate::testing::order(9),
            crate::testing::user(4),
            EventPayload::OrderConfirmed {
                total_price: Money(1250),
            },
        );
        let good = serde_json::to_value(&event).unwrap();
        let id = event.event_id.to_string();
        assert_eq!(
            violation(
                &document,
                &message(good.clone(), "9", "order_confirmed", &id)
            ),
            None
        );
        let mut as_text = good.clone();
        as_text["total_price"] = json!("12.50");
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("occurred_at");
        let mut zero = good.clone();
        zero["user_id"] = json!(0);
        for (why, bad) in [
            (
                "money as text",
                message(as_text, "9", "order_confirmed", &id),
            ),
            (
                "no occurred_at",
                message(missing, "9", "order_confirmed", &id),
            ),
            ("user 0", message(zero, "9", "order_confirmed", &id)),
            (
                "another key",
                message(good.clone(), "10", "order_confirmed", &id),
            ),
            (
                "another header type",
                message(good.clone(), "9", "order_created", &id),
            ),
            (
                "a header id not a uuid",
                message(good.clone(), "9", "order_confirmed", "x"),
            ),
        ] {
            assert!(violation(&document, &bad).is_some(), "{why} passed");
        }
    }
}
