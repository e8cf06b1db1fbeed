//! The Redis cache against a real Redis: writes invalidate, an older value
//! can't be written back after a newer write, and when Redis is unreachable,
//! stops mid-test or hangs, reads still answer 200 with correct data.

mod common;

use std::time::Duration;

use common::{spawn_app, spawn_app_with_redis};
use product_service::cache::{CacheConfig, ProductCache};
use serde_json::json;
use shared::shutdown::CancellationToken;
use tokio::net::TcpListener;

fn cache() -> ProductCache {
    ProductCache::new(
        CacheConfig {
            redis_url: shared::testing::redis_url(),
            timeout: Duration::from_millis(200),
            ttl: Duration::from_secs(30),
            key_prefix: format!("test:{}", uuid::Uuid::new_v4().simple()),
        },
        &shared::metrics::Metrics::new("cache-test"),
    )
}

#[tokio::test]
async fn an_older_value_never_overwrites_a_newer_write() {
    let cache = cache();
    cache.fill(1, 2, "v2").await;
    assert_eq!(cache.get(1).await, Some((2, "v2".into())));
    // A reader that read version 1 before the write arrives late: refused.
    cache.fill(1, 1, "v1").await;
    assert_eq!(cache.get(1).await, Some((2, "v2".into())));

    // A write to version 3 invalidates; a reader holding version 2 can't put it back.
    cache.invalidate(1, 3).await;
    assert_eq!(cache.get(1).await, None);
    cache.fill(1, 2, "v2").await;
    assert_eq!(cache.get(1).await, None);
    // A reader of version 3 fills the entry.
    cache.fill(1, 3, "v3").await;
    assert_eq!(cache.get(1).await, Some((3, "v3".into())));
    // An invalidation of an older version is ignored.
    cache.invalidate(1, 2).await;
    assert_eq!(cache.get(1).await, Some((3, "v3".into())));

    // After a delete nothing can be filled back.
    cache.invalidate_deleted(1).await;
    cache.fill(1, 4, "v4").await;
    assert_eq!(cache.get(1).await, None);
}

#[tokio::test]
async fn reads_hit_the_cache_and_see_every_write() {
    let app = spawn_app().await;
    let product = app.create_product("Cached", 3.0, 9).await;
    let path = format!("/products/{}", product["id"]);
    let hits = r#"cache_lookups_total{result="hit""#;

    app.get_json(&path).await; // miss, fills
    let before = app.metric(hits).await;
    let (_, cached) = app.get_json(&path).await;
    assert_eq!(cached, product);
    assert_eq!(
        app.metric(hits).await,
        before + 1.0,
        "the second read was a hit"
    );

    let response = app
        .http
        .put(app.url(&path))
        .bearer_auth(&app.admin)
        .json(&json!({"stock": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, fresh) = app.get_json(&path).await;
    assert_eq!(fresh["stock"], 4);
    assert_eq!(fresh["version"], 2);
    let (_, cached_again) = app.get_json(&path).await;
    assert_eq!(cached_again, fresh);
}

#[tokio::test]
async fn with_redis_unreachable_reads_and_writes_still_work() {
    let app = spawn_app_with_redis("redis://127.0.0.1:1").await;
    let product = app.create_product("NoCache", 5.0, 2).await;
    let path = format!("/products/{}", product["id"]);
    for _ in 0..5 {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 200);
        assert_eq!(body, product);
    }
    app.http
        .put(app.url(&path))
        .bearer_auth(&app.admin)
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(app.get_json(&path).await.1["name"], "Renamed");
    let (status, ready) = app.get_json("/ready").await;
    assert_eq!(
        status, 200,
        "a cache outage does not make the service unready"
    );
    assert!(
        ready["checks"]["redis"]
            .as_str()
            .unwrap()
            .starts_with("degraded")
    );
    assert_eq!(
        app.metric("cache_breaker_state").await,
        1.0,
        "the breaker opened"
    );
}

/// A TCP proxy in front of the real Redis that the test can cut (`stop`) or
/// turn into a black hole that accepts but never answers (`hang`).
struct RedisProxy {
    url: String,
    stop: CancellationToken,
}

async fn redis_proxy(hang: bool) -> RedisProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let upstream = shared::testing::redis_url()
        .trim_start_matches("redis://")
        .to_string();
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = tokio::select! {
                _ = token.cancelled() => return,
                accepted = listener.accept() => match accepted { Ok(c) => c, Err(_) => return },
            };
            let token = token.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if hang {
                    token.cancelled().await;
                    return;
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                }
            });
        }
    });
    RedisProxy { url, stop }
}

#[tokio::test]
async fn when_redis_stops_mid_test_reads_fall_back_to_postgres() {
    let proxy = redis_proxy(false).await;
    let app = spawn_app_with_redis(&proxy.url).await;
    let product = app.create_product("Resilient", 7.0, 3).await;
    let path = format!("/products/{}", product["id"]);
    app.get_json(&path).await;
    app.get_json(&path).await;
    assert!(app.metric(r#"cache_lookups_total{result="hit""#).await >= 1.0);

    proxy.stop.cancel(); // Redis is gone from here on.
    let response = app
        .http
        .put(app.url(&path))
        .bearer_auth(&app.admin)
        .json(&json!({"stock": 1, "price": 6.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for _ in 0..5 {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 200);
        assert_eq!(body["stock"], 1);
        assert_eq!(body["price"], json!(6.5));
    }
}

#[tokio::test]
async fn when_redis_hangs_reads_time_out_of_it_and_answer_from_postgres() {
    let proxy = redis_proxy(true).await;
    let app = spawn_app_with_redis(&proxy.url).await;
    let product = app.create_product("Patient", 1.25, 8).await;
    let path = format!("/products/{}", product["id"]);
    for _ in 0..5 {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 200);
        assert_eq!(body, product);
    }
    assert_eq!(
        app.metric("cache_breaker_state").await,
        1.0,
        "the breaker opened"
    );
    proxy.stop.cancel();
}
