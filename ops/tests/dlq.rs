//! `minishop-ops dlq` end to end against the real broker: a real consumer
//! dead-letters events its handler refuses (a bug, say), the binary lists
//! and shows them, and once the handler is fixed it replays a selection
//! onto the original topic, where they are applied once, with their
//! original event ids, while replaying again does nothing more.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use serde_json::Value;
use shared::kafka::consumer::{Handler, HandlerError};
use shared::kafka::events::{Event, EventPayload};
use shared::kafka::{KafkaConfig, KafkaMetrics, claim};
use shared::shutdown::CancellationToken;
use sqlx::PgPool;

use common::ops;

/// Applies order_confirmed events with the inbox, or refuses them for
/// good while `broken`.
#[derive(Clone)]
struct Applier {
    pool: PgPool,
    broken: Arc<AtomicBool>,
}

impl Handler for Applier {
    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(HandlerError::Permanent("the handler has a bug".into()));
        }
        let mut tx = self.pool.begin().await?;
        if !claim(&mut tx, event).await? {
            return Ok(());
        }
        sqlx::query("INSERT INTO effects VALUES ($1, $2)")
            .bind(event.event_id)
            .bind(event.order_id)
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }
}

async fn letters(kafka: &KafkaConfig, expected: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = ops(kafka, &["dlq", "list", "--json"]).await;
        assert!(ok, "{err}");
        let found: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if found.len() >= expected || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn effects(pool: &PgPool, order_id: i64) -> Vec<uuid::Uuid> {
    sqlx::query_scalar("SELECT event_id FROM effects WHERE order_id = $1")
        .bind(order_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn eventually_applied(pool: &PgPool, order_id: i64) -> Vec<uuid::Uuid> {
    for _ in 0..100 {
        let found = effects(pool, order_id).await;
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("order {order_id}'s event was not applied");
}

#[tokio::test]
async fn dead_letters_are_listed_shown_and_replayed_once() {
    let mut kafka = KafkaConfig::read(&mut shared::config::Env::with_overrides(&[]));
    kafka.brokers = std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    kafka.topic = format!("test_ops_{}", uuid::Uuid::new_v4().simple());
    kafka.partitions = 2;
    kafka.events = shared::testing::event_keys(None);
    kafka.ensure_topics().await.unwrap();
    let pool = PgPool::connect(&shared::testing::fresh_database("ops").await)
        .await
        .unwrap();
    shared::kafka::migrate(&pool).await.unwrap();
    sqlx::query("CREATE TABLE effects (event_id UUID, order_id BIGINT)")
        .execute(&pool)
        .await
        .unwrap();

    let broken = Arc::new(AtomicBool::new(true));
    let stop = CancellationToken::new();
    shared::kafka::start_consumer(
        &kafka,
        "ops-test",
        Applier {
            pool: pool.clone(),
            broken: broken.clone(),
        },
        kafka.consumer_config(),
        KafkaMetrics::new(&shared::metrics::Metrics::new("ops-test")),
        &stop,
    )
    .unwrap();
    let producer = kafka.producer().unwrap();
    let events: Vec<Event> = (1..=2)
        .map(|order| {
            Event::new(
                shared::testing::order(order),
                shared::testing::user(9),
                EventPayload::OrderConfirmed {
                    total_price: shared::money::Money(100),
                },
            )
        })
        .collect();
    // Signed as order-service's relay signs them: a replayed letter keeps
    // its signature, and is taken again.
    for e in &events {
        shared::testing::publish(&kafka, e).await;
    }
    producer
        .send(
            FutureRecord::to(&kafka.topic).key("3").payload("{oops"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    // list: the three letters, each with its origin and error.
    let listed = letters(&kafka, 3).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    for letter in &listed {
        assert!(
            letter["origin"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}/", kafka.topic)),
            "{letter}"
        );
    }
    let of_order = |order: &str| {
        listed
            .iter()
            .find(|l| l["key"] == order)
            .unwrap_or_else(|| panic!("no letter of order {order}: {listed:?}"))
            .clone()
    };
    let second = of_order("2");
    assert!(
        second["error"]
            .as_str()
            .unwrap()
            .contains("the handler has a bug"),
        "{second}"
    );
    assert_eq!(second["event_id"], events[1].event_id.to_string());
    assert!(
        of_order("3")["error"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );
    let (ok, text, _) = ops(&kafka, &["dlq", "list"]).await;
    assert!(ok);
    assert_eq!(text.lines().count(), 3, "{text}");

    // show: one letter in full.
    let offset = second["dlq_offset"].as_i64().unwrap().to_string();
    let (ok, shown, err) = ops(&kafka, &["dlq", "show", &offset]).await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["payload"]["event_id"], events[1].event_id.to_string());
    assert_eq!(shown["headers"]["event_type"], "order_confirmed");
    let (ok, _, err) = ops(&kafka, &["dlq", "show", "999999"]).await;
    assert!(
        !ok && err.contains("no dead letter at offset 999999"),
        "{err}"
    );

    // replay needs a selection; a dry run sends nothing.
    let (ok, _, err) = ops(&kafka, &["dlq", "replay"]).await;
    assert!(!ok && err.contains("--all"), "{err}");
    broken.store(false, Ordering::SeqCst);
    let (ok, out, _) = ops(&kafka, &["dlq", "replay", "--all", "--dry-run"]).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        effects(&pool, 1).await.is_empty(),
        "a dry run replays nothing"
    );

    // One order's letter, then every order_confirmed: each applied once,
    // with its original event id, though order 1's is replayed twice.
    let (ok, _, err) = ops(&kafka, &["dlq", "replay", "--order", "1"]).await;
    assert!(ok, "{err}");
    assert_eq!(eventually_applied(&pool, 1).await, vec![events[0].event_id]);
    assert!(
        effects(&pool, 2).await.is_empty(),
        "only the selected letter"
    );
    let (ok, _, err) = ops(
        &kafka,
        &["dlq", "replay", "--event-type", "order_confirmed"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(eventually_applied(&pool, 2).await, vec![events[1].event_id]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        effects(&pool, 1).await,
        vec![events[0].event_id],
        "the second replay did nothing"
    );
    assert_eq!(
        letters(&kafka, 3).await.len(),
        3,
        "nothing new was dead-lettered"
    );
    stop.cancel();
}
