//! The saga's topic at the terminal, as kcat would show it for this
//! system: `tail` prints its events, live or from the start, filtered by
//! order or type, one line each or as JSON; `lag` shows how far each
//! consumer group is behind, per partition.
//!
//! Both read by assigning partitions directly and commit nothing, so
//! they never join or disturb a consumer group.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};
use shared::kafka::KafkaConfig;
use shared::kafka::events::{Decoded, EventPayload, decode};

/// How long one broker request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The consumer groups of the saga, before `KAFKA_GROUP_PREFIX`.
pub const SAGA_GROUPS: &[&str] = &["order-service", "payment-service", "notification-service"];

/// One message of a topic, as the broker has it (bytes kept as they are,
/// so a dead letter can be replayed exactly).
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// The broker's or producer's time (ms since the epoch), if it says.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Every header, in the message's order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The first header called `key`, as text.
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The message key (the order id), as text.
    pub fn key_text(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// The headers as a JSON object of text values.
    pub fn headers_json(&self) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let v = v.as_deref().map_or(Value::Null, |v| {
                    Value::String(String::from_utf8_lossy(v).into_owned())
                });
                (k.clone(), v)
            })
            .collect();
        Value::Object(headers)
    }

    /// The payload as JSON, or as text if it is not JSON.
    pub fn payload_json(&self) -> Value {
        self.payload.as_deref().map_or(Value::Null, |p| {
            serde_json::from_slice(p)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(p).into_owned()))
        })
    }

    fn decoded(&self) -> Decoded {
        decode(self.payload.as_deref().unwrap_or_default())
    }

    /// Its event type: the payload's, else the header's.
    pub fn event_type(&self) -> Option<String> {
        match self.decoded() {
            Decoded::Event(e) => Some(e.payload.event_type().to_string()),
            Decoded::Unknown(t) => Some(t),
            Decoded::Malformed(_) => self.header("event_type"),
        }
    }

    /// Its order: the envelope's, else the key.
    pub fn order(&self) -> Option<String> {
        match self.decoded() {
            Decoded::Event(e) => Some(e.order_id.to_string()),
            _ => self.key_text(),
        }
    }

    /// One line: time, partition@offset, type, order, user and the
    /// type's key fields.
    pub fn line(&self) -> String {
        let (time, what) = match self.decoded() {
            Decoded::Event(event) => {
                let fields = match &event.payload {
                    EventPayload::OrderCreated {
                        items,
                        total_price,
                        currency,
                        ..
                    } => {
                        let units: i32 = items.iter().map(|i| i.quantity).sum();
                        format!(
                            "total {total_price} {currency}, {} lines, {units} units",
                            items.len()
                        )
                    }
                    EventPayload::PaymentSuccess {
                        payment_id,
                        amount,
                        transaction_id,
                    } => format!("payment {payment_id}, {amount}, transaction {transaction_id}"),
                    EventPayload::PaymentFailed {
                        payment_id,
                        amount,
                        reason,
                    } => format!("payment {payment_id}, {amount}: {reason}"),
                    EventPayload::PaymentRefunded {
                        payment_id,
                        amount,
                        reason,
                    } => format!("payment {payment_id}, {amount}: {reason}"),
                    EventPayload::OrderConfirmed { total_price } => format!("total {total_price}"),
                    EventPayload::OrderCancelled { reason } => format!("reason {reason}"),
                };
                (
                    event
                        .occurred_at
                        .to_rfc3339_opts(SecondsFormat::Millis, true),
                    format!(
                        "{:<16}  order {:<7}  user {:<5}  {fields}  event {}",
                        event.payload.event_type(),
                        event.order_id,
                        event.user_id,
                        event.event_id
                    ),
                )
            }
            Decoded::Unknown(event_type) => (
                self.time(),
                format!(
                    "{event_type:<16}  order {:<7}  (a type this version does not know)",
                    self.key_text().unwrap_or_else(|| "-".into())
                ),
            ),
            Decoded::Malformed(why) => (
                self.time(),
                format!(
                    "{:<16}  key {:<9}  malformed: {why}",
                    "-",
                    self.key_text().unwrap_or_else(|| "-".into())
                ),
            ),
        };
        format!(
            "{time:<24}  {:>2}@{:<7}  {what}",
            self.partition, self.offset
        )
    }

    fn time(&self) -> String {
        self.timestamp
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .map_or("-".into(), |t| {
                t.to_rfc3339_opts(SecondsFormat::Millis, true)
            })
    }

    /// Everything about it: where it is, its key and headers, and the event
    /// (as JSON, or as text if it is not JSON).
    pub fn to_json(&self) -> Value {
        json!({
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp,
            "key": self.key_text(),
            "headers": self.headers_json(),
            "event": self.payload_json(),
        })
    }
}

/// Which events `tail` prints; every given criterion must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub order: Option<String>,
    pub event_types: Vec<String>,
}

impl Filter {
    pub fn selects(&self, record: &Record) -> bool {
        self.order
            .as_ref()
            .is_none_or(|o| record.order().as_ref() == Some(o))
            && (self.event_types.is_empty()
                || record
                    .event_type()
                    .is_some_and(|t| self.event_types.contains(&t)))
    }
}

/// Where `tail` starts and when it stops.
#[derive(Debug, Clone, Copy)]
pub struct TailOptions {
    /// From the oldest message kept, rather than from now on.
    pub from_beginning: bool,
    /// With `from_beginning`: from at most this many messages before each
    /// partition's end (a console showing the recent past).
    pub last: Option<i64>,
    /// Stop at the end of the topic as it was when `tail` started, rather
    /// than wait for new events.
    pub exit_at_end: bool,
    /// Stop after this many events printed.
    pub max: Option<usize>,
}

/// A client of `brokers` in consumer group `group`, which it never joins
/// and for which it commits nothing.
fn client(brokers: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    KafkaConfig::at(brokers)
        .client()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .with_context(|| format!("cannot create a Kafka client for {brokers}"))
}

/// The partitions of `topic`, or why there are none.
fn partitions(consumer: &BaseConsumer, brokers: &str, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("cannot reach the broker at {brokers}"))?;
    let Some(described) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("the broker does not know topic {topic}");
    };
    if described.error().is_some() || described.partitions().is_empty() {
        bail!("topic {topic} does not exist on {brokers}");
    }
    Ok(described.partitions().iter().map(|p| p.id()).collect())
}

/// Prints (through `emit`) the events of `topic` that `filter` selects;
/// returns how many it printed. Runs until the end of the topic, `max`
/// events, or `stop` says so (checked about twice a second).
pub fn tail(
    brokers: &str,
    topic: &str,
    filter: &Filter,
    options: TailOptions,
    stop: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(&Record),
) -> anyhow::Result<usize> {
    let consumer = client(brokers, "minishop-ops")?;
    let mut assignment = TopicPartitionList::new();
    // Where each partition ends now: `exit_at_end` stops there.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for partition in partitions(&consumer, brokers, topic)? {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
        let start = match (options.from_beginning, options.last) {
            (true, Some(last)) => low.max(high - last.max(0)),
            (true, None) => low,
            (false, _) => high,
        };
        assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
        if high > start {
            ends.insert(partition, high);
        }
    }
    consumer.assign(&assignment)?;
    let mut printed = 0;
    loop {
        if options.exit_at_end && ends.is_empty() {
            return Ok(printed);
        }
        if options.max.is_some_and(|max| printed >= max) || stop() {
            return Ok(printed);
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            // Nothing came: a partition whose last offsets are no messages
            // (a compacted or aborted range) is at its end once its
            // position is.
            if options.exit_at_end {
                let position = consumer.position()?;
                ends.retain(|partition, end| {
                    !matches!(position.find_partition(topic, *partition).map(|p| p.offset()),
                        Some(Offset::Offset(at)) if at >= *end)
                });
            }
            continue;
        };
        let message = message.with_context(|| format!("reading {topic} failed"))?;
        let record = Record {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        };
        if ends
            .get(&record.partition)
            .is_some_and(|end| record.offset + 1 >= *end)
        {
            ends.remove(&record.partition);
        }
        if filter.selects(&record) {
            emit(&record);
            printed += 1;
        }
    }
}

/// Every message on `topic` now, in partition and offset order.
pub fn read_all(brokers: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::new();
    let options = TailOptions {
        from_beginning: true,
        last: None,
        exit_at_end: true,
        max: None,
    };
    tail(
        brokers,
        topic,
        &Filter::default(),
        options,
        &|| false,
        &mut |r| records.push(r.clone()),
    )?;
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// How many messages `topic` holds now: each partition's end minus its
/// oldest kept offset.
pub fn count(brokers: &str, topic: &str) -> anyhow::Result<i64> {
    let consumer = client(brokers, "minishop-ops")?;
    let mut total = 0;
    for partition in partitions(&consumer, brokers, topic)? {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
        total += high - low;
    }
    Ok(total)
}

/// How far one consumer group is behind on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    pub group: String,
    pub partition: i32,
    /// The next offset the group will read; `None` if it committed none.
    pub committed: Option<i64>,
    /// The partition's end: the offset the next message will get.
    pub end: i64,
    /// Messages it has yet to read (from the oldest kept if it committed none).
    pub lag: i64,
}

impl Lag {
    pub fn line(&self) -> String {
        format!(
            "{:<40}  {:>9}  {:>9}  {:>9}  {:>7}",
            self.group,
            self.partition,
            self.committed.map_or("-".into(), |c| c.to_string()),
            self.end,
            self.lag
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "group": self.group,
            "partition": self.partition,
            "committed": self.committed,
            "end": self.end,
            "lag": self.lag,
        })
    }
}

/// The consumer groups the broker knows, if it can list them.
fn listed_groups(brokers: &str) -> Option<Vec<String>> {
    let consumer = client(brokers, "minishop-ops").ok()?;
    let list = consumer.fetch_group_list(None, TIMEOUT).ok()?;
    Some(list.groups().iter().map(|g| g.name().to_string()).collect())
}

/// The lag of `groups` on `topic`, per partition. With no groups given,
/// every group the broker lists that has committed an offset of `topic`;
/// a broker that cannot list groups is asked for the saga's own
/// (`prefix` + [`SAGA_GROUPS`]).
pub fn lag(
    brokers: &str,
    topic: &str,
    groups: &[String],
    prefix: &str,
) -> anyhow::Result<Vec<Lag>> {
    let probe = client(brokers, "minishop-ops")?;
    let partitions = partitions(&probe, brokers, topic)?;
    let mut watermarks = HashMap::new();
    for &partition in &partitions {
        let marks = probe
            .fetch_watermarks(topic, partition, TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
        watermarks.insert(partition, marks);
    }
    let (groups, only_committed) = if !groups.is_empty() {
        (groups.to_vec(), false)
    } else if let Some(listed) = listed_groups(brokers) {
        (listed, true)
    } else {
        let saga = SAGA_GROUPS.iter().map(|g| format!("{prefix}{g}")).collect();
        (saga, false)
    };
    let mut lags = Vec::new();
    let mut wanted = TopicPartitionList::new();
    for &partition in &partitions {
        wanted.add_partition(topic, partition);
    }
    for group in groups {
        // Asking a group's committed offsets does not join it.
        let consumer = client(brokers, &group)?;
        let committed = consumer
            .committed_offsets(wanted.clone(), TIMEOUT)
            .with_context(|| format!("cannot read group {group}'s offsets"))?;
        let of_group: Vec<Lag> = partitions
            .iter()
            .map(|&partition| {
                let (low, high) = watermarks[&partition];
                let committed =
                    committed
                        .find_partition(topic, partition)
                        .and_then(|p| match p.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                Lag {
                    group: group.clone(),
                    partition,
                    committed,
                    end: high,
                    lag: high - committed.unwrap_or(low).max(low),
                }
            })
            .collect();
        if !only_committed || of_group.iter().any(|l| l.committed.is_some()) {
            lags.extend(of_group);
        }
    }
    lags.sort_by(|a, b| (&a.group, a.partition).cmp(&(&b.group, b.partition)));
    Ok(lags)
}

/// The header line of `lag`'s table.
pub fn lag_header() -> String {
    format!(
        "{:<40}  {:>9}  {:>9}  {:>9}  {:>7}",
        "group", "partition", "committed", "end", "lag"
    )
}
