//! RadSec: RADIUS over TLS (RFC 6614) on one TCP port (conventionally 2083),
//! authentication and accounting on the same connection.
//!
//! - Mutual TLS (1.2 or 1.3, `tls.rs`): the router's client certificate must
//!   chain to `--tls-client-ca`, and it is what names the router — a NAS entry
//!   bound to the certificate's CN, DNS name or fingerprint
//!   (`nas add --radsec-cn`), never the source address. A valid certificate
//!   bound to no entry is refused right after the handshake.
//! - The shared secret is the fixed `radsec` (RFC 6614 §2.3): TLS protects
//!   the packets, and the authenticators are still checked with it, by the
//!   same code as on UDP (`server::verify_request`).
//! - Framing (RFC 6613 §2.4, `framing.rs`): each packet is as long as its
//!   Length field; a bad Length closes the connection.
//! - Requests go to the one [`RequestHandler`] every transport uses: the same
//!   decision, accounting, batching and metrics as UDP and the REST shim.
//! - Duplicates (a retransmission on the same connection, RFC 6613 §2.6.1)
//!   are answered from a per-connection cache, or dropped while in progress.
//!
//! Limits (`[radsec]` in the config file): a handshake timeout, an idle
//! timeout, a cap on connections in all and per client address, and a cap on
//! requests in flight per connection (more are dropped, counted `overload`).
//! A removed (or re-bound) NAS loses its connections when the NAS table is
//! next reloaded. SIGHUP reloads the certificate files without touching
//! established connections.

mod connection;
pub mod framing;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::handler::RequestHandler;
use crate::metrics::Metrics;
use crate::server::{NasDirectory, NasTable};
pub use tls::{TlsFiles, TlsPaths};

/// The shared secret of every RadSec connection (RFC 6614 §2.3).
pub const RADSEC_SECRET: &str = "radsec";

/// The IANA port for RADIUS over TLS.
pub const DEFAULT_PORT: u16 = 2083;

/// Limits of the RadSec listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RadSecLimits {
    /// Time from accepting the TCP connection to a finished TLS handshake.
    pub handshake_timeout: Duration,
    /// A connection with no complete packet for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections in all; more are closed on accept.
    pub max_connections: usize,
    /// Open connections from one client address, IPv6 by /64 (routers behind
    /// one NAT share it).
    pub max_connections_per_peer: usize,
    /// Requests of one connection being decided or stored at once; more are dropped.
    pub max_in_flight: usize,
    /// How long an answered request's reply is kept for a retransmission.
    pub dedup_lifetime: Duration,
}

impl Default for RadSecLimits {
    fn default() -> Self {
        RadSecLimits {
            handshake_timeout: Duration::from_secs(10),
            // Routers keep their connection open; a quiet hotspot at night
            // sends an interim update every few minutes.
            idle_timeout: Duration::from_secs(600),
            max_connections: 4096,
            max_connections_per_peer: 32,
            max_in_flight: 64,
            dedup_lifetime: Duration::from_secs(30),
        }
    }
}

/// How a TLS handshake ended (`rrnet_radius_radsec_handshakes_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Done, and the certificate names a NAS entry.
    Ok,
    /// The client certificate was missing, expired, or not from the client CA.
    BadCertificate,
    /// A valid certificate that no NAS entry is bound to.
    UnknownNas,
    /// Any other TLS failure (protocol, versions, a peer that hung up).
    Failed,
    /// Not done within `handshake_timeout`.
    Timeout,
}

impl Handshake {
    pub const ALL: [Handshake; 5] = [
        Handshake::Ok,
        Handshake::BadCertificate,
        Handshake::UnknownNas,
        Handshake::Failed,
        Handshake::Timeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Handshake::Ok => "ok",
            Handshake::BadCertificate => "bad_certificate",
            Handshake::UnknownNas => "unknown_nas",
            Handshake::Failed => "failed",
            Handshake::Timeout => "timeout",
        }
    }
}

/// Why the server closed a connection (`rrnet_radius_radsec_connections_closed_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Refused on accept: the listener had its most connections.
    ListenerFull,
    /// Refused on accept: that client address had its most connections.
    PeerFull,
    /// A Length field outside 20..=4096: the stream cannot be framed any more.
    BadLength,
    /// No complete packet for `idle_timeout`.
    IdleTimeout,
    /// The NAS entry was removed, or no longer bound to this certificate.
    NasRemoved,
    /// The peer did not take our replies for a long time.
    WriteTimeout,
    /// The server is stopping.
    Shutdown,
}

impl Close {
    pub const ALL: [Close; 7] = [
        Close::ListenerFull,
        Close::PeerFull,
        Close::BadLength,
        Close::IdleTimeout,
        Close::NasRemoved,
        Close::WriteTimeout,
        Close::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Close::ListenerFull => "listener_full",
            Close::PeerFull => "peer_full",
            Close::BadLength => "bad_length",
            Close::IdleTimeout => "idle_timeout",
            Close::NasRemoved => "nas_removed",
            Close::WriteTimeout => "write_timeout",
            Close::Shutdown => "shutdown",
        }
    }
}

/// What every connection task shares.
struct Shared {
    tls: Arc<TlsFiles>,
    handler: RequestHandler,
    /// The process's NAS table, kept current by the UDP server's housekeeping.
    nas: NasDirectory,
    limits: RadSecLimits,
    metrics: Metrics,
    /// Open connections, in all and by client address.
    open: Mutex<Open>,
    /// Log lines about refused peers: a flood of bad certificates must not fill the disk.
    refusal_log: crate::handler::log_limit::LogLimiter,
}

impl Shared {
    fn nas_table(&self) -> Arc<NasTable> {
        self.nas.read().expect("NAS table lock poisoned").clone()
    }

    fn closed(&self, reason: Close) {
        self.metrics
            .radsec_connections_closed
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// Take a connection slot for `ip`, or say why not.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Close> {
        // As the HTTP listeners count them: IPv4 by address, IPv6 by /64.
        let ip = crate::http::listener::peer_key(ip);
        let mut open = self.open.lock().expect("connection lock poisoned");
        if open.total >= self.limits.max_connections {
            return Err(Close::ListenerFull);
        }
        let n = open.by_peer.entry(ip).or_default();
        if *n >= self.limits.max_connections_per_peer {
            return Err(Close::PeerFull);
        }
        *n += 1;
        open.total += 1;
        Ok(Slot {
            shared: self.clone(),
            ip,
        })
    }
}

#[derive(Default)]
struct Open {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// A connection's place in the caps, given back when it ends.
struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().expect("connection lock poisoned");
        open.total -= 1;
        if let Some(n) = open.by_peer.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_peer.remove(&self.ip);
            }
        }
    }
}

/// Accept RadSec connections on `listener` until `shutdown` resolves; then
/// stop accepting, let each connection answer what it has in flight (a few
/// seconds at most) and close it. Returns once every connection is closed, so
/// that its clones of `handler` are dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<TlsFiles>,
    handler: RequestHandler,
    nas: NasDirectory,
    limits: RadSecLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let metrics = handler.metrics().clone();
    let shared = Arc::new(Shared {
        tls,
        handler,
        nas,
        limits,
        metrics,
        open: Mutex::default(),
        refusal_log: crate::handler::log_limit::LogLimiter::new(20),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer): (_, SocketAddr) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            // Reap finished connection tasks as we go, so the set stays small.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "RadSec accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = match shared.admit(peer.ip()) {
            Ok(s) => s,
            Err(reason) => {
                shared.closed(reason);
                tracing::debug!(%peer, reason = reason.label(), "RadSec connection refused");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tasks.spawn(connection::run(
            shared.clone(),
            tcp,
            peer,
            slot,
            stop_rx.clone(),
        ));
    }
    let _ = stop_tx.send(true);
    drop(listener);
    while tasks.join_next().await.is_some() {}
}
