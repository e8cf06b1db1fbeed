//! What one client may hold of a server's connections (docs/contracts.md,
//! "Server limits"): at most `HTTP_MAX_CONNECTIONS_PER_CLIENT` per client
//! address ([`PerClient`]), and none kept once idle for
//! `HTTP_IDLE_TIMEOUT_MS`. The HTTP server ([`crate::http::serve`]) counts
//! a connection idle while it has no request under way ([`Activity`]), so
//! answering keep-alive pings does not keep it; the gRPC servers, whose
//! requests tonic handles, count it idle while no byte comes in
//! ([`IdleStream`]).

use std::collections::HashMap;
use std::future::Future as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Connections per client address, across one server's connections.
#[derive(Clone)]
pub struct PerClient {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    cap: usize,
}

impl PerClient {
    pub fn new(cap: usize) -> Self {
        Self {
            counts: Arc::new(Mutex::new(HashMap::new())),
            cap: cap.max(1),
        }
    }

    /// A slot for one more connection from `ip`; `None` when it holds its
    /// cap already (the caller closes the connection).
    pub fn admit(&self, ip: IpAddr) -> Option<ClientSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            counts: self.counts.clone(),
            ip,
        })
    }
}

/// One connection of a client; dropped when the connection ends.
pub struct ClientSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Milliseconds since `base`: a time that fits an atomic.
fn millis_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The requests under way on one connection, and when the last one ended.
pub struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    /// A request starts; it is under way until the guard is dropped (with
    /// its response's body, so a streamed answer counts to its end).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// How long the connection has had no request under way.
    pub fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = self.last_ms.load(Ordering::Acquire);
        Duration::from_millis(millis_since(self.base).saturating_sub(last))
    }
}

/// A request under way ([`Activity::begin`]).
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .last_ms
            .store(millis_since(activity.base), Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream that ends (reads end of file, writes fail) once no byte has
/// come in for `idle`, so the server closes the connection.
pub struct IdleStream<S> {
    inner: S,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    ended: bool,
    _slot: ClientSlot,
}

impl<S> IdleStream<S> {
    pub fn new(inner: S, idle: Duration, slot: ClientSlot) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            ended: false,
            _slot: slot,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    let deadline = Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    tracing::debug!("closing a connection idle for {:?}", this.idle);
                    this.ended = true;
                    Poll::Ready(Ok(()))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for IdleStream<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_cap_and_gets_slots_back_as_they_end() {
        let per_client = PerClient::new(2);
        let one: IpAddr = [127, 0, 0, 1].into();
        let two: IpAddr = [127, 0, 0, 2].into();
        let a = per_client.admit(one).unwrap();
        let _b = per_client.admit(one).unwrap();
        assert!(per_client.admit(one).is_none());
        assert!(
            per_client.admit(two).is_some(),
            "another address has its own"
        );
        drop(a);
        assert!(per_client.admit(one).is_some());
    }

    #[tokio::test]
    async fn a_connection_is_idle_only_with_no_request_under_way() {
        let activity = Arc::new(Activity::default());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(activity.idle_for() >= Duration::from_millis(100));
        let busy = activity.begin();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            activity.idle_for(),
            Duration::ZERO,
            "a request is under way"
        );
        drop(busy);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let idle = activity.idle_for();
        assert!(
            idle >= Duration::from_millis(50) && idle < Duration::from_millis(150),
            "idle since the request ended, not since the connection began: {idle:?}"
        );
    }
}
