//! With `SMTP_URL` set, notifications are mailed: every event of an order
//! goes to the address its `order_created` carried, through a real SMTP
//! conversation with a stand-in mail server (email is outside the system);
//! a message for an order without a known address is marked failed, not lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use notification_service::{Config, app};
use shared::config::{Env, FromEnv};
use shared::kafka::events::{Event, EventPayload};
use shared::money::Money;
use shared::shutdown::CancellationToken;
use shared::testing;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One mail as the server received it: recipients and the raw message.
#[derive(Debug, Clone)]
struct Mail {
    to: Vec<String>,
    data: String,
}

/// A minimal SMTP server (RFC 5321 happy path) that keeps what it receives.
async fn mail_server() -> (String, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let kept = inbox.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let inbox = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test ESMTP\r\n").await.ok();
                let mut to = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-test\r\n250 OK\r\n",
                        "HELO" | "MAIL" | "RSET" | "NOOP" => b"250 OK\r\n",
                        "RCPT" => {
                            let address = line.split(['<', '>']).nth(1).unwrap_or("").to_string();
                            to.push(address);
                            b"250 OK\r\n"
                        }
                        "DATA" => {
                            write.write_all(b"354 go ahead\r\n").await.ok();
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            inbox.lock().unwrap().push(Mail {
                                to: std::mem::take(&mut to),
                                data,
                            });
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.ok();
                            break;
                        }
                        _ => b"502 not implemented\r\n",
                    };
                    if write.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, inbox)
}

#[tokio::test]
async fn notifications_are_mailed_to_the_address_of_the_order() {
    let (smtp_url, inbox) = mail_server().await;
    let database_url = testing::fresh_database("notification").await;
    let topic = format!("test_smtp_{}", uuid::Uuid::new_v4().simple());
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
            ("NOTIFY_MAX_ATTEMPTS", "2"),
            ("NOTIFY_BACKOFF_MS", "100"),
            ("NOTIFY_POLL_MS", "100"),
            ("SMTP_URL", &smtp_url),
            ("SMTP_FROM", "Shop <shop@example.com>"),
        ])
        .and(&testing::event_vars("notification-service")),
    )
    .unwrap();
    let kafka = config.kafka.clone();
    let notifier = config.notifier().unwrap();
    let app = app::build(config, notifier).await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(app.run(stop.clone()));
    let db = sqlx::PgPool::connect(&database_url).await.unwrap();

    let created = Event::new(
        shared::testing::order(41),
        shared::testing::user(7),
        EventPayload::OrderCreated {
            items: vec![],
            total_price: Money(1250),
            currency: shared::money::Currency::Usd,
            customer_email: Some("ann@example.com".into()),
        },
    );
    let paid = Event::new(
        shared::testing::order(41),
        shared::testing::user(7),
        EventPayload::PaymentSuccess {
            payment_id: 1,
            amount: Money(1250),
            transaction_id: shared::kafka::events::TransactionId::parse("t-1").unwrap(),
        },
    );
    // An order whose order_created never carried an address.
    let orphan = Event::new(
        shared::testing::order(42),
        shared::testing::user(8),
        EventPayload::OrderConfirmed {
            total_price: Money(100),
        },
    );
    for event in [&created, &paid, &orphan] {
        testing::publish(&kafka, event).await;
    }
    let sent = testing::wait_for_count(
        &db,
        "SELECT count(*) FROM notifications WHERE status = 'sent'",
        2,
    )
    .await;
    assert_eq!(sent, 2);
    let failed = testing::wait_for_count(
        &db,
        "SELECT count(*) FROM notifications WHERE status = 'failed' AND last_error LIKE 'no email address%'",
        1,
    )
    .await;
    assert_eq!(failed, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();

    let mails = inbox.lock().unwrap().clone();
    assert_eq!(mails.len(), 2, "{mails:?}");
    for mail in &mails {
        assert_eq!(mail.to, vec!["ann@example.com".to_string()]);
        assert!(
            mail.data.contains("From: Shop <shop@example.com>"),
            "{}",
            mail.data
        );
    }
    let subjects: Vec<bool> = ["Order #41 placed", "Payment received for order #41"]
        .iter()
        .map(|s| {
            mails
                .iter()
                .any(|m| m.data.contains(&format!("Subject: {s}")))
        })
        .collect();
    assert_eq!(subjects, vec![true, true], "{mails:?}");
}
