//! `minishop-ops tail`, `lag` and `asyncapi` end to end against the real
//! broker: events published as the saga's relay publishes them (and one
//! poison message) are tailed from the start, filtered by order and type,
//! as lines and as JSON; a live tail prints an event published after it
//! started; a real consumer group's lag reads 0 once it has caught up and
//! the number of events published since once it is stopped.

mod common;

use std::process::Stdio;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use serde_json::Value;
use shared::kafka::consumer::{Handler, HandlerError};
use shared::kafka::events::{Event, EventItem, EventPayload};
use shared::kafka::{KafkaConfig, KafkaMetrics};
use shared::money::Money;
use shared::shutdown::CancellationToken;
use shared::testing;
use tokio::io::{AsyncBufReadExt, BufReader};

use common::ops;

/// A topic of its own with 3 partitions.
async fn topic() -> KafkaConfig {
    let mut kafka = KafkaConfig::read(&mut shared::config::Env::with_overrides(&[]));
    kafka.brokers = std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    kafka.topic = format!("test_tail_{}", uuid::Uuid::new_v4().simple());
    kafka.group_prefix = format!("{}.", kafka.topic);
    kafka.partitions = 3;
    kafka.commit_interval = Duration::from_millis(200);
    kafka.events = testing::event_keys(None);
    kafka.ensure_topics().await.unwrap();
    kafka
}

fn created(order: i64) -> Event {
    Event::new(
        testing::order(order),
        testing::user(7),
        EventPayload::OrderCreated {
            items: vec![EventItem {
                product_id: testing::product(3),
                quantity: 2,
                unit_price: Money(1250),
            }],
            total_price: Money(2500),
            currency: shared::money::Currency::Usd,
            customer_email: None,
        },
    )
}

fn paid(order: i64) -> Event {
    Event::new(
        testing::order(order),
        testing::user(7),
        EventPayload::PaymentSuccess {
            payment_id: order * 10,
            amount: Money(2500),
            transaction_id: shared::kafka::events::TransactionId::parse(&format!("txn-{order}"))
                .unwrap(),
        },
    )
}

#[tokio::test]
async fn tail_prints_the_topics_events_filtered_as_lines_or_json() {
    let kafka = topic().await;
    let events = [created(41), paid(41), created(42), paid(42), created(43)];
    for event in &events {
        testing::publish(&kafka, event).await;
    }
    kafka
        .producer()
        .unwrap()
        .send(
            FutureRecord::to(&kafka.topic).key("44").payload("{oops"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();

    // Everything, one line each, the poison message included.
    let (ok, out, err) = ops(&kafka, &["tail", "--from-beginning", "--exit"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(err.contains("6 events"), "{err}");
    let line = lines
        .iter()
        .find(|l| l.contains(&events[0].event_id.to_string()))
        .unwrap_or_else(|| panic!("order 41's order_created: {out}"));
    for part in [
        "order_created",
        "order 41",
        "user 7",
        "total 25.00 USD",
        "1 lines, 2 units",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    let time = line.split_whitespace().next().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{line}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("malformed: not JSON") && l.contains("key 44")),
        "{out}"
    );

    // One order's events, in order (one order is on one partition).
    let (ok, out, err) = ops(
        &kafka,
        &["tail", "--from-beginning", "--exit", "--order", "42"],
    )
    .await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("order_created") && lines[1].contains("payment_success"),
        "{out}"
    );
    assert!(
        lines[1].contains("payment 420, 25.00, transaction txn-42"),
        "{out}"
    );

    // One type, as JSON: where each message is, its headers and its event.
    let (ok, out, err) = ops(
        &kafka,
        &[
            "tail",
            "--from-beginning",
            "--exit",
            "--type",
            "payment_success",
            "--json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let found: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 2, "{out}");
    for message in &found {
        assert_eq!(message["event"]["event_type"], "payment_success");
        assert_eq!(message["headers"]["event_type"], "payment_success");
        assert_eq!(message["headers"]["event_id"], message["event"]["event_id"]);
        assert_eq!(message["key"], message["event"]["order_id"].to_string());
        assert!(
            message["partition"]
                .as_i64()
                .is_some_and(|p| (0..3).contains(&p))
        );
        assert!(message["offset"].as_i64().is_some_and(|o| o >= 0));
    }

    // --max stops early; a topic that does not exist is a clear error.
    let (ok, out, _) = ops(&kafka, &["tail", "--from-beginning", "--max", "2"]).await;
    assert!(ok);
    assert_eq!(out.lines().count(), 2, "{out}");
    let missing = KafkaConfig {
        topic: "no_such_topic_here".into(),
        ..kafka.clone()
    };
    let (ok, _, err) = ops(&missing, &["tail", "--exit"]).await;
    assert!(!ok && err.contains("no_such_topic_here"), "{err}");
}

#[tokio::test]
async fn a_live_tail_prints_what_is_published_after_it_started() {
    let kafka = topic().await;
    testing::publish(&kafka, &created(50)).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_minishop-ops"))
        .args(["--brokers", &kafka.brokers, "--topic", &kafka.topic])
        .args(["tail", "--max", "1"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // It starts at the end: order 50's event is not printed. Publish until
    // it has its partitions and prints one.
    let mut sent = Vec::new();
    let line = loop {
        let event = paid(51 + sent.len() as i64);
        testing::publish(&kafka, &event).await;
        sent.push(event.event_id.to_string());
        assert!(sent.len() < 40, "the live tail printed nothing in 20 s");
        if let Ok(line) = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
        {
            break line.unwrap().expect("a line");
        }
    };
    assert!(
        sent.iter().any(|id| line.contains(id.as_str())),
        "{line} is one of the events sent after it started"
    );
    assert!(!line.contains("order 50 "), "{line}");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("--max 1 stops after one event")
        .unwrap();
    assert!(status.success());
}

struct Ignore;

impl Handler for Ignore {
    async fn handle(&self, _: &Event) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// The group's lag per partition, as `lag --json` prints it.
async fn lag_of(kafka: &KafkaConfig, group: &str) -> Vec<Value> {
    let (ok, out, err) = ops(kafka, &["lag", "--json", "--group", group]).await;
    assert!(ok, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn total(lags: &[Value]) -> i64 {
    lags.iter().map(|l| l["lag"].as_i64().unwrap()).sum()
}

#[tokio::test]
async fn lag_shows_how_far_a_consumer_group_is_behind_per_partition() {
    let kafka = topic().await;
    for order in 60..66 {
        testing::publish(&kafka, &created(order)).await;
    }
    let group = format!("{}lagging", kafka.group_prefix);
    let before = lag_of(&kafka, &group).await;
    assert_eq!(before.len(), 3, "one row per partition: {before:?}");
    assert_eq!(
        total(&before),
        6,
        "a group that committed nothing has all to read"
    );
    assert!(before.iter().all(|l| l["committed"].is_null()));

    // A real consumer of the group reads everything and commits.
    let stop = CancellationToken::new();
    shared::kafka::start_consumer(
        &kafka,
        "lagging",
        Ignore,
        kafka.consumer_config(),
        KafkaMetrics::new(&shared::metrics::Metrics::new("lag-test")),
        &stop,
    )
    .unwrap();
    let mut caught_up = before;
    for _ in 0..100 {
        caught_up = lag_of(&kafka, &group).await;
        if total(&caught_up) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(total(&caught_up), 0, "{caught_up:?}");
    // A partition no event went to has nothing committed and no lag.
    for row in caught_up.iter().filter(|r| r["end"] != 0) {
        assert_eq!(row["committed"], row["end"], "{row}");
    }
    let ends: i64 = caught_up.iter().map(|l| l["end"].as_i64().unwrap()).sum();
    assert_eq!(ends, 6);

    // Stopped, it falls behind by what is published since.
    stop.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for order in 70..74 {
        testing::publish(&kafka, &created(order)).await;
    }
    let behind = lag_of(&kafka, &group).await;
    assert_eq!(total(&behind), 4, "{behind:?}");

    // The table: a header, then one row per partition.
    let (ok, out, err) = ops(&kafka, &["lag", "--group", &group]).await;
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert!(
        rows[0].starts_with("group") && rows[0].ends_with("lag"),
        "{out}"
    );
    assert_eq!(rows.len(), 4, "{out}");
    assert!(rows[1..].iter().all(|r| r.starts_with(&group)), "{out}");

    // Without --group: the groups with offsets on the topic, this one among them.
    let (ok, out, err) = ops(
        &kafka,
        &["lag", "--json", "--group-prefix", &kafka.group_prefix],
    )
    .await;
    assert!(ok, "{err}");
    let listed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(listed.iter().any(|l| l["group"] == group.as_str()), "{out}");
}

#[tokio::test]
async fn asyncapi_prints_the_document_the_repository_holds() {
    let kafka = KafkaConfig {
        topic: "order_events".into(),
        ..topic().await
    };
    let (ok, out, err) = ops(&kafka, &["asyncapi"]).await;
    assert!(ok, "{err}");
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/asyncapi.yaml"
    ))
    .unwrap();
    assert_eq!(out, file);
    assert!(out.starts_with("asyncapi: \"3.0.0\"\n"), "{}", &out[..40]);
}
