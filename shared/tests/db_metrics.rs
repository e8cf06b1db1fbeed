//! The database pool's connections show in the service's metrics as they
//! are at scrape time: checked-out connections as `in_use`, returned ones as
//! `idle`, and the configured maximum.
#![cfg(feature = "testing")]

use std::time::Duration;

use shared::config::{CommonConfig, Env};
use shared::metrics::Metrics;

/// The gauge `name`'s value in the series with `label` ("" for any).
fn sample(text: &str, name: &str, label: &str) -> Option<i64> {
    shared::testing::metric_value(text, name, &[label]).map(|v| v as i64)
}

#[tokio::test]
async fn pool_metrics_show_connections_in_use_and_idle() {
    let url = shared::testing::fresh_database("pool").await;
    let mut env =
        Env::with_overrides(&[("DATABASE_URL", url.as_str()), ("DB_MAX_CONNECTIONS", "4")]);
    let config = CommonConfig::read(&mut env, 8080, "unused");
    env.finish().unwrap();
    let pool = shared::db::connect(&config).await.unwrap();
    let metrics = Metrics::new("pool-test");
    shared::db::observe(&pool, &metrics);

    let held = vec![
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
    ];
    let text = metrics.render();
    assert_eq!(
        sample(&text, "db_pool_connections", "state=\"in_use\""),
        Some(3),
        "{text}"
    );
    assert_eq!(
        sample(&text, "db_pool_max_connections", ""),
        Some(4),
        "{text}"
    );

    drop(held);
    // Returned connections go back to the idle queue asynchronously.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics.render();
        let in_use = sample(&text, "db_pool_connections", "state=\"in_use\"");
        let idle = sample(&text, "db_pool_connections", "state=\"idle\"");
        if in_use == Some(0) && idle >= Some(3) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "connections not returned: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
