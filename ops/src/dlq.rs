//! The dead-letter topic: read every letter, select some, send them back.

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use shared::kafka::KafkaConfig;
use shared::kafka::consumer::dlq_headers;

/// How long one broker request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One message of the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub partition: i32,
    /// Its offset in the dead-letter topic: how an operator names it.
    pub offset: i64,
    /// When it was dead-lettered (ms since the epoch), if the broker says.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Every header, the dead-letter ones first.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

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

    fn payload_json(&self) -> Option<Value> {
        serde_json::from_slice(self.payload.as_deref()?).ok()
    }

    /// `name` from the event's header of that name, else its envelope's field.
    fn event_field(&self, name: &str) -> Option<String> {
        self.header(name)
            .or_else(|| self.payload_json()?.get(name)?.as_str().map(str::to_string))
    }

    /// The event's type, if it has one.
    pub fn event_type(&self) -> Option<String> {
        self.event_field("event_type")
    }

    /// The event's id, if it has one.
    pub fn event_id(&self) -> Option<String> {
        self.event_field("event_id")
    }

    /// The message key: the order id.
    pub fn key_text(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
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
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_deref()
                    .map(|v| Value::String(String::from_utf8_lossy(v).into_owned()))
                    .unwrap_or(Value::Null);
                (k.clone(), v)
            })
            .collect();
        let payload = self.payload_json().unwrap_or_else(|| {
            self.payload
                .as_deref()
                .map(|p| Value::String(String::from_utf8_lossy(p).into_owned()))
                .unwrap_or(Value::Null)
        });
        json!({
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "timestamp_ms": self.timestamp,
            "origin": self.origin(),
            "error": self.error(),
            "event_type": self.event_type(),
            "event_id": self.event_id(),
            "key": self.key_text(),
            "headers": headers,
            "payload": payload,
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
    let consumer: BaseConsumer = KafkaConfig::at(brokers)
        .client()
        .set("group.id", "minishop-ops")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .with_context(|| format!("cannot create a Kafka client for {brokers}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("cannot reach the broker at {brokers}"))?;
    let Some(described) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("the broker does not know topic {topic}");
    };
    if described.error().is_some() || described.partitions().is_empty() {
        bail!("topic {topic} does not exist on {brokers}");
    }
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0i64;
    let mut ends = std::collections::HashMap::new();
    for p in described.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}/{}", p.id()))?;
        if high > low {
            assignment.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            remaining += high - low;
            ends.insert(p.id(), high);
        }
    }
    let mut letters = Vec::new();
    if remaining == 0 {
        return Ok(letters);
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut done = std::collections::HashSet::new();
    while done.len() < ends.len() {
        if std::time::Instant::now() > deadline {
            bail!(
                "reading {topic} took over 60 s; {} letters read",
                letters.len()
            );
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.with_context(|| format!("reading {topic} failed"))?;
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        if message.offset() + 1 >= ends[&message.partition()] {
            done.insert(message.partition());
        }
        letters.push(DeadLetter {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
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
