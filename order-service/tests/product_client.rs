//! The saga's product client against a real product-service (and a dead
//! port): calls work, business refusals pass through without opening the
//! breaker, and an unreachable product-service opens it so calls fail fast.
//! Both sides count the calls by method and gRPC code in their metrics.

use std::time::Duration;

use order_service::product_client::{CallError, ProductClient, ProductClientConfig};
use shared::auth::Role;
use shared::metrics::Metrics;
use shared::proto::product::ReservationStatus;
use shared::shutdown::CancellationToken;
use shared::stock::OrderLine;
use shared::stock::Settlement::{Commit, Release};
use shared::testing;
use tonic::Code;

/// The client's settings towards `url`: over mutual TLS as order-service
/// for an https:// URL (the real product-service), plaintext otherwise (a
/// socket that drops the connection mid-call).
fn config(url: String) -> ProductClientConfig {
    let tls = url
        .starts_with("https://")
        .then(|| testing::pki::trusted().tls("order-service"));
    ProductClientConfig {
        url,
        tls,
        deadline: Duration::from_millis(500),
        attempts: 2,
        backoff: Duration::from_millis(20),
        breaker_failures: 3,
        breaker_open: Duration::from_secs(30),
        resolve_every: Duration::ZERO,
    }
}

/// A real product-service with one product of stock 5; returns its gRPC URL,
/// the product id and its HTTP address.
async fn product_service(stop: &CancellationToken) -> (String, i64, std::net::SocketAddr) {
    let (http, grpc) = product_service::testing::spawn(stop).await;
    let product: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{http}/products"))
        .bearer_auth(testing::token(1, Role::Admin))
        .json(&serde_json::json!({"name": "Widget", "price": 3.5, "stock": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        format!("https://{grpc}"),
        product["id"].as_i64().unwrap(),
        http,
    )
}

#[tokio::test]
async fn stock_calls_work_and_refusals_do_not_open_the_breaker() {
    let stop = CancellationToken::new();
    let (url, product, http) = product_service(&stop).await;
    let metrics = Metrics::new("order-test");
    let client = ProductClient::new(config(url), &metrics).unwrap();

    let reserved = client
        .reserve(
            testing::order(1),
            &[OrderLine::new(testing::product(product), 2)],
        )
        .await
        .unwrap();
    assert_eq!(reserved.status(), ReservationStatus::Reserved);
    assert_eq!(reserved.total_cents, 700);
    assert_eq!(
        client.settle(testing::order(1), Commit).await.unwrap(),
        ReservationStatus::Committed
    );
    client
        .reserve(
            testing::order(2),
            &[OrderLine::new(testing::product(product), 1)],
        )
        .await
        .unwrap();
    assert_eq!(
        client.settle(testing::order(2), Release).await.unwrap(),
        ReservationStatus::Released
    );

    for order_id in 10..20 {
        match client
            .reserve(
                testing::order(order_id),
                &[OrderLine::new(testing::product(999_999), 1)],
            )
            .await
        {
            Err(CallError::Refused(status)) => assert_eq!(status.code(), Code::NotFound),
            other => panic!("{other:?}"),
        }
    }
    match client.settle(testing::order(2), Commit).await {
        Err(CallError::Refused(status)) => assert_eq!(status.code(), Code::FailedPrecondition),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.breaker_state(),
        0,
        "business refusals leave the breaker closed"
    );
    assert_eq!(
        client
            .reserve(
                testing::order(3),
                &[OrderLine::new(testing::product(product), 1)]
            )
            .await
            .unwrap()
            .status(),
        ReservationStatus::Reserved
    );

    // Both sides count the same calls: 3 reserves OK, 10 NotFound, 1 commit
    // OK, 1 FailedPrecondition, and time the 13 reserves.
    let server = served_metrics(http).await;
    for (side, text) in [("client", metrics.render()), ("server", server)] {
        for (method, code, expected) in [
            ("ReserveStock", "OK", 3.0),
            ("ReserveStock", "NotFound", 10.0),
            ("CommitStock", "OK", 1.0),
            ("CommitStock", "FailedPrecondition", 1.0),
        ] {
            let method = format!("method=\"/product.ProductService/{method}\"");
            let code = format!("code=\"{code}\"");
            let counted = testing::metric_value(
                &text,
                &format!("grpc_{side}_requests_total"),
                &[&method, &code],
            );
            assert_eq!(counted, Some(expected), "{side} {method} {code}: {text}");
        }
        let timed = testing::metric_value(
            &text,
            &format!("grpc_{side}_request_duration_seconds_count"),
            &["ReserveStock"],
        );
        assert_eq!(timed, Some(13.0), "{side}: {text}");
    }
    stop.cancel();
}

#[tokio::test]
async fn an_unreachable_product_service_opens_the_breaker() {
    let metrics = Metrics::new("order-test");
    let client = ProductClient::new(config("https://127.0.0.1:1".into()), &metrics).unwrap();
    for order_id in 1..=3 {
        match client
            .reserve(
                testing::order(order_id),
                &[OrderLine::new(testing::product(1), 1)],
            )
            .await
        {
            Err(CallError::Unavailable(status)) => assert_eq!(status.code(), Code::Unavailable),
            other => panic!("call {order_id}: {other:?}"),
        }
    }
    assert_eq!(
        client.breaker_state(),
        1,
        "open after 3 consecutive transient failures"
    );
    // Every attempt (2 per call) is counted; rejected calls are not attempts.
    let attempts = testing::metric_value(
        &metrics.render(),
        "grpc_client_requests_total",
        &["ReserveStock", "code=\"Unavailable\""],
    );
    assert_eq!(attempts, Some(6.0));
    assert!(matches!(
        client.settle(testing::order(4), Release).await,
        Err(CallError::BreakerOpen)
    ));
    assert!(matches!(
        client
            .reserve(testing::order(5), &[OrderLine::new(testing::product(1), 1)])
            .await,
        Err(CallError::BreakerOpen)
    ));
}

/// A product-service that dies in the middle of each call: it takes the
/// connection and the request's first bytes, then drops the socket. The
/// client never got an answer, so the call is unavailable (retried, counted
/// by the breaker, a 503 for the API), not a refusal (a 500).
#[tokio::test]
async fn a_connection_dropped_mid_call_is_unavailable_not_a_refusal() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        }
    });
    let metrics = Metrics::new("order-test");
    let client = ProductClient::new(config(format!("http://{addr}")), &metrics).unwrap();
    match client
        .reserve(testing::order(1), &[OrderLine::new(testing::product(1), 1)])
        .await
    {
        Err(CallError::Unavailable(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the call was tried again on a new connection"
    );
}

/// The metrics of the product-service at `http`.
async fn served_metrics(http: std::net::SocketAddr) -> String {
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap();
    metrics.text().await.unwrap()
}

/// How many ReleaseStock calls the product-service at `http` has served.
async fn releases_served(http: std::net::SocketAddr) -> f64 {
    testing::metric_value(
        &served_metrics(http).await,
        "grpc_server_requests_total",
        &[
            "method=\"/product.ProductService/ReleaseStock\"",
            "code=\"OK\"",
        ],
    )
    .unwrap_or(0.0)
}

/// Two product-service instances at one port on two addresses (as a
/// headless Service's name resolves to each pod): the calls are spread over
/// both, and when the name stops resolving to one, it gets no more calls.
#[tokio::test]
async fn calls_are_spread_over_every_address_the_name_resolves_to() {
    let stop = CancellationToken::new();
    let (http_a, grpc_a) = product_service::testing::spawn(&stop).await;
    let second = format!("127.0.0.2:{}", grpc_a.port());
    let (http_b, grpc_b) =
        product_service::testing::spawn_with(&stop, &[("GRPC_ADDR", second.as_str())]).await;
    assert_eq!(grpc_b.port(), grpc_a.port());

    let addresses = std::sync::Arc::new(std::sync::Mutex::new(vec![grpc_a, grpc_b]));
    let resolver: order_service::product_client::Resolver = {
        let addresses = addresses.clone();
        std::sync::Arc::new(move |host, port| {
            assert_eq!((host, port), ("product-service.test", grpc_a.port()));
            let found = addresses.lock().unwrap().clone();
            Box::pin(async move { Ok(found) })
        })
    };
    let mut config = config(format!("https://product-service.test:{}", grpc_a.port()));
    config.resolve_every = Duration::from_millis(100);
    let metrics = Metrics::new("order-test");
    let client = ProductClient::with_resolver(config, &metrics, resolver).unwrap();

    for order_id in 1..=40 {
        client
            .settle(testing::order(order_id), Release)
            .await
            .unwrap();
    }
    let (a, b) = (releases_served(http_a).await, releases_served(http_b).await);
    assert_eq!(a + b, 40.0, "every call served once");
    assert!(
        a >= 5.0 && b >= 5.0,
        "both addresses get calls: {a} and {b}"
    );

    // The name now resolves to the second instance only.
    addresses.lock().unwrap().retain(|&addr| addr == grpc_b);
    tokio::time::sleep(Duration::from_millis(400)).await;
    for order_id in 41..=60 {
        client
            .settle(testing::order(order_id), Release)
            .await
            .unwrap();
    }
    assert_eq!(
        releases_served(http_a).await,
        a,
        "a removed address gets no call"
    );
    assert_eq!(releases_served(http_b).await, b + 20.0);
    stop.cancel();
}
