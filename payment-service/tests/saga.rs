//! payment-service against the real broker and PostgreSQL: order_created
//! becomes exactly one payment and one payment_* event (however often it is
//! delivered), large amounts are declined, a success for a cancelled order is
//! refunded, and the REST API shows payments to their owner or an admin.

use std::time::Duration;

use payment_service::gateway::SimulatedGateway;
use payment_service::{Config, app};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use serde_json::Value;
use shared::auth::Role;
use shared::config::{Env, FromEnv};
use shared::kafka::KafkaConfig;
use shared::kafka::events::{Event, EventItem, EventPayload};
use shared::money::Money;
use shared::shutdown::CancellationToken;
use shared::testing;

struct TestApp {
    base: String,
    kafka: KafkaConfig,
    db: sqlx::PgPool,
    stop: CancellationToken,
    /// Reads every event on the topic from the start.
    reader: shared::kafka::consumer::GroupConsumer,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn spawn_app() -> TestApp {
    let database_url = testing::fresh_database("payment").await;
    let topic = format!("test_payments_{}", uuid::Uuid::new_v4().simple());
    let brokers = std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let config = Config::from_env(
        Env::with_overrides(&[
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", &database_url),
            ("JWT_PUBLIC_KEY", testing::TEST_PUBLIC_KEY),
            // No user-service here: admin tokens are taken at their word.
            ("USER_SERVICE_URL", "none"),
            ("KAFKA_BROKERS", &brokers),
            ("KAFKA_TOPIC", &topic),
            ("KAFKA_GROUP_PREFIX", &format!("{topic}.")),
            ("KAFKA_PARTITIONS", "2"),
            ("OUTBOX_POLL_MS", "200"),
            ("PAYMENT_SUCCESS_RATE", "0.5"),
            ("PAYMENT_MAX_AMOUNT", "100.00"),
        ])
        .and(&testing::event_vars("payment-service")),
    )
    .unwrap();
    let kafka = config.kafka.clone();
    let app = app::build(config).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    let stop = CancellationToken::new();
    tokio::spawn(app.run(stop.clone()));
    let reader = kafka
        .consumer(&format!("reader-{}", uuid::Uuid::new_v4()))
        .unwrap();
    // The service creates the topics at start-up; wait until they exist.
    kafka.ensure_topics().await.unwrap();
    reader.subscribe(&[&kafka.topic]).unwrap();
    TestApp {
        base,
        kafka,
        db: sqlx::PgPool::connect(&database_url).await.unwrap(),
        stop,
        reader,
    }
}

impl TestApp {
    async fn publish(&self, event: &Event) {
        testing::publish(&self.kafka, event).await;
    }

    /// Events of `event_type` seen on the topic within a few seconds, until `expected` arrive.
    async fn events(&self, event_type: &str, expected: usize) -> Vec<Event> {
        let mut found = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while found.len() < expected && tokio::time::Instant::now() < deadline {
            if let Ok(Ok(m)) =
                tokio::time::timeout(Duration::from_secs(1), self.reader.recv()).await
            {
                let event: Event = serde_json::from_slice(m.payload().unwrap()).unwrap();
                if event.payload.event_type() == event_type {
                    found.push(event);
                }
            }
        }
        found
    }

    async fn payments_of(&self, order_id: i64) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM payments WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

fn order_created(order_id: i64, user_id: i64, cents: i64) -> Event {
    Event::new(
        testing::order(order_id),
        testing::user(user_id),
        EventPayload::OrderCreated {
            items: vec![EventItem {
                product_id: testing::product(1),
                quantity: 1,
                unit_price: Money(cents),
            }],
            total_price: Money(cents),
            currency: shared::money::Currency::Usd,
            customer_email: None,
        },
    )
}

/// The first order id at or after `from` that the gateway approves (or declines) at rate 0.5.
fn order_id(from: i64, approved: bool) -> i64 {
    (from..)
        .find(|&id| (SimulatedGateway::draw(id) < 0.5) == approved)
        .unwrap()
}

#[tokio::test]
async fn each_order_is_charged_once_and_its_outcome_published_once() {
    let app = spawn_app().await;
    let paid = order_id(1000, true);
    let declined = order_id(1000, false);
    let created = order_created(paid, 7, 4999);
    app.publish(&created).await;
    app.publish(&order_created(declined, 8, 1000)).await;

    let success = app.events("payment_success", 1).await;
    assert_eq!(success.len(), 1);
    assert_eq!(success[0].order_id, paid);
    let EventPayload::PaymentSuccess {
        amount,
        transaction_id,
        ..
    } = &success[0].payload
    else {
        unreachable!()
    };
    assert_eq!(*amount, Money(4999));
    assert!(transaction_id.as_str().starts_with("sim-"));
    let failed = app.events("payment_failed", 1).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].order_id, declined);

    // The same event again, and another order_created for the same order: nothing new.
    app.publish(&created).await;
    app.publish(&order_created(paid, 7, 4999)).await;
    let marker = order_id(paid.max(declined) + 1, true);
    app.publish(&order_created(marker, 9, 100)).await;
    let after = app.events("payment_success", 1).await;
    assert_eq!(
        after.iter().map(|e| e.order_id).collect::<Vec<_>>(),
        vec![marker],
        "no second success for {paid}"
    );
    assert_eq!(app.payments_of(paid).await, 1);
}

#[tokio::test]
async fn amounts_over_the_limit_are_declined() {
    let app = spawn_app().await;
    let id = order_id(5000, true); // would be approved, but for the amount
    app.publish(&order_created(id, 1, 10_001)).await;
    let failed = app.events("payment_failed", 1).await;
    let EventPayload::PaymentFailed { reason, .. } = &failed[0].payload else {
        panic!("{failed:?}")
    };
    assert_eq!(*reason, shared::kafka::events::DeclineReason::OverLimit);
}

#[tokio::test]
async fn a_success_for_a_cancelled_order_is_refunded() {
    let app = spawn_app().await;
    let id = order_id(7000, true);
    app.publish(&order_created(id, 3, 2500)).await;
    assert_eq!(app.events("payment_success", 1).await.len(), 1);
    let cancel = Event::new(
        testing::order(id),
        testing::user(3),
        EventPayload::OrderCancelled {
            reason: shared::kafka::events::OrderReason::Timeout,
        },
    );
    app.publish(&cancel).await;
    app.publish(&cancel).await; // redelivered: one refund only
    let refunds = app.events("payment_refunded", 2).await;
    assert_eq!(refunds.len(), 1);
    let EventPayload::PaymentRefunded { amount, reason, .. } = &refunds[0].payload else {
        unreachable!()
    };
    assert_eq!((*amount, reason.as_str()), (Money(2500), "order_cancelled"));
    let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(status, "refunded");
}

/// A cancel that names another owner than the payment's is forged (or
/// broken): it is refused, counted as `outcome="refused"`, and refunds
/// nothing; the genuine cancel still does.
#[tokio::test]
async fn a_cancel_naming_another_owner_refunds_nothing() {
    let app = spawn_app().await;
    let id = order_id(7100, true);
    app.publish(&order_created(id, 3, 2500)).await;
    assert_eq!(app.events("payment_success", 1).await.len(), 1);
    let cancel = |user: i64| {
        Event::new(
            testing::order(id),
            testing::user(user),
            EventPayload::OrderCancelled {
                reason: shared::kafka::events::OrderReason::UserCancelled,
            },
        )
    };
    app.publish(&cancel(4)).await;
    let refused = testing::wait_for_metric(
        &reqwest::Client::new(),
        &app.base,
        "kafka_events_consumed_total",
        &["event_type=\"order_cancelled\"", "outcome=\"refused\""],
        1.0,
    )
    .await;
    assert_eq!(refused, Some(1.0));
    let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(status, "succeeded", "the forged cancel refunded nothing");

    app.publish(&cancel(3)).await;
    assert_eq!(app.events("payment_refunded", 1).await.len(), 1);
}

#[tokio::test]
async fn payments_are_shown_to_their_owner_or_an_admin() {
    let app = spawn_app().await;
    let id = order_id(9000, true);
    app.publish(&order_created(id, 41, 1234)).await;
    assert_eq!(app.events("payment_success", 1).await.len(), 1);
    let http = reqwest::Client::new();
    let get = |path: String, token: Option<String>| {
        let mut request = http.get(format!("{}{path}", app.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send()
    };
    let owner = testing::token(41, Role::Customer);
    let other = testing::token(42, Role::Customer);
    let admin = testing::token(1, Role::Admin);

    let mine: Vec<Value> = get(
        format!("/api/v1/payments?order_id={id}"),
        Some(owner.clone()),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["amount"], serde_json::json!(12.34));
    assert_eq!(mine[0]["status"], "succeeded");
    let payment_id = mine[0]["id"].as_i64().unwrap();

    let theirs: Vec<Value> = get(format!("/payments?order_id={id}"), Some(other.clone()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(theirs.is_empty());
    assert_eq!(
        get(format!("/payments/{payment_id}"), Some(other))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        get(format!("/payments/{payment_id}"), Some(admin.clone()))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get(format!("/payments/{payment_id}"), Some(owner))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get(format!("/payments/{payment_id}"), None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("/payments/999999".into(), Some(admin.clone()))
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        get("/payments?order_id=abc".into(), Some(admin))
            .await
            .unwrap()
            .status(),
        400
    );
}
