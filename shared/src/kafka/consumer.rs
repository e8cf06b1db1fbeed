//! The consuming side: decode, hand to the service's handler, dead-letter
//! what can never be processed, mark the offset for commit only after the
//! handler has committed its effect, carry on.
//!
//! Handlers make their effect idempotent with [`super::claim`] (the inbox)
//! inside the effect's transaction, so a redelivery after a crash between
//! the effect and the offset commit does nothing. That is what lets offsets
//! be committed in batches: a worker stores its partition's offset after
//! each event, and librdkafka commits the stored offsets every
//! `KAFKA_COMMIT_INTERVAL_MS`, on a rebalance and at shutdown. A crash
//! replays at most that interval's events, which the inbox skips.
//!
//! A handler's error says whether it can pass ([`HandlerError::Transient`]:
//! the database is unreachable or stalled, a peer is unavailable) or never
//! ([`HandlerError::Permanent`]). A transient one is retried with capped
//! exponential backoff and jitter for as long as it takes: the event is
//! never dead-lettered for it, since the effect is still owed (a payment
//! not charged is an order cancelled for nothing). Only that partition
//! waits; `kafka_consumer_partition_waiting_seconds` and a log line per
//! retry say so. A shutdown during the retries stops without storing the
//! offset, so the event comes again after the restart. The dead-letter
//! topic gets only what can never succeed: undecodable bytes, an envelope
//! that fails validation, a permanent handler error.
//!
//! Partitions are processed concurrently, each in order, by one worker task
//! per partition: an order's events share a partition (they are keyed by
//! order id), so each order's events are still handled one after another,
//! while a slow handler on one partition does not hold up the others. When
//! a worker's queue is full (its handler waits on a stalled database), the
//! partition's next events are kept aside, in order, and the other
//! partitions go on. Only past [`KEPT_ASIDE_LIMIT`] events kept aside in
//! all does the receiving loop wait for the busiest worker (bounded memory;
//! by then every partition is usually waiting on the same database). This
//! keeps the order of each partition by construction, without relying on
//! how librdkafka repositions a paused partition across a rebalance.
//!
//! A handler that panics is a bug the service must not run past: the
//! consumer stops the whole service (exit code 1), like a fatal librdkafka
//! error, instead of leaving it ready and consuming nothing.
//!
//! Beside the loop, a task measures the group's lag on the consumer's
//! partitions (broker high watermark minus committed offset) every
//! `lag_interval`: it asks the broker, so a stalled handler shows as growing
//! lag (librdkafka's own statistics are only served while the loop polls).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Gauge, IntGaugeVec};
use rand::Rng;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use tracing::Instrument;

use super::events::{Decoded, Event, decode};

/// The cause of a handler's failure.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a handler could not process an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Can pass (the database is unreachable, stalled or in a serialization
    /// conflict, a peer is unavailable): retried until it succeeds, never
    /// dead-lettered.
    #[error("transient: {0}")]
    Transient(#[source] Cause),
    /// Can never succeed (the event is about nothing this service knows):
    /// dead-lettered at once.
    #[error("permanent: {0}")]
    Permanent(#[source] Cause),
    /// The event contradicts what this service itself recorded (an amount
    /// or an owner that is not the order's, a refund of an order never
    /// created): forged, or from a broken producer. Dead-lettered at once
    /// and counted apart (`outcome="refused"`), for an alert.
    #[error("refused: {0}")]
    Refused(#[source] Cause),
}

/// A database error is transient when retrying it can succeed
/// ([`crate::db::is_transient`]), permanent otherwise.
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_transient(&e) {
            HandlerError::Transient(Box::new(e))
        } else {
            HandlerError::Permanent(Box::new(e))
        }
    }
}

/// A service's reaction to events.
pub trait Handler: Send + Sync + 'static {
    /// Applies `event` (idempotently) and commits its effect.
    fn handle(&self, event: &Event) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A group consumer that is closed on a thread of its own when its last
/// owner lets go of it (it derefs to the rdkafka consumer).
///
/// Dropping a librdkafka group consumer leaves the group and waits, with no
/// time limit, until that is done; with a join or rebalance under way, or a
/// stalled broker, that can be forever (rust-rdkafka#509). On an async
/// worker that would hang the runtime, and in a tokio blocking task it would
/// hang the runtime's shutdown, which waits for those: a service could not
/// exit, a test could not end. A plain thread is not waited for by anyone.
pub struct GroupConsumer {
    consumer: Option<StreamConsumer>,
    closed: Option<oneshot::Sender<()>>,
}

impl GroupConsumer {
    pub fn new(consumer: StreamConsumer) -> Self {
        Self {
            consumer: Some(consumer),
            closed: None,
        }
    }

    /// Resolves once the consumer has been closed after its last drop.
    pub fn on_close(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.closed = Some(tx);
        rx
    }
}

impl std::ops::Deref for GroupConsumer {
    type Target = StreamConsumer;

    fn deref(&self) -> &StreamConsumer {
        self.consumer
            .as_ref()
            .expect("the consumer is only taken out when dropped")
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let closed = self.closed.take();
        let close = move || {
            drop(consumer);
            if let Some(closed) = closed {
                let _ = closed.send(());
            }
        };
        // If no thread can be had, close here, as rdkafka would.
        if let Err(e) = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(close)
        {
            tracing::warn!(error = %e, "no thread to close the Kafka consumer on");
        }
    }
}

/// How the consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub topic: String,
    /// Where messages that can never be processed go (`<topic>.dlq`).
    pub dlq_topic: String,
    /// First retry delay of a transient failure; doubles each attempt, with
    /// jitter, up to `max_backoff`, and goes on until the handler succeeds.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How often the lag is measured.
    pub lag_interval: Duration,
    /// The keys events are taken from: an event not signed by the service
    /// that produces its type is refused ([`super::signing`]).
    pub keyring: super::signing::Keyring,
}

/// Every `interval` until `shutdown`, sets `lag{topic,partition}` for the
/// partitions assigned to `consumer`.
async fn report_lag(
    consumer: Arc<GroupConsumer>,
    lag: IntGaugeVec,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let measuring = consumer.clone();
        // librdkafka's offset and watermark queries block: off the async workers.
        match tokio::task::spawn_blocking(move || measure_lag(&measuring)).await {
            Ok(Ok(partitions)) => {
                lag.reset();
                for (topic, partition, waiting) in partitions {
                    lag.with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set(waiting);
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "could not measure the consumer lag"),
            Err(e) => tracing::warn!(error = %e, "the lag measurement panicked"),
        }
    }
}

/// (topic, partition, events after the committed offset) per assigned partition.
fn measure_lag(
    consumer: &StreamConsumer,
) -> Result<Vec<(String, i32, i64)>, rdkafka::error::KafkaError> {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let assignment = consumer.assignment()?;
    let committed = consumer.committed_offsets(assignment, TIMEOUT)?;
    let mut lag = Vec::new();
    for p in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(p.topic(), p.partition(), TIMEOUT)?;
        // Nothing committed yet: everything on the partition is still to come
        // (`auto.offset.reset=earliest`).
        let from = match p.offset() {
            Offset::Offset(offset) => offset.max(low),
            _ => low,
        };
        lag.push((p.topic().to_owned(), p.partition(), (high - from).max(0)));
    }
    Ok(lag)
}

/// Events one partition's worker may hold before the next are kept aside.
const PARTITION_QUEUE: usize = 64;

/// Events kept aside, over all partitions, before the receiving loop waits.
pub const KEPT_ASIDE_LIMIT: usize = 10_000;

/// How often the events kept aside are offered to their workers again.
const OVERFLOW_TICK: Duration = Duration::from_millis(50);

/// One partition as the receiving loop sees it: its worker's queue, and the
/// events received while that queue was full.
struct Partition {
    queue: mpsc::Sender<OwnedMessage>,
    overflow: VecDeque<OwnedMessage>,
}

/// Consumes until `shutdown`; the consumer must already be subscribed.
///
/// A fatal librdkafka error (e.g. a static member fenced by the broker) or
/// a panicking handler leaves the consumer unable to go on: then it cancels
/// `shutdown`, so that the whole service stops and its supervisor starts
/// it again, rather than staying up and ready with nothing consumed, and
/// returns the error.
pub async fn run_consumer<H: Handler>(
    mut consumer: GroupConsumer,
    dlq: FutureProducer,
    handler: H,
    config: ConsumerConfig,
    metrics: super::KafkaMetrics,
    shutdown: CancellationToken,
) -> Result<(), super::Error> {
    let closed = consumer.on_close();
    let consumer = Arc::new(consumer);
    let lag_task = tokio::spawn(report_lag(
        consumer.clone(),
        metrics.consumer_lag.clone(),
        config.lag_interval,
        shutdown.clone(),
    ));
    let worker = Arc::new(Worker {
        consumer: consumer.clone(),
        dlq,
        handler,
        config,
        metrics,
        shutdown: shutdown.clone(),
    });
    let mut partitions: HashMap<(String, i32), Partition> = HashMap::new();
    let mut fatal = None;
    let mut workers = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(OVERFLOW_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let waiting = partitions.values().any(|p| !p.overflow.is_empty());
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(ended) = workers.join_next(), if !workers.is_empty() => {
                // A worker ends early only by panicking (its queue is open).
                if let Err(e) = ended
                    && e.is_panic()
                {
                    let why = why_panicked(e.into_panic());
                    tracing::error!(error = %why, "stopping the service so that it is restarted");
                    fatal = Some(why);
                    shutdown.cancel();
                    break;
                }
                continue;
            }
            _ = tick.tick(), if waiting => {
                for p in partitions.values_mut() {
                    offer(p);
                }
                continue;
            }
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m.detach(),
            Err(e) => {
                if let Some((_, reason)) = consumer.client().fatal_error() {
                    let why = super::Error::Fatal(reason);
                    tracing::error!(error = %why, "stopping the service so that it is restarted");
                    fatal = Some(why);
                    shutdown.cancel();
                    break;
                }
                tracing::warn!(error = %e, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let key = (message.topic().to_owned(), message.partition());
        let p = partitions.entry(key).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
            workers.spawn(
                worker
                    .clone()
                    .run(rx, message.topic().to_owned(), message.partition()),
            );
            Partition {
                queue: tx,
                overflow: VecDeque::new(),
            }
        });
        // Behind events kept aside, this one waits too (order per partition).
        p.overflow.push_back(message);
        offer(p);
        let kept: usize = partitions.values().map(|p| p.overflow.len()).sum();
        if kept > KEPT_ASIDE_LIMIT {
            // Too much kept aside: wait until the busiest worker takes one.
            let Some(busiest) = partitions.values_mut().max_by_key(|p| p.overflow.len()) else {
                continue;
            };
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = busiest.queue.reserve() => permit,
            };
            match (permit, busiest.overflow.pop_front()) {
                (Ok(permit), Some(message)) => permit.send(message),
                (Err(_), _) => busiest.overflow.clear(),
                (Ok(_), None) => {}
            }
        }
    }
    // Workers stop after their current event; what they had queued was not
    // committed and is delivered again (to this group's next owner).
    drop(partitions);
    while let Some(ended) = workers.join_next().await {
        if let Err(e) = ended
            && e.is_panic()
            && fatal.is_none()
        {
            fatal = Some(why_panicked(e.into_panic()));
        }
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    let _ = lag_task.await;
    drop(worker);
    drop(consumer);
    if tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .is_err()
    {
        tracing::warn!("kafka consumer did not close within 10 s");
    }
    tracing::info!("kafka consumer stopped");
    fatal.map_or(Ok(()), Err)
}

/// Moves the events kept aside into the worker's queue while it has room.
fn offer(p: &mut Partition) {
    while let Some(message) = p.overflow.pop_front() {
        match p.queue.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(message)) => {
                p.overflow.push_front(message);
                return;
            }
            // The worker is gone (it panicked: the loop is stopping).
            Err(mpsc::error::TrySendError::Closed(_)) => {
                p.overflow.clear();
                return;
            }
        }
    }
}

/// Why the consumer stops after a handler's panic, with the panic's message.
fn why_panicked(panic: Box<dyn std::any::Any + Send>) -> super::Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    super::Error::HandlerPanicked(message)
}

/// What every partition worker shares.
struct Worker<H> {
    consumer: Arc<GroupConsumer>,
    dlq: FutureProducer,
    handler: H,
    config: ConsumerConfig,
    metrics: super::KafkaMetrics,
    shutdown: CancellationToken,
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Processed,
    /// A type this version does not know.
    Skipped,
    DeadLettered,
    /// Contradicted the service's own state; dead-lettered.
    Refused,
    /// Shutdown came while a transient failure was being retried: the
    /// offset is not stored, so the event is delivered again.
    Interrupted,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Processed => "processed",
            Outcome::Skipped => "skipped",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Refused => "refused",
            Outcome::Interrupted => "interrupted",
        }
    }
}

impl<H: Handler> Worker<H> {
    /// Handles one partition's events in order, storing the offset after each.
    async fn run(
        self: Arc<Self>,
        mut queue: mpsc::Receiver<OwnedMessage>,
        topic: String,
        partition: i32,
    ) {
        let waiting = self
            .metrics
            .partition_waiting
            .with_label_values(&[topic.as_str(), &partition.to_string()]);
        waiting.set(0.0);
        while let Some(message) = queue.recv().await {
            if self.shutdown.is_cancelled() {
                break;
            }
            let outcome = self.process(&message, &waiting).await;
            if outcome == Outcome::Interrupted {
                break;
            }
            // librdkafka stores offset + 1, the next event to read. This
            // fails for a partition taken away meanwhile: its next owner
            // gets the event again, which the inbox makes harmless.
            if let Err(e) =
                self.consumer
                    .store_offset(message.topic(), message.partition(), message.offset())
            {
                tracing::warn!(error = %e, "offset not stored; the event may be redelivered (harmless)");
            }
        }
    }

    async fn process(&self, message: &OwnedMessage, waiting: &Gauge) -> Outcome {
        let payload = message.payload().unwrap_or_default();
        let event = match decode(payload) {
            Decoded::Event(event) => event,
            Decoded::Unknown(event_type) => {
                tracing::info!(
                    event_type,
                    offset = message.offset(),
                    "skipping an event type this version does not know"
                );
                self.count(&event_type, Outcome::Skipped);
                return Outcome::Skipped;
            }
            Decoded::Malformed(why) => {
                tracing::warn!(error = %why, offset = message.offset(), "malformed message: dead-lettering");
                dead_letter(message, &self.dlq, &self.config, &why).await;
                self.count("malformed", Outcome::DeadLettered);
                return Outcome::DeadLettered;
            }
        };
        let signed = self.config.keyring.verify(
            &event,
            payload,
            header_bytes(message, super::signing::KEY_ID_HEADER),
            header_bytes(message, super::signing::SIGNATURE_HEADER),
        );
        if let Err(why) = signed {
            let why = HandlerError::Refused(Box::new(why)).to_string();
            tracing::warn!(
                event_type = event.payload.event_type(),
                event_id = %event.event_id,
                offset = message.offset(),
                error = %why,
                "an event not signed by its producer: dead-lettering"
            );
            dead_letter(message, &self.dlq, &self.config, &why).await;
            self.count(event.payload.event_type(), Outcome::Refused);
            return Outcome::Refused;
        }
        // The processing continues the producer's trace (parent) and links to
        // it, so one order is one trace across services.
        let span = tracing::info_span!(
            "consume",
            otel.name = %format!("{} process", event.payload.event_type()),
            otel.kind = "consumer",
            event_type = event.payload.event_type(),
            event_id = %event.event_id,
            order_id = event.order_id.get(),
        );
        if let Some(traceparent) = header(message, "traceparent") {
            let parent = crate::telemetry::extract_traceparent(&traceparent);
            crate::telemetry::link(&span, &parent);
            crate::telemetry::set_parent(&span, parent);
        }
        let outcome = self
            .handle_until_done(message, &event, waiting)
            .instrument(span)
            .await;
        self.count(event.payload.event_type(), outcome);
        outcome
    }

    fn count(&self, event_type: &str, outcome: Outcome) {
        self.metrics
            .consumed
            .with_label_values(&[event_type, outcome.label()])
            .inc();
    }

    /// Runs the handler until it succeeds or fails for good; transient
    /// failures are retried for as long as they last (or until shutdown).
    async fn handle_until_done(
        &self,
        message: &OwnedMessage,
        event: &Event,
        waiting: &Gauge,
    ) -> Outcome {
        let config = &self.config;
        let started = tokio::time::Instant::now();
        let mut backoff = config.initial_backoff;
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            let result = self.handler.handle(event).await;
            if result.is_err() {
                self.metrics
                    .failures
                    .with_label_values(&[event.payload.event_type()])
                    .inc();
            }
            match result {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!(
                            event_id = %event.event_id,
                            attempts = attempt,
                            waited_ms = started.elapsed().as_millis() as u64,
                            "handler succeeded after transient failures; the partition goes on"
                        );
                    }
                    waiting.set(0.0);
                    return Outcome::Processed;
                }
                Err(HandlerError::Permanent(why)) => {
                    tracing::warn!(event_id = %event.event_id, error = %why, "event cannot be processed: dead-lettering");
                    dead_letter(message, &self.dlq, config, &why.to_string()).await;
                    waiting.set(0.0);
                    return Outcome::DeadLettered;
                }
                Err(HandlerError::Refused(why)) => {
                    tracing::error!(
                        event_id = %event.event_id,
                        order_id = %event.order_id,
                        event_type = event.payload.event_type(),
                        error = %why,
                        "event contradicts this service's state (forged?): refused and dead-lettered"
                    );
                    dead_letter(message, &self.dlq, config, &format!("refused: {why}")).await;
                    waiting.set(0.0);
                    return Outcome::Refused;
                }
                Err(HandlerError::Transient(why)) => {
                    let jitter = rand::rng().random_range(0.5..1.5);
                    let wait = backoff.mul_f64(jitter);
                    let waited = started.elapsed();
                    waiting.set(waited.as_secs_f64());
                    tracing::warn!(
                        event_id = %event.event_id,
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        attempt,
                        waited_ms = waited.as_millis() as u64,
                        retry_in_ms = wait.as_millis() as u64,
                        error = %why,
                        "handler failed transiently; the partition waits and retries"
                    );
                    tokio::select! {
                        _ = self.shutdown.cancelled() => {
                            tracing::info!(event_id = %event.event_id, "shutting down while retrying: the event is not committed and comes again");
                            return Outcome::Interrupted;
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(config.max_backoff);
                }
            }
        }
    }
}

/// A header's value as text.
fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    header_bytes(message, key)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string)
}

/// The value of the message's first header named `key`.
fn header_bytes<'m>(message: &'m OwnedMessage, key: &str) -> Option<&'m [u8]> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
}
/// The headers a dead letter gets before the original message's own: why
/// it was dead-lettered and where it came from (`minishop-ops dlq` reads
/// them, and leaves them out when it replays the message).
pub mod dlq_headers {
    pub const ERROR: &str = "error";
    pub const ORIGINAL_TOPIC: &str = "original_topic";
    pub const ORIGINAL_PARTITION: &str = "original_partition";
    pub const ORIGINAL_OFFSET: &str = "original_offset";
    /// All of them, in the order they are written.
    pub const ALL: [&str; 4] = [ERROR, ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET];
}

/// Copies `message` to the dead-letter topic with the error in a header.
/// Retries until the broker takes it: a dead letter must not be lost either.
async fn dead_letter(
    message: &OwnedMessage,
    dlq: &FutureProducer,
    config: &ConsumerConfig,
    error: &str,
) {
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    loop {
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: dlq_headers::ERROR,
                value: Some(error),
            })
            .insert(Header {
                key: dlq_headers::ORIGINAL_TOPIC,
                value: Some(message.topic()),
            })
            .insert(Header {
                key: dlq_headers::ORIGINAL_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: dlq_headers::ORIGINAL_OFFSET,
                value: Some(offset.as_str()),
            });
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&config.dlq_topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        match dlq.send(record, Duration::from_secs(10)).await {
            Ok(_) => return,
            Err((e, _)) => {
                tracing::error!(error = %e, "writing to the dead-letter topic failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
