//! The UDP server: authentication (1812) and accounting (1813) loops on sockets
//! passed in, the in-memory NAS table, background housekeeping and graceful
//! shutdown. Requests are decided and stored by the [`RequestHandler`] the REST
//! shim uses too; the server hands them over and it answers with a packet.
//!
//! Packet handling order, cheapest check first so that floods cost little:
//! NAS lookup by source → framing → code allowed on this port → authenticity
//! (Request Authenticator / Message-Authenticator) → duplicate cache → work.

mod housekeeping;
mod nas_table;
pub(crate) mod request;
pub mod resolve;
mod socket;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

pub use crate::handler::{unix_now, DropReason};
pub use nas_table::{CertificateNames, NasEntry, NasTable};
pub use socket::{bind_udp, kernel_drops};

use crate::handler::{
    status_reply, Answer, DatagramPort, HandlerConfig, Origin, PacketReply, RequestHandler, Signer,
    Workers,
};
use crate::metrics::{Metrics, UNKNOWN_NAS};
use crate::model::Nas;
use crate::proto::{
    verify_request_authenticator, Code, DedupKey, DuplicateCache, Packet, RequestEcho, Seen,
};
use crate::store::{AuthorizeOptions, Store};

/// Tunables of the UDP server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Access-Requests queued or being decided; beyond this, datagrams are dropped (the NAS retries).
    pub max_in_flight: usize,
    /// Access-Request deciders (requests are sharded by User-Name).
    pub auth_workers: usize,
    /// Most Access-Requests decided in one transaction.
    pub auth_batch_max: usize,
    /// How long an answered request's reply is kept for retransmissions (RFC 5080).
    pub dedup_lifetime: Duration,
    /// Most entries in each duplicate cache.
    pub dedup_capacity: usize,
    pub authorize: AuthorizeOptions,
    /// Accounting records queued for storage; beyond this, drop (the NAS retries).
    pub acct_queue: usize,
    /// Most accounting records per transaction.
    pub acct_batch_max: usize,
    /// Parallel accounting writers (sessions are sharded, so each session's records stay in order).
    pub acct_writers: usize,
    /// Interim interval assumed for sessions that were not given one.
    pub default_interim: u64,
    /// Extra seconds before an open session without interims is closed as stale.
    pub stale_grace: u64,
    /// How often stale sessions are closed and the auth log pruned.
    pub housekeeping_interval: Duration,
    /// How often the NAS table's generation is polled.
    pub nas_reload_interval: Duration,
    /// How often NAS host names (`--address HOST`) are resolved again; a
    /// packet from an unknown source also asks for it, at most this often
    /// or every 10 s, whichever is shorter.
    pub nas_resolve_interval: Duration,
    /// Auth log retention in seconds; `None` keeps everything.
    pub auth_log_retention: Option<u64>,
    /// Events (and their webhook deliveries) retention in seconds; `None` keeps everything.
    pub events_retention: Option<u64>,
    /// Guessing defence (`[guard]` in the config file).
    pub guard: crate::handler::GuardConfig,
    /// Most Access-Requests of one NAS in flight at once (0: no limit).
    pub nas_in_flight: usize,
    /// Receive buffer asked of the kernel for each UDP socket (`SO_RCVBUF`), bytes.
    pub socket_receive_buffer: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_in_flight: 1024,
            auth_workers: 2,
            auth_batch_max: 64,
            dedup_lifetime: Duration::from_secs(5),
            dedup_capacity: 32768,
            authorize: AuthorizeOptions::default(),
            acct_queue: 8192,
            acct_batch_max: 256,
            acct_writers: 2,
            default_interim: 300,
            stale_grace: 60,
            housekeeping_interval: Duration::from_secs(30),
            nas_reload_interval: Duration::from_secs(1),
            nas_resolve_interval: Duration::from_secs(60),
            auth_log_retention: Some(30 * 86400),
            events_retention: Some(7 * 86400),
            guard: crate::handler::GuardConfig::default(),
            nas_in_flight: 256,
            socket_receive_buffer: 4 << 20,
        }
    }
}

impl ServerConfig {
    /// The settings of the request handler's deciders and writers.
    pub fn handler(&self) -> HandlerConfig {
        HandlerConfig {
            max_in_flight: self.max_in_flight,
            auth_workers: self.auth_workers,
            auth_batch_max: self.auth_batch_max,
            authorize: self.authorize,
            acct_queue: self.acct_queue,
            acct_batch_max: self.acct_batch_max,
            acct_writers: self.acct_writers,
            guard: self.guard,
            nas_in_flight: self.nas_in_flight,
            default_interim: u32::try_from(self.default_interim).unwrap_or(u32::MAX),
        }
    }
}

/// State shared by the loops and tasks.
pub(crate) struct Shared {
    store: Arc<dyn Store>,
    metrics: Metrics,
    config: ServerConfig,
    /// Swapped whole on reload; readers clone the Arc and drop the lock at once.
    nas: NasDirectory,
    /// Where requests are decided and stored, and drops counted.
    handler: RequestHandler,
    /// Wakes housekeeping to resolve NAS host names again now (a packet came
    /// from an unknown source: a router's address may have changed).
    resolve_now: tokio::sync::Notify,
    /// When that was last asked, to ask at most every [`Shared::resolve_gap`].
    resolve_asked: std::sync::Mutex<Option<Instant>>,
}

impl Shared {
    fn nas_table(&self) -> Arc<NasTable> {
        self.nas.read().expect("NAS table lock poisoned").clone()
    }

    /// The shortest time between two resolutions asked by unknown sources.
    fn resolve_gap(&self) -> Duration {
        self.config
            .nas_resolve_interval
            .min(Duration::from_secs(10))
    }

    /// A packet came from a source no entry covers: if some entries have host
    /// names, resolve them again soon (rate-limited: a flood from unknown
    /// sources costs one resolution per gap).
    fn unknown_source(&self, table: &NasTable) {
        if !table.has_host_names() {
            return;
        }
        let now = Instant::now();
        let mut asked = self.resolve_asked.lock().expect("resolve lock poisoned");
        if asked.is_some_and(|t| now.duration_since(t) < self.resolve_gap()) {
            return;
        }
        *asked = Some(now);
        self.resolve_now.notify_one();
    }

    /// Count a drop and log it (rate-limited so a flood cannot fill the disk).
    fn drop_packet(&self, nas: Option<&Nas>, source: SocketAddr, reason: DropReason, detail: &str) {
        self.handler
            .drop_packet(nas, crate::handler::Transport::Udp, source, reason, detail);
    }
}

/// The NAS table every listener of the process reads (UDP and the REST shim),
/// swapped whole on reload. std RwLock: never held across an await; readers
/// clone the inner Arc and drop the lock at once. One owner loads it
/// ([`load_nas_directory`]) and one task reloads it (the server's housekeeping).
pub type NasDirectory = Arc<RwLock<Arc<NasTable>>>;

/// Load the NAS table, with each NAS's metrics attached and created at zero.
pub async fn load_nas_directory(
    store: &dyn Store,
    metrics: &Metrics,
) -> crate::store::StoreResult<NasDirectory> {
    let table = load_nas_table(store).await?.count_with(metrics);
    init_nas_metrics(metrics, &table);
    note_resolution(metrics, &table, &table.resolved);
    Ok(Arc::new(RwLock::new(Arc::new(table))))
}

/// Load the NAS table from storage, with its host names resolved.
pub async fn load_nas_table(store: &dyn Store) -> crate::store::StoreResult<NasTable> {
    let generation = store.nas_generation().await?;
    let nas = store.list_nas().await?;
    let table = NasTable::new(nas, generation);
    let names = table.host_names();
    if names.is_empty() {
        return Ok(table);
    }
    Ok(table.re_resolved(resolve::resolve(&names).await))
}

/// Record that the names in `fresh` resolved now, for each NAS of `table`
/// with one of them.
fn note_resolution(metrics: &Metrics, table: &NasTable, fresh: &resolve::Resolved) {
    let now = unix_now();
    for n in table.iter() {
        if let Some(crate::model::DynamicAddress::Host(h)) = &n.dynamic {
            if fresh.contains_key(h) {
                metrics
                    .nas_address_resolved
                    .with_label_values(&[&n.name])
                    .set(now);
            }
        }
    }
}

/// Create the per-NAS counters at zero (see [`Metrics::init_nas`]).
fn init_nas_metrics(metrics: &Metrics, table: &NasTable) {
    let drops: Vec<&str> = DropReason::ALL
        .iter()
        .filter(|r| !matches!(r, DropReason::UnknownNas | DropReason::UnknownNasIdentifier))
        .map(|r| r.label())
        .collect();
    let rejects: Vec<&str> = crate::policy::RejectReason::ALL
        .iter()
        .map(|r| r.label())
        .collect();
    for name in table.names() {
        metrics.init_nas(name, &drops, &rejects);
    }
}

/// Run the server until `shutdown` resolves, then stop receiving, and wait
/// (bounded) until `workers` have answered the requests in flight and stored the
/// queued accounting — which ends once every clone of `handler` is dropped (the
/// REST shim's too). `nas` is the process's NAS table ([`load_nas_directory`]);
/// the server keeps it current.
pub async fn serve(
    auth: UdpSocket,
    acct: UdpSocket,
    handler: RequestHandler,
    workers: Workers,
    nas: NasDirectory,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let table = nas.read().expect("NAS table lock poisoned").clone();
    let metrics = handler.metrics().clone();
    for reason in [DropReason::UnknownNas, DropReason::UnknownNasIdentifier] {
        metrics
            .drops
            .with_label_values(&[UNKNOWN_NAS, reason.label()]);
    }
    if table.is_empty() {
        tracing::warn!("no NAS is configured: every request will be dropped; add one with `rrnet-radius nas add`");
    }
    let dedup = || DuplicateCache::new(config.dedup_lifetime, config.dedup_capacity);
    let auth = Arc::new(DatagramPort::new(auth, dedup()));
    let acct = Arc::new(DatagramPort::new(acct, dedup()));
    let shared = Arc::new(Shared {
        store: handler.store().clone(),
        metrics,
        nas,
        handler,
        config,
        resolve_now: tokio::sync::Notify::new(),
        resolve_asked: std::sync::Mutex::new(None),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    let housekeeping = tokio::spawn(housekeeping::run(
        shared.clone(),
        [auth.clone(), acct.clone()],
        stop_rx.clone(),
    ));
    let auth_loop = tokio::spawn(receive_loop(
        shared.clone(),
        auth.clone(),
        false,
        stop_rx.clone(),
    ));
    let acct_loop = tokio::spawn(receive_loop(
        shared.clone(),
        acct.clone(),
        true,
        stop_rx.clone(),
    ));
    tracing::info!(
        auth = %auth.socket.local_addr()?,
        acct = %acct.socket.local_addr()?,
        "listening for RADIUS"
    );

    shutdown.await;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    let _ = auth_loop.await;
    let _ = acct_loop.await;
    let _ = housekeeping.await;
    // Nothing of the server holds the handler any more: once the shim lets go
    // of its clone too, the deciders and writers drain their queues, answer
    // what they hold, and stop.
    drop(shared);
    if !workers.finish(Duration::from_secs(10)).await {
        tracing::warn!("requests still in flight after 10s; stopping anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Receive on `port` (the accounting port when `accounting`) until stopped.
async fn receive_loop(
    shared: Arc<Shared>,
    port: Arc<DatagramPort>,
    accounting: bool,
    mut stop: watch::Receiver<bool>,
) {
    // One byte more than the maximum, so an oversize datagram is seen as such.
    let mut buf = vec![0u8; crate::proto::MAX_PACKET_LEN + 1];
    loop {
        let (n, source) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = port.socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; keep serving.
                    tracing::debug!(error = %e, "recv_from failed");
                    continue;
                }
            },
        };
        handle_datagram(&shared, &port, accounting, &buf[..n], source).await;
    }
}

async fn handle_datagram(
    shared: &Shared,
    port: &Arc<DatagramPort>,
    accounting: bool,
    datagram: &[u8],
    source: SocketAddr,
) {
    let received = Instant::now();
    let table = shared.nas_table();
    let Some(sources) = table.sources(source.ip()) else {
        shared.unknown_source(&table);
        shared.drop_packet(
            None,
            source,
            DropReason::UnknownNas,
            "source matches no NAS",
        );
        return;
    };
    let packet = match Packet::decode(datagram) {
        Ok(p) => p,
        Err(e) => {
            let nas = sources.only().map(|e| &*e.nas);
            shared.drop_packet(nas, source, DropReason::Malformed, e.label());
            return;
        }
    };
    // Several entries may share this address: the NAS-Identifier picks one,
    // whose secret must then verify the packet (below). The common case, one
    // entry without identifier, does not look for the attribute at all.
    let nas = sources
        .only()
        .or_else(|| sources.pick(packet.attr(crate::proto::attr::NAS_IDENTIFIER)));
    let Some(nas) = nas else {
        shared.drop_packet(
            None,
            source,
            DropReason::UnknownNasIdentifier,
            "NAS-Identifier matches no NAS entry at this address",
        );
        return;
    };
    let code = packet.code();
    let allowed = match code {
        Code::StatusServer => true,
        Code::AccessRequest => !accounting,
        Code::AccountingRequest => accounting,
        _ => false,
    };
    if !allowed {
        shared.drop_packet(Some(nas), source, DropReason::UnexpectedCode, code.name());
        return;
    }
    // Authenticity (RFC 2866 §3, RFC 3579 §3.2, RFC 5997 §3), with the current
    // secret or, while a rotation is in progress, the previous one.
    let now_s = unix_now();
    let Some(signer) = authenticate(shared, nas, &packet, source, now_s) else {
        return;
    };
    // Only an authentic packet shows the NAS is alive: anyone can send from its address.
    nas.counters.last_seen.set(now_s);
    let secret = nas.secret_for(signer);
    let mac_key = nas.key_for(signer);

    let key = DedupKey {
        source,
        identifier: packet.identifier(),
        authenticator: *packet.authenticator(),
    };
    // The lock is released before any await (std Mutex, never held across one).
    let seen = {
        let mut cache = port.dedup.lock().expect("dedup lock poisoned");
        match cache.check(key, received) {
            Seen::New => None,
            Seen::Answered(reply) => Some(Ok(reply.to_vec())),
            Seen::InProgress => Some(Err(DropReason::DuplicateInProgress)),
        }
    };
    match seen {
        None => {}
        Some(Ok(reply)) => {
            nas.counters.duplicates.inc();
            let _ = port.socket.send_to(&reply, source).await;
            return;
        }
        Some(Err(reason)) => {
            shared.drop_packet(Some(nas), source, reason, code.name());
            return;
        }
    }

    match code {
        Code::StatusServer => {
            let reply = status_reply(Vec::with_capacity(64), &packet, accounting, secret, mac_key);
            // Cached before sending: a retransmission that crosses the reply must
            // find it answered, not still in progress (RFC 5080 §2.2.2).
            port.answered(key, &reply);
            let _ = port.socket.send_to(&reply, source).await;
            nas.counters.status_answered.inc();
            shared
                .metrics
                .status_duration
                .observe(received.elapsed().as_secs_f64());
        }
        Code::AccessRequest => {
            let facts = match request::access_facts(&packet, nas, source.ip(), secret) {
                Ok(f) => f,
                Err((reason, detail)) => {
                    port.forget(&key);
                    shared.drop_packet(Some(nas), source, reason, detail);
                    return;
                }
            };
            // A full queue is counted (`overload`) and the cache entry forgotten
            // by the handler; the NAS retries.
            let _ = shared.handler.submit_access(
                facts,
                origin(nas, received),
                Answer::Packet(PacketReply {
                    port: port.clone(),
                    source,
                    key,
                    echo: RequestEcho::of(&packet),
                    signer,
                    mac_key: mac_key.clone(),
                }),
            );
        }
        Code::AccountingRequest => {
            let record = match request::acct_record(&packet, nas, source.ip(), unix_now()) {
                Ok(r) => r,
                Err((reason, why)) => {
                    port.forget(&key);
                    shared.drop_packet(Some(nas), source, reason, why);
                    return;
                }
            };
            let _ = shared.handler.submit_accounting(
                record,
                origin(nas, received),
                Answer::Packet(PacketReply {
                    port: port.clone(),
                    source,
                    key,
                    echo: RequestEcho::of(&packet),
                    signer,
                    mac_key: mac_key.clone(),
                }),
            );
        }
        _ => unreachable!("filtered above"),
    }
}

fn origin(nas: &NasEntry, received: Instant) -> Origin {
    Origin {
        nas: nas.nas.clone(),
        transport: crate::handler::Transport::Udp,
        counters: nas.counters.clone(),
        received,
    }
}

/// Check a request's authenticators; `None` means it was dropped (and counted).
fn authenticate(
    shared: &Shared,
    nas: &NasEntry,
    packet: &Packet<'_>,
    source: SocketAddr,
    now: i64,
) -> Option<Signer> {
    match verify_request(nas, packet, now) {
        Ok(signer) => {
            if signer == Signer::Previous {
                shared
                    .metrics
                    .previous_secret_used
                    .with_label_values(&[&nas.name])
                    .inc();
            }
            Some(signer)
        }
        Err((reason, detail)) => {
            shared.drop_packet(Some(nas), source, reason, detail);
            None
        }
    }
}

/// Check a request's authenticators against `nas`'s secrets: which secret it
/// was made with, or why it must be dropped. Every transport that carries
/// RADIUS packets (UDP, RadSec) uses this one check.
pub(crate) fn verify_request(
    nas: &NasEntry,
    packet: &Packet<'_>,
    now: i64,
) -> Result<Signer, (DropReason, &'static str)> {
    let code = packet.code();
    let previous_ok = nas.previous.as_ref().is_some_and(|p| now < p.until);
    let candidates = [Signer::Current, Signer::Previous]
        .into_iter()
        .take(if previous_ok { 2 } else { 1 });
    let has_ma = packet.has_message_authenticator();
    let mut chosen = None;
    for signer in candidates {
        let ok = if code == Code::AccountingRequest {
            verify_request_authenticator(packet, nas.secret_for(signer))
        } else if has_ma {
            packet.verify_request_message_authenticator_keyed(nas.key_for(signer)) == Some(true)
        } else {
            // Nothing to verify the secret against: the current one is assumed.
            true
        };
        if ok {
            chosen = Some(signer);
            break;
        }
    }
    let Some(signer) = chosen else {
        return Err(if code == Code::AccountingRequest {
            (
                DropReason::BadAuthenticator,
                "Request Authenticator does not verify",
            )
        } else {
            (
                DropReason::BadMessageAuthenticator,
                "Message-Authenticator does not verify",
            )
        });
    };
    if code == Code::AccountingRequest
        && has_ma
        && packet.verify_request_message_authenticator_keyed(nas.key_for(signer)) != Some(true)
    {
        return Err((
            DropReason::BadMessageAuthenticator,
            "Message-Authenticator does not verify",
        ));
    }
    if !has_ma {
        // Status-Server always needs it (RFC 5997 §3); Access-Request unless the NAS is exempt.
        // An entry for any source is picked by its NAS-Identifier alone: only
        // Message-Authenticator proves the request is the router's.
        let any_source = nas.dynamic == Some(crate::model::DynamicAddress::Any);
        let required = code == Code::StatusServer
            || (code == Code::AccessRequest && (nas.require_message_authenticator || any_source));
        if required {
            return Err((DropReason::MissingMessageAuthenticator, code.name()));
        }
    }
    Ok(signer)
}
