//! The whole saga across the real services — order, product, payment and
//! notification — on the real broker and PostgreSQL: paid and failed
//! orders, insufficient stock, idempotency keys, a hundred concurrent
//! orders for forty units, redelivered and contradicting events, a crash
//! between reservation and publish, a payment-service restart, a poison
//! message. Each test checks the invariants of docs/saga.md it touches.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::auth::Role;
use shared::config::{Env, FromEnv};
use shared::kafka::KafkaConfig;
use shared::kafka::events::{Event, EventPayload};
use shared::shutdown::CancellationToken;
use shared::testing;
use sqlx::PgPool;

const ADMIN: i64 = 1;

#[derive(Clone)]
struct Options {
    /// Event keys over the test ones: every consumer's keyring
    /// (`EVENT_KEYS`) and order-service's signing key.
    event_keys: &'static [(&'static str, &'static str)],
    success_rate: &'static str,
    max_amount: &'static str,
    payment_timeout_secs: &'static str,
    max_pending: &'static str,
    writes_per_min: &'static str,
    writes_burst: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            event_keys: &[],
            success_rate: "1.0",
            max_amount: "100.00",
            payment_timeout_secs: "60",
            max_pending: "1000",
            writes_per_min: "1000000",
            writes_burst: "1000000",
        }
    }
}

struct Stack {
    order: String,
    product: String,
    product_grpc: String,
    order_grpc: std::net::SocketAddr,
    order_url: String,
    payment_url: String,
    order_db: PgPool,
    payment_db: PgPool,
    notification_db: PgPool,
    kafka: KafkaConfig,
    options: Options,
    http: reqwest::Client,
    /// Stops everything but payment- and order-service.
    stop: CancellationToken,
    payment_stop: CancellationToken,
    order_stop: CancellationToken,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
        self.payment_stop.cancel();
        self.order_stop.cancel();
    }
}

fn brokers() -> String {
    std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

async fn start_payment(
    kafka: &KafkaConfig,
    database_url: &str,
    options: &Options,
) -> CancellationToken {
    let config = payment_service::Config::from_env(
        Env::with_overrides(&[
            ("HTTP_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", database_url),
            ("JWT_PUBLIC_KEY", testing::TEST_PUBLIC_KEY),
            // No user-service here: admin tokens are taken at their word.
            ("USER_SERVICE_URL", "none"),
            ("KAFKA_BROKERS", &kafka.brokers),
            ("KAFKA_TOPIC", &kafka.topic),
            ("KAFKA_GROUP_PREFIX", &kafka.group_prefix),
            ("OUTBOX_POLL_MS", "200"),
            ("PAYMENT_SUCCESS_RATE", options.success_rate),
            ("PAYMENT_MAX_AMOUNT", options.max_amount),
        ])
        .and(&testing::event_vars("payment-service"))
        .and(keyring_only(options.event_keys)),
    )
    .unwrap();
    let app = payment_service::app::build(config).await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(app.run(stop.clone()));
    stop
}

/// Starts order-service on `database_url`; returns its HTTP base URL and its
/// gRPC address.
async fn start_order(
    kafka: &KafkaConfig,
    database_url: &str,
    product_grpc: &str,
    options: &Options,
    stop: &CancellationToken,
) -> (String, std::net::SocketAddr) {
    let mut vars = vec![
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("GRPC_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", database_url),
        ("JWT_PUBLIC_KEY", testing::TEST_PUBLIC_KEY),
        // No user-service here: admin tokens are taken at their word.
        ("USER_SERVICE_URL", "none"),
        ("KAFKA_BROKERS", &kafka.brokers),
        ("KAFKA_TOPIC", &kafka.topic),
        ("KAFKA_GROUP_PREFIX", &kafka.group_prefix),
        ("OUTBOX_POLL_MS", "200"),
        ("PRODUCT_GRPC_URL", product_grpc),
        // A debug build on two cores shared with the other services and
        // tests takes seconds to serialise a hundred reservations of one
        // row; the production default (2 s) would open the breaker here.
        ("PRODUCT_GRPC_DEADLINE_MS", "15000"),
        // Tests bring product-service back within seconds: retry it soon.
        ("PRODUCT_BREAKER_OPEN_MS", "1000"),
        ("RECOVERY_INTERVAL_MS", "200"),
        ("RECOVERY_GRACE_MS", "1000"),
        ("PAYMENT_TIMEOUT_SECS", options.payment_timeout_secs),
        ("ORDER_MAX_PENDING", options.max_pending),
        ("RATE_LIMIT_WRITES_PER_MIN", options.writes_per_min),
        ("RATE_LIMIT_WRITES_BURST", options.writes_burst),
    ];
    vars.extend(testing::pki::trusted().vars("order-service"));
    vars.extend(testing::event_vars("order-service"));
    vars.extend_from_slice(options.event_keys);
    let config = order_service::Config::from_env(Env::with_overrides(&vars)).unwrap();
    let app = order_service::app::build(config).await.unwrap();
    let urls = (
        format!("http://{}", app.http_addr()),
        app.grpc_addr().expect("it serves gRPC"),
    );
    tokio::spawn(app.run(stop.clone()));
    urls
}

/// The keyring among `keys` (a consumer that produces nothing gets no
/// signing key).
fn keyring_only<'a>(
    keys: &'a [(&'static str, &'static str)],
) -> &'a [(&'static str, &'static str)] {
    match keys.iter().position(|(k, _)| *k == "EVENT_KEYS") {
        Some(i) => &keys[i..=i],
        None => &[],
    }
}

async fn spawn_stack(options: Options) -> Stack {
    let stop = CancellationToken::new();
    let topic = format!("test_saga_{}", uuid::Uuid::new_v4().simple());
    let kafka = KafkaConfig {
        brokers: brokers(),
        // Consumer groups of this test only: no rebalances with other tests'.
        group_prefix: format!("{topic}."),
        topic,
        partitions: 3,
        retry_max_backoff: Duration::from_millis(200),
        outbox_poll: Duration::from_millis(200),
        outbox_retention: Duration::from_secs(3600),
        lag_interval: Duration::from_millis(500),
        commit_interval: Duration::from_millis(500),
        group_instance_id: None,
        // The login, if the test broker asks for one (scripts/test.sh).
        ..KafkaConfig::at("")
    };
    kafka.ensure_topics().await.unwrap();
    let (product_http, product_grpc) = product_service::testing::spawn(&stop).await;
    let product_grpc = format!("https://{product_grpc}");
    let payment_url = testing::fresh_database("payment").await;
    let order_url = testing::fresh_database("order").await;
    let notification_url = testing::fresh_database("notification").await;

    let notification = notification_service::app::build(
        notification_service::Config::from_env(
            Env::with_overrides(&[
                ("HTTP_ADDR", "127.0.0.1:0"),
                ("DATABASE_URL", &notification_url),
                ("JWT_PUBLIC_KEY", testing::TEST_PUBLIC_KEY),
                // No user-service here: admin tokens are taken at their word.
                ("USER_SERVICE_URL", "none"),
                ("KAFKA_BROKERS", &kafka.brokers),
                ("KAFKA_TOPIC", &kafka.topic),
                ("KAFKA_GROUP_PREFIX", &kafka.group_prefix),
                ("NOTIFY_POLL_MS", "200"),
            ])
            .and(&testing::event_vars("notification-service"))
            .and(keyring_only(options.event_keys)),
        )
        .unwrap(),
        Arc::new(notification_service::notifier::LogNotifier),
    )
    .await
    .unwrap();
    tokio::spawn(notification.run(stop.clone()));
    let payment_stop = start_payment(&kafka, &payment_url, &options).await;
    let order_stop = CancellationToken::new();
    let (order, order_grpc) =
        start_order(&kafka, &order_url, &product_grpc, &options, &order_stop).await;
    Stack {
        order,
        product: format!("http://{product_http}"),
        product_grpc,
        order_grpc,
        order_db: PgPool::connect(&order_url).await.unwrap(),
        payment_db: PgPool::connect(&payment_url).await.unwrap(),
        notification_db: PgPool::connect(&notification_url).await.unwrap(),
        order_url,
        payment_url,
        kafka,
        options,
        http: reqwest::Client::new(),
        stop,
        payment_stop,
        order_stop,
    }
}

impl Stack {
    /// A customer's client of order-service's gRPC: TLS, no certificate.
    async fn order_client(
        &self,
    ) -> shared::proto::order::order_service_client::OrderServiceClient<tonic::transport::Channel>
    {
        let endpoint = testing::pki::endpoint(self.order_grpc, "order-service", None);
        shared::proto::order::order_service_client::OrderServiceClient::new(
            endpoint
                .connect()
                .await
                .expect("order-service's gRPC connects over TLS"),
        )
    }

    async fn product(&self, price: f64, stock: i32) -> i64 {
        let product: Value = self
            .http
            .post(format!("{}/products", self.product))
            .bearer_auth(testing::token(ADMIN, Role::Admin))
            .json(&json!({"name": "Widget", "price": price, "stock": stock}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        product["id"].as_i64().unwrap()
    }

    async fn stock(&self, product: i64) -> i64 {
        let product: Value = self
            .http
            .get(format!("{}/products/{product}", self.product))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        product["stock"].as_i64().unwrap()
    }

    async fn place(&self, user: i64, body: Value, key: Option<&str>) -> (StatusCode, Value) {
        self.place_at(&self.order, user, body, key).await
    }

    /// [`Self::place`] at the order-service at `base`.
    async fn place_at(
        &self,
        base: &str,
        user: i64,
        body: Value,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{base}/orders"))
            .bearer_auth(testing::token(user, Role::Customer))
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// `POST /orders/{id}/cancel` as customer `user`.
    fn cancel(
        &self,
        user: i64,
        id: i64,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
        self.http
            .post(format!("{}/orders/{id}/cancel", self.order))
            .bearer_auth(testing::token(user, Role::Customer))
            .send()
    }

    async fn get(&self, user: i64, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.order))
            .bearer_auth(testing::token(user, Role::Customer))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn count(&self, db: &PgPool, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(db)
            .await
            .unwrap()
    }

    /// Waits until order `id` is terminal and its stock settled (at most 30 s).
    async fn settled(&self, id: i64) -> Value {
        self.settled_at(&self.order, id).await
    }

    /// [`Self::settled`], reading the order from the order-service at `base`.
    async fn settled_at(&self, base: &str, id: i64) -> Value {
        for _ in 0..300 {
            let done = self
                .count(
                    &self.order_db,
                    &format!(
                        "SELECT count(*) FROM orders WHERE id = {id} AND status <> 'pending' \
                         AND stock NOT IN ('unknown', 'held')"
                    ),
                )
                .await;
            if done == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let response = self
            .http
            .get(format!("{base}/orders/{id}"))
            .bearer_auth(testing::token(ADMIN, Role::Admin))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Waits (at most 30 s) until order `id`'s timeline, as customer `user`
    /// reads it, is `saga` (step, cause, causing event type) with the
    /// events of `published` published among them, and returns it. Each
    /// publication comes after the step that wrote its event; when it is
    /// recorded relative to later steps depends on the relay, so it is
    /// checked apart from them.
    async fn timeline(&self, user: i64, id: i64, saga: &[Step], published: &[&str]) -> Value {
        self.timeline_at(&self.order, user, id, saga, published)
            .await
    }

    /// [`Self::timeline`], read from the order-service at `base`.
    async fn timeline_at(
        &self,
        base: &str,
        user: i64,
        id: i64,
        saga: &[Step],
        published: &[&str],
    ) -> Value {
        let url = format!("{base}/orders/{id}/timeline");
        let mut timeline = Value::Null;
        for _ in 0..300 {
            let response = self
                .http
                .get(&url)
                .bearer_auth(testing::token(user, Role::Customer))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
            timeline = body;
            if steps_of(&timeline) == (saga.to_vec(), published.to_vec()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            steps_of(&timeline),
            (saga.to_vec(), published.to_vec()),
            "{timeline:#}"
        );
        assert_eq!(timeline["order_id"], id);
        let steps = timeline["steps"].as_array().unwrap();
        let seqs: Vec<i64> = steps.iter().map(|s| s["seq"].as_i64().unwrap()).collect();
        assert!(seqs.is_sorted(), "{timeline:#}");
        for step in steps {
            let at = step["at"].as_str().unwrap();
            assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{step}");
            if step["cause"] == "event" || step["step"] == "event_published" {
                assert!(
                    step["event_id"].as_str().is_some_and(|e| e.len() == 36),
                    "{step}"
                );
            }
        }
        for publication in steps.iter().filter(|s| s["step"] == "event_published") {
            let writers: &[&str] = match publication["event_type"].as_str().unwrap() {
                "order_created" => &["stock_reserved"],
                "order_confirmed" => &["paid"],
                _ => &["failed", "cancelled"],
            };
            let writer = steps
                .iter()
                .find(|s| writers.contains(&s["step"].as_str().unwrap()))
                .unwrap_or_else(|| panic!("nothing wrote {publication}: {timeline:#}"));
            assert!(
                writer["seq"].as_i64() < publication["seq"].as_i64(),
                "{timeline:#}"
            );
        }
        timeline
    }

    /// Checks every event on this stack's topic against docs/asyncapi.yaml
    /// and that they are, by type, `expected`.
    async fn check_contract(&self, expected: &[(&str, usize)]) {
        let seen = testing::contract::check_topic(&self.kafka).await;
        let expected: std::collections::BTreeMap<String, usize> =
            expected.iter().map(|(t, n)| (t.to_string(), *n)).collect();
        assert_eq!(seen, expected, "the events on the topic, by type");
    }

    /// Events of `event_type` this order's service wrote to its outbox for `order`.
    async fn outbox(&self, db: &PgPool, order: i64, event_type: &str) -> i64 {
        self.count(
            db,
            &format!(
                "SELECT count(*) FROM outbox WHERE order_id = {order} AND event_type = '{event_type}'"
            ),
        )
        .await
    }
}

/// The events on the topic of a test that had one order paid.
const ONE_PAID_ORDER: &[(&str, usize)] = &[
    ("order_created", 1),
    ("payment_success", 1),
    ("order_confirmed", 1),
];

/// A step of a timeline as the tests expect it: its name, its cause and
/// the causing event's type.
type Step = (&'static str, &'static str, Option<&'static str>);

/// The timeline of an order placed by a request and paid, but its
/// publications ([`PAID_PUBLISHED`]).
const PAID_STEPS: &[Step] = &[
    ("placed", "request", None),
    ("stock_reserved", "request", None),
    ("payment_received", "event", Some("payment_success")),
    ("paid", "event", Some("payment_success")),
    ("stock_committed", "event", Some("payment_success")),
];
/// The events a paid order publishes.
const PAID_PUBLISHED: &[&str] = &["order_created", "order_confirmed"];

/// A timeline's steps but its publications, and the types of the events
/// it says were published, in order.
fn steps_of(timeline: &Value) -> (Vec<Step>, Vec<&'static str>) {
    // The names the tests use, so the steps read back can be compared as
    // `Step`s (an unknown name stays unknown and fails the comparison).
    const NAMES: &[&str] = &[
        "placed",
        "stock_reserved",
        "stock_refused",
        "rejected",
        "event_published",
        "payment_received",
        "paid",
        "failed",
        "cancelled",
        "stock_committed",
        "stock_released",
        "refunded",
        "request",
        "customer_cancel",
        "event",
        "recovery",
        "payment_timeout",
        "relay",
        "order_created",
        "order_confirmed",
        "order_cancelled",
        "payment_success",
        "payment_failed",
        "payment_refunded",
    ];
    let name = |v: &Value| {
        let text = v.as_str().unwrap_or("");
        NAMES
            .iter()
            .copied()
            .find(|n| *n == text)
            .unwrap_or("unknown")
    };
    let mut saga = Vec::new();
    let mut published = Vec::new();
    for step in timeline["steps"].as_array().into_iter().flatten() {
        if step["step"] == "event_published" {
            published.push(name(&step["event_type"]));
        } else {
            let event = (!step["event_type"].is_null()).then(|| name(&step["event_type"]));
            saga.push((name(&step["step"]), name(&step["cause"]), event));
        }
    }
    (saga, published)
}

/// A gRPC CreateOrder of `items` (product, quantity) with `key`, signed by
/// `user` as a customer (unsigned if `None`).
fn create_request(
    user: Option<i64>,
    items: Vec<(i64, i32)>,
    key: &str,
) -> tonic::Request<shared::proto::order::CreateOrderRequest> {
    use shared::proto::order::{CreateOrderRequest, OrderItem};
    let mut request = tonic::Request::new(CreateOrderRequest {
        items: items
            .into_iter()
            .map(|(product_id, quantity)| OrderItem {
                product_id,
                quantity,
                unit_price_cents: 0,
            })
            .collect(),
        idempotency_key: key.into(),
    });
    if let Some(user) = user {
        let token = format!("Bearer {}", testing::token(user, Role::Customer));
        request
            .metadata_mut()
            .insert("authorization", token.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn an_order_is_paid_end_to_end_with_one_payment_and_a_notification_per_event() {
    let stack = spawn_stack(Options::default()).await;
    let product = stack.product(12.5, 10).await;

    let (status, order) = stack
        .place(7, json!({"product_id": product, "quantity": 2}), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "pending");
    assert_eq!(order["user_id"], 7);
    assert_eq!(order["total_price"], json!(25.0));
    assert_eq!(order["items"][0]["unit_price"], json!(12.5));
    assert_eq!(order["product_id"], product);
    assert_eq!(order["quantity"], 2);
    let id = order["id"].as_i64().unwrap();
    assert_eq!(stack.stock(product).await, 8, "the units are held at once");

    let order = stack.settled(id).await;
    assert_eq!(order["status"], "paid", "{order}");
    assert_eq!(stack.stock(product).await, 8);
    let payments = stack
        .count(
            &stack.payment_db,
            &format!(
                "SELECT count(*) FROM payments WHERE order_id = {id} AND status = 'succeeded'"
            ),
        )
        .await;
    assert_eq!(payments, 1);
    assert_eq!(stack.outbox(&stack.order_db, id, "order_created").await, 1);
    assert_eq!(
        stack.outbox(&stack.order_db, id, "order_confirmed").await,
        1
    );
    assert_eq!(
        stack
            .count(
                &stack.order_db,
                &format!("SELECT count(*) FROM orders WHERE id = {id} AND stock = 'committed'")
            )
            .await,
        1
    );
    // order_created, payment_success, order_confirmed: one notification each.
    let notified = testing::wait_for_count(
        &stack.notification_db,
        &format!("SELECT count(*) FROM notifications WHERE order_id = {id}"),
        3,
    )
    .await;
    assert_eq!(notified, 3);
    // order_created carried the customer's email (from the token): all three can be mailed.
    let addressed = stack
        .count(
            &stack.notification_db,
            &format!(
                "SELECT count(*) FROM notifications WHERE order_id = {id} AND recipient = 'user7@example.com'"
            ),
        )
        .await;
    assert_eq!(addressed, 3);

    // Its timeline, step by step; to another customer it does not exist.
    stack.timeline(7, id, PAID_STEPS, PAID_PUBLISHED).await;
    let (status, _) = stack.get(8, &format!("/orders/{id}/timeline")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let as_admin = stack
        .http
        .get(format!("{}/api/v1/orders/{id}/timeline", stack.order))
        .bearer_auth(testing::token(ADMIN, Role::Admin))
        .send()
        .await
        .unwrap();
    assert_eq!(as_admin.status(), StatusCode::OK, "an admin reads anyone's");
    let (status, body) = stack.get(7, "/orders/0/timeline").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    stack.check_contract(ONE_PAID_ORDER).await;

    // The owner sees it in their list; to another customer it does not
    // exist: the same 404 as an id nobody has.
    let (status, list) = stack.get(7, "/api/v1/orders").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id);
    let (status, theirs) = stack.get(8, &format!("/orders/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let missing = id + 1_000_000;
    let (status, nobodys) = stack.get(8, &format!("/orders/{missing}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(theirs["code"], nobodys["code"]);
    let (status, list) = stack.get(8, "/orders").await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));
    // A paid order can no longer be cancelled.
    let response = stack
        .http
        .post(format!("{}/orders/{id}/cancel", stack.order))
        .bearer_auth(testing::token(7, Role::Customer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "paid");
}

#[tokio::test]
async fn a_declined_payment_fails_the_order_and_gives_the_stock_back() {
    let stack = spawn_stack(Options::default()).await;
    // Over PAYMENT_MAX_AMOUNT (100.00): the gateway always declines.
    let product = stack.product(60.0, 5).await;
    let (status, order) = stack
        .place(
            3,
            json!({"items": [{"product_id": product, "quantity": 2}]}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["id"].as_i64().unwrap();

    let order = stack.settled(id).await;
    assert_eq!(order["status"], "failed", "{order}");
    assert_eq!(order["reason"], "payment_failed");
    assert_eq!(stack.stock(product).await, 5, "the held units are back");
    assert_eq!(
        stack.outbox(&stack.order_db, id, "order_cancelled").await,
        1
    );
    let kept = stack
        .count(
            &stack.payment_db,
            &format!(
                "SELECT count(*) FROM payments WHERE order_id = {id} AND status = 'succeeded'"
            ),
        )
        .await;
    assert_eq!(kept, 0, "a failed order keeps no money");
    let failed = Some("payment_failed");
    let timeline = stack
        .timeline(
            3,
            id,
            &[
                ("placed", "request", None),
                ("stock_reserved", "request", None),
                ("payment_received", "event", failed),
                ("failed", "event", failed),
                ("stock_released", "event", failed),
            ],
            &["order_created", "order_cancelled"],
        )
        .await;
    let failed = &timeline["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "failed");
    let detail = failed.unwrap()["detail"].as_str().unwrap();
    assert!(detail.starts_with("declined: "), "{detail}");
    stack
        .check_contract(&[
            ("order_created", 1),
            ("payment_failed", 1),
            ("order_cancelled", 1),
        ])
        .await;
}

#[tokio::test]
async fn short_stock_is_a_409_with_the_stock_and_holds_nothing() {
    let stack = spawn_stack(Options::default()).await;
    let product = stack.product(1.0, 3).await;
    let other = stack.product(1.0, 10).await;
    let (status, body) = stack
        .place(
            4,
            json!({"items": [{"product_id": other, "quantity": 2}, {"product_id": product, "quantity": 5}]}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "Product not available");
    assert_eq!(body["stock"], 3);
    assert_eq!(body["product_id"], product);
    assert_eq!(stack.stock(product).await, 3);
    assert_eq!(stack.stock(other).await, 10, "all or nothing");
    let id = body["order_id"].as_i64().unwrap();
    let (_, order) = stack.get(4, &format!("/orders/{id}")).await;
    assert_eq!(order["status"], "rejected");
    assert_eq!(order["reason"], "insufficient_stock");
    assert_eq!(stack.outbox(&stack.order_db, id, "order_created").await, 0);

    // An unknown product is a 404 and a rejected order, too.
    let (status, body) = stack
        .place(4, json!({"product_id": 999_999, "quantity": 1}), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "product_not_found");
}

#[tokio::test]
async fn bad_orders_get_a_clear_4xx_and_write_nothing() {
    let stack = spawn_stack(Options::default()).await;
    let product = stack.product(1.0, 3).await;
    let cases = [
        (json!({}), "product_id"),
        (json!({"product_id": product}), "quantity"),
        (
            json!({"product_id": product, "quantity": 0}),
            "items[0].quantity",
        ),
        // An id that is not positive is refused where the body is read.
        (json!({"product_id": -1, "quantity": 1}), "product_id"),
        (
            json!({"items": [{"product_id": product, "quantity": 1}, {"product_id": 0, "quantity": 1}]}),
            "items[1].product_id",
        ),
        (
            json!({"user_id": 0, "product_id": product, "quantity": 1}),
            "user_id",
        ),
        (json!({"items": []}), "items"),
        (
            json!({"items": [{"product_id": product, "quantity": 1}], "product_id": product}),
            "items",
        ),
        (
            json!({"product_id": product, "quantity": "two"}),
            "quantity",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = stack.place(5, body.clone(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {error}");
        assert_eq!(error["field"], field, "{body} -> {error}");
    }
    let (status, error) = stack
        .place(
            5,
            json!({"user_id": 6, "product_id": product, "quantity": 1}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    let response = stack
        .http
        .post(format!("{}/orders", stack.order))
        .json(&json!({"product_id": product, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, error) = stack
        .place(
            5,
            json!({"product_id": product, "quantity": 1}),
            Some("bad key with spaces"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["field"], "Idempotency-Key");
    assert_eq!(
        stack
            .count(&stack.order_db, "SELECT count(*) FROM orders")
            .await,
        0
    );
    assert_eq!(stack.stock(product).await, 3);
    let (status, error) = stack.get(5, "/orders?status=shipped").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["field"], "status");
    let says = error["error"].as_str().unwrap_or_default();
    assert!(
        says.contains("`pending`") && says.contains("`rejected`"),
        "{error}"
    );
    let (status, _) = stack.get(5, "/orders?user_id=6").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn one_idempotency_key_makes_one_order_however_often_it_is_sent() {
    let stack = spawn_stack(Options::default()).await;
    let product = stack.product(2.0, 50).await;
    let body = json!({"product_id": product, "quantity": 1});
    let (status, first) = stack.place(9, body.clone(), Some("key-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = stack.place(9, body.clone(), Some("key-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again["id"], first["id"]);

    // Ten at once with a fresh key: one order, every answer names it (or says wait).
    let answers =
        futures::future::join_all((0..10).map(|_| stack.place(9, body.clone(), Some("key-2"))))
            .await;
    let ids: std::collections::BTreeSet<i64> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, o)| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    for (status, answer) in &answers {
        assert!(
            *status == StatusCode::CREATED
                || (*status == StatusCode::CONFLICT && answer["code"] == "request_in_progress"),
            "{status} {answer}"
        );
    }
    // The same key with other items is refused, not a second order.
    let (status, error) = stack
        .place(
            9,
            json!({"product_id": product, "quantity": 2}),
            Some("key-1"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    // Another user's key is theirs.
    let (status, other) = stack.place(10, body.clone(), Some("key-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(other["id"], first["id"]);

    assert_eq!(
        stack
            .count(&stack.order_db, "SELECT count(*) FROM orders")
            .await,
        3
    );
    assert_eq!(stack.stock(product).await, 47);
}

#[tokio::test]
async fn a_hundred_concurrent_orders_for_forty_units_never_oversell() {
    let stack = spawn_stack(Options {
        success_rate: "0.8",
        max_amount: "10000.00",
        ..Options::default()
    })
    .await;
    let product = stack.product(5.0, 40).await;
    let answers = futures::future::join_all(
        (0..100).map(|i| stack.place(100 + i, json!({"product_id": product, "quantity": 1}), None)),
    )
    .await;
    let created: Vec<i64> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, o)| o["id"].as_i64().unwrap())
        .collect();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["error"] == "Product not available")
        .count();
    let statuses: Vec<(u16, &Value)> = answers
        .iter()
        .filter(|(s, _)| *s != StatusCode::CREATED)
        .map(|(s, b)| (s.as_u16(), &b["code"]))
        .collect();
    assert_eq!(created.len(), 40, "exactly the stock is sold: {statuses:?}");
    assert_eq!(refused, 60, "{statuses:?}");
    // Every unit is held now, but a payment declined meanwhile may already
    // have given its unit back: never below zero, and never more than the
    // failed orders' (the exact count is the conservation check below).
    let left = stack.stock(product).await;
    let failed_so_far = stack
        .count(
            &stack.order_db,
            "SELECT count(*) FROM orders WHERE status = 'failed'",
        )
        .await;
    assert!(
        (0..=failed_so_far).contains(&left),
        "never below zero: {left} left, {failed_so_far} failed so far"
    );

    for id in &created {
        stack.settled(*id).await;
    }
    let paid = stack
        .count(
            &stack.order_db,
            "SELECT count(*) FROM orders WHERE status = 'paid'",
        )
        .await;
    let failed = stack
        .count(
            &stack.order_db,
            "SELECT count(*) FROM orders WHERE status = 'failed'",
        )
        .await;
    assert_eq!(paid + failed, 40);
    assert!(
        paid > 0 && failed > 0,
        "the 0.8 success rate gives both: {paid} paid"
    );
    // Conservation: what is left plus what was sold is what there was.
    assert_eq!(stack.stock(product).await + paid, 40);
    assert_eq!(
        stack
            .count(
                &stack.order_db,
                "SELECT count(*) FROM orders WHERE status = 'rejected'"
            )
            .await,
        60
    );
    // Exactly one successful payment per paid order, none kept for the rest.
    let successes = stack
        .count(
            &stack.payment_db,
            "SELECT count(*) FROM payments WHERE status = 'succeeded'",
        )
        .await;
    assert_eq!(successes, paid);
    let payments = stack
        .count(
            &stack.payment_db,
            "SELECT count(DISTINCT order_id) FROM payments",
        )
        .await;
    assert_eq!(payments, 40);
    assert_eq!(
        testing::wait_for_count(
            &stack.order_db,
            "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL",
            40 + 40,
        )
        .await,
        80,
        "order_created and order_confirmed/cancelled, all published"
    );
    let (paid, failed) = (paid as usize, failed as usize);
    stack
        .check_contract(&[
            ("order_created", 40),
            ("payment_success", paid),
            ("payment_failed", failed),
            ("order_confirmed", paid),
            ("order_cancelled", failed),
        ])
        .await;
}

#[tokio::test]
async fn redelivered_and_contradicting_payment_events_change_nothing() {
    let stack = spawn_stack(Options::default()).await;
    let product = stack.product(10.0, 5).await;
    let (_, order) = stack
        .place(11, json!({"product_id": product, "quantity": 1}), None)
        .await;
    let id = order["id"].as_i64().unwrap();
    assert_eq!(stack.settled(id).await["status"], "paid");

    // The very payment_success again, twice, and a payment_failed for the paid order.
    let payload: String = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE order_id = $1 AND event_type = 'payment_success'",
    )
    .bind(id)
    .fetch_one(&stack.payment_db)
    .await
    .unwrap();
    let success: Event = serde_json::from_str(&payload).unwrap();
    testing::publish(&stack.kafka, &success).await;
    testing::publish(&stack.kafka, &success).await;
    let late_failure = Event::new(
        testing::order(id),
        testing::user(11),
        EventPayload::PaymentFailed {
            payment_id: 1,
            amount: shared::money::Money(1000),
            reason: shared::kafka::events::DeclineReason::CardDeclined,
        },
    );
    testing::publish(&stack.kafka, &late_failure).await;
    // The late failure is the last of this order's events: once it is in the
    // inbox, the repeats before it were seen too.
    assert_eq!(
        testing::wait_for_count(
            &stack.order_db,
            &format!(
                "SELECT count(*) FROM processed_events WHERE event_id = '{}'",
                late_failure.event_id
            ),
            1,
        )
        .await,
        1
    );
    let order = stack.settled(id).await;
    assert_eq!(order["status"], "paid");
    assert_eq!(
        stack.outbox(&stack.order_db, id, "order_confirmed").await,
        1
    );
    assert_eq!(
        stack.outbox(&stack.order_db, id, "order_cancelled").await,
        0
    );
    assert_eq!(stack.stock(product).await, 4);
    // The repeats added no step; the late failure, a new event, is
    // recorded as received and ignored.
    let ignored = [("payment_received", "event", Some("payment_failed"))];
    let timeline = stack
        .timeline(11, id, &[PAID_STEPS, &ignored].concat(), PAID_PUBLISHED)
        .await;
    let last = timeline["steps"]
        .as_array()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(last["event_id"], late_failure.event_id.to_string());
    assert_eq!(last["detail"], "ignored: the order is already paid");
    // The repeats were published as a producer would: they hold to the contract too.
    stack
        .check_contract(&[
            ("order_created", 1),
            ("payment_success", 3),
            ("order_confirmed", 1),
            ("payment_failed", 1),
        ])
        .await;
}

#[tokio::test]
async fn an_order_interrupted_after_its_reservation_is_finished_by_the_recovery_loop() {
    let stack = spawn_stack(Options::default()).await;
    let product = stack.product(10.0, 5).await;
    // Stop order-service, then leave exactly what a crash between
    // ReserveStock and the order_created transaction leaves: a pending
    // order whose units product-service holds, and no event.
    stack.order_stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id: i64 = sqlx::query_scalar("INSERT INTO orders (user_id) VALUES (12) RETURNING id")
        .fetch_one(&stack.order_db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 2)")
        .bind(id)
        .bind(product)
        .execute(&stack.order_db)
        .await
        .unwrap();
    let client = order_service::product_client::ProductClient::new(
        order_service::product_client::ProductClientConfig {
            url: stack.product_grpc.clone(),
            tls: Some(testing::pki::trusted().tls("order-service")),
            deadline: Duration::from_secs(2),
            attempts: 1,
            backoff: Duration::from_millis(10),
            breaker_failures: 5,
            breaker_open: Duration::from_secs(1),
            resolve_every: Duration::ZERO,
        },
        &shared::metrics::Metrics::new("crash-test"),
    )
    .unwrap();
    let line = shared::stock::OrderLine::new(testing::product(product), 2);
    client.reserve(testing::order(id), &[line]).await.unwrap();
    assert_eq!(stack.stock(product).await, 3);

    // The restarted service finds it and completes the saga.
    let restart = CancellationToken::new();
    let (restarted, _) = start_order(
        &stack.kafka,
        &stack.order_url,
        &stack.product_grpc,
        &stack.options,
        &restart,
    )
    .await;
    let order = stack.settled_at(&restarted, id).await;
    assert_eq!(order["status"], "paid", "{order}");
    assert_eq!(order["total_price"], json!(20.0));
    assert_eq!(stack.stock(product).await, 3);
    assert_eq!(stack.outbox(&stack.order_db, id, "order_created").await, 1);
    // Written behind the service's back, so it has no `placed`; the
    // recovery loop took the reservation step.
    let success = Some("payment_success");
    stack
        .timeline_at(
            &restarted,
            12,
            id,
            &[
                ("stock_reserved", "recovery", None),
                ("payment_received", "event", success),
                ("paid", "event", success),
                ("stock_committed", "event", success),
            ],
            &["order_created", "order_confirmed"],
        )
        .await;
    restart.cancel();
}

#[tokio::test]
async fn a_payment_service_restart_and_a_redelivered_order_created_pay_once() {
    let stack = spawn_stack(Options::default()).await;
    let product = stack.product(10.0, 5).await;
    let (_, order) = stack
        .place(13, json!({"product_id": product, "quantity": 1}), None)
        .await;
    let id = order["id"].as_i64().unwrap();
    assert_eq!(stack.settled(id).await["status"], "paid");

    // payment-service dies after its commit; a new one gets order_created
    // again (its offset may not have been committed), plus a poison message.
    stack.payment_stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let payload: String = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE order_id = $1 AND event_type = 'order_created'",
    )
    .bind(id)
    .fetch_one(&stack.order_db)
    .await
    .unwrap();
    let created: Event = serde_json::from_str(&payload).unwrap();
    let producer = stack.kafka.producer().unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&stack.kafka.topic)
                .key("poison")
                .payload("{not json"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    testing::publish(&stack.kafka, &created).await;
    let restarted = start_payment(&stack.kafka, &stack.payment_url, &stack.options).await;
    // A second order still goes through after the poison message.
    let (_, second) = stack
        .place(13, json!({"product_id": product, "quantity": 1}), None)
        .await;
    let second = second["id"].as_i64().unwrap();
    assert_eq!(stack.settled(second).await["status"], "paid");
    // Every event on the topic holds to the contract; the poison message
    // is no event at all (and was dead-lettered).
    let sent = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL";
    testing::wait_for_count(&stack.order_db, sent, 4).await;
    testing::wait_for_count(&stack.payment_db, sent, 2).await;
    stack
        .check_contract(&[
            ("order_created", 3),
            ("payment_success", 2),
            ("order_confirmed", 2),
            (testing::contract::NOT_AN_EVENT, 1),
        ])
        .await;
    restarted.cancel();
    assert_eq!(
        stack
            .count(
                &stack.payment_db,
                &format!("SELECT count(*) FROM payments WHERE order_id = {id}")
            )
            .await,
        1,
        "no second payment"
    );
    assert_eq!(
        stack.outbox(&stack.payment_db, id, "payment_success").await,
        1
    );
    assert_eq!(stack.stock(product).await, 3);
}

#[tokio::test]
async fn a_pending_order_is_cancelled_by_its_owner_or_by_the_payment_timeout() {
    // No payment-service: orders wait for a payment that never comes.
    let stack = spawn_stack(Options {
        payment_timeout_secs: "2",
        ..Options::default()
    })
    .await;
    stack.payment_stop.cancel();
    let product = stack.product(10.0, 5).await;
    let (_, first) = stack
        .place(14, json!({"product_id": product, "quantity": 2}), None)
        .await;
    let (_, second) = stack
        .place(14, json!({"product_id": product, "quantity": 1}), None)
        .await;
    assert_eq!(stack.stock(product).await, 2);
    let first = first["id"].as_i64().unwrap();
    let second = second["id"].as_i64().unwrap();

    let cancel = |user: i64, id: i64| stack.cancel(user, id);
    assert_eq!(
        cancel(15, first).await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "another user's order is as missing as one that does not exist"
    );
    let response = cancel(14, first).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["reason"], "user_cancelled");
    assert_eq!(
        cancel(14, first).await.unwrap().status(),
        StatusCode::OK,
        "again: harmless"
    );

    let timed_out = stack.settled(second).await;
    assert_eq!(timed_out["status"], "cancelled");
    assert_eq!(timed_out["reason"], "timeout");
    stack.settled(first).await;
    assert_eq!(stack.stock(product).await, 5, "both orders' units are back");
    assert_eq!(
        stack
            .outbox(&stack.order_db, first, "order_cancelled")
            .await,
        1
    );
    assert_eq!(
        stack
            .outbox(&stack.order_db, second, "order_cancelled")
            .await,
        1
    );
    stack
        .check_contract(&[("order_created", 2), ("order_cancelled", 2)])
        .await;
    // The second cancel changed nothing, so it is no step.
    stack
        .timeline(
            14,
            first,
            &[
                ("placed", "request", None),
                ("stock_reserved", "request", None),
                ("cancelled", "customer_cancel", None),
                ("stock_released", "customer_cancel", None),
            ],
            &["order_created", "order_cancelled"],
        )
        .await;
    stack
        .timeline(
            14,
            second,
            &[
                ("placed", "request", None),
                ("stock_reserved", "request", None),
                ("cancelled", "payment_timeout", None),
                ("stock_released", "payment_timeout", None),
            ],
            &["order_created", "order_cancelled"],
        )
        .await;
}

#[tokio::test]
async fn a_timed_out_order_paid_late_is_refunded_and_its_timeline_survives_a_restart() {
    // payment-service is down until the order has timed out.
    let stack = spawn_stack(Options {
        payment_timeout_secs: "2",
        ..Options::default()
    })
    .await;
    stack.payment_stop.cancel();
    let product = stack.product(10.0, 5).await;
    let (_, order) = stack
        .place(16, json!({"product_id": product, "quantity": 1}), None)
        .await;
    let id = order["id"].as_i64().unwrap();
    let cancelled = stack.settled(id).await;
    assert_eq!(cancelled["reason"], "timeout", "{cancelled}");

    // order-service restarts; then payment-service comes back, pays the
    // order_created it had not read, and refunds it on order_cancelled.
    stack.order_stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restart = CancellationToken::new();
    let (restarted, _) = start_order(
        &stack.kafka,
        &stack.order_url,
        &stack.product_grpc,
        &stack.options,
        &restart,
    )
    .await;
    let payment = start_payment(&stack.kafka, &stack.payment_url, &stack.options).await;
    let (success, refunded) = (Some("payment_success"), Some("payment_refunded"));
    let timeline = stack
        .timeline_at(
            &restarted,
            16,
            id,
            &[
                ("placed", "request", None),
                ("stock_reserved", "request", None),
                ("cancelled", "payment_timeout", None),
                ("stock_released", "payment_timeout", None),
                ("payment_received", "event", success),
                ("refunded", "event", refunded),
            ],
            &["order_created", "order_cancelled"],
        )
        .await;
    payment.cancel();
    restart.cancel();
    let step = |name: &str| {
        timeline["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(step("cancelled")["detail"], "timeout");
    assert_eq!(
        step("payment_received")["detail"],
        "ignored: the order is already cancelled"
    );
    let refund = step("refunded")["detail"].as_str().unwrap().to_string();
    assert!(refund.starts_with("10.00: "), "{refund}");
    assert_eq!(timeline["status"], "cancelled");
    assert_eq!(
        stack
            .count(
                &stack.payment_db,
                &format!(
                    "SELECT count(*) FROM payments WHERE order_id = {id} AND status = 'refunded'"
                )
            )
            .await,
        1
    );
    stack
        .check_contract(&[
            ("order_created", 1),
            ("order_cancelled", 1),
            ("payment_success", 1),
            ("payment_refunded", 1),
        ])
        .await;
}

#[tokio::test]
async fn past_the_pending_limit_new_orders_get_a_503_and_write_nothing() {
    // No payment-service: placed orders stay pending.
    let stack = spawn_stack(Options {
        max_pending: "3",
        ..Options::default()
    })
    .await;
    stack.payment_stop.cancel();
    let product = stack.product(10.0, 10).await;
    let mut placed = Vec::new();
    for _ in 0..3 {
        let (status, order) = stack
            .place(16, json!({"product_id": product, "quantity": 1}), None)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        placed.push(order["id"].as_i64().unwrap());
    }

    let response = stack
        .http
        .post(format!("{}/orders", stack.order))
        .bearer_auth(testing::token(16, Role::Customer))
        .json(&json!({"product_id": product, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "overloaded", "{body}");
    assert_eq!(
        stack
            .count(&stack.order_db, "SELECT count(*) FROM orders")
            .await,
        3,
        "the refused order wrote nothing"
    );
    assert_eq!(stack.stock(product).await, 7, "and held nothing");

    // gRPC CreateOrder is refused the same way.
    let mut grpc = stack.order_client().await;
    let refused = grpc
        .create_order(create_request(Some(16), vec![(product, 1)], ""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);

    let metrics = testing::scrape(&stack.http, &stack.order).await;
    assert_eq!(
        testing::metric_value(&metrics, "orders_shed_total", &[]),
        Some(2.0)
    );

    // Once an order finishes, the next count (every 200 ms here) lets new ones in.
    let response = stack.cancel(16, placed[0]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status, _) = stack
            .place(16, json!({"product_id": product, "quantity": 1}), None)
            .await;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
    }
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn grpc_create_and_get_order_follow_the_rest_rules() {
    use shared::proto::order::GetOrderRequest;
    use tonic::Code;

    let stack = spawn_stack(Options::default()).await;
    let product = stack.product(4.25, 3).await;
    let mut client = stack.order_client().await;
    let request = create_request;
    let unauthenticated = client
        .create_order(request(None, vec![(product, 1)], ""))
        .await;
    assert_eq!(unauthenticated.unwrap_err().code(), Code::Unauthenticated);
    let invalid = client.create_order(request(Some(20), vec![], "")).await;
    assert_eq!(invalid.unwrap_err().code(), Code::InvalidArgument);
    let short = client
        .create_order(request(Some(20), vec![(product, 4)], ""))
        .await;
    let short = short.unwrap_err();
    assert_eq!(short.code(), Code::FailedPrecondition);
    assert!(
        short.message().contains("Product not available"),
        "{short:?}"
    );

    let order = client
        .create_order(request(Some(20), vec![(product, 2)], "g-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.status, "pending");
    assert_eq!(order.total_price_cents, 850);
    assert_eq!(order.items[0].unit_price_cents, 425);
    let again = client
        .create_order(request(Some(20), vec![(product, 2)], "g-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, order.id);

    let get = |user: i64| {
        let mut request = tonic::Request::new(GetOrderRequest { id: order.id });
        let token = format!("Bearer {}", testing::token(user, Role::Customer));
        request
            .metadata_mut()
            .insert("authorization", token.parse().unwrap());
        request
    };
    assert_eq!(
        client.get_order(get(20)).await.unwrap().into_inner().id,
        order.id
    );
    assert_eq!(
        client.get_order(get(21)).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(stack.stock(product).await, 1);

    // The timeline over gRPC is the REST one.
    let rest = stack
        .timeline(20, order.id, PAID_STEPS, PAID_PUBLISHED)
        .await;
    let timeline = client
        .get_order_timeline(get(20))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (timeline.order_id, timeline.status.as_str()),
        (order.id, "paid")
    );
    let rest = rest["steps"].as_array().unwrap();
    assert_eq!(timeline.steps.len(), rest.len());
    for (grpc, rest) in timeline.steps.iter().zip(rest) {
        assert_eq!(grpc.seq, rest["seq"].as_i64().unwrap());
        assert_eq!(grpc.step, rest["step"].as_str().unwrap());
        assert_eq!(grpc.cause, rest["cause"].as_str().unwrap());
        assert_eq!(grpc.event_type, rest["event_type"].as_str().unwrap_or(""));
        assert_eq!(grpc.event_id, rest["event_id"].as_str().unwrap_or(""));
        let (a, b) = (
            chrono::DateTime::parse_from_rfc3339(&grpc.at).unwrap(),
            chrono::DateTime::parse_from_rfc3339(rest["at"].as_str().unwrap()).unwrap(),
        );
        assert_eq!(a, b);
    }
    assert_eq!(
        client.get_order_timeline(get(21)).await.unwrap_err().code(),
        Code::NotFound
    );
    let mut zero = tonic::Request::new(GetOrderRequest { id: 0 });
    zero.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", testing::token(20, Role::Customer))
            .parse()
            .unwrap(),
    );
    assert_eq!(
        client.get_order_timeline(zero).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let unsigned = client
        .get_order_timeline(tonic::Request::new(GetOrderRequest { id: order.id }))
        .await;
    assert_eq!(unsigned.unwrap_err().code(), Code::Unauthenticated);
    stack.check_contract(ONE_PAID_ORDER).await;
}

#[tokio::test]
async fn with_product_service_down_orders_get_a_fast_503_and_hold_nothing() {
    let stack = spawn_stack(Options::default()).await;
    // A second order-service whose product-service is a dead port.
    let database_url = testing::fresh_database("order").await;
    let stop = CancellationToken::new();
    let (order, _) = start_order(
        &stack.kafka,
        &database_url,
        "https://127.0.0.1:1",
        &stack.options,
        &stop,
    )
    .await;
    let db = PgPool::connect(&database_url).await.unwrap();
    let place = || {
        stack
            .http
            .post(format!("{order}/orders"))
            .bearer_auth(testing::token(30, Role::Customer))
            .header("Idempotency-Key", "down-1")
            .json(&json!({"product_id": 1, "quantity": 1}))
            .send()
    };
    // Five failing calls open the breaker (PRODUCT_BREAKER_FAILURES).
    for _ in 0..5 {
        let response = place().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
    }
    let started = std::time::Instant::now();
    let response = place().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "an open breaker answers at once, took {:?}",
        started.elapsed()
    );
    let metrics = stack
        .http
        .get(format!("{order}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("product_breaker_state{") && l.ends_with(" 1")),
        "{metrics}"
    );
    // Every attempt is a rejected order that keeps nothing, and the key
    // stays usable for the retry that will work.
    let rejected = stack
        .count(
            &db,
            "SELECT count(*) FROM orders WHERE status = 'rejected' AND reason = 'stock_service_unavailable'",
        )
        .await;
    assert_eq!(rejected, 6);
    assert_eq!(
        stack
            .count(
                &db,
                "SELECT count(*) FROM outbox WHERE event_type = 'order_created'"
            )
            .await,
        0
    );
    stop.cancel();
}

#[tokio::test]
async fn a_release_product_service_could_not_take_is_retried_until_done() {
    let stack = spawn_stack(Options::default()).await;
    stack.payment_stop.cancel();
    // The order-service below, behind a proxy, must be the only one
    // consuming: the stack's own would get some partitions of the topic.
    stack.order_stop.cancel();
    let upstream = stack
        .product_grpc
        .trim_start_matches("https://")
        .to_string();
    let proxy = testing::TcpProxy::start(upstream).await;
    let stop = CancellationToken::new();
    let database_url = testing::fresh_database("order").await;
    let (order, _) = start_order(
        &stack.kafka,
        &database_url,
        &format!("https://{}", proxy.addr),
        &stack.options,
        &stop,
    )
    .await;
    let db = PgPool::connect(&database_url).await.unwrap();
    // Over PAYMENT_MAX_AMOUNT: this payment will fail.
    let product = stack.product(150.0, 4).await;
    let (_, placed) = stack
        .place_at(
            &order,
            31,
            json!({"product_id": product, "quantity": 1}),
            None,
        )
        .await;
    let id = placed["id"].as_i64().unwrap();
    assert_eq!(stack.stock(product).await, 3);

    // product-service becomes unreachable, then the payment fails.
    proxy.cut();
    let payment = start_payment(&stack.kafka, &stack.payment_url, &stack.options).await;
    let failed_but_held = testing::wait_for_count(
        &db,
        &format!(
            "SELECT count(*) FROM orders WHERE id = {id} AND status = 'failed' AND stock = 'held'"
        ),
        1,
    )
    .await;
    assert_eq!(failed_but_held, 1, "failed, its release still owed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stack.stock(product).await,
        3,
        "nothing released while unreachable"
    );

    // Back again: the recovery loop releases the units.
    proxy.restore();
    let released = testing::wait_for_count(
        &db,
        &format!("SELECT count(*) FROM orders WHERE id = {id} AND stock = 'released'"),
        1,
    )
    .await;
    assert_eq!(released, 1);
    assert_eq!(stack.stock(product).await, 4);
    payment.cancel();
    stop.cancel();
}

/// gRPC CreateOrder spends the same per-user write budget as POST /orders:
/// over it, RESOURCE_EXHAUSTED with `retry-after`, and nothing is written.
#[tokio::test]
async fn grpc_create_order_has_the_per_user_write_limit_of_rest() {
    let stack = spawn_stack(Options {
        writes_per_min: "1",
        writes_burst: "3",
        ..Options::default()
    })
    .await;
    let product = stack.product(1.0, 100).await;
    let mut grpc = stack.order_client().await;
    for _ in 0..2 {
        grpc.create_order(create_request(Some(31), vec![(product, 1)], ""))
            .await
            .expect("within the budget");
    }
    let (status, _) = stack
        .place(31, json!({"product_id": product, "quantity": 1}), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "REST takes the third write");
    let refused = grpc
        .create_order(create_request(Some(31), vec![(product, 1)], ""))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(refused.metadata().get("retry-after").is_some());
    let (status, _) = stack
        .place(31, json!({"product_id": product, "quantity": 1}), None)
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "and REST shares the budget"
    );
    assert_eq!(
        stack
            .count(
                &stack.order_db,
                "SELECT count(*) FROM orders WHERE user_id = 31"
            )
            .await,
        3,
        "the refused calls wrote nothing"
    );
    // Another user has a budget of its own.
    grpc.create_order(create_request(Some(32), vec![(product, 1)], ""))
        .await
        .expect("another user's first write");
}

/// Anyone who can produce to the topic could send a payment result. One
/// that contradicts the order (another amount, another owner, an order that
/// holds no stock) pays nothing: it is refused and dead-lettered, counted
/// as `outcome="refused"`, and the genuine result still applies.
#[tokio::test]
async fn forged_payment_results_are_refused_and_pay_nothing() {
    let stack = spawn_stack(Options::default()).await;
    // No payment-service: the order waits, pending, with its stock held.
    stack.payment_stop.cancel();
    let product = stack.product(10.0, 5).await;
    let (_, order) = stack
        .place(41, json!({"product_id": product, "quantity": 2}), None)
        .await;
    let id = order["id"].as_i64().unwrap();
    assert_eq!(order["status"], "pending");
    let (status, rejected) = stack
        .place(41, json!({"product_id": product, "quantity": 50}), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{rejected}");
    let rejected: i64 = sqlx::query_scalar("SELECT max(id) FROM orders WHERE status = 'rejected'")
        .fetch_one(&stack.order_db)
        .await
        .unwrap();

    let success = |order: i64, user: i64, cents: i64| {
        Event::new(
            testing::order(order),
            testing::user(user),
            EventPayload::PaymentSuccess {
                payment_id: 99,
                amount: shared::money::Money(cents),
                transaction_id: shared::kafka::events::TransactionId::parse("forged").unwrap(),
            },
        )
    };
    let forged = [
        success(id, 41, 1),          // the wrong amount
        success(id, 42, 2000),       // the wrong owner
        success(rejected, 41, 2000), // an order that holds no stock
    ];
    for event in &forged {
        testing::publish(&stack.kafka, event).await;
    }
    let refused = testing::wait_for_metric(
        &stack.http,
        &stack.order,
        "kafka_events_consumed_total",
        &["event_type=\"payment_success\"", "outcome=\"refused\""],
        3.0,
    )
    .await;
    assert_eq!(refused, Some(3.0), "the three forgeries were refused");
    assert_eq!(
        stack.get(41, &format!("/orders/{id}")).await.1["status"],
        "pending"
    );
    assert_eq!(
        stack.get(41, &format!("/orders/{rejected}")).await.1["status"],
        "rejected"
    );
    assert_eq!(
        stack.outbox(&stack.order_db, id, "order_confirmed").await,
        0
    );
    for event in &forged {
        let claimed = stack
            .count(
                &stack.order_db,
                &format!(
                    "SELECT count(*) FROM processed_events WHERE event_id = '{}'",
                    event.event_id
                ),
            )
            .await;
        assert_eq!(claimed, 0, "a refused event is not recorded as handled");
    }

    // The genuine result (the order's owner and total) still pays it.
    testing::publish(&stack.kafka, &success(id, 41, 2000)).await;
    assert_eq!(stack.settled(id).await["status"], "paid");
    assert_eq!(stack.stock(product).await, 3);
    // Forged, yet well-formed: they hold to the contract's shape, and the
    // saga's own events too.
    let seen = testing::contract::check_topic(&stack.kafka).await;
    assert!(
        !seen.contains_key(testing::contract::NOT_AN_EVENT),
        "{seen:?}"
    );
    assert!(
        seen.get("payment_success")
            .is_some_and(|n| *n > forged.len()),
        "the forgeries and the genuine result: {seen:?}"
    );
}

/// The money range end to end (docs/contracts.md, "Money"): at the largest
/// price, 101 units, or many lines under it that add up past it, are over
/// the largest order total: refused with a 422 of its own (OUT_OF_RANGE
/// over gRPC) and nothing held; 2 units fit every column and event on the
/// way, and are paid.
#[tokio::test]
async fn orders_at_the_price_cap_are_refused_or_paid_never_stuck() {
    let stack = spawn_stack(Options {
        // The gateway approves anything up to the largest total.
        max_amount: "999999999999.99",
        ..Options::default()
    })
    .await;
    let priciest = stack.product(9_999_999_999.99, 1000).await;

    let (status, body) = stack
        .place(
            51,
            json!({"product_id": priciest, "quantity": 101}),
            Some("cap-101"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "order_total_too_large", "{body}");
    assert_eq!(body["max_total"], json!(999_999_999_999.99), "{body}");
    let refused = body["order_id"].as_i64().expect("the order's id");
    assert_eq!(stack.stock(priciest).await, 1000, "nothing is held");
    let order = stack.settled(refused).await;
    assert_eq!(
        (&order["status"], &order["reason"]),
        (&json!("rejected"), &json!("total_too_large"))
    );
    // The same key again: the same answer, no second order.
    let (again, body) = stack
        .place(
            51,
            json!({"product_id": priciest, "quantity": 101}),
            Some("cap-101"),
        )
        .await;
    assert_eq!(again, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["order_id"], refused);

    // Many lines, each under the cap, over it together.
    let mut items = Vec::new();
    for _ in 0..11 {
        let product = stack.product(9_999_999_999.99, 10).await;
        items.push(json!({"product_id": product, "quantity": 10}));
    }
    let (status, body) = stack.place(51, json!({"items": items}), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "order_total_too_large", "{body}");
    for item in &items {
        let product = item["product_id"].as_i64().unwrap();
        assert_eq!(stack.stock(product).await, 10, "nothing is held");
    }

    // Over gRPC: OUT_OF_RANGE, nothing held.
    let mut client = stack.order_client().await;
    let over = client
        .create_order(create_request(Some(51), vec![(priciest, 101)], ""))
        .await
        .unwrap_err();
    assert_eq!(over.code(), tonic::Code::OutOfRange, "{over:?}");
    assert_eq!(stack.stock(priciest).await, 1000);

    // Two units: 19,999,999,999.98, paid, in every column and event.
    let (status, body) = stack
        .place(51, json!({"product_id": priciest, "quantity": 2}), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let paid = stack.settled(id).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["total_price"], json!(19_999_999_999.98));
    let amount: String =
        sqlx::query_scalar("SELECT amount::text FROM payments WHERE order_id = $1")
            .bind(id)
            .fetch_one(&stack.payment_db)
            .await
            .unwrap();
    assert_eq!(amount, "19999999999.98");
    assert_eq!(stack.stock(priciest).await, 998);
    // No order waits for recovery, and nothing was dead-lettered.
    let unsettled = stack
        .count(
            &stack.order_db,
            "SELECT count(*) FROM orders WHERE status = 'pending' OR stock IN ('unknown', 'held')",
        )
        .await;
    assert_eq!(unsettled, 0);
    let seen = testing::contract::check_topic(&stack.kafka).await;
    assert_eq!(seen.get("payment_success"), Some(&1), "{seen:?}");
    let dlq = KafkaConfig {
        topic: stack.kafka.dlq_topic(),
        ..stack.kafka.clone()
    };
    let dead = testing::contract::read_topic(&dlq).await;
    assert!(dead.is_empty(), "dead letters: {dead:?}");
}

/// A poison order (one whose step fails for good: here the database
/// refuses to record it held, as it refused a total too large for its
/// column) among 20 normal ones left to the recovery loop: it is rejected
/// and its units released, and the 20 are all paid.
#[tokio::test]
async fn a_poison_order_is_rejected_and_released_and_never_blocks_recovery() {
    let stack = spawn_stack(Options::default()).await;
    let normal = stack.product(3.0, 100).await;
    let poison = stack.product(4.0, 10).await;
    // The fault: recording an order held fails, for good, for any order
    // with a line of `poison` (SQLSTATE 22003, numeric_value_out_of_range).
    for statement in [
        format!(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.stock = 'held' AND EXISTS (SELECT 1 FROM order_items \
             WHERE order_id = NEW.id AND product_id = {poison}) THEN \
             RAISE EXCEPTION 'numeric field overflow' USING ERRCODE = '22003'; \
             END IF; RETURN NEW; END $$"
        ),
        "CREATE TRIGGER poison BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION poison()"
            .to_string(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&stack.order_db)
            .await
            .unwrap();
    }
    // Left as a crash before the reservation leaves them: pending, stock
    // unknown; the poison order the oldest, so the loop meets it first.
    stack.order_stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ids = Vec::new();
    for (age, product) in std::iter::once((120, poison)).chain((0..20).map(|_| (60, normal))) {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO orders (user_id, updated_at) \
             VALUES (13, now() - $1 * interval '1 second') RETURNING id",
        )
        .bind(f64::from(age))
        .fetch_one(&stack.order_db)
        .await
        .unwrap();
        sqlx::query("INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, 1)")
            .bind(id)
            .bind(product)
            .execute(&stack.order_db)
            .await
            .unwrap();
        ids.push(id);
    }
    let restart = CancellationToken::new();
    let (restarted, _) = start_order(
        &stack.kafka,
        &stack.order_url,
        &stack.product_grpc,
        &stack.options,
        &restart,
    )
    .await;
    let rejected = stack.settled_at(&restarted, ids[0]).await;
    assert_eq!(
        (&rejected["status"], &rejected["reason"]),
        (&json!("rejected"), &json!("step_failed")),
        "{rejected}"
    );
    for &id in &ids[1..] {
        let order = stack.settled_at(&restarted, id).await;
        assert_eq!(order["status"], "paid", "{order}");
    }
    let released: String = sqlx::query_scalar("SELECT stock FROM orders WHERE id = $1")
        .bind(ids[0])
        .fetch_one(&stack.order_db)
        .await
        .unwrap();
    assert_eq!(released, "released");
    assert_eq!(
        stack.stock(poison).await,
        10,
        "the poison order's unit is back"
    );
    assert_eq!(stack.stock(normal).await, 80);
    restart.cancel();
}

/// Reads the dead-letter topic until it holds `at_least` letters (at most
/// 30 s); returns the errors they were dead-lettered with.
async fn dead_letters(kafka: &KafkaConfig, at_least: usize) -> Vec<String> {
    let dlq = KafkaConfig {
        topic: kafka.dlq_topic(),
        ..kafka.clone()
    };
    let mut errors = Vec::new();
    for _ in 0..60 {
        errors = testing::contract::read_topic(&dlq)
            .await
            .into_iter()
            .map(|letter| {
                let error = letter
                    .headers
                    .get(shared::kafka::consumer::dlq_headers::ERROR);
                error.cloned().unwrap_or_default()
            })
            .collect();
        if errors.len() >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    errors
}

/// Any login to the broker can write to the saga's topic; only the service
/// that produces an event type can sign it. Forged `order_created` (naming
/// a real customer, with a phishing text where the currency goes) and
/// `payment_success` events, unsigned, signed by a key nobody trusts, or
/// signed by the other producer, are refused by every consumer: dead-
/// lettered with the reason, counted, nothing recorded or notified. The
/// producer's own signature still pays.
#[tokio::test]
async fn events_not_signed_by_their_producer_are_refused_and_change_nothing() {
    use shared::kafka::events::{EventItem, Producer};

    let stack = spawn_stack(Options::default()).await;
    // A real order of the customer the forgeries name, paid as usual.
    let product = stack.product(10.0, 5).await;
    let (_, order) = stack
        .place(61, json!({"product_id": product, "quantity": 2}), None)
        .await;
    let id = order["id"].as_i64().unwrap();
    let paid = stack.settled(id).await;
    assert_eq!(paid["status"], "paid");

    let order_key = testing::event_signer(Producer::OrderService);
    let payment_key = testing::event_signer(Producer::PaymentService);
    let stranger = testing::untrusted_event_signer();
    let forged_order = 990_001;
    let created = Event::new(
        testing::order(forged_order),
        testing::user(61),
        EventPayload::OrderCreated {
            items: vec![EventItem {
                product_id: testing::product(product),
                quantity: 1,
                unit_price: shared::money::Money(1000),
            }],
            total_price: shared::money::Money(1000),
            currency: shared::money::Currency::Usd,
            customer_email: Some("user61@example.com".into()),
        },
    );
    for signer in [None, Some(&stranger), Some(&payment_key)] {
        let mut forged = created.clone();
        forged.event_id = uuid::Uuid::new_v4();
        testing::publish_signed(&stack.kafka, &forged, signer).await;
    }
    // The phishing text where the currency goes is no event at all.
    let mut phishing = serde_json::to_value(&created).unwrap();
    phishing["event_id"] = json!(uuid::Uuid::new_v4());
    phishing["currency"] =
        json!("USD. URGENT: your card was blocked, re-enter it at http://evil.example/verify");
    let producer = stack.kafka.producer().unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&stack.kafka.topic)
                .key(&forged_order.to_string())
                .payload(&phishing.to_string()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    // payment_success for the order nobody paid twice: signed by
    // order-service's key, and unsigned.
    let success = Event::new(
        testing::order(forged_order),
        testing::user(61),
        EventPayload::PaymentSuccess {
            payment_id: 7,
            amount: shared::money::Money(1000),
            transaction_id: shared::kafka::events::TransactionId::parse("forged").unwrap(),
        },
    );
    testing::publish_signed(&stack.kafka, &success, Some(&order_key)).await;
    let mut unsigned = success.clone();
    unsigned.event_id = uuid::Uuid::new_v4();
    testing::publish_signed(&stack.kafka, &unsigned, None).await;

    // Every consumer group (order-, payment- and notification-service)
    // checks every event, whether it acts on the type or not: 5 forgeries
    // and the phishing one, 3 letters each.
    let errors = dead_letters(&stack.kafka, 18).await;
    assert_eq!(errors.len(), 18, "{errors:#?}");
    let refused = |text: &str| errors.iter().filter(|e| e.contains(text)).count();
    assert_eq!(
        refused("refused: the event is not signed"),
        6,
        "{errors:#?}"
    );
    assert_eq!(
        refused("refused: the event is signed with key"),
        3,
        "{errors:#?}"
    );
    assert_eq!(
        refused(
            "refused: order_created is signed by payment-service, but only order-service produces it"
        ),
        3,
        "{errors:#?}"
    );
    assert_eq!(
        refused(
            "refused: payment_success is signed by order-service, but only payment-service produces it"
        ),
        3,
        "{errors:#?}"
    );
    assert_eq!(refused("bad order_created"), 3, "{errors:#?}");
    let on_order = testing::wait_for_metric(
        &stack.http,
        &stack.order,
        "kafka_events_consumed_total",
        &["event_type=\"payment_success\"", "outcome=\"refused\""],
        2.0,
    )
    .await;
    assert_eq!(on_order, Some(2.0));
    // Nothing recorded, nothing told the customer.
    let payments = stack
        .count(
            &stack.payment_db,
            &format!("SELECT count(*) FROM payments WHERE order_id = {forged_order}"),
        )
        .await;
    assert_eq!(payments, 0, "no payment for a forged order_created");
    let notified = stack
        .count(
            &stack.notification_db,
            &format!(
                "SELECT count(*) FROM notifications WHERE order_id = {forged_order} \
                 OR body LIKE '%evil.example%'"
            ),
        )
        .await;
    assert_eq!(notified, 0, "nothing forged reaches the customer");
    let handled = stack
        .count(
            &stack.order_db,
            &format!(
                "SELECT count(*) FROM processed_events WHERE event_id = '{}'",
                success.event_id
            ),
        )
        .await;
    assert_eq!(handled, 0);
    // The real order's events were all taken: it was paid and notified.
    let real = stack
        .count(
            &stack.notification_db,
            &format!("SELECT count(*) FROM notifications WHERE order_id = {id}"),
        )
        .await;
    assert!(
        real >= 2,
        "the genuine order_created and payment_success: {real}"
    );
}

/// A signing key rotated with no event lost: every consumer trusts the old
/// and the new key of order-service; an order placed before order-service
/// restarts with its new key, and one after, are both paid and notified,
/// their events signed with each key. A keyring without the old key
/// refuses what it signed.
#[tokio::test]
async fn a_rotated_signing_key_loses_no_event() {
    use shared::kafka::events::Producer;

    let old = testing::event_signer(Producer::OrderService);
    let (new_pem, new) = testing::other_event_key(0x5e);
    let both: &'static str = Box::leak(
        format!(
            "{}\n{}\n",
            testing::event_keyring(),
            new.keyring_line(Producer::OrderService)
        )
        .into_boxed_str(),
    );
    let keys: &'static [(&'static str, &'static str)] =
        Box::leak(vec![("EVENT_KEYS", both)].into_boxed_slice());
    let stack = spawn_stack(Options {
        event_keys: keys,
        ..Options::default()
    })
    .await;
    let product = stack.product(5.0, 10).await;
    let (_, before) = stack
        .place(71, json!({"product_id": product, "quantity": 1}), None)
        .await;
    let before = before["id"].as_i64().unwrap();
    assert_eq!(stack.settled(before).await["status"], "paid");

    // order-service restarts with the new key.
    stack.order_stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new_pem: &'static str = Box::leak(new_pem.into_boxed_str());
    let rotated = Options {
        event_keys: Box::leak(
            vec![("EVENT_KEYS", both), ("EVENT_SIGNING_KEY", new_pem)].into_boxed_slice(),
        ),
        ..stack.options.clone()
    };
    let restart = CancellationToken::new();
    let (restarted, _) = start_order(
        &stack.kafka,
        &stack.order_url,
        &stack.product_grpc,
        &rotated,
        &restart,
    )
    .await;
    let (_, after) = stack
        .place_at(
            &restarted,
            71,
            json!({"product_id": product, "quantity": 1}),
            None,
        )
        .await;
    let after = after["id"].as_i64().unwrap();
    assert_eq!(stack.settled_at(&restarted, after).await["status"], "paid");

    // Each order's order_created was signed with its key, and notified.
    for (order, signer) in [(before, &old), (after, &new)] {
        let notified = testing::wait_for_count(
            &stack.notification_db,
            &format!("SELECT count(*) FROM notifications WHERE order_id = {order}"),
            3,
        )
        .await;
        assert!(
            notified >= 3,
            "order {order}: placed, paid, confirmed: {notified}"
        );
        let key = testing::contract::read_topic(&stack.kafka)
            .await
            .into_iter()
            .find(|m| {
                m.key.as_deref() == Some(order.to_string().as_str())
                    && m.headers.get("event_type").map(String::as_str) == Some("order_created")
            })
            .and_then(|m| m.headers.get("signature_key_id").cloned());
        assert_eq!(
            key.as_deref(),
            Some(signer.key_id().as_str()),
            "order {order}"
        );
    }
    restart.cancel();

    // Once the old key is dropped from a keyring, what it signed is refused.
    let only_new =
        shared::kafka::signing::Keyring::parse(&new.keyring_line(Producer::OrderService)).unwrap();
    let confirmed = Event::new(
        testing::order(before),
        testing::user(71),
        EventPayload::OrderConfirmed {
            total_price: shared::money::Money(500),
        },
    );
    let payload = serde_json::to_vec(&confirmed).unwrap();
    let signature = old.sign(&payload);
    let old_id = old.key_id().as_str().as_bytes();
    assert!(
        only_new
            .verify(
                &confirmed,
                &payload,
                Some(old_id),
                Some(signature.as_bytes())
            )
            .is_err()
    );
}
