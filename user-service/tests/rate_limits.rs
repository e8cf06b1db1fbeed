//! Rate limits: per client IP on /register and /login, per user on writes.
//! Each limit triggers with 429 + Retry-After, resets after that time, and
//! one client at its limit does not throttle another.

mod common;

use std::time::Duration;

use common::spawn_app_with;
use serde_json::json;

async fn login_from(app: &common::TestApp, ip: &str) -> reqwest::Response {
    app.http
        .post(app.url("/login"))
        .header("x-forwarded-for", format!("203.0.113.250, {ip}"))
        .json(&json!({"email": "x@x.io", "password": "wrong-password"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn credential_routes_are_limited_per_client_ip() {
    // 60 a minute = one a second, three at once; behind a trusted proxy.
    let app = spawn_app_with(&[
        ("RATE_LIMIT_AUTH_PER_MIN", "60"),
        ("RATE_LIMIT_AUTH_BURST", "3"),
        ("TRUST_FORWARDED_FOR", "true"),
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(login_from(&app, "198.51.100.1").await.status(), 401);
    }
    let limited = login_from(&app, "198.51.100.1").await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        limited.json::<serde_json::Value>().await.unwrap()["code"],
        "rate_limited"
    );

    // Registration shares the per-IP budget.
    let register = app
        .http
        .post(app.url("/register"))
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({"name": "n", "email": "n@x.io", "password": "password1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 429);

    // Another client is unaffected.
    assert_eq!(login_from(&app, "198.51.100.2").await.status(), 401);

    // After Retry-After the first client may try again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(login_from(&app, "198.51.100.1").await.status(), 401);
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_trusted() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_AUTH_PER_MIN", "60"),
        ("RATE_LIMIT_AUTH_BURST", "2"),
    ])
    .await;
    // Different claimed addresses, one real peer: one bucket.
    assert_eq!(login_from(&app, "192.0.2.1").await.status(), 401);
    assert_eq!(login_from(&app, "192.0.2.2").await.status(), 401);
    assert_eq!(login_from(&app, "192.0.2.3").await.status(), 429);
}

#[tokio::test]
async fn writes_are_limited_per_user() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_WRITES_PER_MIN", "60"),
        ("RATE_LIMIT_WRITES_BURST", "2"),
    ])
    .await;
    app.register("A", "a@x.io", "password1").await;
    app.register("B", "b@x.io", "password1").await;
    let a = app.login("a@x.io", "password1").await;
    let b = app.login("b@x.io", "password1").await;
    let rename = |token: &str, name: &str| {
        app.http
            .put(app.url("/profile"))
            .bearer_auth(token)
            .json(&json!({"name": name}))
            .send()
    };
    assert_eq!(rename(&a, "a1").await.unwrap().status(), 200);
    assert_eq!(rename(&a, "a2").await.unwrap().status(), 200);
    let limited = rename(&a, "a3").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    // Reads are not writes.
    assert_eq!(app.profile(&a).await.0, 200);
    // Another user is unaffected.
    assert_eq!(rename(&b, "b1").await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(rename(&a, "a4").await.unwrap().status(), 200);
    assert_eq!(app.profile(&a).await.1["name"], "a4");
}
