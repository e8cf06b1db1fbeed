//! The invariant checker: reads the five services' databases and the
//! dead-letter topic after a run has settled, and checks the invariants of docs/saga.md:
//!
//! 1. no negative stock; stock conservation (for products seeded with a
//!    known stock: stock + units held + units sold = the seeded stock);
//! 2. every order terminal, and its stock settled (none left held);
//! 3. a paid order has exactly one successful payment, of its total, and
//!    its units committed; a failed, cancelled or rejected order keeps no
//!    money and no stock;
//! 4. one notification per event published, and every published event
//!    applied by every consumer group that acts on it (its inbox row
//!    exists): payment-service for order_created and order_cancelled,
//!    order-service for payment_success and payment_failed,
//!    notification-service for all;
//! 5. no outbox row left unsent, and the dead-letter topic empty.
//!
//! The databases are separate, so rows are read and joined here.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;
use sqlx::{PgPool, Row};

/// Where to look.
#[derive(Debug, Clone)]
pub struct Sources {
    pub product_db: String,
    pub order_db: String,
    pub payment_db: String,
    pub notification_db: String,
    pub brokers: String,
    pub dlq_topic: String,
    /// Only orders (and their events) created at or after this instant.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Products whose name starts with this prefix were created with
    /// `seeded_stock` units and never edited: their units are conserved.
    pub seeded: Option<(String, i64)>,
}

/// One invariant's result.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    /// How many things were checked.
    pub checked: usize,
    pub violations: usize,
    /// A few examples of what is wrong.
    pub examples: Vec<String>,
}

impl Check {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            checked: 0,
            violations: 0,
            examples: Vec::new(),
        }
    }

    fn expect(&mut self, ok: bool, example: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.violations += 1;
            if self.examples.len() < 5 {
                self.examples.push(example());
            }
        }
    }
}

/// All the checks; `ok()` when none is violated.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub checks: Vec<Check>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.violations == 0)
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<4} {:<58} {:>9} {:>10}\n",
            "", "invariant", "checked", "violations"
        );
        for c in &self.checks {
            let mark = if c.violations == 0 { "✓" } else { "✗" };
            out += &format!(
                "{mark:<4} {:<58} {:>9} {:>10}\n",
                c.name, c.checked, c.violations
            );
            for e in &c.examples {
                out += &format!("       e.g. {e}\n");
            }
        }
        out
    }
}

async fn connect(url: &str) -> anyhow::Result<PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {url}: {e}"))
}

struct Order {
    status: String,
    stock: String,
    total_cents: Option<i64>,
}

/// Checks every invariant; an error only when a source cannot be read.
pub async fn check(sources: &Sources) -> anyhow::Result<Verdict> {
    let products = connect(&sources.product_db).await?;
    let orders_db = connect(&sources.order_db).await?;
    let payments_db = connect(&sources.payment_db).await?;
    let notifications_db = connect(&sources.notification_db).await?;
    let since = sources.since;

    let orders: HashMap<i64, Order> = sqlx::query(
        "SELECT id, status, stock, (total_price * 100)::BIGINT AS total_cents \
         FROM orders WHERE created_at >= COALESCE($1, '-infinity'::timestamptz)",
    )
    .bind(since)
    .fetch_all(&orders_db)
    .await?
    .into_iter()
    .map(|r| {
        (
            r.get("id"),
            Order {
                status: r.get("status"),
                stock: r.get("stock"),
                total_cents: r.get("total_cents"),
            },
        )
    })
    .collect();
    // order id -> [(status, amount in cents)]
    let mut payments: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
    for r in sqlx::query(
        "SELECT order_id, status, (amount * 100)::BIGINT AS cents FROM payments WHERE created_at >= COALESCE($1, '-infinity'::timestamptz)",
    )
    .bind(since)
    .fetch_all(&payments_db)
    .await?
    {
        payments
            .entry(r.get("order_id"))
            .or_default()
            .push((r.get("status"), r.get("cents")));
    }
    let reservations: HashMap<i64, String> =
        sqlx::query("SELECT order_id, status FROM stock_reservations WHERE created_at >= COALESCE($1, '-infinity'::timestamptz)")
            .bind(since)
            .fetch_all(&products)
            .await?
            .into_iter()
            .map(|r| (r.get("order_id"), r.get("status")))
            .collect();

    let mut checks = Vec::new();

    // 1. Stock.
    let mut negative = Check::new("no product has negative stock");
    for r in sqlx::query("SELECT id, stock FROM products")
        .fetch_all(&products)
        .await?
    {
        let (id, stock): (i64, i32) = (r.get("id"), r.get("stock"));
        negative.expect(stock >= 0, || format!("product {id} has stock {stock}"));
    }
    checks.push(negative);
    if let Some((prefix, seeded)) = &sources.seeded {
        let mut conserved = Check::new("stock + held + sold = seeded stock (seeded products)");
        let rows = sqlx::query(
            "SELECT p.id, p.stock, \
               COALESCE(SUM(i.quantity) FILTER (WHERE r.status IN ('reserved', 'committed')), 0)::BIGINT AS out \
             FROM products p \
             LEFT JOIN stock_reservation_items i ON i.product_id = p.id \
             LEFT JOIN stock_reservations r ON r.order_id = i.order_id \
             WHERE starts_with(p.name, $1) GROUP BY p.id, p.stock",
        )
        .bind(prefix)
        .fetch_all(&products)
        .await?;
        for r in rows {
            let (id, stock, out): (i64, i32, i64) = (r.get("id"), r.get("stock"), r.get("out"));
            conserved.expect(i64::from(stock) + out == *seeded, || {
                format!("product {id}: stock {stock} + held/sold {out} != {seeded}")
            });
        }
        checks.push(conserved);
    }

    // 2. Terminal.
    let mut terminal = Check::new("every order is terminal");
    let mut settled = Check::new("no order's stock is left unknown or held");
    for (id, o) in &orders {
        terminal.expect(o.status != "pending", || {
            format!("order {id} is still pending")
        });
        settled.expect(!matches!(o.stock.as_str(), "unknown" | "held"), || {
            format!("order {id} ({}) has stock {}", o.status, o.stock)
        });
    }
    checks.push(terminal);
    checks.push(settled);

    // 3. Money and stock per outcome.
    let mut paid = Check::new("a paid order: one successful payment of its total, units sold");
    let mut unpaid = Check::new("a failed/cancelled/rejected order keeps no money, no stock");
    for (id, o) in &orders {
        let succeeded: Vec<i64> = payments
            .get(id)
            .map(|ps| {
                ps.iter()
                    .filter(|(s, _)| s == "succeeded")
                    .map(|(_, c)| *c)
                    .collect()
            })
            .unwrap_or_default();
        let reservation = reservations.get(id).map(String::as_str);
        match o.status.as_str() {
            "paid" => paid.expect(
                succeeded.len() == 1
                    && Some(succeeded[0]) == o.total_cents
                    && reservation == Some("committed"),
                || {
                    format!(
                        "order {id}: successful payments {succeeded:?}, total {:?}, reservation {reservation:?}",
                        o.total_cents
                    )
                },
            ),
            "failed" | "cancelled" | "rejected" => unpaid.expect(
                succeeded.is_empty() && !matches!(reservation, Some("reserved" | "committed")),
                || {
                    format!(
                        "order {id} ({}): successful payments {succeeded:?}, reservation {reservation:?}",
                        o.status
                    )
                },
            ),
            _ => {}
        }
    }
    let mut orphans = Check::new("every payment belongs to an order");
    for order_id in payments.keys() {
        orphans.expect(orders.contains_key(order_id), || {
            format!("payment for unknown order {order_id}")
        });
    }
    checks.push(paid);
    checks.push(unpaid);
    checks.push(orphans);

    // 4. Notifications: one per published event.
    let mut published: HashSet<uuid::Uuid> = HashSet::new();
    let mut published_types: Vec<(uuid::Uuid, String)> = Vec::new();
    for pool in [&orders_db, &payments_db] {
        for r in sqlx::query("SELECT event_id, event_type FROM outbox WHERE created_at >= COALESCE($1, '-infinity'::timestamptz)")
            .bind(since)
            .fetch_all(pool)
            .await?
        {
            published.insert(r.get("event_id"));
            published_types.push((r.get("event_id"), r.get("event_type")));
        }
    }
    // Every event in an inbox of each group that acts on it.
    let mut inboxes: Vec<(&str, HashSet<uuid::Uuid>)> = Vec::new();
    for (group, pool) in [
        ("payment-service", &payments_db),
        ("order-service", &orders_db),
        ("notification-service", &notifications_db),
    ] {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT event_id FROM processed_events")
            .fetch_all(pool)
            .await?;
        inboxes.push((group, ids.into_iter().collect()));
    }
    let mut applied = Check::new("every event applied by every group that needs it (inbox)");
    for (event, event_type) in &published_types {
        for (group, inbox) in &inboxes {
            let needs = match *group {
                "payment-service" => {
                    matches!(event_type.as_str(), "order_created" | "order_cancelled")
                }
                "order-service" => matches!(
                    event_type.as_str(),
                    "payment_success" | "payment_failed" | "payment_refunded"
                ),
                _ => true,
            };
            if needs {
                applied.expect(inbox.contains(event), || {
                    format!("{event_type} {event}: not in {group}'s inbox")
                });
            }
        }
    }
    checks.push(applied);
    let mut notified: HashMap<uuid::Uuid, i64> = HashMap::new();
    for r in sqlx::query("SELECT event_id, count(*) AS n FROM notifications GROUP BY event_id")
        .fetch_all(&notifications_db)
        .await?
    {
        notified.insert(r.get("event_id"), r.get("n"));
    }
    let mut one_each = Check::new("one notification per event");
    for event in &published {
        let n = notified.get(event).copied().unwrap_or(0);
        one_each.expect(n == 1, || format!("event {event}: {n} notifications"));
    }
    checks.push(one_each);

    // 5. The timeline agrees with the order (docs/saga.md, "The timeline"):
    // each step written with its change, once.
    let mut steps: HashMap<i64, HashMap<String, i64>> = HashMap::new();
    for r in sqlx::query(
        "SELECT s.order_id, s.step, count(*) AS n FROM order_steps s JOIN orders o ON o.id = s.order_id \
         WHERE o.created_at >= COALESCE($1, '-infinity'::timestamptz) GROUP BY s.order_id, s.step",
    )
    .bind(since)
    .fetch_all(&orders_db)
    .await?
    {
        steps
            .entry(r.get("order_id"))
            .or_default()
            .insert(r.get("step"), r.get("n"));
    }
    let mut agrees =
        Check::new("every order's timeline has each of its steps once, as the order says");
    for (id, o) in &orders {
        let of = steps.get(id);
        let n = |step: &str| of.and_then(|s| s.get(step)).copied().unwrap_or(0);
        let ending = match o.status.as_str() {
            "paid" => n("paid"),
            "failed" => n("failed"),
            "cancelled" => n("cancelled"),
            "rejected" => n("stock_refused") + n("rejected"),
            _ => 0,
        };
        let endings = n("paid") + n("failed") + n("cancelled") + n("stock_refused") + n("rejected");
        // A rejection may find the units released already (product-service
        // released the order first): then no settle, and no step, released them.
        let released = match (o.stock.as_str(), o.status.as_str()) {
            ("released", "rejected") => n("stock_released") <= 1,
            ("released", _) => n("stock_released") == 1,
            _ => n("stock_released") == 0,
        };
        let committed = i64::from(o.stock == "committed");
        agrees.expect(
            n("placed") == 1
                && n("stock_reserved") == i64::from(o.total_cents.is_some())
                && ending == 1
                && endings == 1
                && n("stock_committed") == committed
                && released,
            || format!("order {id} ({}, stock {}): steps {of:?}", o.status, o.stock),
        );
    }
    let mut announced = Check::new("every event order-service published is one step of its order");
    for r in sqlx::query(
        "SELECT o.event_id, o.order_id, count(s.seq) AS n FROM outbox o \
         LEFT JOIN order_steps s ON s.event_id = o.event_id AND s.step = 'event_published' \
         WHERE o.sent_at IS NOT NULL AND o.created_at >= COALESCE($1, '-infinity'::timestamptz) \
         GROUP BY o.event_id, o.order_id",
    )
    .bind(since)
    .fetch_all(&orders_db)
    .await?
    {
        let (event, order, n): (uuid::Uuid, i64, i64) =
            (r.get("event_id"), r.get("order_id"), r.get("n"));
        announced.expect(n == 1, || {
            format!("order {order}'s event {event}: {n} event_published steps")
        });
    }
    checks.push(agrees);
    checks.push(announced);

    // 6. Nothing stuck.
    let mut outbox = Check::new("no outbox row left unsent (order, payment)");
    for (name, pool) in [("orderdb", &orders_db), ("paymentdb", &payments_db)] {
        let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(pool)
            .await?;
        outbox.expect(unsent == 0, || format!("{name}: {unsent} unsent"));
    }
    checks.push(outbox);
    let mut dlq = Check::new("the dead-letter topic is empty");
    let waiting = dead_letters(&sources.brokers, &sources.dlq_topic).await?;
    dlq.expect(waiting == 0, || {
        format!("{waiting} messages on {}", sources.dlq_topic)
    });
    checks.push(dlq);
    Ok(Verdict { checks })
}

/// Messages on the topic (high minus low watermark over its partitions).
async fn dead_letters(brokers: &str, topic: &str) -> anyhow::Result<i64> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
        let consumer: BaseConsumer = shared::kafka::KafkaConfig::at(&brokers)
            .client()
            .set("group.id", "minishop-invariants")
            .create()?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        let mut total = 0;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (low, high) = consumer.fetch_watermarks(&topic, p.id(), timeout)?;
                total += high - low;
            }
        }
        Ok(total)
    })
    .await?
}
