//! The few calls of minishop's REST API that users make, over one pooled
//! HTTP client. Every call returns the status (or a transport error) so the
//! caller can count it; bodies are parsed only where the load needs them.
//! order-service may run as several replicas: its calls go round robin over
//! their URLs, and one refused connection moves on to the next replica, as
//! a load balancer would (the request never reached the refusing one).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Where the services are.
#[derive(Debug, Clone)]
pub struct Urls {
    pub user: String,
    pub product: String,
    /// One per order-service replica (at least one).
    pub order: Vec<String>,
}

/// How one call ended: an HTTP status, or no answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Status(u16),
    /// Connection refused/reset or timed out: counted as `io`.
    Io,
}

impl Outcome {
    pub fn is_ok(self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(&s))
    }

    pub fn label(self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Io => "io".into(),
        }
    }
}

/// A response: its outcome and, when it had one, its JSON body.
pub struct Answer {
    pub outcome: Outcome,
    pub body: Option<Value>,
    /// The `Retry-After` of a refusal (429, 503), in whole seconds.
    pub retry_after: Option<Duration>,
}

/// The largest page the list endpoints serve.
pub const PAGE: usize = 100;

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub urls: Urls,
    /// The order-service replica the next order call goes to.
    next_order: Arc<AtomicUsize>,
}

impl Api {
    pub fn new(urls: Urls, connections: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!urls.order.is_empty(), "no order-service URL");
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            urls,
            next_order: Arc::new(AtomicUsize::new(0)),
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        Self::answer(request.send().await).await
    }

    /// Sends the request `build` makes for an order-service base URL to the
    /// next replica, or to the one after it when that one refuses the
    /// connection.
    async fn send_order(&self, build: impl Fn(&str) -> reqwest::RequestBuilder) -> Answer {
        let replicas = &self.urls.order;
        let first = self.next_order.fetch_add(1, Ordering::Relaxed);
        let mut sent = build(&replicas[first % replicas.len()]).send().await;
        for i in 1..replicas.len() {
            match &sent {
                Err(e) if e.is_connect() => {
                    sent = build(&replicas[(first + i) % replicas.len()]).send().await;
                }
                _ => break,
            }
        }
        Self::answer(sent).await
    }

    async fn answer(sent: reqwest::Result<reqwest::Response>) -> Answer {
        match sent {
            Ok(response) => {
                let outcome = Outcome::Status(response.status().as_u16());
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body = response.json::<Value>().await.ok();
                Answer {
                    outcome,
                    body,
                    retry_after,
                }
            }
            Err(_) => Answer {
                outcome: Outcome::Io,
                body: None,
                retry_after: None,
            },
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.send(
            self.http
                .post(format!("{}/api/v1/login", self.urls.user))
                .json(&json!({"email": email, "password": password})),
        )
        .await
    }

    pub async fn register(&self, name: &str, email: &str, password: &str) -> Answer {
        self.send(
            self.http
                .post(format!("{}/api/v1/register", self.urls.user))
                .json(&json!({"name": name, "email": email, "password": password})),
        )
        .await
    }

    pub async fn create_product(&self, token: &str, product: &Value) -> Answer {
        self.send(
            self.http
                .post(format!("{}/api/v1/products", self.urls.product))
                .bearer_auth(token)
                .json(product),
        )
        .await
    }

    pub async fn list_products(&self, limit: u32, offset: u32) -> Answer {
        self.send(self.http.get(format!(
            "{}/api/v1/products?limit={limit}&offset={offset}",
            self.urls.product
        )))
        .await
    }

    pub async fn product(&self, id: i64) -> Answer {
        self.send(
            self.http
                .get(format!("{}/api/v1/products/{id}", self.urls.product)),
        )
        .await
    }

    /// `items` as (product id, quantity); a fresh `Idempotency-Key` per order.
    pub async fn place_order(&self, token: &str, items: &[(i64, u32)]) -> Answer {
        let items: Vec<Value> = items
            .iter()
            .map(|(p, q)| json!({"product_id": p, "quantity": q}))
            .collect();
        let body = json!({"items": items});
        let key = uuid::Uuid::new_v4().to_string();
        self.send_order(|base| {
            self.http
                .post(format!("{base}/api/v1/orders"))
                .bearer_auth(token)
                .header("Idempotency-Key", &key)
                .json(&body)
        })
        .await
    }

    pub async fn order(&self, token: &str, id: i64) -> Answer {
        self.send_order(|base| {
            self.http
                .get(format!("{base}/api/v1/orders/{id}"))
                .bearer_auth(token)
        })
        .await
    }

    /// The caller's pending orders: a page of at most [`PAGE`].
    pub async fn pending_orders(&self, token: &str) -> Answer {
        self.send_order(|base| {
            self.http
                .get(format!("{base}/api/v1/orders?status=pending&limit={PAGE}"))
                .bearer_auth(token)
        })
        .await
    }

    pub async fn my_orders(&self, token: &str) -> Answer {
        self.send_order(|base| {
            self.http
                .get(format!("{base}/api/v1/orders?limit=10"))
                .bearer_auth(token)
        })
        .await
    }

    /// Runs `call` until it is not rate-limited (429), waiting as told; for
    /// seeding, where every call must land.
    pub async fn patiently<F, Fut>(what: &str, mut call: F) -> anyhow::Result<Value>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Answer>,
    {
        for _ in 0..120 {
            let answer = call().await;
            match answer.outcome {
                Outcome::Status(s) if (200..300).contains(&s) => {
                    return Ok(answer.body.unwrap_or(Value::Null));
                }
                Outcome::Status(429) | Outcome::Status(503) | Outcome::Io => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Outcome::Status(s) => bail!("{what}: HTTP {s}: {:?}", answer.body),
            }
        }
        bail!("{what}: still refused after 2 minutes of retries")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on a real port that answers every request 200 `{}` and
    /// counts them.
    async fn answering_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    // One request per connection: read its head, answer, close.
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                        .await;
                });
            }
        });
        (url, served)
    }

    /// A URL whose port refuses connections (bound, then closed).
    fn refusing_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    }

    fn api(order: Vec<String>) -> Api {
        let urls = Urls {
            user: refusing_url(),
            product: refusing_url(),
            order,
        };
        Api::new(urls, 4).unwrap()
    }

    #[tokio::test]
    async fn order_calls_go_round_robin_and_skip_a_refusing_replica() {
        let (a, served_a) = answering_server().await;
        let (b, served_b) = answering_server().await;
        let both = api(vec![a.clone(), b]);
        for id in 0..6 {
            assert_eq!(both.order("t", id).await.outcome, Outcome::Status(200));
        }
        assert_eq!(served_a.load(Ordering::SeqCst), 3);
        assert_eq!(served_b.load(Ordering::SeqCst), 3);

        // One replica down: every call still reaches the other.
        let one_down = api(vec![refusing_url(), a]);
        for _ in 0..4 {
            let answer = one_down.place_order("t", &[(1, 1)]).await;
            assert_eq!(answer.outcome, Outcome::Status(200));
        }
        assert_eq!(served_a.load(Ordering::SeqCst), 7);

        // All down: the call ends as no answer, not a hang or a panic.
        let none = api(vec![refusing_url(), refusing_url()]);
        assert_eq!(none.my_orders("t").await.outcome, Outcome::Io);
    }
}
