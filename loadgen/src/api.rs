//! The few calls of minishop's REST API that users make, over one pooled
//! HTTP client. Every call returns the status (or a transport error) so the
//! caller can count it; bodies are parsed only where the load needs them.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Where the services are.
#[derive(Debug, Clone)]
pub struct Urls {
    pub user: String,
    pub product: String,
    pub order: String,
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
}

impl Api {
    pub fn new(urls: Urls, connections: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, urls })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        match request.send().await {
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
        self.send(
            self.http
                .post(format!("{}/api/v1/orders", self.urls.order))
                .bearer_auth(token)
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(&json!({"items": items})),
        )
        .await
    }

    pub async fn order(&self, token: &str, id: i64) -> Answer {
        self.send(
            self.http
                .get(format!("{}/api/v1/orders/{id}", self.urls.order))
                .bearer_auth(token),
        )
        .await
    }

    /// The caller's pending orders: a page of at most [`PAGE`].
    pub async fn pending_orders(&self, token: &str) -> Answer {
        self.send(
            self.http
                .get(format!(
                    "{}/api/v1/orders?status=pending&limit={PAGE}",
                    self.urls.order
                ))
                .bearer_auth(token),
        )
        .await
    }

    pub async fn my_orders(&self, token: &str) -> Answer {
        self.send(
            self.http
                .get(format!("{}/api/v1/orders?limit=10", self.urls.order))
                .bearer_auth(token),
        )
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
