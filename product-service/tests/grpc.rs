//! The gRPC stock calls against a real PostgreSQL: no oversell under
//! concurrency, all-or-nothing, idempotency by order id, release/commit
//! rules, and the status codes.

mod common;

use common::{TestApp, spawn_app};
use shared::proto::product::product_service_client::ProductServiceClient;
use shared::proto::product::{
    CheckAvailabilityRequest, CommitStockRequest, GetProductRequest, ReleaseStockRequest,
    ReservationStatus, ReserveStockRequest, StockItem,
};
use tonic::Code;
use tonic::transport::Channel;

fn reserve(order_id: i64, items: &[(i64, i32)]) -> ReserveStockRequest {
    ReserveStockRequest {
        order_id,
        items: items
            .iter()
            .map(|&(product_id, quantity)| StockItem {
                product_id,
                quantity,
            })
            .collect(),
    }
}

async fn product(app: &TestApp, stock: i32, price: f64) -> i64 {
    app.create_product("Thing", price, stock).await["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn two_hundred_concurrent_reservations_never_oversell() {
    let app = spawn_app().await;
    let id = product(&app, 37, 9.99).await;
    let client = app.grpc().await;
    let calls = (1..=200).map(|order_id| {
        let mut client = client.clone();
        tokio::spawn(async move { client.reserve_stock(reserve(order_id, &[(id, 1)])).await })
    });
    let mut reserved = 0;
    let mut insufficient = 0;
    for call in futures::future::join_all(calls).await {
        let response = call
            .unwrap()
            .expect("every call gets an answer")
            .into_inner();
        match response.status() {
            ReservationStatus::Reserved => reserved += 1,
            ReservationStatus::Insufficient => {
                assert_eq!(response.short_product_id, id);
                insufficient += 1
            }
            other => panic!("unexpected status {other:?}"),
        }
    }
    assert_eq!(reserved, 37);
    assert_eq!(insufficient, 163);
    assert_eq!(app.stock_of(id).await, 0);

    // Conservation: what the database holds agrees with the calls.
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let (stock, held): (i32, i64) = sqlx::query_as(
        "SELECT p.stock, COALESCE((SELECT sum(i.quantity) FROM stock_reservation_items i \
           JOIN stock_reservations r USING (order_id) \
           WHERE i.product_id = p.id AND r.status = 'reserved'), 0) \
         FROM products p WHERE p.id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((stock, held), (0, 37));
}

#[tokio::test]
async fn a_repeated_reservation_returns_the_first_outcome_and_changes_nothing() {
    let app = spawn_app().await;
    let id = product(&app, 10, 2.50).await;
    let mut client = app.grpc().await;

    let first = client
        .reserve_stock(reserve(7, &[(id, 3)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.status(), ReservationStatus::Reserved);
    assert_eq!(first.total_cents, 750);
    assert_eq!(first.items[0].unit_price_cents, 250);
    assert_eq!(app.stock_of(id).await, 7);

    // Same order again, even with other items: same answer, stock untouched.
    let again = client
        .reserve_stock(reserve(7, &[(id, 5)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(app.stock_of(id).await, 7);

    // The price is the one reserved, even after a price change.
    app.http
        .put(app.url(&format!("/products/{id}")))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"price": 99.0}))
        .send()
        .await
        .unwrap();
    let later = client
        .reserve_stock(reserve(7, &[(id, 3)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(later.total_cents, 750);

    // An insufficient outcome is remembered too, even once stock arrives.
    let short = client
        .reserve_stock(reserve(8, &[(id, 50)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(short.status(), ReservationStatus::Insufficient);
    assert_eq!(short.available_stock, 7);
    app.http
        .put(app.url(&format!("/products/{id}")))
        .bearer_auth(&app.admin)
        .json(&serde_json::json!({"stock": 500}))
        .send()
        .await
        .unwrap();
    let short_again = client
        .reserve_stock(reserve(8, &[(id, 50)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(short_again.status(), ReservationStatus::Insufficient);
    assert_eq!(app.stock_of(id).await, 500);
}

#[tokio::test]
async fn multi_item_reservations_are_all_or_nothing() {
    let app = spawn_app().await;
    let plenty = product(&app, 5, 1.0).await;
    let scarce = product(&app, 3, 2.0).await;
    let mut client = app.grpc().await;

    let refused = client
        .reserve_stock(reserve(1, &[(plenty, 2), (scarce, 10)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refused.status(), ReservationStatus::Insufficient);
    assert_eq!(refused.short_product_id, scarce);
    assert_eq!(refused.available_stock, 3);
    assert!(refused.items.is_empty());
    assert_eq!(app.stock_of(plenty).await, 5, "the first item was not kept");
    assert_eq!(app.stock_of(scarce).await, 3);

    let ok = client
        .reserve_stock(reserve(2, &[(plenty, 2), (scarce, 1), (plenty, 1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.status(), ReservationStatus::Reserved);
    assert_eq!(ok.total_cents, 3 * 100 + 200);
    assert_eq!(app.stock_of(plenty).await, 2);
    assert_eq!(app.stock_of(scarce).await, 2);
}

#[tokio::test]
async fn release_restores_exactly_and_commit_after_release_is_refused() {
    let app = spawn_app().await;
    let a = product(&app, 10, 1.0).await;
    let b = product(&app, 4, 1.0).await;
    let mut client = app.grpc().await;
    client
        .reserve_stock(reserve(11, &[(a, 6), (b, 4)]))
        .await
        .unwrap();
    assert_eq!((app.stock_of(a).await, app.stock_of(b).await), (4, 0));

    let released = client
        .release_stock(ReleaseStockRequest { order_id: 11 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.status(), ReservationStatus::Released);
    assert_eq!((app.stock_of(a).await, app.stock_of(b).await), (10, 4));

    // A repeat changes nothing.
    client
        .release_stock(ReleaseStockRequest { order_id: 11 })
        .await
        .unwrap();
    assert_eq!((app.stock_of(a).await, app.stock_of(b).await), (10, 4));

    let commit = client
        .commit_stock(CommitStockRequest { order_id: 11 })
        .await
        .unwrap_err();
    assert_eq!(commit.code(), Code::FailedPrecondition);
    assert_eq!((app.stock_of(a).await, app.stock_of(b).await), (10, 4));
}

#[tokio::test]
async fn commit_is_final_and_idempotent() {
    let app = spawn_app().await;
    let id = product(&app, 5, 1.0).await;
    let mut client = app.grpc().await;
    client.reserve_stock(reserve(21, &[(id, 2)])).await.unwrap();

    for _ in 0..2 {
        let committed = client
            .commit_stock(CommitStockRequest { order_id: 21 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(committed.status(), ReservationStatus::Committed);
    }
    let release = client
        .release_stock(ReleaseStockRequest { order_id: 21 })
        .await
        .unwrap_err();
    assert_eq!(release.code(), Code::FailedPrecondition);
    assert_eq!(app.stock_of(id).await, 3, "sold units stay sold");

    let unknown = client
        .commit_stock(CommitStockRequest { order_id: 999 })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn a_release_before_the_reservation_keeps_a_late_reservation_from_holding_stock() {
    let app = spawn_app().await;
    let id = product(&app, 5, 1.0).await;
    let mut client = app.grpc().await;
    let released = client
        .release_stock(ReleaseStockRequest { order_id: 31 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.status(), ReservationStatus::Released);
    let late = client
        .reserve_stock(reserve(31, &[(id, 2)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.status(), ReservationStatus::Released);
    assert_eq!(app.stock_of(id).await, 5);
}

#[tokio::test]
async fn bad_calls_get_proper_status_codes() {
    let app = spawn_app().await;
    let id = product(&app, 5, 12.34).await;
    let mut client = app.grpc().await;

    let cases = [
        (reserve(1, &[(424242, 1)]), Code::NotFound),
        (reserve(1, &[(id, 0)]), Code::InvalidArgument),
        (reserve(1, &[(id, -3)]), Code::InvalidArgument),
        (reserve(1, &[]), Code::InvalidArgument),
        (reserve(0, &[(id, 1)]), Code::InvalidArgument),
        (reserve(1, &[(-1, 1)]), Code::InvalidArgument),
    ];
    for (request, code) in cases {
        let err = client.reserve_stock(request.clone()).await.unwrap_err();
        assert_eq!(err.code(), code, "{request:?}");
    }
    assert_eq!(app.stock_of(id).await, 5);
    // A refused call recorded nothing: the order id can still reserve.
    let ok = client
        .reserve_stock(reserve(1, &[(id, 1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.status(), ReservationStatus::Reserved);

    let got = client
        .get_product(GetProductRequest { id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.price_cents, got.stock), (1234, 4));
    assert_eq!(
        client
            .get_product(GetProductRequest { id: 424242 })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        client
            .get_product(GetProductRequest { id: 0 })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );

    let check = |quantity| CheckAvailabilityRequest {
        product_id: id,
        quantity,
    };
    assert!(
        client
            .check_availability(check(4))
            .await
            .unwrap()
            .into_inner()
            .available
    );
    assert!(
        !client
            .check_availability(check(5))
            .await
            .unwrap()
            .into_inner()
            .available
    );
    assert_eq!(
        client
            .check_availability(check(0))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        client
            .release_stock(ReleaseStockRequest { order_id: -5 })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn the_grpc_health_service_reports_serving() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let app = spawn_app().await;
    let order_service = shared::testing::pki::trusted().leaf("order-service");
    let channel =
        shared::testing::pki::endpoint(app.grpc_addr, "product-service", Some(order_service))
            .connect()
            .await
            .unwrap();
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: "product.ProductService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// What a stock call made with `client` got: refused at the handshake (no
/// connection) or an answer.
async fn reserve_with(
    client: Result<ProductServiceClient<Channel>, tonic::transport::Error>,
    product: i64,
) -> Result<ReservationStatus, tonic::Status> {
    let mut client = client.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let response = client.reserve_stock(reserve(4242, &[(product, 2)])).await?;
    Ok(response.into_inner().status())
}

/// Nothing was reserved or marked released, by the stock and by the ledger.
async fn assert_nothing_reserved(app: &TestApp, product: i64, stock: i32) {
    assert_eq!(app.stock_of(product).await, stock, "the stock is untouched");
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let reservations: i64 = sqlx::query_scalar("SELECT count(*) FROM stock_reservations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(reservations, 0, "no reservation was recorded");
}

#[tokio::test]
async fn a_stock_call_without_a_certificate_from_the_ca_never_reaches_the_stock() {
    let app = spawn_app().await;
    let id = product(&app, 5, 1.0).await;
    let pki = shared::testing::pki::trusted();
    let foreign = shared::testing::pki::foreign();

    // Plaintext, as the attack was made: no TLS at all.
    let plaintext = ProductServiceClient::connect(format!("http://{}", app.grpc_addr)).await;
    assert!(
        reserve_with(plaintext, id).await.is_err(),
        "a plaintext call is refused"
    );
    // TLS without a client certificate.
    let anonymous = reserve_with(app.grpc_as(None).await, id).await;
    assert!(
        anonymous.is_err(),
        "an anonymous call is refused: {anonymous:?}"
    );
    // A certificate for the right name from a CA nobody trusts (a forgery).
    let forged = reserve_with(app.grpc_as(Some(foreign.leaf("order-service"))).await, id).await;
    assert!(
        forged.is_err(),
        "a forged certificate is refused: {forged:?}"
    );
    for refused in [&anonymous, &forged] {
        let code = refused.as_ref().unwrap_err().code();
        assert!(
            matches!(code, Code::Unavailable | Code::Unknown),
            "refused by the transport, not by a handler: {code:?}"
        );
    }
    assert_nothing_reserved(&app, id, 5).await;

    // The saga's own certificate still works.
    let saga = reserve_with(app.grpc_as(Some(pki.leaf("order-service"))).await, id).await;
    assert_eq!(saga.unwrap(), ReservationStatus::Reserved);
    assert_eq!(app.stock_of(id).await, 3);
}

#[tokio::test]
async fn another_services_certificate_can_read_but_not_move_stock() {
    let app = spawn_app().await;
    let id = product(&app, 5, 1.0).await;
    let pki = shared::testing::pki::trusted();
    let mut payment = app
        .grpc_as(Some(pki.leaf("payment-service")))
        .await
        .expect("a certificate from the CA passes the handshake");

    let denied = payment
        .reserve_stock(reserve(4242, &[(id, 2)]))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("order-service"), "{denied:?}");
    for status in [
        payment
            .release_stock(ReleaseStockRequest { order_id: 4243 })
            .await
            .unwrap_err(),
        payment
            .commit_stock(CommitStockRequest { order_id: 4242 })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    // Nor was a release marker left that would block a future order.
    assert_nothing_reserved(&app, id, 5).await;

    // Reading the catalogue is open to any service of the deployment.
    let product = payment
        .get_product(GetProductRequest { id })
        .await
        .expect("another service may read a product")
        .into_inner();
    assert_eq!(product.stock, 5);
}

/// The gRPC server holds a client to the HTTP server's limits: a
/// connection with nothing coming in for `HTTP_IDLE_TIMEOUT_MS` is closed
/// (here one that never starts its TLS handshake), and one client address
/// holds at most `HTTP_MAX_CONNECTIONS_PER_CLIENT`; another address is
/// still served.
#[tokio::test]
async fn grpc_connections_are_capped_per_client_and_closed_when_idle() {
    use tokio::io::AsyncReadExt;

    let app = common::spawn_app_with(&[
        ("HTTP_IDLE_TIMEOUT_MS", "500"),
        ("HTTP_MAX_CONNECTIONS_PER_CLIENT", "2"),
    ])
    .await;
    let grpc = app.grpc_addr;
    let from = |ip: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
        socket.connect(grpc).await.unwrap()
    };
    let closed_within = |mut stream: tokio::net::TcpStream, wait: std::time::Duration| async move {
        let mut buf = [0u8; 1024];
        matches!(
            tokio::time::timeout(wait, stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    };
    let started = std::time::Instant::now();
    let idle = from([127, 0, 0, 5]).await;
    let held = from([127, 0, 0, 5]).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let third = from([127, 0, 0, 5]).await;
    assert!(
        closed_within(third, std::time::Duration::from_millis(300)).await,
        "a third connection from one address is closed at once"
    );
    assert!(
        closed_within(idle, std::time::Duration::from_secs(5)).await,
        "an idle connection is closed"
    );
    let after = started.elapsed();
    assert!(after < std::time::Duration::from_secs(3), "{after:?}");
    drop(held);
    // A client from another address makes its calls.
    let mut client = app.grpc().await;
    let missing = client
        .get_product(shared::proto::product::GetProductRequest { id: 999_999 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}
