//! notification-service against the real broker and PostgreSQL: one
//! notification per event however often it is delivered, a message per
//! type, retries with backoff until delivered, `failed` after N tries, a
//! hanging delivery does not hold up the others, and the REST access rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use notification_service::notifier::{Message, Notifier, Sending};
use notification_service::{Config, app};
use serde_json::Value;
use shared::auth::Role;
use shared::config::{Env, FromEnv};
use shared::kafka::KafkaConfig;
use shared::kafka::events::{Event, EventPayload};
use shared::money::Money;
use shared::shutdown::CancellationToken;
use shared::testing;

/// The email provider stand-in: user 13's mail always fails, user 14's
/// fails twice then works, user 15's hangs; everyone else's is delivered.
#[derive(Default)]
struct FakeMail {
    tries: Mutex<HashMap<i64, u32>>,
    delivered: Mutex<Vec<Message>>,
}

impl Notifier for FakeMail {
    fn send<'a>(&'a self, m: &'a Message) -> Sending<'a> {
        Box::pin(async move {
            let tries = {
                let mut t = self.tries.lock().unwrap();
                *t.entry(m.user_id).or_default() += 1;
                t[&m.user_id]
            };
            match m.user_id {
                13 => return Err("mailbox full".into()),
                14 if tries <= 2 => return Err("smtp timeout".into()),
                15 => std::future::pending::<()>().await,
                _ => {}
            }
            self.delivered.lock().unwrap().push(m.clone());
            Ok(())
        })
    }
}

struct TestApp {
    base: String,
    kafka: KafkaConfig,
    db: sqlx::PgPool,
    mail: Arc<FakeMail>,
    stop: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn spawn_app() -> TestApp {
    let database_url = testing::fresh_database("notification").await;
    let topic = format!("test_notify_{}", uuid::Uuid::new_v4().simple());
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
            ("NOTIFY_MAX_ATTEMPTS", "3"),
            ("NOTIFY_BACKOFF_MS", "100"),
            ("NOTIFY_SEND_TIMEOUT_MS", "500"),
            ("NOTIFY_POLL_MS", "100"),
        ])
        .and(&testing::event_vars("notification-service")),
    )
    .unwrap();
    let kafka = config.kafka.clone();
    let mail = Arc::new(FakeMail::default());
    let app = app::build(config, mail.clone()).await.unwrap();
    let base = format!("http://{}", app.http_addr());
    let stop = CancellationToken::new();
    tokio::spawn(app.run(stop.clone()));
    TestApp {
        base,
        kafka,
        db: sqlx::PgPool::connect(&database_url).await.unwrap(),
        mail,
        stop,
    }
}

impl TestApp {
    async fn publish(&self, event: &Event) {
        testing::publish(&self.kafka, event).await;
    }

    async fn wait_for(&self, sql: &str, expected: i64) -> i64 {
        testing::wait_for_count(&self.db, sql, expected).await
    }
}

fn every_type(order_id: i64, user_id: i64) -> Vec<Event> {
    [
        EventPayload::OrderCreated {
            items: vec![],
            total_price: Money(500),
            currency: shared::money::Currency::Usd,
            customer_email: None,
        },
        EventPayload::PaymentSuccess {
            payment_id: 1,
            amount: Money(500),
            transaction_id: shared::kafka::events::TransactionId::parse("t-1").unwrap(),
        },
        EventPayload::PaymentFailed {
            payment_id: 1,
            amount: Money(500),
            reason: shared::kafka::events::DeclineReason::CardDeclined,
        },
        EventPayload::OrderConfirmed {
            total_price: Money(500),
        },
        EventPayload::OrderCancelled {
            reason: shared::kafka::events::OrderReason::PaymentFailed,
        },
        EventPayload::PaymentRefunded {
            payment_id: 1,
            amount: Money(500),
            reason: shared::kafka::events::RefundReason::OrderCancelled,
        },
    ]
    .into_iter()
    .map(|p| {
        Event::new(
            shared::testing::order(order_id),
            shared::testing::user(user_id),
            p,
        )
    })
    .collect()
}

#[tokio::test]
async fn every_event_gives_one_delivered_notification() {
    let app = spawn_app().await;
    let events = every_type(77, 5);
    for e in &events {
        app.publish(e).await;
    }
    app.publish(&events[0]).await; // redelivered
    assert_eq!(
        app.wait_for(
            "SELECT count(*) FROM notifications WHERE status = 'sent'",
            6
        )
        .await,
        6
    );
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(total, 6, "one notification per event");
    let subjects: Vec<String> = sqlx::query_scalar("SELECT subject FROM notifications ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(
        subjects,
        [
            "Order #77 placed",
            "Payment received for order #77",
            "Payment failed for order #77",
            "Order #77 confirmed",
            "Order #77 cancelled",
            "Refund for order #77",
        ]
    );
    assert_eq!(app.mail.delivered.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn failures_are_retried_then_marked_failed_and_a_hang_blocks_nobody() {
    let app = spawn_app().await;
    let hang = Event::new(
        shared::testing::order(3),
        shared::testing::user(15),
        EventPayload::OrderConfirmed {
            total_price: Money(1),
        },
    );
    let flaky = Event::new(
        shared::testing::order(2),
        shared::testing::user(14),
        EventPayload::OrderConfirmed {
            total_price: Money(1),
        },
    );
    let doomed = Event::new(
        shared::testing::order(1),
        shared::testing::user(13),
        EventPayload::OrderConfirmed {
            total_price: Money(1),
        },
    );
    let fine = Event::new(
        shared::testing::order(4),
        shared::testing::user(16),
        EventPayload::OrderConfirmed {
            total_price: Money(1),
        },
    );
    for e in [&hang, &flaky, &doomed, &fine] {
        app.publish(e).await;
    }
    // The healthy message goes out although another one hangs.
    assert_eq!(
        app.wait_for(
            "SELECT count(*) FROM notifications WHERE user_id = 16 AND status = 'sent'",
            1
        )
        .await,
        1
    );
    // The flaky one is delivered on its third try.
    assert_eq!(
        app.wait_for(
            "SELECT count(*) FROM notifications WHERE user_id = 14 AND status = 'sent'",
            1
        )
        .await,
        1
    );
    let (attempts,): (i32,) =
        sqlx::query_as("SELECT attempts FROM notifications WHERE user_id = 14")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(attempts, 3);
    // The doomed one and the hanging one end failed after 3 tries, with the error kept.
    assert_eq!(
        app.wait_for(
            "SELECT count(*) FROM notifications WHERE status = 'failed'",
            2
        )
        .await,
        2
    );
    let failed: Vec<(i64, i32, String)> =
        sqlx::query_as("SELECT user_id, attempts, last_error FROM notifications WHERE status = 'failed' ORDER BY user_id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(failed[0], (13, 3, "mailbox full".into()));
    assert_eq!((failed[1].0, failed[1].1), (15, 3));
    assert!(failed[1].2.contains("longer than"), "{failed:?}");
}

#[tokio::test]
async fn users_see_their_own_notifications_and_admins_anyones() {
    let app = spawn_app().await;
    for e in every_type(9, 21).into_iter().take(2) {
        app.publish(&e).await;
    }
    assert_eq!(
        app.wait_for("SELECT count(*) FROM notifications", 2).await,
        2
    );
    let http = reqwest::Client::new();
    let get = |query: &str, token: String| {
        http.get(format!("{}/api/v1/notifications{query}", app.base))
            .bearer_auth(token)
            .send()
    };
    let mine = get("", testing::token(21, Role::Customer)).await.unwrap();
    assert_eq!(mine.headers()["x-total-count"], "2");
    let mine: Vec<Value> = mine.json().await.unwrap();
    assert_eq!(mine[0]["subject"], "Order #9 placed");
    let same: Vec<Value> = get("?user_id=21", testing::token(21, Role::Customer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(same.len(), 2);
    assert_eq!(
        get("?user_id=21", testing::token(22, Role::Customer))
            .await
            .unwrap()
            .status(),
        403
    );
    let admin: Vec<Value> = get("?user_id=21", testing::token(1, Role::Admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin.len(), 2);
    assert_eq!(
        get("?limit=0", testing::token(21, Role::Customer))
            .await
            .unwrap()
            .status(),
        400
    );
    let anonymous = http
        .get(format!("{}/notifications", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
