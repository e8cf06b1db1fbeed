//! The database goes away under a running service (its connections cut and
//! its port refusing, as when PostgreSQL is stopped): requests that need it
//! get a 503 with `Retry-After` within about a second, not after the pool's
//! 5 s wait; `/ready` names the database as down; and when it is back
//! everything works again with no restart.

mod common;

use std::time::{Duration, Instant};

use shared::testing::{self, CutProxy};

/// The host:port of the test PostgreSQL.
fn postgres_addr() -> std::net::SocketAddr {
    let admin = testing::admin_url();
    let host = admin
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("TEST_DATABASE_ADMIN_URL is postgres://user@host:port/db");
    host.parse().expect("a numeric host:port")
}

#[tokio::test]
async fn a_database_outage_answers_503_fast_and_recovers_by_itself() {
    let proxy = CutProxy::start(postgres_addr()).await;
    let database_url = proxy.url(&testing::fresh_database("user").await);
    let app = common::spawn_app_at(database_url, &[]).await;
    app.register("Ann", "ann@example.com", "password-123").await;
    let token = app.login("ann@example.com", "password-123").await;
    let (status, _, _) = app.profile(&token).await;
    assert_eq!(status, 200);

    proxy.cut();
    // The probe notices within a few of its rounds.
    let cut_at = Instant::now();
    let mut seen = None;
    while cut_at.elapsed() < Duration::from_secs(10) {
        let started = Instant::now();
        let (status, body, headers) = app.profile(&token).await;
        let took = started.elapsed();
        if status == 503 && took < Duration::from_millis(1000) {
            seen = Some((body, headers));
            break;
        }
        assert!(
            status == 503 || status == 200,
            "only 503 while the database goes away: {status} {body}"
        );
    }
    let (body, headers) = seen.expect("fast 503s within 10 s of the cut");
    assert_eq!(body["code"], "unavailable", "{body}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    // Every request now is answered at once.
    for _ in 0..5 {
        let started = Instant::now();
        let (status, _, _) = app.profile(&token).await;
        assert_eq!(status, 503);
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    }
    let ready = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let report: serde_json::Value = ready.json().await.unwrap();
    assert!(
        report["checks"]["database"]
            .as_str()
            .unwrap_or("")
            .starts_with("down"),
        "{report}"
    );
    // Operational routes stay up.
    let health = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    proxy.restore().await;
    let back = Instant::now();
    loop {
        let (status, _, _) = app.profile(&token).await;
        if status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "not back 15 s after the database"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = app.http.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    // Writes work again too.
    let (status, body) = app.register("Bob", "bob@example.com", "password-123").await;
    assert_eq!(status, 201, "{body}");
}
