//! The APIs web calls, as the signed-in user (their token as the Bearer)
//! or as nobody: REST over HTTP with the request's trace context, each
//! answer decoded into the API's own types, each refusal kept as the API
//! said it ([`CallError`]) so a page can say it in words.

use std::net::IpAddr;
use std::time::Duration;

use order_service::model::OrderView;
use order_service::timeline::Timeline;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shared::auth::Role;
use shared::http::Listed;
use shared::id::{OrderId, ProductId, UserId};
use shared::money::Money;

use crate::config::Services;

/// A product as the catalogue shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub price: Money,
    pub stock: i32,
}

/// Who signed in, as user-service answers a login.
#[derive(Debug, Clone, Deserialize)]
pub struct SignedIn {
    pub token: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
    pub user: Account,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub id: UserId,
    pub name: String,
    pub email: String,
    pub role: Role,
}

/// A notification, as notification-service lists them.
#[derive(Debug, Clone, Deserialize)]
pub struct Notification {
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub order_id: OrderId,
    pub subject: String,
    pub status: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a call gave no answer a page can use.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The API answered with an error: its status, code and sentence, and
    /// when to try again if it said.
    #[error("{status}: {message} ({code})")]
    Refused {
        status: StatusCode,
        code: String,
        message: String,
        retry_after: Option<u64>,
    },
    /// No answer in time, or no connection.
    #[error("{service} did not answer")]
    Unreachable {
        service: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not what the API documents.
    #[error("{service} answered something unexpected")]
    Unexpected {
        service: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

impl CallError {
    /// The status the API answered, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The status of a page that says so: the API's own if it is a 4xx or
    /// a 503, 502 for another answer, 503 for none.
    pub fn page_status(&self) -> StatusCode {
        match self.status() {
            Some(status) if status.is_client_error() || status.as_u16() == 503 => status,
            Some(_) => StatusCode::BAD_GATEWAY,
            None => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The API's error code, if it answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// What the page says: the API's own sentence, in words a customer
    /// understands for the answers that need them.
    pub fn message(&self) -> String {
        match self {
            Self::Refused {
                status,
                code,
                message,
                retry_after,
            } => {
                let wait = retry_after.map_or(String::new(), |s| format!(" Try again in {s} s."));
                match (status.as_u16(), code.as_str()) {
                    (429, _) => format!("Too many requests.{wait}"),
                    (503, _) => format!("The shop is busy or partly down.{wait}"),
                    (401, _) => "Please sign in again: your session has ended.".into(),
                    (_, "insufficient_stock") => format!("Out of stock: {message}"),
                    _ => message.clone(),
                }
            }
            Self::Unreachable { service, .. } => {
                format!("{service} did not answer. Try again in a few seconds.")
            }
            Self::Unexpected { service, .. } => {
                format!("{service} answered something unexpected. Try again.")
            }
        }
    }
}

/// The APIs, with one HTTP client for all.
#[derive(Debug, Clone)]
pub struct Backend {
    http: reqwest::Client,
    urls: Services,
}

/// The service a URL belongs to, for messages.
#[derive(Debug, Clone, Copy)]
enum Api {
    User,
    Product,
    Order,
    Notification,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::User => "user-service",
            Api::Product => "product-service",
            Api::Order => "order-service",
            Api::Notification => "notification-service",
        }
    }
}

impl Backend {
    pub fn new(urls: Services, timeout: Duration) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            // Shorter than the services' own idle time (HTTP_IDLE_TIMEOUT_MS,
            // 20 s), so no request goes out on a connection the service is
            // closing ("connection closed before message completed").
            .pool_idle_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, urls })
    }

    /// The client, for calls that are not to an API (health, Prometheus).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn request(&self, api: Api, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let base = match api {
            Api::User => &self.urls.user,
            Api::Product => &self.urls.product,
            Api::Order => &self.urls.order,
            Api::Notification => &self.urls.notification,
        };
        let mut request = self.http.request(method, format!("{base}/api/v1{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(traceparent) = shared::telemetry::current_traceparent() {
            request = request.header("traceparent", traceparent);
        }
        request
    }

    async fn send<T: DeserializeOwned>(api: Api, request: RequestBuilder) -> Result<T, CallError> {
        let response = Self::answer(api, request).await?;
        response
            .json::<T>()
            .await
            .map_err(|source| CallError::Unexpected {
                service: api.name(),
                source,
            })
    }

    /// A page of a list: its items, and how many there are in all (the
    /// `X-Total-Count` header every API sends with one).
    async fn send_listed<T: DeserializeOwned>(
        api: Api,
        request: RequestBuilder,
    ) -> Result<Listed<T>, CallError> {
        let response = Self::answer(api, request).await?;
        let total = response
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        let items: Vec<T> = response
            .json()
            .await
            .map_err(|source| CallError::Unexpected {
                service: api.name(),
                source,
            })?;
        let total = total.unwrap_or(items.len() as i64);
        Ok(Listed { items, total })
    }

    /// The response if it is a success, else the API's refusal.
    async fn answer(api: Api, request: RequestBuilder) -> Result<reqwest::Response, CallError> {
        let service = api.name();
        let response = request.send().await.map_err(|source| {
            if source.is_decode() {
                CallError::Unexpected { service, source }
            } else {
                CallError::Unreachable { service, source }
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_string);
        Err(CallError::Refused {
            status,
            code: text("code").unwrap_or_else(|| "http_error".into()),
            message: text("error").unwrap_or_else(|| format!("{service} answered {status}")),
            retry_after,
        })
    }

    /// A page of the catalogue, names containing `search` if given.
    pub async fn products(
        &self,
        search: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Listed<Product>, CallError> {
        let mut query = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
        if let Some(search) = search {
            query.push(("q", search.to_string()));
        }
        let request = self
            .request(Api::Product, Method::GET, "/products", None)
            .query(&query);
        Self::send_listed(Api::Product, request).await
    }

    pub async fn product(&self, id: ProductId) -> Result<Product, CallError> {
        let request = self.request(Api::Product, Method::GET, &format!("/products/{id}"), None);
        Self::send(Api::Product, request).await
    }

    /// A new account, asked for by a visitor at `client`.
    pub async fn register(
        &self,
        client: Option<IpAddr>,
        name: &str,
        email: &str,
        password: &str,
    ) -> Result<(), CallError> {
        let request = self
            .request(Api::User, Method::POST, "/register", None)
            .headers(forwarded_for(client))
            .json(&json!({"name": name, "email": email, "password": password}));
        Self::answer(Api::User, request).await.map(drop)
    }

    /// A sign-in by a visitor at `client`.
    pub async fn login(
        &self,
        client: Option<IpAddr>,
        email: &str,
        password: &str,
    ) -> Result<SignedIn, CallError> {
        let request = self
            .request(Api::User, Method::POST, "/login", None)
            .headers(forwarded_for(client))
            .json(&json!({"email": email, "password": password}));
        Self::send(Api::User, request).await
    }

    /// Revokes `token` everywhere.
    pub async fn logout(&self, token: &str) -> Result<(), CallError> {
        let request = self.request(Api::User, Method::POST, "/logout", Some(token));
        Self::answer(Api::User, request).await.map(drop)
    }

    /// Places an order of `lines` under `key`: the same key places it once.
    pub async fn place_order(
        &self,
        token: &str,
        lines: &[OrderLineBody],
        key: &str,
    ) -> Result<OrderView, CallError> {
        let request = self
            .request(Api::Order, Method::POST, "/orders", Some(token))
            .header("Idempotency-Key", key)
            .json(&json!({ "items": lines }));
        Self::send(Api::Order, request).await
    }

    /// A page of the caller's orders, newest first (all orders for an admin
    /// with `everyone`).
    pub async fn orders(
        &self,
        token: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Listed<OrderView>, CallError> {
        let request = self
            .request(Api::Order, Method::GET, "/orders", Some(token))
            .query(&[("limit", limit), ("offset", offset)]);
        Self::send_listed(Api::Order, request).await
    }

    pub async fn order(&self, token: &str, id: OrderId) -> Result<OrderView, CallError> {
        let request = self.request(
            Api::Order,
            Method::GET,
            &format!("/orders/{id}"),
            Some(token),
        );
        Self::send(Api::Order, request).await
    }

    pub async fn timeline(&self, token: &str, id: OrderId) -> Result<Timeline, CallError> {
        let path = format!("/orders/{id}/timeline");
        let request = self.request(Api::Order, Method::GET, &path, Some(token));
        Self::send(Api::Order, request).await
    }

    pub async fn cancel(&self, token: &str, id: OrderId) -> Result<OrderView, CallError> {
        let path = format!("/orders/{id}/cancel");
        let request = self.request(Api::Order, Method::POST, &path, Some(token));
        Self::send(Api::Order, request).await
    }

    /// The notifications of `user` (an admin's token for another user's).
    pub async fn notifications(
        &self,
        token: &str,
        user: UserId,
    ) -> Result<Listed<Notification>, CallError> {
        let request = self
            .request(
                Api::Notification,
                Method::GET,
                "/notifications",
                Some(token),
            )
            .query(&[("user_id", user.to_string()), ("limit", "100".into())]);
        Self::send_listed(Api::Notification, request).await
    }
}

/// `X-Forwarded-For: client`: user-service limits sign-ins per visitor's
/// address, not per web's (it trusts web's header, `TRUST_FORWARDED_FOR`).
fn forwarded_for(client: Option<IpAddr>) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = client.and_then(|ip| ip.to_string().parse().ok()) {
        headers.insert("x-forwarded-for", value);
    }
    headers
}

/// One line of an order as the order API takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OrderLineBody {
    pub product_id: ProductId,
    pub quantity: i32,
}
