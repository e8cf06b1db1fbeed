//! No caller can exhaust user-service: a burst of password checks runs at
//! most `HASH_CONCURRENCY` at once (each takes `ARGON2_MEMORY_KIB`), and the
//! callers beyond the queue get a fast 503 with `Retry-After`.

mod common;

use common::{ADMIN_EMAIL, spawn_app_with};
use serde_json::json;

#[tokio::test]
async fn a_burst_of_logins_is_bounded_and_the_excess_gets_503() {
    let app = spawn_app_with(&[
        ("HASH_CONCURRENCY", "1"),
        ("HASH_QUEUE", "1"),
        // Costly enough that the burst arrives while the first checks run.
        ("ARGON2_MEMORY_KIB", "32768"),
        ("ARGON2_ITERATIONS", "3"),
    ])
    .await;
    let burst = (0..24).map(|_| {
        app.http
            .post(app.url("/login"))
            .json(&json!({"email": ADMIN_EMAIL, "password": "wrong password"}))
            .send()
    });
    let answers = futures::future::join_all(burst).await;
    let (mut refused, mut checked) = (0, 0);
    for answer in answers {
        let answer = answer.expect("every request is answered");
        match answer.status().as_u16() {
            503 => {
                assert_eq!(answer.headers()["retry-after"], "1");
                let body: serde_json::Value = answer.json().await.unwrap();
                assert_eq!(body["code"], "overloaded", "{body}");
                refused += 1;
            }
            401 => checked += 1,
            other => panic!("a login in the burst got {other}"),
        }
    }
    assert!(checked >= 2, "the admitted checks ran: {checked}");
    assert!(
        refused >= 12,
        "the excess was refused at once: {refused} of 24"
    );

    let metrics = shared::testing::scrape(&app.http, &app.base).await;
    let refused_metric =
        shared::testing::metric_value(&metrics, "password_hashes_refused_total", &[]);
    assert_eq!(refused_metric, Some(f64::from(refused)));
    // After the burst, logins work again.
    assert_eq!(
        app.post(
            "/login",
            json!({"email": ADMIN_EMAIL, "password": common::ADMIN_PASSWORD})
        )
        .await
        .0,
        200
    );
}
