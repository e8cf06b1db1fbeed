//! The routes every service serves beside its API, and the server's
//! limits: on a real port, a router with no API answers health, readiness
//! and metrics, gives JSON 404s, and stops on shutdown; a slow client, a
//! slow request, too many connections, idle ones (HTTP/1.1, and HTTP/2
//! answering pings), one client's many and made-up methods cost a bounded
//! amount.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::http::{Readiness, ServerLimits, ServiceRouter};
use shared::metrics::Metrics;
use shared::shutdown::CancellationToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: ServerLimits = ServerLimits {
    header_timeout: Duration::from_secs(10),
    request_timeout: Duration::from_secs(30),
    idle_timeout: Duration::from_secs(20),
    max_connections: 1024,
    max_connections_per_client: 512,
};

/// A server of `api` (plus the operational routes) within `limits`.
async fn server(
    api: axum::Router,
    limits: ServerLimits,
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let router = ServiceRouter {
        service: "pending-service",
        api,
        openapi: None,
        readiness: Readiness::default(),
        metrics: Arc::new(Metrics::new("pending-service")),
        write_limits: None,
        database: None,
        verifier: None,
        authority: None,
        asyncapi: None,
    }
    .build();
    let server = tokio::spawn(shared::http::serve(
        listener,
        router,
        limits,
        shutdown.clone(),
    ));
    (addr, shutdown, server)
}

/// Sends `request` on a fresh connection and reads until the server closes
/// it or `wait` passes; returns what was read and whether it closed.
async fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into(), false),
        }
    }
}

#[tokio::test]
async fn answers_health_ready_and_metrics_until_shut_down() {
    let (addr, shutdown, server) = server(axum::Router::new(), LIMITS).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("http://{addr}{path}")).send();

    let health: serde_json::Value = get("/health").await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["service"], "pending-service");
    assert_eq!(get("/ready").await.unwrap().status(), 200);

    let missing = get("/api/v1/nothing").await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "not_found");

    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/health\""), "{metrics}");
    assert!(metrics.contains("service=\"pending-service\""), "{metrics}");

    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_sends_its_headers_slowly_is_cut_off() {
    let limits = ServerLimits {
        header_timeout: Duration::from_millis(500),
        ..LIMITS
    };
    let (addr, shutdown, _server) = server(axum::Router::new(), limits).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One header byte every 100 ms, forever (slowloris): the connection
    // must be closed once the headers took longer than the limit.
    let mut closed_after = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"X").await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
            && n == 0
        {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the slow connection was closed");
    assert!(
        closed_after < Duration::from_secs(3),
        "closed after {closed_after:?} (header timeout 500 ms)"
    );
    // Meanwhile a client that sends its request at once is served.
    let (answer, _) = exchange(
        addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    shutdown.cancel();
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_ends() {
    let limits = ServerLimits {
        max_connections: 2,
        ..LIMITS
    };
    let (addr, shutdown, _server) = server(axum::Router::new(), limits).await;
    let holders = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (answer, _) = exchange(addr, request, Duration::from_millis(500)).await;
    assert_eq!(
        answer, "",
        "a third connection is not served while two are held"
    );
    drop(holders);
    let (answer, _) = exchange(addr, request, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    shutdown.cancel();
}

#[tokio::test]
async fn a_request_slower_than_the_limit_is_a_json_503() {
    let limits = ServerLimits {
        request_timeout: Duration::from_millis(300),
        ..LIMITS
    };
    let api = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "done"
        }),
    );
    let (addr, shutdown, _server) = server(api, limits).await;
    let started = Instant::now();
    let response = reqwest::get(format!("http://{addr}/slow")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(2));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unavailable", "{body}");
    shutdown.cancel();
}

#[tokio::test]
async fn made_up_methods_share_one_metric_label() {
    let (addr, shutdown, _server) = server(axum::Router::new(), LIMITS).await;
    let client = reqwest::Client::new();
    for i in 0..1000 {
        let method = reqwest::Method::from_bytes(format!("ZZ{i}").as_bytes()).unwrap();
        let response = client
            .request(method, format!("http://{addr}/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
    }
    let metrics = shared::testing::scrape(&client, &format!("http://{addr}")).await;
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .count();
    assert!(
        series <= 4,
        "{series} series of http_requests_total:\n{metrics}"
    );
    assert!(!metrics.contains("ZZ"), "no made-up method is a label");
    assert_eq!(
        shared::testing::metric_value(&metrics, "http_requests_total", &["method=\"other\""]),
        Some(1000.0)
    );
    shutdown.cancel();
}

/// Reads `stream` until the server closes it or `wait` passes: whether it closed.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_after_the_idle_time() {
    let limits = ServerLimits {
        idle_timeout: Duration::from_millis(500),
        ..LIMITS
    };
    let (addr, shutdown, _server) = server(axum::Router::new(), limits).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(400) && after < Duration::from_secs(3),
        "kept alive for a while, then closed: {after:?}"
    );
    shutdown.cancel();
}

/// The attack of the last round: a cleartext HTTP/2 connection that
/// answers every keep-alive ping but sends no request is closed after the
/// idle time, with a GOAWAY; one with a request under way is not.
#[tokio::test]
async fn an_idle_http2_connection_answering_pings_is_closed() {
    let limits = ServerLimits {
        // The server pings every 100 ms; the client answers each.
        header_timeout: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(600),
        ..LIMITS
    };
    let api = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "done"
        }),
    );
    let (addr, shutdown, _server) = server(api, limits).await;
    let connect = || async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        let started = Instant::now();
        let ended = tokio::spawn(async move {
            let _ = connection.await;
            started.elapsed()
        });
        (client, ended)
    };
    let get = |path: &str| {
        http::Request::get(format!("http://{addr}{path}"))
            .body(())
            .unwrap()
    };
    // Idle after one request: closed within the idle time and a look.
    let (mut client, ended) = connect().await;
    let (response, _) = client.send_request(get("/health"), true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let lasted = tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap();
    assert!(
        lasted >= Duration::from_millis(500) && lasted < Duration::from_secs(3),
        "{lasted:?}"
    );
    // A request longer than the idle time keeps its connection.
    let (mut client, _ended) = connect().await;
    let (response, _) = client.send_request(get("/slow"), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        text.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(text, b"done");
    shutdown.cancel();
}

/// Connections from one client address are capped; others are not held
/// up by it.
#[tokio::test]
async fn one_client_address_holds_at_most_its_cap_of_connections() {
    let limits = ServerLimits {
        max_connections_per_client: 2,
        ..LIMITS
    };
    let (addr, shutdown, _server) = server(axum::Router::new(), limits).await;
    let from = |ip: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        socket.connect(addr).await.unwrap()
    };
    let _held = [from([127, 0, 0, 3]).await, from([127, 0, 0, 3]).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = from([127, 0, 0, 3]).await;
    assert!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        "a third connection from the same address is closed at once"
    );
    let mut other = from([127, 0, 0, 4]).await;
    other
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    shutdown.cancel();
}
