//! The accept loop: hyper with deadlines that count from accept, caps on open connections (in all and per
//! client address), and a graceful drain.
//!
//! `axum::serve` installs no timer and no cap. hyper alone times a request head only once its first byte has
//! arrived, and HTTP/2 not at all, so a socket that says nothing (or only the HTTP/2 preface) would be held
//! forever, and a thousand of them would starve the gateway. Here every connection has a watchdog: until its
//! first request head has arrived it may live `header_timeout` from accept; afterwards, whenever no request is
//! in flight (its response body included, so a live feed is busy), `idle_timeout`. HTTP/1 keeps hyper's own
//! head timer for a head that dribbles in; HTTP/2 also pings and closes a peer that does not answer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::client::{TrustedProxies, group};
use crate::metric_names as names;

/// Limits on what one client can hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A connection's first request head must arrive within this long from accept; later heads, within this
    /// long of their first byte (hyper's HTTP/1 timer).
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Open connections at once; past it, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Open connections at once from one client address; past it, a new one is closed at once.
    pub max_connections_per_ip: usize,
    /// Peers exempt from the per-address cap (they carry many clients).
    pub trusted_proxies: TrustedProxies,
}

/// Open connections per client address, and the guard that gives one back.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

struct AddressSlot {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, key: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Serves `app` until `stop` is cancelled, then stops accepting and waits for open connections to finish
/// their requests (idle keep-alive connections are closed at once).
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.idle_timeout / 2)
        .keep_alive_timeout(limits.header_timeout);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let slot = if limits.trusted_proxies.contains(peer.ip()) {
            None
        } else {
            match per_address.take(group(peer.ip()), limits.max_connections_per_ip) {
                Some(slot) => Some(slot),
                None => {
                    metrics::counter!(names::CONNECTIONS_CLOSED, "reason" => "per_ip_cap")
                        .increment(1);
                    tracing::debug!(client = %peer.ip(), "connection over server.max_connections_per_ip closed");
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let busy = Arc::new(Busy::new());
        let service = TowerToHyperService::new(Tracked {
            app: app.clone(),
            peer,
            busy: busy.clone(),
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let (header_timeout, idle_timeout) = (limits.header_timeout, limits.idle_timeout);
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                reason = watchdog(busy, header_timeout, idle_timeout) => {
                    // Dropping the connection closes the socket.
                    metrics::counter!(names::CONNECTIONS_CLOSED, "reason" => reason).increment(1);
                }
            }
            drop((permit, slot));
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What a connection is doing, read by its watchdog now and then: no wake-up per request, only atomics.
struct Busy {
    /// When the connection was accepted; `last_done_ms` counts from here.
    accepted: Instant,
    in_flight: AtomicUsize,
    /// Whether a request head ever arrived.
    served: AtomicBool,
    /// When the last request finished (its response body included), in ms since `accepted`.
    last_done_ms: AtomicU64,
}

impl Busy {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last_done_ms: AtomicU64::new(0),
        }
    }

    fn start(&self) {
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn finish(&self) {
        let ms = self.accepted.elapsed().as_millis() as u64;
        self.last_done_ms.fetch_max(ms, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Completes when the connection has been quiet too long: silent since accept (`header_timeout`), or with
/// nothing in flight since its last answer (`idle_timeout`). It sleeps until the earliest moment that could
/// be true and looks then, so requests cost it nothing.
async fn watchdog(
    busy: Arc<Busy>,
    header_timeout: Duration,
    idle_timeout: Duration,
) -> &'static str {
    let silent_until = busy.accepted + header_timeout;
    let mut deadline = busy.accepted + header_timeout.min(idle_timeout);
    loop {
        tokio::time::sleep_until(deadline).await;
        let now = Instant::now();
        if busy.in_flight.load(Ordering::Acquire) > 0 {
            // A long answer (a live feed) is never cut; look again later.
            deadline = now + idle_timeout;
            continue;
        }
        if !busy.served.load(Ordering::Relaxed) {
            if now >= silent_until {
                return "silent";
            }
            deadline = silent_until;
            continue;
        }
        let last_done = Duration::from_millis(busy.last_done_ms.load(Ordering::Relaxed));
        deadline = busy.accepted + last_done + idle_timeout;
        if deadline <= now {
            return "idle";
        }
    }
}

/// The router, as one connection sees it: each request carries the peer's address (`ConnectInfo`) and counts
/// as in flight until its response body is done.
#[derive(Clone)]
struct Tracked {
    app: Router,
    peer: SocketAddr,
    busy: Arc<Busy>,
}

impl tower::Service<axum::http::Request<Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: axum::http::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.busy.start();
        let done = InFlight(self.busy.clone());
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request).await?;
            Ok(response.map(|body| Body::new(Finishing { body, _done: done })))
        })
    }
}

/// Marks its request finished when dropped.
struct InFlight(Arc<Busy>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// A response body that keeps its request in flight until it is done (or dropped).
struct Finishing {
    body: Body,
    _done: InFlight,
}

impl http_body::Body for Finishing {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(2);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_ends_after_the_header_timeout() {
        let started = Instant::now();
        let reason = watchdog(Arc::new(Busy::new()), HEAD, IDLE).await;
        assert_eq!((reason, started.elapsed()), ("silent", HEAD));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_cut_and_idleness_counts_from_its_end() {
        let busy = Arc::new(Busy::new());
        let dog = tokio::spawn(watchdog(busy.clone(), HEAD, IDLE));
        tokio::time::sleep(Duration::from_secs(1)).await;
        busy.start();
        // A request in flight (a live feed) is never cut, however long it lasts.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!dog.is_finished());
        busy.finish();
        let finished = Instant::now();
        let reason = dog.await.unwrap();
        assert_eq!(reason, "idle");
        let idle_for = finished.elapsed();
        assert!(idle_for >= IDLE && idle_for <= IDLE + IDLE, "{idle_for:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_shorter_than_the_header_timeout_counts_from_the_last_answer() {
        let busy = Arc::new(Busy::new());
        let dog = tokio::spawn(watchdog(busy.clone(), IDLE, HEAD));
        busy.start();
        busy.finish();
        let finished = Instant::now();
        assert_eq!(dog.await.unwrap(), "idle");
        assert_eq!(finished.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_in_use_is_not_idle() {
        let busy = Arc::new(Busy::new());
        let dog = tokio::spawn(watchdog(busy.clone(), HEAD, IDLE));
        for _ in 0..10 {
            busy.start();
            tokio::time::sleep(Duration::from_secs(1)).await;
            busy.finish();
            tokio::time::sleep(IDLE / 2).await;
        }
        assert!(
            !dog.is_finished(),
            "a request every half idle timeout keeps it open"
        );
        tokio::time::sleep(IDLE).await;
        assert_eq!(dog.await.unwrap(), "idle");
    }
}
