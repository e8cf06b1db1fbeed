//! Real tokens across services: a user registers, the bootstrapped admin
//! promotes them, and their next token creates a product at product-service,
//! which holds only the public key.

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, spawn_app};
use serde_json::{Value, json};
use shared::shutdown::CancellationToken;

#[tokio::test]
async fn a_promoted_user_creates_a_product() {
    let users = spawn_app().await;
    let stop = CancellationToken::new();
    let (http, _) = product_service::testing::spawn(&stop).await;
    let product_url = format!("http://{http}/api/v1/products");

    let (_, user) = users
        .register("Shop Keeper", "keeper@x.io", "password1")
        .await;
    let as_customer = users.login("keeper@x.io", "password1").await;
    let body = json!({"name": "Teapot", "price": 24.5, "stock": 12});
    let denied = users
        .http
        .post(&product_url)
        .bearer_auth(&as_customer)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);

    let admin = users.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let promoted = users
        .http
        .put(users.url(&format!("/api/v1/users/{}/role", user["id"])))
        .bearer_auth(&admin)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(promoted.status(), 200);

    let as_admin = users.login("keeper@x.io", "password1").await;
    let created = users
        .http
        .post(&product_url)
        .bearer_auth(&as_admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let product: Value = created.json().await.unwrap();
    assert_eq!(product["name"], "Teapot");
    stop.cancel();
}
