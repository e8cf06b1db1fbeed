//! Load generator for `ReserveStock`: creates `--products` products with
//! plenty of stock through the REST API (admin token signed with the local
//! key), then drives `ReserveStock` with unique order ids from N concurrent
//! callers for a duration, each order taking one unit of a product picked
//! round-robin (so callers contend like a catalogue, not all on one row;
//! `--products 1` measures a single hot product), and prints calls/s and
//! latency percentiles. Used by `scripts/bench.sh`.
//!
//! The calls go over mutual TLS as order-service, the only caller allowed
//! to move stock, with the certificates in `--tls` (scripts/keys.sh); an
//! `http://` URL calls in plaintext (a product-service with `GRPC_TLS=off`).
//!
//! Args: --http URL --grpc URL --key PRIVATE_PEM [--tls DIR] [--concurrency 32] [--seconds 10] [--products 100]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use shared::auth::{JwtSigner, Role};
use shared::proto::product::product_service_client::ProductServiceClient;
use shared::proto::product::{ReservationStatus, ReserveStockRequest, StockItem};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let http = arg("--http", "http://127.0.0.1:8081");
    let grpc = arg("--grpc", "https://127.0.0.1:50052");
    let tls_dir = arg("--tls", shared::tls::DEFAULT_DIR);
    let key = std::fs::read_to_string(arg("--key", ".local/keys/jwt_private.pem"))?;
    let concurrency: usize = arg("--concurrency", "32").parse()?;
    let seconds: u64 = arg("--seconds", "10").parse()?;
    let product_count: usize = arg("--products", "100").parse()?;

    let signer = JwtSigner::from_private_pem(&key, "minishop-user-service", "minishop", 600)?;
    let token = signer.sign(1, "bench@example.com", Role::Admin, 0)?;
    let http_client = reqwest::Client::new();
    let mut product_ids = Vec::with_capacity(product_count);
    for i in 0..product_count {
        let product: serde_json::Value = http_client
            .post(format!("{http}/products"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": format!("bench {i}"), "price": 1.0, "stock": 2_000_000_000}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        product_ids.push(product["id"].as_i64().ok_or("no product id")?);
    }
    let product_ids = Arc::new(product_ids);

    let mut endpoint = tonic::transport::Endpoint::from_shared(grpc.clone())?;
    if grpc.starts_with("https://") {
        let mut env = shared::config::Env::new();
        let tls = shared::tls::TlsConfig::from_dir(&mut env, &tls_dir, "order-service");
        env.finish()?;
        endpoint = endpoint.tls_config(tls.client("product-service"))?;
    }
    let client = ProductServiceClient::new(endpoint.connect().await?);
    // Order ids unique across runs: start from the current time in microseconds.
    let next_order = Arc::new(AtomicI64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros() as i64,
    ));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let mut client = client.clone();
        let next_order = next_order.clone();
        let product_ids = product_ids.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let order_id = next_order.fetch_add(1, Ordering::Relaxed);
                let product_id = product_ids[order_id as usize % product_ids.len()];
                let t = Instant::now();
                let result = client
                    .reserve_stock(ReserveStockRequest {
                        order_id,
                        items: vec![StockItem {
                            product_id,
                            quantity: 1,
                        }],
                    })
                    .await;
                match result {
                    Ok(r) if r.get_ref().status() == ReservationStatus::Reserved => {
                        latencies.push(t.elapsed())
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        })
    });
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in futures::future::join_all(workers).await {
        let (l, e) = w?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    println!(
        "reserve_calls={} errors={} seconds={:.1} calls_per_sec={:.0} p50_ms={:.2} p99_ms={:.2}",
        latencies.len(),
        errors,
        elapsed,
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
