//! The HTTP bound of `scripts/bench.sh`: the smallest axum server (one route
//! returning a short JSON body), measured with the same load tool as the
//! real service so the two figures are comparable. Arg: the listen address.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18099".into());
    let app = axum::Router::new().route(
        "/hello",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"hello": "world"})) }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
