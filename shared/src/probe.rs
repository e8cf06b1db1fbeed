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
            eprintln!("unhealthy: {}", crate::app::with_causes(&e));
            ExitCode::FAILURE
        }
    })
}

/// Why the service is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    #[error("cannot reach {addr}")]
    Unreachable {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("GET /health at {addr} answered {status}")]
    Status { addr: SocketAddr, status: String },
    #[error("GET /health at {addr} gave no HTTP status line")]
    NoStatusLine { addr: SocketAddr },
}

/// `GET /health` at `addr`: Ok on a 200 within `timeout`, else why not.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), Unhealthy> {
    let unreachable = |source| Unhealthy::Unreachable { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| {
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        })
        .map_err(unreachable)?;
    // The status line is all we need; it fits in the first read.
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(unreachable)?;
    let status_line = String::from_utf8_lossy(&head[..n]);
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(Unhealthy::Status {
            addr,
            status: code.to_owned(),
        }),
        None => Err(Unhealthy::NoStatusLine { addr }),
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
        assert!(ok.is_ok(), "{ok:?}");
        assert!(matches!(unavailable, Err(Unhealthy::Status { status, .. }) if status == "503"));

        // Nothing listening: refused, not hung.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let refused = tokio::task::spawn_blocking(move || probe(closed, t))
            .await
            .unwrap();
        assert!(matches!(refused, Err(Unhealthy::Unreachable { .. })));
    }
}
