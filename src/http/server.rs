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
use tokio::sync::{Semaphore, watch};
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
        let (busy, watch) = watch::channel(Busy::default());
        let service = TowerToHyperService::new(Tracked {
            app: app.clone(),
            peer,
            busy: Arc::new(busy),
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let (header_timeout, idle_timeout) = (limits.header_timeout, limits.idle_timeout);
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                reason = watchdog(watch, header_timeout, idle_timeout) => {
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

/// What a connection is doing: requests in flight, and whether one ever arrived.
#[derive(Debug, Default, Clone, Copy)]
struct Busy {
    in_flight: usize,
    served: bool,
}

/// Completes when the connection has been quiet too long: silent since accept, or idle since its last answer.
async fn watchdog(
    mut busy: watch::Receiver<Busy>,
    header_timeout: Duration,
    idle_timeout: Duration,
) -> &'static str {
    loop {
        let now = *busy.borrow_and_update();
        if now.in_flight > 0 {
            if busy.changed().await.is_err() {
                // The service is gone, so is the connection: let it finish on its own.
                std::future::pending::<()>().await;
            }
            continue;
        }
        let (limit, reason) = if now.served {
            (idle_timeout, "idle")
        } else {
            (header_timeout, "silent")
        };
        match tokio::time::timeout(limit, busy.changed()).await {
            Err(_) => return reason,
            Ok(Ok(())) => continue,
            Ok(Err(_)) => std::future::pending::<()>().await,
        }
    }
}

/// The router, as one connection sees it: each request carries the peer's address (`ConnectInfo`) and counts
/// as in flight until its response body is done.
#[derive(Clone)]
struct Tracked {
    app: Router,
    peer: SocketAddr,
    busy: Arc<watch::Sender<Busy>>,
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
        self.busy.send_modify(|b| {
            b.in_flight += 1;
            b.served = true;
        });
        let done = InFlight(self.busy.clone());
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request).await?;
            Ok(response.map(|body| Body::new(Finishing { body, _done: done })))
        })
    }
}

/// Marks its request finished when dropped.
struct InFlight(Arc<watch::Sender<Busy>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|b| b.in_flight -= 1);
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

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_ends_after_the_header_timeout_and_an_idle_one_after_the_idle_timeout()
     {
        let (_busy, watch) = watch::channel(Busy::default());
        let started = tokio::time::Instant::now();
        let reason = watchdog(watch, Duration::from_secs(2), Duration::from_secs(60)).await;
        assert_eq!(
            (reason, started.elapsed()),
            ("silent", Duration::from_secs(2))
        );

        let (busy, watch) = watch::channel(Busy::default());
        let dog = tokio::spawn(watchdog(
            watch,
            Duration::from_secs(2),
            Duration::from_secs(60),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        busy.send_modify(|b| {
            b.in_flight = 1;
            b.served = true;
        });
        // A request in flight (a live feed) is never cut, however long it lasts.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!dog.is_finished());
        let finished = tokio::time::Instant::now();
        busy.send_modify(|b| b.in_flight = 0);
        let reason = dog.await.unwrap();
        assert_eq!(
            (reason, finished.elapsed()),
            ("idle", Duration::from_secs(60))
        );
    }
}
