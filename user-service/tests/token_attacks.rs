//! Every token that must not pass does not: each is a 401 with
//! `WWW-Authenticate: Bearer` and a clear error, checked on GET /profile.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::spawn_app;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use shared::testing::{TEST_AUDIENCE, TEST_ISSUER, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY};

fn claims(user_id: i64, overrides: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({
        "sub": user_id.to_string(), "email": "t@x.io", "role": "admin",
        "iat": now, "exp": now + 600, "iss": TEST_ISSUER, "aud": TEST_AUDIENCE,
    });
    for (k, v) in overrides.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn signed(claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(TEST_PRIVATE_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &key).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    let (_, user) = app.register("T", "t@x.io", "password1").await;
    let id = user["id"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();

    // The control: a well-formed token passes.
    assert_eq!(app.profile(&signed(&claims(id, json!({})))).await.0, 200);

    let good = signed(&claims(id, json!({})));
    let (signed_part, signature) = good.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let hs256_with_public_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(id, json!({})),
        &EncodingKey::from_secret(TEST_PUBLIC_KEY.as_bytes()),
    )
    .unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims(id, json!({})))
            ),
            "invalid_token",
        ),
        (
            "HS256 signed with the public key",
            hs256_with_public_key,
            "invalid_token",
        ),
        (
            "expired",
            signed(&claims(id, json!({"iat": now - 7200, "exp": now - 3600}))),
            "token_expired",
        ),
        (
            "not yet valid",
            signed(&claims(id, json!({"nbf": now + 3600}))),
            "invalid_token",
        ),
        (
            "wrong issuer",
            signed(&claims(id, json!({"iss": "evil"}))),
            "invalid_token",
        ),
        (
            "wrong audience",
            signed(&claims(id, json!({"aud": "other-app"}))),
            "invalid_token",
        ),
        (
            "bad signature",
            format!("{signed_part}.{flipped}{}", &signature[1..]),
            "invalid_token",
        ),
        ("garbage", "not-a-jwt".to_string(), "invalid_token"),
        (
            "no exp",
            signed(&{
                let mut c = claims(id, json!({}));
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
            "invalid_token",
        ),
    ];
    for (what, token, code) in cases {
        let (status, err, headers) = app.profile(&token).await;
        assert_eq!(status, 401, "{what}: {err}");
        assert_eq!(err["code"], code, "{what}: {err}");
        assert!(!err["error"].as_str().unwrap().is_empty(), "{what}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{what}"
        );
    }

    for header in [
        "Bearer",
        "Bearer ",
        "Token abc",
        "Basic dXNlcjpwYXNz",
        "bearer",
    ] {
        let response = app
            .http
            .get(app.url("/profile"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        assert!(response.headers().contains_key("www-authenticate"));
        let err: Value = response.json().await.unwrap();
        assert!(
            err["error"].as_str().unwrap().contains("Bearer"),
            "{header:?}: {err}"
        );
    }
}
