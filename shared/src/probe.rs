//! `<service> healthcheck`: the container health probe, built into every
//! service binary so the runtime image needs no shell, curl or wget.
//!
//! It asks the service's own `GET /health` on the port of `HTTP_ADDR` (the
//! same variable the service listens on) and exits 0 only on a 200.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Env;

/// The argument that turns a service binary into its own health probe.
pub const ARG: &str = "healthcheck";

/// If the process was started as `<binary> healthcheck`, probes the service
/// and returns the exit code; otherwise `None` and the service starts.
pub fn run_if_requested(default_port: u16) -> Option<ExitCode> {
    if std::env::args().nth(1).as_deref() != Some(ARG) {
        return None;
    }
    let mut env = Env::new();
    let listen: SocketAddr = env.get("HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], default_port)));
    // A wildcard listen address is reached over loopback.
    let target = if listen.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
    } else {
        listen
    };
    Some(match probe(target, Duration::from_secs(3)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    })
}

/// `GET /health` at `addr`: Ok on a 200 within `timeout`, else why not.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("cannot send the request to {addr}: {e}"))?;
    // The status line is all we need; it fits in the first read.
    let mut head = [0u8; 64];
    let n = stream
        .read(&mut head)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("GET /health at {addr} answered {code}")),
        None => Err(format!("GET /health at {addr} gave no HTTP status line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(router: axum::Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    #[tokio::test]
    async fn healthy_only_on_a_200_from_health() {
        use axum::http::StatusCode;
        use axum::routing::get;
        let up = serve(axum::Router::new().route("/health", get(|| async { "ok" }))).await;
        let down = serve(
            axum::Router::new().route("/health", get(|| async { StatusCode::SERVICE_UNAVAILABLE })),
        )
        .await;
        let t = Duration::from_secs(2);
        let (ok, unavailable) = tokio::task::spawn_blocking(move || (probe(up, t), probe(down, t)))
            .await
            .unwrap();
        assert_eq!(ok, Ok(()));
        assert!(unavailable.unwrap_err().contains("answered 503"));

        // Nothing listening: refused, not hung.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let refused = tokio::task::spawn_blocking(move || probe(closed, t))
            .await
            .unwrap();
        assert!(refused.unwrap_err().contains("cannot connect"));
    }
}
