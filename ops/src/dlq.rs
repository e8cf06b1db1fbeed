//! The dead-letter topic: read every letter, select some, send them back.

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};
use shared::kafka::KafkaConfig;
use shared::kafka::consumer::dlq_headers;

use crate::events::Record;

/// How long one broker request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One message of the dead-letter topic: a [`Record`] whose dead-letter
/// headers say where it came from and why.
#[derive(Debug, Clone)]
pub struct DeadLetter(pub Record);

impl std::ops::Deref for DeadLetter {
    type Target = Record;
    fn deref(&self) -> &Record {
        &self.0
    }
}

impl DeadLetter {
    /// Why it was dead-lettered.
    pub fn error(&self) -> String {
        self.header(dlq_headers::ERROR).unwrap_or_default()
    }

    /// The topic it came from.
    pub fn original_topic(&self) -> Option<String> {
        self.header(dlq_headers::ORIGINAL_TOPIC)
    }

    /// `topic/partition@offset` it came from.
    pub fn origin(&self) -> String {
        format!(
            "{}/{}@{}",
            self.original_topic().unwrap_or_else(|| "?".into()),
            self.header(dlq_headers::ORIGINAL_PARTITION)
                .unwrap_or_else(|| "?".into()),
            self.header(dlq_headers::ORIGINAL_OFFSET)
                .unwrap_or_else(|| "?".into()),
        )
    }

    /// `name` from the event's header of that name, else its envelope's field.
    fn event_field(&self, name: &str) -> Option<String> {
        self.header(name)
            .or_else(|| self.payload_json().get(name)?.as_str().map(str::to_string))
    }

    /// The event's type, if it has one.
    pub fn event_type(&self) -> Option<String> {
        self.event_field("event_type")
    }

    /// The event's id, if it has one.
    pub fn event_id(&self) -> Option<String> {
        self.event_field("event_id")
    }

    /// The headers the message had before it was dead-lettered.
    pub fn original_headers(&self) -> impl Iterator<Item = &(String, Option<Vec<u8>>)> {
        let mut added: Vec<&str> = dlq_headers::ALL.to_vec();
        self.headers.iter().filter(move |(k, _)| {
            // The dead-letter headers come first; a later header of the
            // same name is the original message's own.
            match added.iter().position(|a| a == k) {
                Some(i) => {
                    added.remove(i);
                    false
                }
                None => true,
            }
        })
    }

    /// One line for `list`.
    pub fn line(&self) -> String {
        format!(
            "{:>6}  {:<28}  {:<16}  order {:<8}  {:<36}  {}",
            self.offset,
            self.origin(),
            self.event_type().unwrap_or_else(|| "-".into()),
            self.key_text().unwrap_or_else(|| "-".into()),
            self.event_id().unwrap_or_else(|| "-".into()),
            self.error()
        )
    }

    /// Everything about it, for `show` and `list --json`.
    pub fn to_json(&self) -> Value {
        json!({
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "timestamp_ms": self.timestamp,
            "origin": self.origin(),
            "error": self.error(),
            "event_type": self.event_type(),
            "event_id": self.event_id(),
            "key": self.key_text(),
            "headers": self.headers_json(),
            "payload": self.payload_json(),
        })
    }
}

/// Which letters to replay. Empty selects nothing: `all` must be said.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub all: bool,
    pub offsets: Vec<i64>,
    pub event_type: Option<String>,
    pub order: Option<String>,
    pub error_contains: Option<String>,
}

impl Selection {
    fn is_empty(&self) -> bool {
        !self.all
            && self.offsets.is_empty()
            && self.event_type.is_none()
            && self.order.is_none()
            && self.error_contains.is_none()
    }

    /// Whether `letter` is selected (every given criterion must hold).
    pub fn selects(&self, letter: &DeadLetter) -> bool {
        (self.offsets.is_empty() || self.offsets.contains(&letter.offset))
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| letter.event_type().as_ref() == Some(t))
            && self
                .order
                .as_ref()
                .is_none_or(|o| letter.key_text().as_ref() == Some(o))
            && self
                .error_contains
                .as_ref()
                .is_none_or(|e| letter.error().contains(e.as_str()))
    }
}

/// Every message on `topic` (the dead-letter topic) at the time of the call.
pub fn read_all(brokers: &str, topic: &str) -> anyhow::Result<Vec<DeadLetter>> {
    Ok(crate::events::read_all(brokers, topic)?
        .into_iter()
        .map(DeadLetter)
        .collect())
}

/// Sends the `selected` letters back to their original topic (or
/// `fallback_topic` if a letter does not say), each with its key, payload
/// and original headers, plus `replayed_from` naming the letter. Returns
/// how many were sent.
pub async fn replay(
    brokers: &str,
    letters: &[DeadLetter],
    selected: &Selection,
    fallback_topic: &str,
) -> anyhow::Result<usize> {
    if selected.is_empty() {
        bail!(
            "say which letters to replay (--offset, --event-type, --order, --error-contains) or --all"
        );
    }
    // The services' own producer settings (idempotent, acks=all).
    let producer = KafkaConfig::at(brokers)
        .producer()
        .map_err(anyhow::Error::msg)?;
    let mut sent = 0;
    for letter in letters.iter().filter(|l| selected.selects(l)) {
        let topic = letter
            .original_topic()
            .unwrap_or_else(|| fallback_topic.to_string());
        let from = format!("{}@{}", letter.partition, letter.offset);
        let mut headers = OwnedHeaders::new();
        for (key, value) in letter.original_headers() {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        headers = headers.insert(Header {
            key: "replayed_from",
            value: Some(from.as_str()),
        });
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        if let Some(payload) = &letter.payload {
            record = record.payload(payload);
        }
        producer
            .send(record, TIMEOUT)
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("could not replay letter {from} onto {topic}"))?;
        sent += 1;
    }
    Ok(sent)
}
