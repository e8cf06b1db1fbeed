//! The cached read's own bound in `scripts/bench.sh`: the hello-world of
//! `hello_bound` plus the one Redis round trip every cached
//! `GET /products/{id}` makes (an `HMGET` of a version and a body through a
//! multiplexed connection, as the product cache does), and nothing else.
//! Any design that asks Redis on every read, which keeping reads fresh
//! across replicas needs, is at most this fast on the same machine.
//!
//! Args: the listen address, the Redis URL.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use redis::aio::ConnectionManager;

const KEY: &str = "minishop-bench:redis-bound";

async fn read(State(mut conn): State<ConnectionManager>) -> impl IntoResponse {
    let found: redis::RedisResult<(Option<i64>, Option<String>)> = redis::cmd("HMGET")
        .arg(KEY)
        .arg("v")
        .arg("body")
        .query_async(&mut conn)
        .await;
    match found {
        Ok((Some(_), Some(body))) => {
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18098".into());
    let redis_url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let mut conn = ConnectionManager::new(redis::Client::open(redis_url)?).await?;
    // A body the size of a product's.
    let body = serde_json::json!({
        "id": 1, "name": "Bench product", "description": "a product of the benchmark's catalogue",
        "price_cents": 1999, "stock": 100000, "version": 1,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    })
    .to_string();
    redis::cmd("HSET")
        .arg(KEY)
        .arg("v")
        .arg(1)
        .arg("body")
        .arg(body)
        .query_async::<()>(&mut conn)
        .await?;
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(read))
        .with_state(conn);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
