//! Registration, login, profile and roles against a real PostgreSQL: happy
//! paths and every error.

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, spawn_app};
use serde_json::{Value, json};

#[tokio::test]
async fn register_login_and_profile() {
    let app = spawn_app().await;
    let (status, user) = app
        .register("Ann", "  Ann@Example.COM ", "correct horse")
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["name"], "Ann");
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["role"], "customer");
    assert_eq!(user["user_id"], user["id"]);
    assert!(user.get("created_at").is_some());
    assert!(user.get("password_hash").is_none() && user.get("password").is_none());

    // Login is case-insensitive on the email and returns the user with the token.
    let (status, body) = app
        .post(
            "/api/v1/login",
            json!({"email": "ANN@example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["user"], user);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["token"].as_str().unwrap();

    // The token is what every other service verifies with the public key only.
    let verifier = shared::auth::JwtVerifier::from_public_pem(
        shared::testing::TEST_PUBLIC_KEY,
        shared::testing::TEST_ISSUER,
        shared::testing::TEST_AUDIENCE,
    )
    .unwrap();
    let claims = verifier.verify(token).unwrap();
    assert_eq!(claims.sub, user["id"].to_string());
    assert_eq!(claims.email, "ann@example.com");
    assert_eq!(claims.exp - claims.iat, 3600);

    let (status, profile, _) = app.profile(token).await;
    assert_eq!(status, 200);
    assert_eq!(profile, user);
}

#[tokio::test]
async fn older_clients_may_send_username() {
    let app = spawn_app().await;
    let (status, user) = app
        .post(
            "/register",
            json!({"username": "bob", "email": "bob@x.io", "password": "password1"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(user["name"], "bob");
}

#[tokio::test]
async fn bad_registrations_are_400s_naming_the_field_and_write_nothing() {
    let app = spawn_app().await;
    let cases = [
        (json!({"email": "a@x.io", "password": "password1"}), "name"),
        (
            json!({"name": "", "email": "a@x.io", "password": "password1"}),
            "name",
        ),
        (
            json!({"name": "  ", "email": "a@x.io", "password": "password1"}),
            "name",
        ),
        (
            json!({"name": "n".repeat(101), "email": "a@x.io", "password": "password1"}),
            "name",
        ),
        (
            json!({"name": "A", "email": "not-an-email", "password": "password1"}),
            "email",
        ),
        (json!({"name": "A", "password": "password1"}), "email"),
        (
            json!({"name": "A", "email": "a@x.io", "password": "short"}),
            "password",
        ),
        (
            json!({"name": "A", "email": "a@x.io", "password": "p".repeat(129)}),
            "password",
        ),
        (json!({"name": "A", "email": "a@x.io"}), "password"),
        (
            json!({"name": "A", "email": "a@x.io", "password": 12345678}),
            "password",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = app.post("/register", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(err["field"], field, "{body} -> {err}");
    }
    // Nobody becomes admin by registering: the field is refused outright.
    let (status, _) = app
        .post(
            "/register",
            json!({"name": "M", "email": "m@x.io", "password": "password1", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 400);

    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM users WHERE role = 'customer'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn duplicate_emails_are_409_whatever_their_case() {
    let app = spawn_app().await;
    assert_eq!(app.register("A", "dup@x.io", "password1").await.0, 201);
    let (status, err) = app.register("B", "DUP@X.IO", "password2").await;
    assert_eq!(status, 409);
    assert_eq!(err["code"], "email_taken");
}

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_email_give_one_account() {
    let app = spawn_app().await;
    let names: Vec<String> = (0..20).map(|i| format!("racer {i}")).collect();
    let calls = names
        .iter()
        .map(|name| app.register(name, "race@x.io", "password1"));
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 409).count(),
        19,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = spawn_app().await;
    app.register("C", "c@x.io", "password1").await;
    let (s1, wrong) = app
        .post(
            "/login",
            json!({"email": "c@x.io", "password": "password2"}),
        )
        .await;
    let (s2, unknown) = app
        .post(
            "/login",
            json!({"email": "nobody@x.io", "password": "password1"}),
        )
        .await;
    let (s3, malformed) = app
        .post(
            "/login",
            json!({"email": "nonsense", "password": "password1"}),
        )
        .await;
    assert_eq!((s1, s2, s3), (401, 401, 401));
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, malformed);
    assert_eq!(wrong["code"], "invalid_credentials");
    let (status, err) = app.post("/login", json!({"email": "c@x.io"})).await;
    assert_eq!(status, 400);
    assert_eq!(err["field"], "password");
}

#[tokio::test]
async fn profile_needs_a_token_and_an_existing_account() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/profile")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));

    let (_, user) = app.register("D", "d@x.io", "password1").await;
    let token = app.login("d@x.io", "password1").await;
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user["id"].as_i64())
        .execute(&pool)
        .await
        .unwrap();
    // The token outlives its account: it is refused, as a revoked one.
    let (status, err, _) = app.profile(&token).await;
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["code"], "token_revoked", "{err}");
}

#[tokio::test]
async fn profile_updates_name_and_password_with_the_current_one() {
    let app = spawn_app().await;
    app.register("Eve", "eve@x.io", "password1").await;
    let token = app.login("eve@x.io", "password1").await;
    let put = |body: Value| {
        app.http
            .put(app.url("/profile"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    let renamed: Value = put(json!({"name": "Eve Q."}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "Eve Q.");

    let missing = put(json!({"password": "password2"})).await.unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["field"],
        "current_password"
    );
    let wrong = put(json!({"password": "password2", "current_password": "nope-nope"}))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let short = put(json!({"password": "pw", "current_password": "password1"}))
        .await
        .unwrap();
    assert_eq!(short.status(), 400);
    assert_eq!(put(json!({})).await.unwrap().status(), 400);

    let changed = put(json!({"password": "password2", "current_password": "password1"}))
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(
        app.post(
            "/login",
            json!({"email": "eve@x.io", "password": "password1"})
        )
        .await
        .0,
        401
    );
    app.login("eve@x.io", "password2").await;
}

#[tokio::test]
async fn the_configured_admin_can_promote_and_customers_cannot() {
    let app = spawn_app().await;
    let (_, user) = app.register("F", "f@x.io", "password1").await;
    let customer = app.login("f@x.io", "password1").await;
    let admin = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let role_url = app.url(&format!("/users/{}/role", user["id"]));

    let denied = app
        .http
        .put(&role_url)
        .bearer_auth(&customer)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let anonymous = app
        .http
        .put(&role_url)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let bad_role = app
        .http
        .put(&role_url)
        .bearer_auth(&admin)
        .json(&json!({"role": "root"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_role.status(), 400);
    let unknown = app
        .http
        .put(app.url("/users/999999/role"))
        .bearer_auth(&admin)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let promoted = app
        .http
        .put(&role_url)
        .bearer_auth(&admin)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(promoted.status(), 200);
    assert_eq!(promoted.json::<Value>().await.unwrap()["role"], "admin");
    // The next token carries the new role.
    let token = app.login("f@x.io", "password1").await;
    assert_eq!(app.profile(&token).await.1["role"], "admin");
}

#[tokio::test]
async fn names_with_sql_metacharacters_and_unicode_are_stored_verbatim() {
    let app = spawn_app().await;
    for name in ["Robert'); DROP TABLE users;--", "Zoë 山田 🚀", "a\"b\\c%_"] {
        let email = format!("u{}@x.io", name.len());
        let (status, user) = app.register(name, &email, "password1").await;
        assert_eq!(status, 201);
        assert_eq!(user["name"], name);
        let token = app.login(&email, "password1").await;
        assert_eq!(app.profile(&token).await.1["name"], name);
    }
}

#[tokio::test]
async fn oversized_and_non_json_bodies_are_refused() {
    let app = spawn_app().await;
    let huge = app
        .http
        .post(app.url("/register"))
        .json(&json!({"name": "x".repeat(100_000), "email": "h@x.io", "password": "password1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let form = app
        .http
        .post(app.url("/register"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=a&email=a@x.io&password=password1")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
}

#[tokio::test]
async fn jwks_publishes_the_public_key_and_docs_are_served() {
    let app = spawn_app().await;
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["kid"], "minishop-1");
    // A token from /login verifies with the published JWK.
    app.register("G", "g@x.io", "password1").await;
    let token = app.login("g@x.io", "password1").await;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["minishop"]);
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some("minishop-1"));
    jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &validation,
    )
    .unwrap();

    let openapi: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/register", "/login", "/profile", "/users/{id}/role"] {
        assert!(openapi["paths"][path].is_object(), "{path}");
    }
}
