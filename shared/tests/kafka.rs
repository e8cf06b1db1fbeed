//! The Kafka plumbing against the real broker (127.0.0.1:9092, started by
//! `make test`) and a real PostgreSQL: outbox -> relay -> topic -> consumer
//! -> inbox delivers every event once and in order per order; a redelivered
//! event does nothing; malformed and unprocessable messages go to the
//! dead-letter topic while the consumer carries on; unknown types are skipped;
//! two relays on one database publish each event once.
// The helpers need the `testing` feature, which `cargo test --workspace` turns on.
#![cfg(feature = "testing")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::FutureRecord;
use shared::kafka::KafkaMetrics;
use shared::kafka::consumer::{ConsumerConfig, Handler, HandlerError};
use shared::kafka::events::{Event, EventPayload};
use shared::kafka::outbox::{commit, enqueue, run_relay};
use shared::kafka::{KafkaConfig, claim, migrate};
use shared::shutdown::CancellationToken;
use sqlx::PgPool;
use tracing::Instrument;

fn kafka() -> KafkaConfig {
    KafkaConfig {
        brokers: std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic: format!("test_events_{}", uuid::Uuid::new_v4().simple()),
        partitions: 3,
        retry_max_backoff: Duration::from_millis(200),
        outbox_poll: Duration::from_millis(200),
        outbox_retention: Duration::from_secs(3600),
        // Smaller than most tests' event counts, so the relay publishes in
        // several rounds and keeps the order across them.
        outbox_batch: 3,
        group_prefix: String::new(),
        lag_interval: Duration::from_millis(200),
        commit_interval: Duration::from_millis(200),
        group_instance_id: None,
        // The relay signs as order-service (the tests' events are its types).
        events: shared::testing::event_keys(Some(shared::kafka::events::Producer::OrderService)),
        // The login, if the test broker asks for one (scripts/test.sh).
        ..KafkaConfig::at("")
    }
}

async fn database() -> PgPool {
    let url = shared::testing::fresh_database("kafka").await;
    let pool = PgPool::connect(&url).await.unwrap();
    migrate(&pool).await.unwrap();
    // `n`: the order the effects were written in.
    sqlx::query(
        "CREATE TABLE effects (event_id UUID, order_id BIGINT, seq INT, trace TEXT, n BIGSERIAL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

/// Records each event's effect (with the inbox) unless told to fail for an
/// order (transiently, while `failing` is set) or to panic for one.
#[derive(Clone)]
struct Recorder {
    pool: PgPool,
    fail_order: Option<i64>,
    failing: Arc<AtomicBool>,
    panic_order: Option<i64>,
    attempts: Arc<Mutex<HashMap<i64, u32>>>,
}

impl Recorder {
    fn new(pool: &PgPool) -> Self {
        Self {
            pool: pool.clone(),
            fail_order: None,
            failing: Arc::new(AtomicBool::new(true)),
            panic_order: None,
            attempts: Default::default(),
        }
    }

    fn attempts(&self, order_id: i64) -> u32 {
        self.attempts
            .lock()
            .unwrap()
            .get(&order_id)
            .copied()
            .unwrap_or(0)
    }
}

impl Handler for Recorder {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        *self
            .attempts
            .lock()
            .unwrap()
            .entry(event.order_id.get())
            .or_default() += 1;
        if self.fail_order == Some(event.order_id.get()) && self.failing.load(Ordering::SeqCst) {
            return Err(HandlerError::Transient("the test says not yet".into()));
        }
        assert_ne!(
            self.panic_order,
            Some(event.order_id.get()),
            "the test says panic"
        );
        let mut tx = self.pool.begin().await?;
        if !claim(&mut tx, event).await? {
            return Ok(());
        }
        let EventPayload::OrderConfirmed { total_price } = &event.payload else {
            return Err(HandlerError::Permanent("unexpected type".into()));
        };
        sqlx::query("INSERT INTO effects VALUES ($1, $2, $3, $4)")
            .bind(event.event_id)
            .bind(event.order_id)
            .bind(total_price.cents() as i32)
            .bind(shared::telemetry::current_traceparent())
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }
}

fn event(order_id: i64, seq: i64) -> Event {
    Event::new(
        shared::testing::order(order_id),
        shared::testing::user(1),
        EventPayload::OrderConfirmed {
            total_price: shared::money::Money(seq),
        },
    )
}

/// The outbox relay of `pool` publishing to `kafka`'s topic until `stop`.
fn spawn_relay(
    kafka: &KafkaConfig,
    pool: &PgPool,
    metrics: &KafkaMetrics,
    stop: &CancellationToken,
) {
    tokio::spawn(run_relay(
        pool.clone(),
        kafka.producer().unwrap(),
        kafka.relay_config(),
        metrics.clone(),
        stop.clone(),
    ));
}

async fn wait_for(pool: &PgPool, sql: &str, expected: i64) -> i64 {
    shared::testing::wait_for_count(pool, sql, expected).await
}

/// Everything on the dead-letter topic within a few seconds: (error header, payload).
async fn dead_letters(kafka: &KafkaConfig, expected: usize) -> Vec<(String, String)> {
    let consumer = kafka
        .consumer(&format!("dlq-reader-{}", uuid::Uuid::new_v4()))
        .unwrap();
    consumer.subscribe(&[&kafka.dlq_topic()]).unwrap();
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while found.len() < expected && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            let error = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "error")
                        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).to_string()))
                })
                .unwrap_or_default();
            found.push((
                error,
                String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
            ));
        }
    }
    found
}

/// The trace of the request that wrote the events (trace id, its span id).
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test]
async fn outbox_events_arrive_once_in_order_and_redelivery_does_nothing() {
    let _telemetry = shared::telemetry::init("kafka-test");
    let kafka = kafka();
    let metrics = KafkaMetrics::new(&shared::metrics::Metrics::new("kafka-test"));
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let stop = CancellationToken::new();

    // 4 orders x 10 events, each written by its own transaction.
    let mut all = Vec::new();
    for seq in 0..10 {
        for order_id in 1..=4 {
            let e = event(order_id, seq);
            // Written inside a span of the trace a request brought along.
            let span = tracing::info_span!("request");
            shared::telemetry::set_parent(
                &span,
                shared::telemetry::extract_traceparent(TRACEPARENT),
            );
            async {
                let mut tx = pool.begin().await.unwrap();
                enqueue(&mut tx, &e).await.unwrap();
                tx.commit().await.unwrap();
            }
            .instrument(span)
            .await;
            all.push(e);
        }
    }
    // An enqueue whose transaction rolls back publishes nothing.
    let mut tx = pool.begin().await.unwrap();
    enqueue(&mut tx, &event(99, 0)).await.unwrap();
    tx.rollback().await.unwrap();

    spawn_relay(&kafka, &pool, &metrics, &stop);
    let handler = Recorder::new(&pool);
    shared::kafka::start_consumer(
        &kafka,
        "test-group",
        handler,
        ConsumerConfig {
            initial_backoff: Duration::from_millis(10),
            ..kafka.consumer_config()
        },
        metrics.clone(),
        &stop,
    )
    .unwrap();

    assert_eq!(
        wait_for(&pool, "SELECT count(*) FROM effects", 40).await,
        40
    );
    assert_eq!(
        wait_for(
            &pool,
            "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL",
            40
        )
        .await,
        40
    );
    let orders: Vec<(i64, Vec<i32>)> = sqlx::query_as(
        "SELECT order_id, array_agg(seq ORDER BY n) FROM effects GROUP BY order_id ORDER BY order_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (order_id, seqs) in orders {
        assert_eq!(
            seqs,
            (0..10).collect::<Vec<_>>(),
            "order {order_id} in order"
        );
    }

    assert_eq!(
        metrics
            .produced
            .with_label_values(&["order_confirmed"])
            .get(),
        40
    );
    assert_eq!(
        metrics
            .consumed
            .with_label_values(&["order_confirmed", "processed"])
            .get(),
        40
    );
    assert_eq!(metrics.outbox_unsent.get(), 0);
    // Each effect ran in a consumer span continuing the writer's trace.
    assert_eq!(
        wait_for(
            &pool,
            "SELECT count(*) FROM effects WHERE trace LIKE '00-0af7651916cd43dd8448eb211c80319c-%' \
             AND trace NOT LIKE '%-b7ad6b7169203331-%'",
            40
        )
        .await,
        40
    );

    // Redeliver three events straight to the topic (signed, as they were):
    // the inbox absorbs them.
    for e in &all[..3] {
        shared::testing::publish(&kafka, e).await;
    }
    // A marker after them proves the consumer got past the repeats.
    let marker = event(5, 0);
    shared::testing::publish(&kafka, &marker).await;
    assert_eq!(
        wait_for(&pool, "SELECT count(*) FROM effects WHERE order_id = 5", 1).await,
        1
    );
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(total, 41, "redelivered events had no effect");
    stop.cancel();
}

/// Sends `payload` to `partition` of `kafka`'s topic with `key` and, if
/// given, the signature headers of `signer` (one producer per topic: a new
/// idempotent producer first asks for an id).
async fn send_to(
    kafka: &KafkaConfig,
    partition: i32,
    key: &str,
    payload: &str,
    signer: Option<&shared::kafka::signing::EventSigner>,
) {
    static PRODUCERS: Mutex<Vec<(String, rdkafka::producer::FutureProducer)>> =
        Mutex::new(Vec::new());
    let producer = {
        let mut producers = PRODUCERS.lock().unwrap();
        match producers.iter().find(|(topic, _)| *topic == kafka.topic) {
            Some((_, p)) => p.clone(),
            None => {
                let p = kafka.producer().unwrap();
                producers.push((kafka.topic.clone(), p.clone()));
                p
            }
        }
    };
    let mut headers = rdkafka::message::OwnedHeaders::new();
    if let Some(signer) = signer {
        headers = signer.sign_headers(headers, payload.as_bytes());
    }
    producer
        .send(
            FutureRecord::to(&kafka.topic)
                .partition(partition)
                .key(key)
                .payload(payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

/// Sends `event` to `partition`, keyed by its order id and signed, as the
/// relay would.
async fn send_event(kafka: &KafkaConfig, partition: i32, event: &Event) {
    let payload = serde_json::to_string(event).unwrap();
    let producer = shared::kafka::events::producer_of(event.payload.event_type()).unwrap();
    let signer = shared::testing::event_signer(producer);
    send_to(kafka, partition, &event.key(), &payload, Some(&signer)).await;
}

fn waiting_seconds(metrics: &KafkaMetrics, kafka: &KafkaConfig, partition: i32) -> f64 {
    metrics
        .partition_waiting
        .with_label_values(&[kafka.topic.as_str(), &partition.to_string()])
        .get()
}

#[tokio::test]
async fn only_what_can_never_succeed_is_dead_lettered() {
    let kafka = kafka();
    let metrics = KafkaMetrics::new(&shared::metrics::Metrics::new("kafka-test"));
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let stop = CancellationToken::new();
    let handler = Recorder::new(&pool);
    shared::kafka::start_consumer(
        &kafka,
        "test-group",
        handler.clone(),
        ConsumerConfig {
            initial_backoff: Duration::from_millis(10),
            ..kafka.consumer_config()
        },
        metrics.clone(),
        &stop,
    )
    .unwrap();

    send_to(&kafka, 0, "1", "{not json", None).await;
    send_to(
        &kafka,
        0,
        "1",
        r#"{"event_type":"order_shipped","order_id":1}"#,
        None,
    )
    .await;
    // A known type the handler can never apply: a permanent error.
    let refused = Event::new(
        shared::testing::order(2),
        shared::testing::user(1),
        EventPayload::OrderCancelled {
            reason: shared::kafka::events::OrderReason::Timeout,
        },
    );
    send_event(&kafka, 0, &refused).await;
    send_event(&kafka, 0, &event(1, 7)).await;

    // The good event after the bad ones is processed.
    assert_eq!(
        wait_for(&pool, "SELECT count(*) FROM effects WHERE order_id = 1", 1).await,
        1
    );
    let letters = dead_letters(&kafka, 2).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters[0].0.contains("not JSON"), "{letters:?}");
    assert_eq!(letters[0].1, "{not json");
    assert!(letters[1].0.contains("unexpected type"), "{letters:?}");
    assert_eq!(handler.attempts(2), 1, "a permanent error is not retried");
    let consumed = |event_type: &str, outcome: &str| {
        metrics
            .consumed
            .with_label_values(&[event_type, outcome])
            .get()
    };
    assert_eq!(consumed("malformed", "dead_lettered"), 1);
    assert_eq!(consumed("order_shipped", "skipped"), 1);
    assert_eq!(consumed("order_cancelled", "dead_lettered"), 1);
    assert_eq!(consumed("order_confirmed", "processed"), 1);
    stop.cancel();
}

/// The fault of the incident: a handler that fails transiently for longer
/// than the old five attempts (a database locked for a minute). Its event
/// waits, holding back only its own partition, and is applied once it can
/// be; nothing is dead-lettered.
#[tokio::test]
async fn a_transient_failure_waits_on_its_partition_and_is_never_dead_lettered() {
    let kafka = kafka();
    let metrics = KafkaMetrics::new(&shared::metrics::Metrics::new("kafka-test"));
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let stop = CancellationToken::new();
    let handler = Recorder {
        fail_order: Some(13),
        ..Recorder::new(&pool)
    };
    shared::kafka::start_consumer(
        &kafka,
        "test-group",
        handler.clone(),
        ConsumerConfig {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..kafka.consumer_config()
        },
        metrics.clone(),
        &stop,
    )
    .unwrap();

    // On partition 0: order 13's event, then 150 of order 14 behind it
    // (more than a worker's queue holds, so the rest are kept aside). On
    // partition 1, sent afterwards: order 1's.
    send_event(&kafka, 0, &event(13, 0)).await;
    for seq in 0..150 {
        send_event(&kafka, 0, &event(14, seq)).await;
    }
    send_event(&kafka, 1, &event(1, 0)).await;

    // The other partition goes on while partition 0 waits.
    assert_eq!(
        wait_for(&pool, "SELECT count(*) FROM effects WHERE order_id = 1", 1).await,
        1
    );
    eventually(
        "order 13 to be tried more often than the old max attempts",
        || handler.attempts(13) > 10,
    )
    .await;
    eventually("the waiting partition to show in the metric", || {
        waiting_seconds(&metrics, &kafka, 0) > 0.0
    })
    .await;
    let behind: i64 = sqlx::query_scalar("SELECT count(*) FROM effects WHERE order_id = 14")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(behind, 0, "the events behind the waiting one wait too");
    assert_eq!(handler.attempts(14), 0);

    // The dependency is back: everything is applied, once and in order.
    handler.failing.store(false, Ordering::SeqCst);
    assert_eq!(
        wait_for(
            &pool,
            "SELECT count(*) FROM effects WHERE order_id IN (13, 14)",
            151
        )
        .await,
        151
    );
    let seqs: Vec<i32> =
        sqlx::query_scalar("SELECT seq FROM effects WHERE order_id = 14 ORDER BY n")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(seqs, (0..150).collect::<Vec<_>>(), "in order, none twice");
    eventually("the metric to say the partition no longer waits", || {
        waiting_seconds(&metrics, &kafka, 0) == 0.0
    })
    .await;
    assert!(
        dead_letters(&kafka, 1).await.is_empty(),
        "nothing dead-lettered"
    );
    assert_eq!(
        metrics
            .consumed
            .with_label_values(&["order_confirmed", "dead_lettered"])
            .get(),
        0
    );
    stop.cancel();
}

/// A shutdown while an event's transient failure is retried stores no
/// offset for it: the group's next consumer gets the event again.
#[tokio::test]
async fn a_shutdown_while_retrying_leaves_the_event_for_the_next_consumer() {
    let kafka = kafka();
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let failing = Recorder {
        fail_order: Some(13),
        ..Recorder::new(&pool)
    };
    let run = |handler: Recorder, stop: CancellationToken| {
        shared::kafka::start_consumer(
            &kafka,
            "test-group",
            handler,
            ConsumerConfig {
                initial_backoff: Duration::from_millis(10),
                ..kafka.consumer_config()
            },
            KafkaMetrics::new(&shared::metrics::Metrics::new("kafka-test")),
            &stop,
        )
        .unwrap()
    };
    // Order 12's event goes through first (its offset is committed on the
    // way down), then order 13's keeps failing.
    send_event(&kafka, 0, &event(12, 0)).await;
    send_event(&kafka, 0, &event(13, 0)).await;
    let stop = CancellationToken::new();
    let first = run(failing.clone(), stop.clone());
    eventually("order 13 to be retried", || failing.attempts(13) > 3).await;
    stop.cancel();
    first.await.unwrap().unwrap();
    assert_eq!(
        wait_for(&pool, "SELECT count(*) FROM effects WHERE order_id = 12", 1).await,
        1
    );
    assert_eq!(
        committed(&kafka, "test-group")[0],
        Some(1),
        "only order 12's offset"
    );

    // The next consumer of the group applies it.
    let healthy = Recorder::new(&pool);
    let stop = CancellationToken::new();
    run(healthy.clone(), stop.clone());
    assert_eq!(
        wait_for(&pool, "SELECT count(*) FROM effects WHERE order_id = 13", 1).await,
        1
    );
    assert_eq!(
        healthy.attempts(12),
        0,
        "order 12's offset was committed: not delivered again"
    );
    stop.cancel();
}

/// A handler that panics stops the consumer with an error and cancels the
/// service's shutdown token: the service exits (code 1) instead of staying
/// up, ready, and consuming nothing.
#[tokio::test]
async fn a_panicking_handler_stops_the_service() {
    let kafka = kafka();
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let handler = Recorder {
        panic_order: Some(66),
        ..Recorder::new(&pool)
    };
    let service = CancellationToken::new();
    let consuming = shared::kafka::start_consumer(
        &kafka,
        "test-group",
        handler,
        kafka.consumer_config(),
        KafkaMetrics::new(&shared::metrics::Metrics::new("kafka-test")),
        &service,
    )
    .unwrap();
    send_event(&kafka, 0, &event(66, 0)).await;
    let ended = tokio::time::timeout(Duration::from_secs(30), consuming)
        .await
        .expect("the consumer stops")
        .unwrap();
    let error = ended.expect_err("a panic is an error");
    assert!(
        matches!(&error, shared::kafka::Error::HandlerPanicked(why) if why.contains("the test says panic")),
        "{error}"
    );
    assert!(service.is_cancelled(), "the whole service shuts down");
    let effects: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(effects, 0);
    assert_eq!(
        committed(&kafka, "test-group")[0],
        None,
        "its offset is not committed"
    );
}

#[tokio::test]
async fn two_relays_on_one_database_publish_each_event_once() {
    let kafka = kafka();
    let metrics = KafkaMetrics::new(&shared::metrics::Metrics::new("kafka-test"));
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let stop = CancellationToken::new();
    for _ in 0..2 {
        spawn_relay(&kafka, &pool, &metrics, &stop);
    }
    for seq in 0..30 {
        let mut tx = pool.begin().await.unwrap();
        enqueue(&mut tx, &event(seq % 3 + 1, seq)).await.unwrap();
        commit(tx).await.unwrap();
    }
    assert_eq!(
        wait_for(
            &pool,
            "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL",
            30
        )
        .await,
        30
    );
    // Count what reached the topic: 30 messages, no duplicates.
    let consumer = kafka
        .consumer(&format!("counter-{}", uuid::Uuid::new_v4()))
        .unwrap();
    consumer.subscribe(&[&kafka.topic]).unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut messages = 0;
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
        messages += 1;
        let e: Event = serde_json::from_slice(m.payload().unwrap()).unwrap();
        ids.insert(e.event_id);
    }
    assert_eq!((messages, ids.len()), (30, 30));
    stop.cancel();
}

/// Handles each event only while the gate is open; counts what it handled.
#[derive(Clone)]
struct Gate {
    open: tokio::sync::watch::Receiver<bool>,
    handled: Arc<std::sync::atomic::AtomicUsize>,
}

impl Handler for Gate {
    async fn handle(&self, _event: &Event) -> Result<(), HandlerError> {
        let mut open = self.open.clone();
        open.wait_for(|open| *open)
            .await
            .map_err(|e| HandlerError::Transient(e.into()))?;
        self.handled
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// The summed `kafka_consumer_lag` over the partitions it reports.
fn lag(metrics: &KafkaMetrics) -> Option<i64> {
    use shared::metrics::prometheus::core::Collector;
    let families = metrics.consumer_lag.collect();
    let series: Vec<i64> = families
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_gauge().get_value() as i64)
        .collect();
    (!series.is_empty()).then(|| series.iter().sum())
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn consumer_lag_counts_the_events_waiting_and_drains_to_zero() {
    let kafka = kafka();
    let metrics = KafkaMetrics::new(&shared::metrics::Metrics::new("lag-test"));
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let stop = CancellationToken::new();
    spawn_relay(&kafka, &pool, &metrics, &stop);
    let publish = |from: i64, to: i64| {
        let pool = pool.clone();
        async move {
            for seq in from..to {
                // One order id: every event on one partition.
                let mut tx = pool.begin().await.unwrap();
                enqueue(&mut tx, &event(7, seq)).await.unwrap();
                commit(tx).await.unwrap();
            }
        }
    };
    let (gate, open) = tokio::sync::watch::channel(true);
    let handler = Gate {
        open,
        handled: Default::default(),
    };
    let handled = handler.handled.clone();
    shared::kafka::start_consumer(
        &kafka,
        "lag-group",
        handler,
        kafka.consumer_config(),
        metrics.clone(),
        &stop,
    )
    .unwrap();
    let handled_is = |n: usize| handled.load(std::sync::atomic::Ordering::SeqCst) == n;

    // Caught up: six handled and committed, lag 0.
    publish(0, 6).await;
    eventually("6 handled", || handled_is(6)).await;
    eventually("lag 0 after catching up", || lag(&metrics) == Some(0)).await;

    // The handler stalls on the first of ten more: all ten are lag.
    gate.send(false).unwrap();
    publish(6, 16).await;
    eventually("lag 10 while the handler stalls", || {
        lag(&metrics) == Some(10)
    })
    .await;
    assert!(handled_is(6), "nothing is handled while the gate is shut");

    // Released: everything is handled and the lag drains to 0.
    gate.send(true).unwrap();
    eventually("16 handled", || handled_is(16)).await;
    eventually("lag 0 after draining", || lag(&metrics) == Some(0)).await;
    stop.cancel();
}

/// The offsets `group` has committed on `kafka`'s topic, per partition
/// (`None`: nothing committed), read from the broker by a consumer that
/// does not join the group.
fn committed(kafka: &KafkaConfig, group: &str) -> Vec<Option<i64>> {
    let observer: StreamConsumer = kafka.consumer_settings(group).create().unwrap();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for p in 0..kafka.partitions {
        partitions.add_partition(&kafka.topic, p);
    }
    let offsets = observer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    offsets
        .elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// Offsets are committed in batches, every `commit_interval`, not once per
/// event (each commit is a write to the broker's storage), and what was
/// handled is committed when the consumer stops.
#[tokio::test]
async fn offsets_are_committed_in_batches_and_on_the_way_down() {
    let mut kafka = kafka();
    kafka.commit_interval = Duration::from_secs(600);
    let metrics = KafkaMetrics::new(&shared::metrics::Metrics::new("batch-test"));
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let stop = CancellationToken::new();
    spawn_relay(&kafka, &pool, &metrics, &stop);
    let group = format!("batch-{}", uuid::Uuid::new_v4());
    let consuming = CancellationToken::new();
    let task = shared::kafka::start_consumer(
        &kafka,
        &group,
        Recorder::new(&pool),
        kafka.consumer_config(),
        metrics.clone(),
        &consuming,
    )
    .unwrap();
    for order in 1..=9 {
        let mut tx = pool.begin().await.unwrap();
        enqueue(&mut tx, &event(order, 1)).await.unwrap();
        commit(tx).await.unwrap();
    }
    assert_eq!(wait_for(&pool, "SELECT count(*) FROM effects", 9).await, 9);
    // All nine handled; still nothing committed (the interval is 10 min),
    // and the lag counts them.
    eventually("lag 9 while nothing is committed", || {
        lag(&metrics) == Some(9)
    })
    .await;
    assert!(
        committed(&kafka, &group).iter().all(Option::is_none),
        "{:?}",
        committed(&kafka, &group)
    );

    consuming.cancel();
    task.await.unwrap().unwrap();
    let after: i64 = committed(&kafka, &group)
        .iter()
        .map(|o| o.unwrap_or(0))
        .sum();
    assert_eq!(after, 9, "every handled event committed on the way down");
    stop.cancel();
}

/// The members of `group` the broker lists.
fn members(consumer: &StreamConsumer, group: &str) -> usize {
    let groups = consumer
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .unwrap();
    groups.groups().iter().map(|g| g.members().len()).sum()
}

#[tokio::test]
async fn a_restarted_static_member_takes_its_own_place_and_a_fenced_one_stops() {
    let mut kafka = kafka();
    kafka.group_prefix = format!("{}.", kafka.topic);
    kafka.group_instance_id = Some("order-service-0".into());
    let group = format!("{}static-group", kafka.group_prefix);
    let metrics = KafkaMetrics::new(&shared::metrics::Metrics::new("static-test"));
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let relay_stop = CancellationToken::new();
    spawn_relay(&kafka, &pool, &metrics, &relay_stop);
    let observer = kafka.consumer("observer").unwrap();
    let start = || {
        let stop = CancellationToken::new();
        let handler = Recorder::new(&pool);
        let task = shared::kafka::start_consumer(
            &kafka,
            "static-group",
            handler,
            kafka.consumer_config(),
            metrics.clone(),
            &stop,
        )
        .unwrap();
        (stop, task)
    };
    let publish = |order_id: i64| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            enqueue(&mut tx, &event(order_id, 1)).await.unwrap();
            commit(tx).await.unwrap();
        }
    };

    let (stop, task) = start();
    for order in 1..=3 {
        publish(order).await;
    }
    assert_eq!(wait_for(&pool, "SELECT count(*) FROM effects", 3).await, 3);
    stop.cancel();
    task.await.unwrap().unwrap();
    // A static member does not leave on its way down (a crash can't
    // either): the group keeps its place for it.
    assert_eq!(
        members(&observer, &group),
        1,
        "the stopped member keeps its place"
    );

    // The same instance id comes back: it takes that place (one member, not
    // two) and carries on after the committed offsets.
    let (stop, task) = start();
    for order in 4..=6 {
        publish(order).await;
    }
    assert_eq!(wait_for(&pool, "SELECT count(*) FROM effects", 6).await, 6);
    assert_eq!(
        members(&observer, &group),
        1,
        "the restarted member took its own place"
    );
    let handled: i64 = sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM effects")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(handled, 6, "each event once");

    // A second live instance with the same id fences the first for good:
    // that one stops with the error and cancels its service's shutdown (so
    // that it is restarted), instead of staying up consuming nothing.
    let (second_stop, second) = start();
    publish(7).await;
    let fenced = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the fenced consumer stops")
        .unwrap();
    let error = fenced.expect_err("a fenced consumer reports the error");
    assert!(
        matches!(&error, shared::kafka::Error::Fatal(why) if why.contains("fenced")),
        "{error}"
    );
    assert!(stop.is_cancelled(), "and shuts its service down");
    assert_eq!(wait_for(&pool, "SELECT count(*) FROM effects", 7).await, 7);
    second_stop.cancel();
    second.await.unwrap().unwrap();
    relay_stop.cancel();
}

/// Dropping a group consumer while its group rebalances: librdkafka's close
/// waits for the rebalance to end (about 5 s here; with a stalled broker it
/// can be forever, which hung a test run until CI's limit). A
/// `GroupConsumer` returns from the drop at once and closes on a thread of
/// its own.
#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_consumer_mid_rebalance_does_not_wait_for_the_group() {
    let kafka = kafka();
    kafka.ensure_topics().await.unwrap();
    let group = format!("rebalancing-{}", uuid::Uuid::new_v4());
    let first = kafka.consumer(&group).unwrap();
    first.subscribe(&[kafka.topic.as_str()]).unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(300), first.recv()).await;
    // A second member: the group rebalances for a few seconds.
    let mut second = kafka.consumer(&group).unwrap();
    second.subscribe(&[kafka.topic.as_str()]).unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(300), second.recv()).await;
    let mut closed = second.on_close();

    let started = std::time::Instant::now();
    drop(second);
    let dropped_after = started.elapsed();
    assert!(
        matches!(
            closed.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        ),
        "the drop returned only once the consumer had left its group ({dropped_after:?})"
    );
    tokio::time::timeout(Duration::from_secs(60), closed)
        .await
        .expect("the consumer is closed in the background")
        .unwrap();
    drop(first);
}

/// A relay of `kafka` on `pool` that holds the relay lock and has made its
/// first look at the outbox, so what is committed next is found by a
/// wake-up or a later look.
async fn idle_relay(kafka: &KafkaConfig, pool: &PgPool, stop: &CancellationToken) {
    let metrics = KafkaMetrics::new(&shared::metrics::Metrics::new("kafka-test"));
    spawn_relay(kafka, pool, &metrics, stop);
    let leader = wait_for(
        pool,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        1,
    )
    .await;
    assert_eq!(leader, 1, "the relay never took its lock");
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// `outbox::commit` wakes the relay of its own process, whose next look is a
/// minute away, and sends no `NOTIFY`: a notifying commit holds a lock of
/// the whole PostgreSQL cluster until it is flushed, so such commits went
/// one at a time (docs/saga.md).
#[tokio::test]
async fn an_outbox_commit_wakes_the_relay_and_notifies_no_one() {
    let kafka = KafkaConfig {
        outbox_poll: Duration::from_secs(60),
        ..kafka()
    };
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let stop = CancellationToken::new();
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener.listen("outbox").await.unwrap();
    idle_relay(&kafka, &pool, &stop).await;

    let mut tx = pool.begin().await.unwrap();
    enqueue(&mut tx, &event(5, 1)).await.unwrap();
    commit(tx).await.unwrap();

    // wait_for gives up after 20 s, well before the relay's next look.
    let sent = wait_for(
        &pool,
        "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL",
        1,
    )
    .await;
    assert_eq!(sent, 1, "the commit did not wake the relay");
    let notified = tokio::time::timeout(Duration::from_secs(1), listener.recv()).await;
    assert!(notified.is_err(), "the commit sent a NOTIFY: {notified:?}");
    stop.cancel();
}

/// Rows committed with nothing to wake this relay, as another replica's
/// are, are published by its next look.
#[tokio::test]
async fn another_replicas_events_are_found_by_the_next_look() {
    let kafka = kafka();
    kafka.ensure_topics().await.unwrap();
    let pool = database().await;
    let stop = CancellationToken::new();
    idle_relay(&kafka, &pool, &stop).await;

    let mut tx = pool.begin().await.unwrap();
    enqueue(&mut tx, &event(6, 1)).await.unwrap();
    enqueue(&mut tx, &event(6, 2)).await.unwrap();
    // A plain commit: this process's relays hear nothing of it.
    tx.commit().await.unwrap();

    let sent = wait_for(
        &pool,
        "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL",
        2,
    )
    .await;
    assert_eq!(sent, 2);
    stop.cancel();
}
