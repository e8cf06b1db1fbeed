//! Helpers for integration tests (feature `testing`): a fresh database per
//! test on the real PostgreSQL, tokens signed with a test key pair
//! (`shared/testdata/`, used by tests only, never by a running system), and
//! generated client input for property tests ([`inputs`]), certificates
//! from a test CA ([`pki`]), and the event contract's check of a topic
//! ([`contract`]).

pub mod contract;
pub mod inputs;
pub mod pki;

use sqlx::Connection;

use crate::auth::{JwtSigner, Role};

/// The test key pair's private half.
pub const TEST_PRIVATE_KEY: &str = include_str!("../testdata/test_jwt_private.pem");
/// The test key pair's public half.
pub const TEST_PUBLIC_KEY: &str = include_str!("../testdata/test_jwt_public.pem");
/// The issuer test tokens carry.
pub const TEST_ISSUER: &str = "minishop-user-service";
/// The audience test tokens carry.
pub const TEST_AUDIENCE: &str = "minishop";

/// Order lines from `(product_id, quantity)` pairs.
pub fn lines(pairs: &[(i64, i32)]) -> Vec<crate::stock::OrderLine> {
    pairs
        .iter()
        .map(|&(p, q)| crate::stock::OrderLine::new(product(p), q))
        .collect()
}

/// Product `id` (which must be positive).
pub fn product(id: i64) -> crate::id::ProductId {
    crate::id::ProductId::new(id).expect("a test's product id is positive")
}

/// Order `id` (which must be positive).
pub fn order(id: i64) -> crate::id::OrderId {
    crate::id::OrderId::new(id).expect("a test's order id is positive")
}

/// User `id` (which must be positive).
pub fn user(id: i64) -> crate::id::UserId {
    crate::id::UserId::new(id).expect("a test's user id is positive")
}

/// A signer with the test key.
pub fn signer() -> JwtSigner {
    JwtSigner::from_private_pem(TEST_PRIVATE_KEY, TEST_ISSUER, TEST_AUDIENCE, 3600)
        .expect("test key is valid")
}

/// A valid token for `user_id` with `role`.
pub fn token(user_id: i64, role: Role) -> String {
    signer()
        .sign(user_id, &format!("user{user_id}@example.com"), role, 0)
        .expect("signing with the test key works")
}

/// The server the tests create their databases on (`TEST_DATABASE_ADMIN_URL`).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis tests use (`TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Creates an empty database named `test_<prefix>_<random>` and returns its URL.
pub async fn fresh_database(prefix: &str) -> String {
    let admin = admin_url();
    let name = format!("test_{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("tests need PostgreSQL at {admin}: {e}"));
    // The name is ours (a prefix and a UUID), not input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// The test key of each producer of events (fixed: used by tests only,
/// never by a running system).
fn event_key(producer: crate::kafka::events::Producer) -> ed25519_dalek::SigningKey {
    use crate::kafka::events::Producer;
    let seed = match producer {
        Producer::OrderService => 0x0d,
        Producer::PaymentService => 0x9a,
    };
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

/// A signer with `producer`'s test key.
pub fn event_signer(
    producer: crate::kafka::events::Producer,
) -> crate::kafka::signing::EventSigner {
    crate::kafka::signing::EventSigner::new(event_key(producer))
}

/// Another key, from `seed`: its PKCS#8 PEM (as `EVENT_SIGNING_KEY`
/// takes it) and its signer (for its keyring line and key id).
pub fn other_event_key(seed: u8) -> (String, crate::kafka::signing::EventSigner) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    (pem_of(&key), crate::kafka::signing::EventSigner::new(key))
}

/// `key` as `EVENT_SIGNING_KEY` takes it: PKCS#8 PEM.
fn pem_of(key: &ed25519_dalek::SigningKey) -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    key.to_pkcs8_pem(Default::default())
        .expect("a test key encodes")
        .to_string()
}

/// A signer with a key no test keyring holds.
pub fn untrusted_event_signer() -> crate::kafka::signing::EventSigner {
    crate::kafka::signing::EventSigner::new(ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]))
}

/// The keyring of the test keys: every producer's.
pub fn event_keyring() -> String {
    use crate::kafka::events::Producer;
    [Producer::OrderService, Producer::PaymentService]
        .map(|p| event_signer(p).keyring_line(p))
        .join("\n")
}

/// The event keys of a test producer (`Some`) or consumer: its test key,
/// and the keyring of every producer's test key.
pub fn event_keys(
    producer: Option<crate::kafka::events::Producer>,
) -> crate::kafka::signing::EventKeys {
    crate::kafka::signing::EventKeys {
        signer: producer.map(event_signer),
        keyring: crate::kafka::signing::Keyring::parse(&event_keyring())
            .expect("the test keyring parses"),
    }
}

/// `service`'s event keys as it reads them (`EVENT_SIGNING_KEY`,
/// `EVENT_KEYS`), for `Env::with_overrides`: the test keys.
pub fn event_vars(service: &str) -> Vec<(&'static str, &'static str)> {
    use crate::kafka::events::Producer;
    use std::sync::OnceLock;
    static KEYRING: OnceLock<String> = OnceLock::new();
    static PEMS: OnceLock<[String; 2]> = OnceLock::new();
    let pems = PEMS.get_or_init(|| {
        [Producer::OrderService, Producer::PaymentService].map(|p| pem_of(&event_key(p)))
    });
    let mut vars = vec![("EVENT_KEYS", KEYRING.get_or_init(event_keyring).as_str())];
    match Producer::parse(service) {
        Some(Producer::OrderService) => vars.push(("EVENT_SIGNING_KEY", pems[0].as_str())),
        Some(Producer::PaymentService) => vars.push(("EVENT_SIGNING_KEY", pems[1].as_str())),
        None => {}
    }
    vars
}

/// Publishes `event` to `kafka`'s topic, keyed by its order and with its
/// `event_type` and `event_id` headers and the signature of the test key of
/// the service that produces its type, as that service's relay would.
pub async fn publish(kafka: &crate::kafka::KafkaConfig, event: &crate::kafka::events::Event) {
    let producer = crate::kafka::events::producer_of(event.payload.event_type())
        .expect("every event type has its producer");
    publish_signed(kafka, event, Some(&event_signer(producer))).await
}

/// [`publish`], signed by `signer` (`None`: unsigned), as a forger would.
pub async fn publish_signed(
    kafka: &crate::kafka::KafkaConfig,
    event: &crate::kafka::events::Event,
    signer: Option<&crate::kafka::signing::EventSigner>,
) {
    use rdkafka::message::{Header, OwnedHeaders};
    let payload = serde_json::to_string(event).expect("events serialize");
    let key = event.key();
    let event_id = event.event_id.to_string();
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: "event_type",
            value: Some(event.payload.event_type()),
        })
        .insert(Header {
            key: "event_id",
            value: Some(event_id.as_str()),
        });
    if let Some(signer) = signer {
        headers = signer.sign_headers(headers, payload.as_bytes());
    }
    kafka
        .producer()
        .expect("test producer")
        .send(
            rdkafka::producer::FutureRecord::to(&kafka.topic)
                .key(&key)
                .payload(&payload)
                .headers(headers),
            std::time::Duration::from_secs(10),
        )
        .await
        .expect("the test broker takes the event");
}

/// Polls the count query `sql` until it reaches `expected` (at most 20 s); returns the last count.
pub async fn wait_for_count(pool: &sqlx::PgPool, sql: &str, expected: i64) -> i64 {
    let mut last = -1;
    for _ in 0..200 {
        last = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(pool)
            .await
            .expect("count query");
        if last >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

/// A TCP proxy a test can cut and restore, to take a dependency away and
/// bring it back while everything else keeps running. Cutting drops the
/// open connections too. Stops when dropped.
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: std::net::SocketAddr,
    mode: tokio::sync::watch::Sender<ProxyMode>,
    stop: tokio_util::sync::CancellationToken,
}

/// What a [`TcpProxy`] does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyMode {
    Pass,
    /// Connections are closed (refused, reset).
    Cut,
    /// Packets are dropped: connections are held, nothing passes either
    /// way, nothing is refused (a partition).
    Stall,
}

impl TcpProxy {
    /// A proxy to `upstream` (`host:port`), passing traffic.
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a test proxy");
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let (mode, _) = tokio::sync::watch::channel(ProxyMode::Pass);
        let stop = tokio_util::sync::CancellationToken::new();
        let (state, token) = (mode.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let mut client = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((c, _)) => c,
                        Err(_) => return,
                    },
                };
                let mut mode = state.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let now = *mode.borrow_and_update();
                    match now {
                        ProxyMode::Cut => return,
                        // Held until the partition ends, then closed.
                        ProxyMode::Stall => {
                            let _ = mode.wait_for(|m| *m != ProxyMode::Stall).await;
                            return;
                        }
                        ProxyMode::Pass => {}
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let stalled = tokio::select! {
                        changed = mode.wait_for(|m| *m != ProxyMode::Pass) => {
                            changed.is_ok_and(|m| *m == ProxyMode::Stall)
                        }
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                    };
                    if stalled {
                        let _ = mode.wait_for(|m| *m != ProxyMode::Stall).await;
                    }
                    drop((client, server));
                });
            }
        });
        Self { addr, mode, stop }
    }

    /// From now on, new connections are closed at once and open ones are dropped.
    pub fn cut(&self) {
        self.mode.send_replace(ProxyMode::Cut);
    }

    /// From now on nothing passes and nothing is refused: connections, new
    /// and open, are held with no byte forwarded (packets dropped), until
    /// [`Self::restore`] closes them.
    pub fn stall(&self) {
        self.mode.send_replace(ProxyMode::Stall);
    }

    /// Traffic passes again.
    pub fn restore(&self) {
        self.mode.send_replace(ProxyMode::Pass);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The `/metrics` text of the service at `base`.
pub async fn scrape(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("the service answers /metrics")
        .text()
        .await
        .expect("/metrics is text")
}

/// Scrapes the service at `base` until metric `name` with `labels` reads
/// `expected` (up to 10 s); returns the last value read.
pub async fn wait_for_metric(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    labels: &[&str],
    expected: f64,
) -> Option<f64> {
    let mut value = None;
    for _ in 0..100 {
        value = metric_value(&scrape(http, base).await, name, labels);
        if value == Some(expected) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    value
}

/// The value of the first series of metric `name` in a `/metrics` text whose
/// labels include every one of `labels` (e.g. `state="idle"`); `None` if none.
pub fn metric_value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A TCP relay to `target` whose link a test can cut and restore, to stop a
/// dependency for one service without touching the shared server: while cut
/// it does not listen (connections are refused, as by a stopped
/// PostgreSQL) and every relayed connection has been closed.
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    target: std::net::SocketAddr,
    link: std::sync::Mutex<Option<tokio_util::sync::CancellationToken>>,
}

impl CutProxy {
    /// Relays a port of its own to `target`.
    pub async fn start(target: std::net::SocketAddr) -> std::sync::Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let proxy = std::sync::Arc::new(Self {
            addr: listener.local_addr().expect("bound"),
            target,
            link: std::sync::Mutex::new(None),
        });
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let link = tokio_util::sync::CancellationToken::new();
        *self.link.lock().expect("not poisoned") = Some(link.clone());
        let target = self.target;
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = link.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                let link = link.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = link.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
    }

    /// Closes every relayed connection and stops listening.
    pub fn cut(&self) {
        if let Some(link) = self.link.lock().expect("not poisoned").take() {
            link.cancel();
        }
    }

    /// Listens again on the same port (retried while the old socket lingers).
    pub async fn restore(&self) {
        for _ in 0..50 {
            if let Ok(listener) = tokio::net::TcpListener::bind(self.addr).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("cannot listen on {} again", self.addr);
    }

    /// `url` (a PostgreSQL or Redis URL on `target`) through this relay.
    pub fn url(&self, url: &str) -> String {
        url.replace(&self.target.to_string(), &self.addr.to_string())
    }
}
