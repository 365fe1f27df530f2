//! The accept loop both HTTP listeners run (the REST shim and the metrics
//! listener), with the limits a listener facing a hostile network needs:
//!
//! - **header timeout**: a request's head (request line and headers) must
//!   arrive within `header_timeout` of its first byte — a slowloris client
//!   sending a byte at a time is cut off;
//! - **request timeout**: from the head to the response, body included, at most
//!   `request_timeout`; past it the answer is 408 and the connection is closed;
//! - **idle timeout**: a connection with no request under way — new, or kept
//!   alive after a response — is closed after `idle_timeout` (a response the
//!   client does not read counts as idle too). A new connection is idle rather
//!   than slow until it sends a byte: FreeRADIUS's rlm_rest opens pool
//!   connections ahead of need (`connect_uri`), and an idle connection held
//!   open gains an attacker nothing while eviction (below) can reclaim it;
//! - **connection caps**: at most `max_connections` per listener and
//!   `max_connections_per_peer` per client address (per /64 for IPv6). A client
//!   over its own cap is closed at once. At the listener's cap a new connection
//!   takes the place of the connection idle the longest (none with a request in
//!   progress is ever closed for it); when every connection is busy, the new one
//!   is closed at once. Idle connections are cheap to make again, so holding
//!   slots open cannot lock other clients out;
//! - **requests in progress**: at most `max_requests` at once per listener; more
//!   are answered 503 at once rather than queued.
//!
//! hyper's own header timeout is not used: it also runs while a kept-alive
//! connection waits for its next request, so it cannot be told apart from the
//! idle timeout. Instead each connection's reads and requests are tracked here and
//! a watchdog per connection applies both.
//!
//! Every refusal and cut is counted by listener and reason
//! (`rrnet_radius_http_connections_refused_total`,
//! `rrnet_radius_http_connections_closed_total`,
//! `rrnet_radius_http_requests_shed_total`), with the open connections in
//! `rrnet_radius_http_connections_open`. The 503s and 408s answered here come
//! from outside the routers, so the shim's `rrnet_radius_http_requests_total`
//! (counted by its router) does not include them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tower_service::Service;

use crate::metrics::Metrics;

/// Largest buffer hyper keeps per connection for a request head (and for body
/// reads). Heads from FreeRADIUS and Prometheus are well under 2 KiB; a bigger
/// head is answered 431. Bounds memory at the connection cap: 1,024 × 16 KiB.
const MAX_CONNECTION_BUFFER: usize = 16 * 1024;

/// Limits of one HTTP listener. Defaults in [`HttpLimits::rest`] and
/// [`HttpLimits::metrics`]; the config file's `[http]` section changes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a request's head may take from its first byte.
    pub header_timeout: Duration,
    /// Time from a request's head to its response, the body read included.
    pub request_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Open connections on this listener.
    pub max_connections: usize,
    /// Open connections from one client address (IPv6: one /64).
    pub max_connections_per_peer: usize,
    /// Requests being processed at once; more are answered 503.
    pub max_requests: usize,
}

/// Default header timeout of both listeners.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default request timeout of both listeners. rlm_rest gives up after a few
/// seconds anyway; a 64 KiB body has no reason to take longer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle timeout of both listeners.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default connection cap of each listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl HttpLimits {
    /// The REST shim's defaults. FreeRADIUS keeps a pool of connections from its
    /// one address (rlm_rest's `pool` has 32 at most by default), so the
    /// per-peer cap leaves room for that pool and more.
    pub fn rest() -> HttpLimits {
        HttpLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: 64,
            max_requests: 256,
        }
    }

    /// The metrics listener's defaults: Prometheus scrapes over one connection,
    /// and rendering /metrics costs more than anything the shim answers.
    pub fn metrics() -> HttpLimits {
        HttpLimits {
            max_connections_per_peer: 16,
            max_requests: 16,
            ..HttpLimits::rest()
        }
    }

    /// How often a connection's watchdog looks at it: often enough that a
    /// timeout fires within a quarter of the header timeout of its due time.
    fn watchdog_period(&self) -> Duration {
        (self.header_timeout.min(self.idle_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// Why a connection was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its client address already has `max_connections_per_peer` open.
    PeerFull,
    /// The listener has `max_connections` open and every one has a request in
    /// progress.
    ListenerFull,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Refusal::PeerFull, Refusal::ListenerFull];

    /// The `reason` label of `rrnet_radius_http_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::PeerFull => "peer_full",
            Refusal::ListenerFull => "listener_full",
        }
    }
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The request head did not arrive within `header_timeout`.
    HeaderTimeout,
    /// The request (body included) was not done within `request_timeout`.
    RequestTimeout,
    /// No request within `idle_timeout`.
    IdleTimeout,
    /// Closed to make room for a new connection at the listener's cap.
    Evicted,
}

impl Cut {
    pub const ALL: [Cut; 4] = [
        Cut::HeaderTimeout,
        Cut::RequestTimeout,
        Cut::IdleTimeout,
        Cut::Evicted,
    ];

    /// The `reason` label of `rrnet_radius_http_connections_closed_total`.
    pub fn label(self) -> &'static str {
        match self {
            Cut::HeaderTimeout => "header_timeout",
            Cut::RequestTimeout => "request_timeout",
            Cut::IdleTimeout => "idle_timeout",
            Cut::Evicted => "evicted",
        }
    }
}

/// One listener's metric handles, resolved once.
#[derive(Clone)]
struct Counters {
    open: IntGauge,
    refused: [IntCounter; 2],
    closed: [IntCounter; 4],
    shed: IntCounter,
}

impl Counters {
    fn new(metrics: &Metrics, listener: &str) -> Counters {
        Counters {
            open: metrics.http_connections_open.with_label_values(&[listener]),
            refused: Refusal::ALL.map(|r| {
                metrics
                    .http_connections_refused
                    .with_label_values(&[listener, r.label()])
            }),
            closed: Cut::ALL.map(|c| {
                metrics
                    .http_connections_closed
                    .with_label_values(&[listener, c.label()])
            }),
            shed: metrics.http_requests_shed.with_label_values(&[listener]),
        }
    }

    fn refused(&self, r: Refusal) -> &IntCounter {
        &self.refused[Refusal::ALL.iter().position(|x| *x == r).unwrap_or(0)]
    }

    fn closed(&self, c: Cut) -> &IntCounter {
        &self.closed[Cut::ALL.iter().position(|x| *x == c).unwrap_or(0)]
    }
}

/// The address a per-peer cap counts under: IPv4 (IPv4-mapped IPv6 included)
/// by address, IPv6 by /64, the block one subscriber line usually gets.
pub(crate) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// What a connection is doing, as its reads and requests show it. A std
/// Mutex: held for a few assignments, never across an await.
struct Activity(Mutex<ActivityState>);

struct ActivityState {
    /// Requests being processed (HTTP/1: at most one).
    requests: u32,
    /// When the head now being read began: its first byte. `None` while idle
    /// or while a request is processed.
    head_started: Option<Instant>,
    /// The last read or write that moved bytes, or the end of the last request.
    last: Instant,
}

impl Activity {
    fn new(accepted: Instant) -> Activity {
        Activity(Mutex::new(ActivityState {
            requests: 0,
            head_started: None,
            last: accepted,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        // A panic while holding it cannot leave the plain fields inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self, now: Instant) {
        let mut s = self.state();
        s.last = now;
        if s.requests == 0 && s.head_started.is_none() {
            s.head_started = Some(now);
        }
    }

    fn wrote(&self, now: Instant) {
        self.state().last = now;
    }

    fn request_started(self: &Arc<Self>) -> RequestInProgress {
        let mut s = self.state();
        s.requests += 1;
        s.head_started = None;
        RequestInProgress(self.clone())
    }

    /// The cut due at `now`, if any. A request in progress is bounded by the
    /// request timeout around it, not here.
    fn due(&self, now: Instant, limits: &HttpLimits) -> Option<Cut> {
        let s = self.state();
        if s.requests > 0 {
            return None;
        }
        match s.head_started {
            Some(t) if now.duration_since(t) >= limits.header_timeout => Some(Cut::HeaderTimeout),
            Some(_) => None,
            None if now.duration_since(s.last) >= limits.idle_timeout => Some(Cut::IdleTimeout),
            None => None,
        }
    }

    /// Since when the connection has been idle, or `None` when it has a request
    /// in progress (and may not be evicted).
    fn idle_since(&self) -> Option<Instant> {
        let s = self.state();
        (s.requests == 0).then_some(s.last)
    }
}

/// Marks a request in progress until dropped.
struct RequestInProgress(Arc<Activity>);

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.requests = s.requests.saturating_sub(1);
        s.head_started = None;
        s.last = Instant::now();
    }
}

/// The open connections of one listener, for the caps and eviction.
struct Connections {
    limits: HttpLimits,
    counters: Counters,
    /// A std Mutex: taken by the accept loop and by a closing connection, for
    /// map updates only.
    inner: Mutex<ConnectionsInner>,
}

#[derive(Default)]
struct ConnectionsInner {
    next_id: u64,
    open: HashMap<u64, Entry>,
    per_peer: HashMap<IpAddr, usize>,
}

struct Entry {
    peer: IpAddr,
    activity: Arc<Activity>,
    evict: Arc<Notify>,
}

/// A connection's place in [`Connections`], given back when dropped.
struct Slot {
    id: u64,
    connections: Arc<Connections>,
    activity: Arc<Activity>,
    evict: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.release(self.id);
    }
}

impl ConnectionsInner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.open.remove(&id)?;
        if let Some(n) = self.per_peer.get_mut(&entry.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&entry.peer);
            }
        }
        Some(entry)
    }
}

impl Connections {
    fn new(limits: HttpLimits, counters: Counters) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            counters,
            inner: Mutex::new(ConnectionsInner::default()),
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, ConnectionsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a place for a connection from `ip`, making room at the listener's
    /// cap by evicting the connection idle the longest.
    fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Slot, Refusal> {
        let peer = peer_key(ip);
        let mut inner = self.inner();
        if inner.per_peer.get(&peer).copied().unwrap_or(0) >= self.limits.max_connections_per_peer {
            return Err(Refusal::PeerFull);
        }
        if inner.open.len() >= self.limits.max_connections {
            let victim = inner
                .open
                .iter()
                .filter_map(|(id, e)| Some((e.activity.idle_since()?, *id)))
                .min()
                .map(|(_, id)| id);
            let Some(victim) = victim.and_then(|id| inner.remove(id)) else {
                return Err(Refusal::ListenerFull);
            };
            // Its task closes the connection (and counts it) when it sees this;
            // the place is already free.
            victim.evict.notify_one();
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let activity = Arc::new(Activity::new(now));
        let evict = Arc::new(Notify::new());
        inner.open.insert(
            id,
            Entry {
                peer,
                activity: activity.clone(),
                evict: evict.clone(),
            },
        );
        *inner.per_peer.entry(peer).or_insert(0) += 1;
        self.counters.open.set(inner.open.len() as i64);
        Ok(Slot {
            id,
            connections: self.clone(),
            activity,
            evict,
        })
    }

    fn release(&self, id: u64) {
        let mut inner = self.inner();
        inner.remove(id);
        self.counters.open.set(inner.open.len() as i64);
    }
}

/// The TCP stream, noting every read and write that moves bytes.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read(Instant::now());
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote(Instant::now());
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What every connection task of a listener shares.
struct Shared {
    router: Router,
    connections: Arc<Connections>,
    /// Permits for requests in progress.
    requests: Arc<Semaphore>,
}

/// Serve `router` on `listener` with `limits` until `shutdown` resolves; then
/// stop accepting, let each connection finish its request in progress (the
/// others, idle or part-way through a head, close at once) and return when
/// every connection is closed.
/// `listener_label` names the listener in metrics (`rest`, `metrics`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: &Metrics,
    listener_label: &str,
    shutdown: impl Future<Output = ()>,
) {
    let counters = Counters::new(metrics, listener_label);
    let shared = Arc::new(Shared {
        router,
        requests: Arc::new(Semaphore::new(limits.max_requests.max(1))),
        connections: Connections::new(limits, counters),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` returns `None` once all are gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it
                    // was accepted: wait a little rather than spin.
                    tracing::debug!(listener = listener_label, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match shared.connections.admit(peer.ip(), Instant::now()) {
            Ok(slot) => slot,
            Err(refusal) => {
                shared.connections.counters.refused(refusal).inc();
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            slot,
            shared.clone(),
            stop_rx.clone(),
            alive_tx.clone(),
        ));
    }
    drop(listener);
    drop(shared);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

/// One connection: hyper serves it while a watchdog applies the header and idle
/// timeouts and an eviction; the service applies the request timeout and cap.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let limits = shared.connections.limits.clone();
    let counters = shared.connections.counters.clone();
    let activity = slot.activity.clone();
    let io = TokioIo::new(Tracked {
        stream,
        activity: activity.clone(),
    });
    let service = {
        let (shared, activity, counters) = (shared.clone(), activity.clone(), counters.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let in_progress = activity.request_started();
            let (shared, counters) = (shared.clone(), counters.clone());
            let timeout = limits.request_timeout;
            async move {
                let response = respond(&shared, &counters, timeout, req).await;
                drop(in_progress);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(None)
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .keep_alive(true);
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut watchdog = tokio::time::interval(limits.watchdog_period());
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                break;
            }
            _ = watchdog.tick() => {
                if let Some(cut) = activity.due(Instant::now(), &limits) {
                    counters.closed(cut).inc();
                    tracing::debug!(%peer, reason = cut.label(), "HTTP connection closed");
                    break;
                }
            }
            _ = slot.evict.notified() => {
                counters.closed(Cut::Evicted).inc();
                tracing::debug!(%peer, reason = Cut::Evicted.label(), "HTTP connection closed");
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                // Idle, or part of a head only: nothing is owed, close now
                // (hyper would wait for the rest of a head). A request in
                // progress is answered, then the connection closes.
                if activity.idle_since().is_some() {
                    break;
                }
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    drop(slot);
}

/// One request: 503 at once when `max_requests` are in progress, else the
/// router's answer, or 408 (and the connection closed) past the request timeout.
async fn respond(
    shared: &Shared,
    counters: &Counters,
    timeout: Duration,
    req: Request<Incoming>,
) -> Response {
    let Ok(_permit) = shared.requests.clone().try_acquire_owned() else {
        counters.shed.inc();
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "too many requests in progress\n",
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let mut router = shared.router.clone();
    match tokio::time::timeout(timeout, router.call(req)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => {
            counters.closed(Cut::RequestTimeout).inc();
            let mut r = (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("request not complete within {}s\n", timeout.as_secs()),
            )
                .into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 3,
            max_connections_per_peer: 2,
            max_requests: 1,
        }
    }

    fn connections(limits: HttpLimits) -> Arc<Connections> {
        Connections::new(limits, Counters::new(&Metrics::new(), "rest"))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn per_peer_cap_refuses_and_a_closed_connection_gives_its_place_back() {
        let c = connections(limits());
        let now = Instant::now();
        let a = c.admit(ip(1), now).unwrap();
        let _b = c.admit(ip(1), now).unwrap();
        assert_eq!(c.admit(ip(1), now).err(), Some(Refusal::PeerFull));
        assert!(c.admit(ip(2), now).is_ok());
        drop(a);
        assert!(c.admit(ip(1), now).is_ok());
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room_but_a_busy_one_never() {
        let c = connections(limits());
        let t0 = Instant::now();
        let oldest = c.admit(ip(1), t0).unwrap();
        let busy = c.admit(ip(2), t0).unwrap();
        let _working = busy.activity.request_started();
        let newer = c.admit(ip(3), t0 + Duration::from_secs(1)).unwrap();
        // Full: the oldest idle one is told to go, the busy one is kept.
        let fourth = c.admit(ip(4), t0 + Duration::from_secs(2)).unwrap();
        assert!(tokio_test_notified(&oldest.evict));
        assert!(!tokio_test_notified(&newer.evict));
        assert!(!tokio_test_notified(&busy.evict));
        let _working_too = newer.activity.request_started();
        // Now the fourth is the only idle one: it goes next.
        let _fifth = c.admit(ip(5), t0 + Duration::from_secs(3)).unwrap();
        assert!(tokio_test_notified(&fourth.evict));
        assert!(!tokio_test_notified(&newer.evict));
        assert!(!tokio_test_notified(&busy.evict));
    }

    /// Whether `notify` holds a stored notification.
    fn tokio_test_notified(notify: &Notify) -> bool {
        use std::future::Future;
        let fut = notify.notified();
        tokio::pin!(fut);
        let waker = std::task::Waker::noop();
        fut.as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_ready()
    }

    #[test]
    fn all_busy_refuses() {
        let c = connections(HttpLimits {
            max_connections: 1,
            ..limits()
        });
        let a = c.admit(ip(1), Instant::now()).unwrap();
        let _w = a.activity.request_started();
        assert_eq!(
            c.admit(ip(2), Instant::now()).err(),
            Some(Refusal::ListenerFull)
        );
    }

    #[test]
    fn header_and_idle_timeouts() {
        let l = HttpLimits {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            ..limits()
        };
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        // Nothing sent since the accept: idle.
        assert_eq!(a.due(t0 + Duration::from_secs(59), &l), None);
        assert_eq!(
            a.due(t0 + Duration::from_secs(60), &l),
            Some(Cut::IdleTimeout)
        );
        // The first byte starts the header timeout; more bytes trickling in do
        // not reset it.
        a.read(t0 + Duration::from_secs(1));
        assert_eq!(a.due(t0 + Duration::from_secs(5), &l), None);
        a.read(t0 + Duration::from_secs(5));
        assert_eq!(
            a.due(t0 + Duration::from_secs(6), &l),
            Some(Cut::HeaderTimeout)
        );
        // A request in progress is the request timeout's business.
        let r = a.request_started();
        assert_eq!(a.due(t0 + Duration::from_secs(50), &l), None);
        drop(r);
        // Then idle: the idle timeout, until a byte of the next head.
        let now = Instant::now();
        assert_eq!(a.due(now + Duration::from_secs(30), &l), None);
        assert_eq!(
            a.due(now + Duration::from_secs(60), &l),
            Some(Cut::IdleTimeout)
        );
        a.read(now + Duration::from_secs(1));
        assert_eq!(
            a.due(now + Duration::from_secs(6), &l),
            Some(Cut::HeaderTimeout)
        );
    }

    #[test]
    fn ipv6_peers_count_by_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(peer_key(a), peer_key(b));
        assert_ne!(peer_key(a), peer_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(peer_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    async fn fetch(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_stop_answers_the_request_in_progress_and_closes_the_rest() {
        let (release_tx, release_rx) = watch::channel(false);
        let router = Router::new().route(
            "/slow",
            get(move || {
                let mut rx = release_rx.clone();
                async move {
                    let _ = rx.wait_for(|r| *r).await;
                    "done"
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let served = tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            serve(listener, router, limits(), &Metrics::new(), "rest", stop).await
        });
        let in_progress = tokio::spawn(fetch(addr, "/slow"));
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET /slow HTTP/1.1\r\nHo").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop_tx.send(true).unwrap();
        let mut buf = [0u8; 64];
        for s in [&mut idle, &mut half] {
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
                .await
                .expect("closed at once")
                .unwrap_or(0);
            assert_eq!(n, 0);
        }
        assert!(!served.is_finished(), "a request is still in progress");
        release_tx.send(true).unwrap();
        let answer = in_progress.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::timeout(Duration::from_secs(2), served)
            .await
            .expect("serve returns once the last connection closed")
            .unwrap();
    }

    #[tokio::test]
    async fn requests_over_the_cap_get_503_at_once() {
        let (release_tx, release_rx) = watch::channel(false);
        let router = Router::new().route(
            "/slow",
            get(move || {
                let mut rx = release_rx.clone();
                async move {
                    let _ = rx.wait_for(|r| *r).await;
                    "done"
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        let m = metrics.clone();
        tokio::spawn(async move {
            serve(
                listener,
                router,
                limits(),
                &m,
                "rest",
                std::future::pending(),
            )
            .await
        });
        let first = tokio::spawn(fetch(addr, "/slow"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = tokio::time::timeout(Duration::from_secs(2), fetch(addr, "/slow"))
            .await
            .expect("answered at once");
        assert!(second.starts_with("HTTP/1.1 503"), "{second}");
        assert!(second.contains("retry-after: 1"), "{second}");
        release_tx.send(true).unwrap();
        let first = first.await.unwrap();
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(metrics
            .render()
            .contains("rrnet_radius_http_requests_shed_total{listener=\"rest\"} 1"));
    }
}
