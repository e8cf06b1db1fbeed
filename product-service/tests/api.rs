//! The REST API against a real PostgreSQL and Redis: every route's success
//! and each error status, ETag/If-Match, and admin vs customer vs no token.

mod common;

use common::spawn_app;
use serde_json::{Value, json};

#[tokio::test]
async fn list_is_a_bare_array_with_total_and_pages() {
    let app = spawn_app().await;
    let response = app.http.get(app.url("/products")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-total-count"], "0");
    assert_eq!(response.text().await.unwrap(), "[]");

    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        app.create_product(name, 1.5 + i as f64, 10).await;
    }
    let response = app
        .http
        .get(app.url("/api/v1/products?limit=2&offset=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-total-count"], "3");
    let page: Vec<Value> = response.json().await.unwrap();
    let names: Vec<&str> = page.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(page[0]["price"], json!(2.5));

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
    ] {
        let (status, body) = app.get_json(&format!("/products?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
}

#[tokio::test]
async fn create_returns_the_product_with_exact_money_and_location() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url("/api/v1/products"))
        .bearer_auth(&app.admin)
        .json(&json!({"name": "Laptop", "price": 1999.99, "stock": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id_location = response.headers()["location"].to_str().unwrap().to_string();
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let text = response.text().await.unwrap();
    assert!(text.contains("\"price\":1999.99"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["name"], "Laptop");
    assert_eq!(body["stock"], 5);
    assert_eq!(body["version"], 1);
    assert_eq!(etag, "\"v1\"");
    assert_eq!(id_location, format!("/api/v1/products/{}", body["id"]));
    for key in ["id", "created_at", "updated_at"] {
        assert!(body.get(key).is_some(), "missing {key}");
    }

    // A round price keeps its two decimals in JSON.
    let round = app.create_product("Mug", 10.0, 1).await;
    let text = app
        .http
        .get(app.url(&format!("/products/{}", round["id"])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"price\":10.00"), "{text}");
}

#[tokio::test]
async fn writes_need_an_admin_token() {
    let app = spawn_app().await;
    let product = app.create_product("Pen", 1.0, 1).await;
    let id = product["id"].as_i64().unwrap();
    let body = json!({"name": "x", "price": 1.0, "stock": 1});

    let requests = || {
        [
            app.http.post(app.url("/products")).json(&body),
            app.http
                .put(app.url(&format!("/products/{id}")))
                .json(&json!({"stock": 3})),
            app.http.delete(app.url(&format!("/products/{id}"))),
        ]
    };
    for request in requests() {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let err: Value = response.json().await.unwrap();
        assert_eq!(err["code"], "missing_token");
    }
    for request in requests() {
        let response = request.bearer_auth(&app.customer).send().await.unwrap();
        assert_eq!(response.status(), 403);
        let err: Value = response.json().await.unwrap();
        assert_eq!(err["code"], "forbidden");
    }
    for request in requests() {
        let response = request.bearer_auth("not.a.token").send().await.unwrap();
        assert_eq!(response.status(), 401);
    }
    // Nothing changed.
    assert_eq!(app.stock_of(id).await, 1);
}

#[tokio::test]
async fn every_bad_field_is_a_400_that_names_it() {
    let app = spawn_app().await;
    let long = "n".repeat(201);
    let cases = [
        (json!({"name": "", "price": 1.0, "stock": 1}), "name"),
        (json!({"name": "   ", "price": 1.0, "stock": 1}), "name"),
        (json!({"name": long, "price": 1.0, "stock": 1}), "name"),
        (json!({"name": 5, "price": 1.0, "stock": 1}), "name"),
        (json!({"name": "x", "price": 0, "stock": 1}), "price"),
        (json!({"name": "x", "price": -3.5, "stock": 1}), "price"),
        (json!({"name": "x", "price": 1.999, "stock": 1}), "price"),
        (json!({"name": "x", "price": "12.00", "stock": 1}), "price"),
        (json!({"name": "x", "price": 1e15, "stock": 1}), "price"),
        (json!({"name": "x", "price": 1.0, "stock": -1}), "stock"),
        (json!({"name": "x", "price": 1.0, "stock": 1.5}), "stock"),
        (
            json!({"name": "x", "price": 1.0, "stock": 3_000_000_000u64}),
            "stock",
        ),
        (json!({"name": "x", "price": 1.0}), "stock"),
        (json!({"price": 1.0, "stock": 1}), "name"),
    ];
    for (body, field) in cases {
        let response = app
            .http
            .post(app.url("/products"))
            .bearer_auth(&app.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let err: Value = response.json().await.unwrap();
        assert_eq!(err["field"], field, "{body} -> {err}");
        assert!(err["error"].as_str().unwrap().contains(field), "{err}");
    }

    let unknown = app
        .http
        .post(app.url("/products"))
        .bearer_auth(&app.admin)
        .json(&json!({"name": "x", "price": 1.0, "stock": 1, "colour": "red"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);

    let malformed = app
        .http
        .post(app.url("/products"))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["code"],
        "malformed_json"
    );

    let not_json = app
        .http
        .post(app.url("/products"))
        .bearer_auth(&app.admin)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);

    let huge = app
        .http
        .post(app.url("/products"))
        .bearer_auth(&app.admin)
        .json(&json!({"name": "x".repeat(100_000), "price": 1.0, "stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);

    let (_, list) = app.get_json("/products").await;
    assert_eq!(list, json!([]), "no bad request wrote anything");
}

#[tokio::test]
async fn get_by_id_handles_unknown_and_non_numeric_ids() {
    let app = spawn_app().await;
    let product = app.create_product("Lamp", 25.5, 4).await;
    let id = product["id"].as_i64().unwrap();

    let (status, body) = app.get_json(&format!("/api/v1/products/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body, product);

    let (status, body) = app.get_json("/products/999999").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");

    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999"] {
        let (status, body) = app.get_json(&format!("/products/{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["field"], "id");
    }
}

#[tokio::test]
async fn etag_and_if_match_round_trip() {
    let app = spawn_app().await;
    let product = app.create_product("Chair", 40.0, 3).await;
    let url = app.url(&format!("/products/{}", product["id"]));

    let first = app.http.get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, "\"v1\"");

    let not_modified = app
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);

    // Update with the current ETag: applies, and only the sent field changes.
    let updated = app
        .http
        .put(&url)
        .bearer_auth(&app.admin)
        .header("if-match", &etag)
        .json(&json!({"price": 35.25}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    let new_etag = updated.headers()["etag"].to_str().unwrap().to_string();
    let body: Value = updated.json().await.unwrap();
    assert_eq!(body["price"], json!(35.25));
    assert_eq!(body["name"], "Chair");
    assert_eq!(body["stock"], 3);
    assert_eq!(body["version"], 2);
    assert_eq!(new_etag, "\"v2\"");

    // The old ETag is stale now: 409 with the current version, nothing written.
    let stale = app
        .http
        .put(&url)
        .bearer_auth(&app.admin)
        .header("if-match", &etag)
        .json(&json!({"stock": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 409);
    let err: Value = stale.json().await.unwrap();
    assert_eq!(err["code"], "stale_version");
    assert_eq!(err["current_version"], 2);

    // A stale version in the body is refused the same way.
    let stale_body = app
        .http
        .put(&url)
        .bearer_auth(&app.admin)
        .json(&json!({"stock": 100, "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale_body.status(), 409);

    let (_, now) = app.get_json(&format!("/products/{}", product["id"])).await;
    assert_eq!(now["stock"], 3);
    assert_eq!(now["version"], 2);

    // The old ETag no longer matches for If-None-Match either.
    let changed = app
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
}

#[tokio::test]
async fn update_validates_and_reports_unknown_products() {
    let app = spawn_app().await;
    let product = app.create_product("Desk", 100.0, 2).await;
    let url = app.url(&format!("/products/{}", product["id"]));
    let put = |body: Value| {
        app.http
            .put(&url)
            .bearer_auth(&app.admin)
            .json(&body)
            .send()
    };

    assert_eq!(put(json!({})).await.unwrap().status(), 400);
    for (body, field) in [
        (json!({"price": 0}), "price"),
        (json!({"stock": -2}), "stock"),
        (json!({"name": ""}), "name"),
    ] {
        let response = put(body.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(response.json::<Value>().await.unwrap()["field"], field);
    }
    let bad_if_match = app
        .http
        .put(&url)
        .bearer_auth(&app.admin)
        .header("if-match", "\"nonsense\"")
        .json(&json!({"stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_if_match.status(), 400);

    let unknown = app
        .http
        .put(app.url("/products/424242"))
        .bearer_auth(&app.admin)
        .json(&json!({"stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let renamed = put(json!({"name": "Standing desk", "stock": 7}))
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    let body: Value = renamed.json().await.unwrap();
    assert_eq!(body["name"], "Standing desk");
    assert_eq!(body["stock"], 7);
    assert_eq!(body["price"], json!(100.0));
}

#[tokio::test]
async fn delete_removes_the_product_everywhere() {
    let app = spawn_app().await;
    let keep = app.create_product("Keep", 1.0, 1).await;
    let gone = app.create_product("Gone", 1.0, 1).await;
    let url = app.url(&format!("/products/{}", gone["id"]));
    // Warm the cache so the delete has to invalidate it.
    assert_eq!(
        app.get_json(&format!("/products/{}", gone["id"])).await.0,
        200
    );

    let deleted = app
        .http
        .delete(&url)
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        app.get_json(&format!("/products/{}", gone["id"])).await.0,
        404
    );
    let again = app
        .http
        .delete(&url)
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let (_, list) = app.get_json("/products").await;
    assert_eq!(list, json!([keep]));
}

#[tokio::test]
async fn docs_health_ready_metrics_and_json_errors_for_unknown_routes() {
    let app = spawn_app().await;
    let (status, openapi) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/products"]["get"].is_object());
    // The answers every route may give are documented once, in shared::http.
    let list = &openapi["paths"]["/products"]["get"]["responses"];
    assert!(
        list["200"]["headers"]["X-Total-Count"].is_object(),
        "{list}"
    );
    assert!(list["400"].is_object(), "a list takes limit and offset");
    assert!(list.get("401").is_none(), "the catalogue is public");
    let update = &openapi["paths"]["/products/{id}"]["put"]["responses"];
    for code in ["400", "401", "403", "404", "413", "415", "409"] {
        assert!(
            update[code].is_object(),
            "PUT /products/{{id}} documents {code}: {update}"
        );
    }
    assert_eq!(update["403"]["description"], "Not an admin");
    assert_eq!(update["404"]["description"], "No such product");
    assert!(update["200"]["headers"].get("X-Total-Count").is_none());
    let id = &openapi["paths"]["/products/{id}"]["get"]["parameters"][0];
    assert_eq!(
        (&id["name"], &id["in"], &id["schema"]["minimum"]),
        (&json!("id"), &json!("path"), &json!(1))
    );

    let docs = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));

    assert_eq!(app.get_json("/health").await.1["status"], "ok");
    let (status, ready) = app.get_json("/ready").await;
    assert_eq!(status, 200);
    assert_eq!(ready["checks"]["database"], "ok");

    let (status, body) = app.get_json("/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    let wrong_method = app.http.patch(app.url("/products")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);

    app.get_json("/products/1").await;
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("route=\"/products/{id}\""),
        "metrics use the route template"
    );
    assert!(
        !text.contains("route=\"/products/1\""),
        "never the raw path"
    );
}
