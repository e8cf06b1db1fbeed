//! Authority is checked where it is kept: a role or password change makes
//! the user's older tokens invalid at once, and the last admin cannot be
//! demoted.

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, spawn_app};
use serde_json::{Value, json};

async fn set_role(app: &TestApp, token: &str, id: &Value, role: &str) -> (u16, Value) {
    let response = app
        .http
        .put(app.url(&format!("/users/{id}/role")))
        .bearer_auth(token)
        .json(&json!({ "role": role }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn session(app: &TestApp, token: &str) -> (u16, Value) {
    let (status, body, _) = app.get(token, "/session").await;
    (status, body)
}

#[tokio::test]
async fn a_demoted_admins_old_token_cannot_promote_it_back() {
    let app = spawn_app().await;
    let root = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, bob) = app.register("Bob", "bob@x.io", "password1").await;
    assert_eq!(set_role(&app, &root, &bob["id"], "admin").await.0, 200);
    let bobs_admin_token = app.login("bob@x.io", "password1").await;
    assert_eq!(session(&app, &bobs_admin_token).await.1["role"], "admin");

    // root demotes bob; bob's admin token is worth nothing from now on.
    assert_eq!(set_role(&app, &root, &bob["id"], "customer").await.0, 200);
    let (status, body) = set_role(&app, &bobs_admin_token, &bob["id"], "admin").await;
    assert_eq!(
        (status, &body["code"]),
        (401, &json!("token_revoked")),
        "{body}"
    );
    assert_eq!(session(&app, &bobs_admin_token).await.0, 401);

    // Logged in again, bob is a customer, and a customer can't promote.
    let bobs_token = app.login("bob@x.io", "password1").await;
    assert_eq!(session(&app, &bobs_token).await.1["role"], "customer");
    let (status, _) = set_role(&app, &bobs_token, &bob["id"], "admin").await;
    assert_eq!(status, 403);
    let (_, profile, _) = app.profile(&bobs_token).await;
    assert_eq!(profile["role"], "customer");
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted() {
    let app = spawn_app().await;
    let root = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, me) = session(&app, &root).await;
    let (status, body) = set_role(&app, &root, &me["user_id"], "customer").await;
    assert_eq!(
        (status, &body["code"]),
        (409, &json!("last_admin")),
        "{body}"
    );
    assert_eq!(
        session(&app, &root).await.1["role"],
        "admin",
        "nothing changed"
    );

    // With a second admin, the first may step down; then the second is the last.
    let (_, ann) = app.register("Ann", "ann@x.io", "password1").await;
    assert_eq!(set_role(&app, &root, &ann["id"], "admin").await.0, 200);
    let ann_token = app.login("ann@x.io", "password1").await;
    assert_eq!(
        set_role(&app, &root, &me["user_id"], "customer").await.0,
        200
    );
    let (status, _) = set_role(&app, &ann_token, &ann["id"], "customer").await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one() {
    let app = spawn_app().await;
    let root = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, root_me) = session(&app, &root).await;
    let (_, ann) = app.register("Ann", "ann@x.io", "password1").await;
    assert_eq!(set_role(&app, &root, &ann["id"], "admin").await.0, 200);
    let ann_token = app.login("ann@x.io", "password1").await;
    let (a, b) = tokio::join!(
        set_role(&app, &root, &ann["id"], "customer"),
        set_role(&app, &ann_token, &root_me["user_id"], "customer"),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    // One wins; the other is either the last admin (409) or already demoted (401).
    assert_eq!(statuses[0], 200, "{a:?} {b:?}");
    assert!([401, 409].contains(&statuses[1]), "{a:?} {b:?}");
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = 'admin'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(admins, 1);
}

#[tokio::test]
async fn a_password_change_revokes_the_older_tokens() {
    let app = spawn_app().await;
    app.register("Cy", "cy@x.io", "password1").await;
    let old = app.login("cy@x.io", "password1").await;
    let response = app
        .http
        .put(app.url("/profile"))
        .bearer_auth(&old)
        .json(&json!({"password": "password2", "current_password": "password1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, body, _) = app.profile(&old).await;
    assert_eq!(
        (status, &body["code"]),
        (401, &json!("token_revoked")),
        "{body}"
    );
    let new = app.login("cy@x.io", "password2").await;
    assert_eq!(app.profile(&new).await.0, 200);

    // A name change alone revokes nothing.
    let response = app
        .http
        .put(app.url("/profile"))
        .bearer_auth(&new)
        .json(&json!({"name": "Cyril"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.profile(&new).await.0, 200);
}

/// Another service asks user-service about every token: a demoted admin's
/// old token can no longer write the catalogue, a customer's is never an
/// admin's, a customer's token from before a password change is revoked,
/// and while user-service is down a kept answer serves for
/// SESSION_STALE_MS while an unknown admin token gets a 503 and an unknown
/// customer token is taken at its word.
#[tokio::test]
async fn product_service_asks_user_service_for_a_tokens_current_standing() {
    let users = spawn_app().await;
    let stop = shared::shutdown::CancellationToken::new();
    let (product_http, _) = product_service::testing::spawn_with(
        &stop,
        &[
            ("USER_SERVICE_URL", users.base.as_str()),
            // Every request asks, so the demotion shows at once.
            ("SESSION_CACHE_MS", "0"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let create = |token: String, name: &'static str| {
        let http = http.clone();
        async move {
            let response = http
                .post(format!("http://{product_http}/products"))
                .bearer_auth(token)
                .json(&json!({"name": name, "price": 1.5, "stock": 3}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let root = users.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(create(root.clone(), "by root").await.0, 201);

    let (_, bob) = users.register("Bob", "bob@x.io", "password1").await;
    assert_eq!(set_role(&users, &root, &bob["id"], "admin").await.0, 200);
    let bobs_admin_token = users.login("bob@x.io", "password1").await;
    assert_eq!(create(bobs_admin_token.clone(), "by bob").await.0, 201);
    assert_eq!(set_role(&users, &root, &bob["id"], "customer").await.0, 200);
    let (status, body) = create(bobs_admin_token, "by demoted bob").await;
    assert_eq!(
        (status, &body["code"]),
        (401, &json!("token_revoked")),
        "{body}"
    );
    let bobs_token = users.login("bob@x.io", "password1").await;
    assert_eq!(create(bobs_token.clone(), "by customer bob").await.0, 403);

    // A customer's token is asked about too: after bob changes his
    // password, his older token is revoked here as well, not only at
    // user-service (a 401, where a current customer's token gets a 403).
    let response = users
        .http
        .put(users.url("/profile"))
        .bearer_auth(&bobs_token)
        .json(&json!({"password": "password2", "current_password": "password1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, body) = create(bobs_token, "by bob's stolen token").await;
    assert_eq!(
        (status, &body["code"]),
        (401, &json!("token_revoked")),
        "{body}"
    );
    let bobs_new_token = users.login("bob@x.io", "password2").await;
    assert_eq!(create(bobs_new_token.clone(), "by bob again").await.0, 403);

    // user-service goes away: root's answer is still kept; an admin token
    // product-service never saw can't be checked, and is not trusted.
    let (_, ann) = users.register("Ann", "ann@x.io", "password1").await;
    assert_eq!(set_role(&users, &root, &ann["id"], "admin").await.0, 200);
    let ann_token = users.login("ann@x.io", "password1").await;
    let (_, _) = users.register("Dee", "dee@x.io", "password1").await;
    let dee_token = users.login("dee@x.io", "password1").await;
    drop(users);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(create(root, "while user-service is down").await.0, 201);
    let (status, body) = create(ann_token, "unchecked").await;
    assert_eq!(
        (status, &body["code"]),
        (503, &json!("unavailable")),
        "{body}"
    );
    // A customer's unchecked token is taken at its word meanwhile: the
    // route refuses it for its role (403), not for want of an answer (503).
    assert_eq!(create(dee_token, "by customer dee").await.0, 403);
    assert_eq!(create(bobs_new_token, "by bob, kept").await.0, 403);
    stop.cancel();
}

async fn logout(app: &TestApp, token: &str) -> u16 {
    app.http
        .post(app.url("/logout"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `POST /logout` ends that token at user-service at once and at another
/// service within its session cache, while the user's other tokens (another
/// device) stay good; logging out again with it is a 401.
#[tokio::test]
async fn logout_revokes_that_token_everywhere_and_only_that_one() {
    let users = spawn_app().await;
    let stop = shared::shutdown::CancellationToken::new();
    let (product_http, _) = product_service::testing::spawn_with(
        &stop,
        &[
            ("USER_SERVICE_URL", users.base.as_str()),
            ("SESSION_CACHE_MS", "1000"),
        ],
    )
    .await;
    let root = users.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let laptop = users.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let http = reqwest::Client::new();
    let create = |token: String| {
        let http = http.clone();
        async move {
            let response = http
                .post(format!("http://{product_http}/products"))
                .bearer_auth(token)
                .json(&json!({"name": "Lamp", "price": 1.5, "stock": 3}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(create(root.clone()).await.0, 201);
    let logged_out = std::time::Instant::now();
    assert_eq!(logout(&users, &root).await, 204);
    let (status, body) = session(&users, &root).await;
    assert_eq!(
        (status, &body["code"]),
        (401, &json!("token_revoked")),
        "{body}"
    );
    // At product-service: refused once its kept answer (1 s) is stale.
    let mut refused = None;
    while logged_out.elapsed() < std::time::Duration::from_secs(10) {
        let (status, body) = create(root.clone()).await;
        if status == 401 {
            assert_eq!(body["code"], "token_revoked", "{body}");
            refused = Some(logged_out.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let refused = refused.expect("the logged-out token is refused at product-service");
    assert!(refused < std::time::Duration::from_secs(3), "{refused:?}");
    assert_eq!(
        logout(&users, &root).await,
        401,
        "a revoked token cannot log out"
    );
    // The other token of the same user still works, here and there.
    assert_eq!(session(&users, &laptop).await.0, 200);
    assert_eq!(create(laptop.clone()).await.0, 201);
    // Without a token: 401.
    let anonymous = users.http.post(users.url("/logout")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    stop.cancel();
}

/// Running the admin bootstrap again with a new `ADMIN_PASSWORD` ends the
/// admin's older tokens (a password change); with the same password it
/// keeps them.
#[tokio::test]
async fn the_admin_bootstrap_with_a_new_password_revokes_older_tokens() {
    let first = spawn_app().await;
    let database_url = first.database_url.clone();
    let old = first.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    drop(first);

    // The same password: the token stays good.
    let again = common::spawn_app_at(database_url.clone(), &[]).await;
    assert_eq!(
        session(&again, &old).await.0,
        200,
        "same password, same tokens"
    );
    drop(again);

    let rotated =
        common::spawn_app_at(database_url, &[("ADMIN_PASSWORD", "admin-password-2")]).await;
    let (status, body) = session(&rotated, &old).await;
    assert_eq!(
        (status, &body["code"]),
        (401, &json!("token_revoked")),
        "{body}"
    );
    let (status, _) = rotated
        .post(
            "/login",
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(status, 401, "the old password no longer signs in");
    let new = rotated.login(ADMIN_EMAIL, "admin-password-2").await;
    assert_eq!(session(&rotated, &new).await.1["role"], "admin");
}

/// A user-service that stops answering (its packets dropped: no refusal,
/// no reset) costs the other services' requests milliseconds, not seconds:
/// under load, with every session check past its cache, the check's
/// deadline and breaker send each request to the fallback at once, so
/// p99 stays under 1 s and no request fails for it; a kept admin answer
/// still serves, and checks resume once user-service is back.
#[tokio::test]
async fn a_partitioned_user_service_costs_requests_milliseconds() {
    let users = spawn_app().await;
    let upstream = users.base.trim_start_matches("http://").to_string();
    let proxy = shared::testing::TcpProxy::start(upstream).await;
    let through = format!("http://{}", proxy.addr);
    let stop = shared::shutdown::CancellationToken::new();
    let (product_http, _) = product_service::testing::spawn_with(
        &stop,
        &[
            ("USER_SERVICE_URL", through.as_str()),
            // Every check leaves the cache at once.
            ("SESSION_CACHE_MS", "50"),
            ("RATE_LIMIT_WRITES_PER_MIN", "1000000"),
            ("RATE_LIMIT_WRITES_BURST", "1000000"),
        ],
    )
    .await;
    let root = users.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mut customers = Vec::new();
    for i in 0..10 {
        let email = format!("c{i}@x.io");
        users.register("C", &email, "password1").await;
        customers.push(users.login(&email, "password1").await);
    }
    let http = reqwest::Client::new();
    let create = |token: String| {
        let http = http.clone();
        async move {
            let started = std::time::Instant::now();
            let status = http
                .post(format!("http://{product_http}/products"))
                .bearer_auth(token)
                .json(&json!({"name": "Lamp", "price": 1.5, "stock": 3}))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            (status, started.elapsed())
        }
    };
    // Both kinds of token are known before the partition.
    assert_eq!(create(root.clone()).await.0, 201);
    for token in &customers {
        assert_eq!(create(token.clone()).await.0, 403);
    }

    proxy.stall();
    let partition = std::time::Instant::now();
    let mut latencies = Vec::new();
    // 30 s, as the partition of the last round.
    while partition.elapsed() < std::time::Duration::from_secs(30) {
        // 11 requests at once, then 100 ms apart (about 30 a second here).
        let round = customers
            .iter()
            .map(|t| (t.clone(), 403))
            .chain(std::iter::once((root.clone(), 201)))
            .map(|(token, expected)| {
                let request = create(token);
                async move { (request.await, expected) }
            });
        for ((status, took), expected) in futures::future::join_all(round).await {
            assert_eq!(status, expected, "a request failed for the partition");
            latencies.push(took);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let worst = latencies[latencies.len() - 1];
    eprintln!(
        "partition: {} requests, p99 {p99:?}, worst {worst:?}",
        latencies.len()
    );
    assert!(
        p99 < std::time::Duration::from_secs(1),
        "p99 {p99:?} (worst {worst:?}) over {} requests",
        latencies.len()
    );

    // Back: a logout shows again, once the breaker tries again (within
    // twice SESSION_BREAKER_OPEN_MS).
    proxy.restore();
    let bye = customers[0].clone();
    assert_eq!(logout(&users, &bye).await, 204);
    let mut refused = false;
    for _ in 0..150 {
        if create(bye.clone()).await.0 == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        refused,
        "once user-service answers again, its answers count"
    );
    stop.cancel();
}
