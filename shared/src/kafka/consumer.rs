//! The consuming side: decode, hand to the service's handler with retries
//! and backoff, dead-letter what can't be processed, mark the offset for
//! commit only after the handler has committed its effect, carry on.
//!
//! Handlers make their effect idempotent with [`super::claim`] (the inbox)
//! inside the effect's transaction, so a redelivery after a crash between
//! the effect and the offset commit does nothing. That is what lets offsets
//! be committed in batches: a worker stores its partition's offset after
//! each event, and librdkafka commits the stored offsets every
//! `KAFKA_COMMIT_INTERVAL_MS`, on a rebalance and at shutdown. A crash
//! replays at most that interval's events, which the inbox skips.
//!
//! Partitions are processed concurrently, each in order, by one worker task
//! per partition: an order's events share a partition (they are keyed by
//! order id), so each order's events are still handled one after another,
//! while a slow handler on one partition does not hold up the others. A
//! full worker queue holds the receiving loop back (backpressure, bounded
//! memory).
//!
//! Beside the loop, a task measures the group's lag on the consumer's
//! partitions (broker high watermark minus committed offset) every
//! `lag_interval`: it asks the broker, so a stalled handler shows as growing
//! lag (librdkafka's own statistics are only served while the loop polls).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGaugeVec;
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

/// Why a handler could not process an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (a dependency was down); dead-lettered after the last retry.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying can't help (the event contradicts the state); dead-lettered at once.
    #[error("permanent: {0}")]
    Permanent(String),
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
    /// Where undecodable or unprocessable messages go (`<topic>.dlq`).
    pub dlq_topic: String,
    /// Attempts before a transient failure is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How often the lag is measured.
    pub lag_interval: Duration,
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

/// Events one partition's worker may hold before the receiving loop waits.
const PARTITION_QUEUE: usize = 64;

/// Consumes until `shutdown`; the consumer must already be subscribed.
///
/// A fatal librdkafka error (e.g. a static member fenced by the broker)
/// leaves the consumer unable to consume for good: then it cancels
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
) -> Result<(), String> {
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
    let mut queues: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
    let mut fatal = None;
    let mut workers = tokio::task::JoinSet::new();
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m.detach(),
            Err(e) => {
                if let Some((_, reason)) = consumer.client().fatal_error() {
                    let why = format!("the Kafka consumer failed for good: {reason}");
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
        let queue = queues
            .entry((message.topic().to_owned(), message.partition()))
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
                workers.spawn(worker.clone().run(rx));
                tx
            });
        let sent = tokio::select! {
            _ = shutdown.cancelled() => break,
            sent = queue.send(message) => sent,
        };
        if sent.is_err() {
            break;
        }
    }
    // Workers stop after their current event; what they had queued was not
    // committed and is delivered again (to this group's next owner).
    drop(queues);
    while workers.join_next().await.is_some() {}
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

/// What every partition worker shares.
struct Worker<H> {
    consumer: Arc<GroupConsumer>,
    dlq: FutureProducer,
    handler: H,
    config: ConsumerConfig,
    metrics: super::KafkaMetrics,
    shutdown: CancellationToken,
}

impl<H: Handler> Worker<H> {
    /// Handles one partition's events in order, storing the offset after each.
    async fn run(self: Arc<Self>, mut queue: mpsc::Receiver<OwnedMessage>) {
        while let Some(message) = queue.recv().await {
            if self.shutdown.is_cancelled() {
                break;
            }
            process(
                &message,
                &self.dlq,
                &self.handler,
                &self.config,
                &self.metrics,
            )
            .await;
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
}

async fn process<H: Handler>(
    message: &OwnedMessage,
    dlq: &FutureProducer,
    handler: &H,
    config: &ConsumerConfig,
    metrics: &super::KafkaMetrics,
) {
    let payload = message.payload().unwrap_or_default();
    let event = match decode(payload) {
        Decoded::Event(event) => event,
        Decoded::Unknown(event_type) => {
            tracing::info!(
                event_type,
                offset = message.offset(),
                "skipping an event type this version does not know"
            );
            metrics
                .consumed
                .with_label_values(&[event_type.as_str(), "skipped"])
                .inc();
            return;
        }
        Decoded::Malformed(why) => {
            tracing::warn!(error = %why, offset = message.offset(), "malformed message: dead-lettering");
            dead_letter(message, dlq, config, &why).await;
            metrics
                .consumed
                .with_label_values(&["malformed", "dead_lettered"])
                .inc();
            return;
        }
    };
    // The processing continues the producer's trace (parent) and links to
    // it, so one order is one trace across services.
    let span = tracing::info_span!(
        "consume",
        otel.name = %format!("{} process", event.payload.event_type()),
        otel.kind = "consumer",
        event_type = event.payload.event_type(),
        event_id = %event.event_id,
        order_id = event.order_id,
    );
    if let Some(traceparent) = header(message, "traceparent") {
        let parent = crate::telemetry::extract_traceparent(&traceparent);
        crate::telemetry::link(&span, &parent);
        crate::telemetry::set_parent(&span, parent);
    }
    let outcome = handle_with_retries(message, dlq, handler, config, metrics, &event)
        .instrument(span)
        .await;
    metrics
        .consumed
        .with_label_values(&[event.payload.event_type(), outcome])
        .inc();
}

/// A header's value as text.
fn header(message: &OwnedMessage, key: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string)
}

async fn handle_with_retries<H: Handler>(
    message: &OwnedMessage,
    dlq: &FutureProducer,
    handler: &H,
    config: &ConsumerConfig,
    metrics: &super::KafkaMetrics,
    event: &Event,
) -> &'static str {
    let mut backoff = config.initial_backoff;
    for attempt in 1..=config.max_attempts {
        let result = handler.handle(event).await;
        if result.is_err() {
            metrics
                .failures
                .with_label_values(&[event.payload.event_type()])
                .inc();
        }
        match result {
            Ok(()) => return "processed",
            Err(HandlerError::Permanent(why)) => {
                tracing::warn!(event_id = %event.event_id, error = %why, "event cannot be processed: dead-lettering");
                dead_letter(message, dlq, config, &why).await;
                return "dead_lettered";
            }
            Err(HandlerError::Transient(why)) if attempt < config.max_attempts => {
                let jitter = rand::rng().random_range(0.5..1.5);
                let wait = backoff.mul_f64(jitter);
                tracing::warn!(event_id = %event.event_id, attempt, error = %why, retry_in_ms = wait.as_millis() as u64, "handler failed; retrying");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(config.max_backoff);
            }
            Err(HandlerError::Transient(why)) => {
                tracing::error!(event_id = %event.event_id, attempts = attempt, error = %why, "handler kept failing: dead-lettering");
                dead_letter(message, dlq, config, &why).await;
                return "dead_lettered";
            }
        }
    }
    "dead_lettered" // max_attempts is at least 1: not reached
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
                key: "error",
                value: Some(error),
            })
            .insert(Header {
                key: "original_topic",
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "original_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "original_offset",
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
