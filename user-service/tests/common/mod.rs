//! `spawn_app()`: a real user-service on a port chosen by the OS, against a
//! fresh PostgreSQL database, signing with the test key pair, with a
//! bootstrapped admin.

#![allow(dead_code)]

use serde_json::{Value, json};
use shared::config::{Env, FromEnv};
use shared::shutdown::CancellationToken;
use shared::testing;
use user_service::{Config, app};

pub const ADMIN_EMAIL: &str = "root@minishop.test";
pub const ADMIN_PASSWORD: &str = "admin-password-1";

pub struct TestApp {
    pub base: String,
    pub database_url: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts user-service; `overrides` win over the test defaults.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_at(testing::fresh_database("user").await, overrides).await
}

/// Starts user-service on the database at `database_url`.
pub async fn spawn_app_at(database_url: String, overrides: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", database_url.as_str()),
        ("JWT_PUBLIC_KEY", testing::TEST_PUBLIC_KEY),
        ("JWT_PRIVATE_KEY", testing::TEST_PRIVATE_KEY),
        ("ADMIN_EMAIL", ADMIN_EMAIL),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD),
        // Cheaper hashing keeps the suite fast; the cost is configuration.
        ("ARGON2_MEMORY_KIB", "8192"),
        ("ARGON2_ITERATIONS", "1"),
        // Bursts of registrations wait for a hashing turn instead of a 503
        // (tests/exhaustion.rs sets a small queue on purpose).
        ("HASH_QUEUE", "1000"),
        ("RATE_LIMIT_AUTH_PER_MIN", "100000"),
        ("RATE_LIMIT_AUTH_BURST", "10000"),
        ("RATE_LIMIT_WRITES_PER_MIN", "100000"),
        ("RATE_LIMIT_WRITES_BURST", "10000"),
    ];
    vars.extend_from_slice(overrides);
    let config = Config::from_env(Env::with_overrides(&vars)).expect("test configuration is valid");
    let app = app::build(config).await.expect("user-service starts");
    let base = format!("http://{}", app.http_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        base,
        database_url,
        http: reqwest::Client::new(),
        shutdown,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn register(&self, name: &str, email: &str, password: &str) -> (u16, Value) {
        self.post(
            "/register",
            json!({"name": name, "email": email, "password": password}),
        )
        .await
    }

    /// Logs in and returns the token (panics unless 200).
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .post("/login", json!({"email": email, "password": password}))
            .await;
        assert_eq!(status, 200, "login {email}: {body}");
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn profile(&self, token: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        self.get(token, "/profile").await
    }

    /// GETs `path` with `token`: the status, the JSON body and the headers.
    pub async fn get(&self, token: &str, path: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            headers,
        )
    }
}
