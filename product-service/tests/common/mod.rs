//! `spawn_app()`: a real product-service on ports chosen by the OS, against a
//! fresh PostgreSQL database and the real Redis (with its own key prefix).

#![allow(dead_code)]

use product_service::{Config, app};
use shared::auth::Role;
use shared::config::{Env, FromEnv};
use shared::proto::product::product_service_client::ProductServiceClient;
use shared::shutdown::CancellationToken;
use shared::testing;
use tonic::transport::Channel;

pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub grpc_addr: std::net::SocketAddr,
    pub database_url: String,
    pub http: reqwest::Client,
    pub admin: String,
    pub customer: String,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with_redis(&testing::redis_url()).await
}

pub async fn spawn_app_with_redis(redis_url: &str) -> TestApp {
    spawn(redis_url, &[]).await
}

/// [`spawn_app`], with `overrides` over the test settings.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn(&testing::redis_url(), overrides).await
}

async fn spawn(redis_url: &str, overrides: &[(&str, &str)]) -> TestApp {
    let database_url = testing::fresh_database("product").await;
    let prefix = format!("test:{}", uuid::Uuid::new_v4().simple());
    let mut vars = vec![
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("GRPC_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", &database_url),
        ("REDIS_URL", redis_url),
        ("REDIS_TIMEOUT_MS", "100"),
        ("CACHE_KEY_PREFIX", &prefix),
        ("JWT_PUBLIC_KEY", testing::TEST_PUBLIC_KEY),
        // No user-service here: admin tokens are taken at their word.
        ("USER_SERVICE_URL", "none"),
        ("DB_MAX_CONNECTIONS", "20"),
        // Tests write fast; the write limit has its own test.
        ("RATE_LIMIT_WRITES_PER_MIN", "100000"),
        ("RATE_LIMIT_WRITES_BURST", "10000"),
    ];
    vars.extend(testing::pki::trusted().vars("product-service"));
    vars.extend_from_slice(overrides);
    let env = Env::with_overrides(&vars);
    let config = Config::from_env(env).expect("test configuration is valid");
    let app = app::build(config).await.expect("product-service starts");
    let base = format!("http://{}", app.http_addr());
    let grpc_addr = app.grpc_addr().expect("it serves gRPC");
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        base,
        grpc_addr,
        database_url,
        http: reqwest::Client::new(),
        admin: testing::token(1, Role::Admin),
        customer: testing::token(2, Role::Customer),
        shutdown,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client with order-service's certificate: the saga's identity.
    pub async fn grpc(&self) -> ProductServiceClient<Channel> {
        self.grpc_as(Some(testing::pki::trusted().leaf("order-service")))
            .await
            .expect("gRPC connects")
    }

    /// A client presenting `identity` (certificate and key), or none.
    pub async fn grpc_as(
        &self,
        identity: Option<(&str, &str)>,
    ) -> Result<ProductServiceClient<Channel>, tonic::transport::Error> {
        let endpoint = testing::pki::endpoint(self.grpc_addr, "product-service", identity);
        Ok(ProductServiceClient::new(endpoint.connect().await?))
    }

    /// Creates a product as admin and returns its JSON.
    pub async fn create_product(&self, name: &str, price: f64, stock: i32) -> serde_json::Value {
        let response = self
            .http
            .post(self.url("/products"))
            .bearer_auth(&self.admin)
            .json(&serde_json::json!({"name": name, "price": price, "stock": stock}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "create {name}");
        response.json().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    pub async fn stock_of(&self, id: i64) -> i32 {
        let (status, body) = self.get_json(&format!("/products/{id}")).await;
        assert_eq!(status, 200);
        body["stock"].as_i64().unwrap() as i32
    }

    /// The value of a metric line that starts with `prefix`, 0 if absent.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = shared::testing::scrape(&self.http, &self.base).await;
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}
