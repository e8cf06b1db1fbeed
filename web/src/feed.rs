//! The console's view of the saga's topic: a background reader (the same
//! code as `minishop-ops tail`, [`ops::events::tail`]) keeps the last
//! `WEB_FEED_CAPACITY` events in memory, indexed by order, and hands each
//! new one to the console's live feed. It reads by assigning partitions
//! (no consumer group, nothing committed), so it disturbs no one; a broker
//! that is down is retried every few seconds, going on where it stopped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ops::events::{Filter, Record, TailOptions};
use shared::kafka::KafkaConfig;
use shared::shutdown::CancellationToken;
use tokio::sync::broadcast;

/// One event as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub partition: i32,
    pub offset: i64,
    pub at: Option<DateTime<Utc>>,
    /// The order it is about (its key).
    pub order: Option<String>,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    /// The key that signed it (`signature_key_id`).
    pub signed_by: Option<String>,
    /// The trace it was published in.
    pub trace_id: Option<String>,
    /// `minishop-ops tail`'s line for it.
    pub line: String,
}

impl Entry {
    pub fn from_record(record: &Record) -> Self {
        Self {
            partition: record.partition,
            offset: record.offset,
            at: record
                .timestamp
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            order: record.order(),
            event_type: record.event_type(),
            event_id: record.header("event_id"),
            signed_by: record.header("signature_key_id"),
            trace_id: record.header("traceparent").as_deref().and_then(trace_id),
            line: record.line(),
        }
    }

    pub fn time(&self) -> String {
        self.at
            .map_or("-".into(), |t| t.format("%H:%M:%S%.3f").to_string())
    }
}

/// The trace id of a W3C `traceparent` (`00-<trace>-<span>-<flags>`).
pub fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let (_, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then(|| trace.to_string())
}

#[derive(Debug, Default)]
struct Kept {
    recent: VecDeque<Arc<Entry>>,
    by_order: HashMap<String, Vec<Arc<Entry>>>,
    /// Where reading goes on after a reconnect: the next offset per partition.
    next: HashMap<i32, i64>,
}

/// What the reader knows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderState {
    Starting,
    Reading,
    /// The broker could not be read (why); retried soon.
    Failing(String),
}

/// The events kept, and the live ones.
#[derive(Debug)]
pub struct Feed {
    kept: Mutex<Kept>,
    capacity: usize,
    live: broadcast::Sender<Arc<Entry>>,
    state: Mutex<ReaderState>,
}

impl Feed {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            kept: Mutex::new(Kept::default()),
            capacity,
            live: broadcast::channel(1024).0,
            state: Mutex::new(ReaderState::Starting),
        })
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding the lock leaves plain data behind: keep it.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: ReaderState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    pub fn state(&self) -> ReaderState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps `entry` (forgetting the oldest over capacity) and tells the live feed.
    pub fn push(&self, entry: Entry) {
        let entry = Arc::new(entry);
        {
            let mut kept = self.kept();
            let next = kept.next.entry(entry.partition).or_insert(0);
            if entry.offset < *next {
                return; // read again after a reconnect
            }
            *next = entry.offset + 1;
            kept.recent.push_back(entry.clone());
            if let Some(order) = &entry.order {
                kept.by_order
                    .entry(order.clone())
                    .or_default()
                    .push(entry.clone());
            }
            while kept.recent.len() > self.capacity {
                let Some(old) = kept.recent.pop_front() else {
                    break;
                };
                if let Some(order) = &old.order
                    && let Some(list) = kept.by_order.get_mut(order)
                {
                    list.retain(|e| !Arc::ptr_eq(e, &old));
                    if list.is_empty() {
                        kept.by_order.remove(order);
                    }
                }
            }
        }
        // No one listening is fine.
        let _ = self.live.send(entry);
    }

    /// The newest `n` events, newest first.
    pub fn recent(&self, n: usize) -> Vec<Arc<Entry>> {
        self.kept().recent.iter().rev().take(n).cloned().collect()
    }

    /// The events of `order` still kept, oldest first.
    pub fn of_order(&self, order: &str) -> Vec<Arc<Entry>> {
        self.kept().by_order.get(order).cloned().unwrap_or_default()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Entry>> {
        self.live.subscribe()
    }

    /// Reads the topic from its recent past on, until `shutdown`.
    pub fn start(self: &Arc<Self>, kafka: &KafkaConfig, shutdown: CancellationToken) {
        let feed = self.clone();
        let brokers = kafka.brokers.clone();
        let topic = kafka.topic.clone();
        let last = i64::try_from(self.capacity).unwrap_or(i64::MAX);
        tokio::task::spawn_blocking(move || {
            while !shutdown.is_cancelled() {
                let options = TailOptions {
                    from_beginning: true,
                    last: Some(last),
                    exit_at_end: false,
                    max: None,
                };
                feed.set_state(ReaderState::Reading);
                let read = ops::events::tail(
                    &brokers,
                    &topic,
                    &Filter::default(),
                    options,
                    &|| shutdown.is_cancelled(),
                    &mut |record| feed.push(Entry::from_record(record)),
                );
                if let Err(e) = read {
                    let why = format!("{e:#}");
                    tracing::warn!(error = %why, "the console cannot read the topic; retrying");
                    feed.set_state(ReaderState::Failing(why));
                    for _ in 0..30 {
                        if shutdown.is_cancelled() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(partition: i32, offset: i64, order: &str) -> Entry {
        Entry {
            partition,
            offset,
            at: None,
            order: Some(order.into()),
            event_type: Some("order_created".into()),
            event_id: None,
            signed_by: None,
            trace_id: None,
            line: format!("{partition}@{offset}"),
        }
    }

    #[test]
    fn the_feed_keeps_its_capacity_and_forgets_the_oldest_orders() {
        let feed = Feed::new(3);
        let mut live = feed.subscribe();
        feed.push(entry(0, 0, "1"));
        feed.push(entry(1, 0, "2"));
        feed.push(entry(0, 1, "1"));
        feed.push(entry(0, 2, "3"));
        assert_eq!(
            feed.recent(10)
                .iter()
                .map(|e| e.line.as_str())
                .collect::<Vec<_>>(),
            ["0@2", "0@1", "1@0"]
        );
        assert_eq!(feed.of_order("1").len(), 1);
        assert!(feed.of_order("4").is_empty());
        assert_eq!(live.try_recv().unwrap().line, "0@0");
    }

    #[test]
    fn an_event_read_again_after_a_reconnect_is_kept_once() {
        let feed = Feed::new(10);
        feed.push(entry(0, 5, "1"));
        feed.push(entry(0, 5, "1"));
        feed.push(entry(0, 4, "1"));
        assert_eq!(feed.recent(10).len(), 1);
    }

    #[test]
    fn trace_ids_come_from_traceparents() {
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-1-01"), None);
    }
}
