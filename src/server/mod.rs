//! The UDP server: authentication (1812) and accounting (1813) loops on sockets
//! passed in, the in-memory NAS table, bounded work in flight, group-committed
//! accounting, background housekeeping and graceful shutdown.
//!
//! Packet handling order, cheapest check first so that floods cost little:
//! NAS lookup by source → framing → code allowed on this port → authenticity
//! (Request Authenticator / Message-Authenticator) → duplicate cache → work.

mod access;
mod accounting;
mod drop_reason;
mod housekeeping;
mod log_limit;
mod nas_table;
mod request;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::proto::MacKey;
pub use drop_reason::DropReason;
pub use nas_table::{NasEntry, NasTable};

use crate::metrics::{Metrics, NasCounters, UNKNOWN_NAS};
use crate::model::Nas;
use crate::policy::AccessDecision;
use crate::proto::{
    verify_request_authenticator, Code, DedupKey, DuplicateCache, Packet, RequestEcho, Seen,
};
use crate::store::{AuthorizeOptions, Store};

use access::AccessJob;
use accounting::AcctJob;
use log_limit::LogLimiter;

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
    /// Auth log retention in seconds; `None` keeps everything.
    pub auth_log_retention: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_in_flight: 1024,
            auth_workers: 4,
            auth_batch_max: 64,
            dedup_lifetime: Duration::from_secs(5),
            dedup_capacity: 65536,
            authorize: AuthorizeOptions::default(),
            acct_queue: 8192,
            acct_batch_max: 256,
            acct_writers: 1,
            default_interim: 300,
            stale_grace: 60,
            housekeeping_interval: Duration::from_secs(30),
            nas_reload_interval: Duration::from_secs(2),
            auth_log_retention: Some(30 * 86400),
        }
    }
}

/// Unix seconds now. The only clock read on the request path.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// State shared by the loops and tasks.
pub(crate) struct Shared {
    store: Arc<dyn Store>,
    metrics: Metrics,
    config: ServerConfig,
    /// Swapped whole on reload; readers clone the Arc and drop the lock at once.
    nas: NasDirectory,
    /// Duplicate caches, one per port. std Mutex: never held across an await.
    auth_dedup: Mutex<DuplicateCache>,
    acct_dedup: Mutex<DuplicateCache>,
    log_limit: LogLimiter,
}

impl Shared {
    fn nas_table(&self) -> Arc<NasTable> {
        self.nas.read().expect("NAS table lock poisoned").clone()
    }

    fn dedup(&self, accounting: bool) -> &Mutex<DuplicateCache> {
        if accounting {
            &self.acct_dedup
        } else {
            &self.auth_dedup
        }
    }

    /// Count a drop and log it (rate-limited so a flood cannot fill the disk).
    fn drop_packet(&self, nas: Option<&Nas>, source: SocketAddr, reason: DropReason, detail: &str) {
        let nas_label = nas.map(|n| n.name.as_str()).unwrap_or(UNKNOWN_NAS);
        self.metrics
            .drops
            .with_label_values(&[nas_label, reason.label()])
            .inc();
        if let Some(suppressed) = self.log_limit.allow() {
            if suppressed > 0 {
                tracing::warn!(
                    suppressed,
                    "drop log lines suppressed by the rate limit; rrnet_radius_drops_total counts every drop"
                );
            }
            tracing::warn!(nas = nas_label, %source, reason = reason.label(), detail, "dropped request");
        }
    }

    fn answered(&self, accounting: bool, key: DedupKey, reply: &[u8]) {
        self.dedup(accounting)
            .lock()
            .expect("dedup lock poisoned")
            .answered(key, reply.to_vec());
    }

    fn forget(&self, accounting: bool, key: &DedupKey) {
        self.dedup(accounting)
            .lock()
            .expect("dedup lock poisoned")
            .forget(key);
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
    Ok(Arc::new(RwLock::new(Arc::new(table))))
}

/// Load the NAS table from storage.
pub async fn load_nas_table(store: &dyn Store) -> crate::store::StoreResult<NasTable> {
    let generation = store.nas_generation().await?;
    let nas = store.list_nas().await?;
    Ok(NasTable::new(nas, generation))
}

/// Create the per-NAS counters at zero (see [`Metrics::init_nas`]).
fn init_nas_metrics(metrics: &Metrics, table: &NasTable) {
    let drops: Vec<&str> = DropReason::ALL
        .iter()
        .filter(|r| **r != DropReason::UnknownNas)
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

/// Run the server until `shutdown` resolves, then stop receiving, finish the work
/// in flight (bounded wait) and flush queued accounting. `nas` is the process's
/// NAS table ([`load_nas_directory`]); the server keeps it current.
pub async fn serve(
    auth: UdpSocket,
    acct: UdpSocket,
    store: Arc<dyn Store>,
    metrics: Metrics,
    nas: NasDirectory,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let table = nas.read().expect("NAS table lock poisoned").clone();
    metrics
        .drops
        .with_label_values(&[UNKNOWN_NAS, DropReason::UnknownNas.label()]);
    if table.is_empty() {
        tracing::warn!("no NAS is configured: every request will be dropped; add one with `rrnet-radius nas add`");
    }
    let shared = Arc::new(Shared {
        store,
        metrics,
        nas,
        auth_dedup: Mutex::new(DuplicateCache::new(
            config.dedup_lifetime,
            config.dedup_capacity,
        )),
        acct_dedup: Mutex::new(DuplicateCache::new(
            config.dedup_lifetime,
            config.dedup_capacity,
        )),
        log_limit: LogLimiter::new(20),
        config,
    });
    let auth = Arc::new(auth);
    let acct = Arc::new(acct);
    let (stop_tx, stop_rx) = watch::channel(false);

    let (acct_senders, writers) = accounting::spawn_writers(shared.clone(), acct.clone());
    let (access_senders, deciders) = access::spawn_workers(shared.clone(), auth.clone());
    let housekeeping = tokio::spawn(housekeeping::run(shared.clone(), stop_rx.clone()));
    let auth_loop = tokio::spawn(receive_loop(
        shared.clone(),
        auth.clone(),
        Queues::Access(access_senders),
        stop_rx.clone(),
    ));
    let acct_loop = tokio::spawn(receive_loop(
        shared.clone(),
        acct.clone(),
        Queues::Accounting(acct_senders),
        stop_rx.clone(),
    ));
    tracing::info!(
        auth = %auth.local_addr()?,
        acct = %acct.local_addr()?,
        "listening for RADIUS"
    );

    shutdown.await;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    // The loops own the queue senders: once they end, the workers drain their
    // queues, answer what they hold, and stop.
    let _ = auth_loop.await;
    let _ = acct_loop.await;
    let drain = async {
        for w in deciders.into_iter().chain(writers) {
            let _ = w.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after 10s; stopping anyway");
    }
    let _ = housekeeping.await;
    tracing::info!("stopped");
    Ok(())
}

/// Where a receive loop hands work off.
enum Queues {
    Access(Vec<mpsc::Sender<AccessJob>>),
    Accounting(Vec<mpsc::Sender<AcctJob>>),
}

async fn receive_loop(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    queues: Queues,
    mut stop: watch::Receiver<bool>,
) {
    // One byte more than the maximum, so an oversize datagram is seen as such.
    let mut buf = vec![0u8; crate::proto::MAX_PACKET_LEN + 1];
    loop {
        let (n, source) = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; keep serving.
                    tracing::debug!(error = %e, "recv_from failed");
                    continue;
                }
            },
        };
        handle_datagram(&shared, &socket, &buf[..n], source, &queues).await;
    }
}

async fn handle_datagram(
    shared: &Arc<Shared>,
    socket: &Arc<UdpSocket>,
    datagram: &[u8],
    source: SocketAddr,
    queues: &Queues,
) {
    let accounting = matches!(queues, Queues::Accounting(_));
    let received = Instant::now();
    let table = shared.nas_table();
    let Some(nas) = table.lookup(source.ip()) else {
        shared.drop_packet(
            None,
            source,
            DropReason::UnknownNas,
            "source matches no NAS",
        );
        return;
    };
    nas.counters.last_seen.set(unix_now());
    let packet = match Packet::decode(datagram) {
        Ok(p) => p,
        Err(e) => {
            shared.drop_packet(Some(nas), source, DropReason::Malformed, e.label());
            return;
        }
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
    let secret = signer.secret(nas);
    let mac_key = signer.key(nas);

    let key = DedupKey {
        source,
        identifier: packet.identifier(),
        authenticator: *packet.authenticator(),
    };
    // The lock is released before any await (std Mutex, never held across one).
    let seen = {
        let mut cache = shared
            .dedup(accounting)
            .lock()
            .expect("dedup lock poisoned");
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
            let _ = socket.send_to(&reply, source).await;
            return;
        }
        Some(Err(reason)) => {
            shared.drop_packet(Some(nas), source, reason, code.name());
            return;
        }
    }

    match code {
        Code::StatusServer => {
            let reply = request::status_reply(
                Vec::with_capacity(64),
                &packet,
                accounting,
                secret,
                &nas.mac_key,
            );
            // Cached before sending: a retransmission that crosses the reply must
            // find it answered, not still in progress (RFC 5080 §2.2.2).
            shared.answered(accounting, key, &reply);
            let _ = socket.send_to(&reply, source).await;
            nas.counters.status_answered.inc();
            shared
                .metrics
                .status_duration
                .observe(received.elapsed().as_secs_f64());
        }
        Code::AccessRequest => {
            let facts = match request::access_facts(&packet, nas, secret) {
                Ok(f) => f,
                Err(reason) => {
                    shared.forget(false, &key);
                    shared.drop_packet(Some(nas), source, reason, "Access-Request");
                    return;
                }
            };
            let Queues::Access(senders) = queues else {
                unreachable!("Access-Requests are only accepted on the authentication port")
            };
            let shard = access::shard(&facts.username, senders.len());
            let job = AccessJob {
                facts,
                reply_to: access::ReplyTo {
                    echo: RequestEcho::of(&packet),
                    source,
                    key,
                    nas: nas.nas.clone(),
                    counters: nas.counters.clone(),
                    mac_key: mac_key.clone(),
                    signer,
                    received,
                },
            };
            if senders[shard].try_send(job).is_err() {
                shared.forget(false, &key);
                shared.drop_packet(
                    Some(nas),
                    source,
                    DropReason::Overload,
                    "too many requests in flight",
                );
            }
        }
        Code::AccountingRequest => {
            let record = match request::acct_record(&packet, nas.id, unix_now()) {
                Ok(r) => r,
                Err(why) => {
                    shared.forget(true, &key);
                    shared.drop_packet(Some(nas), source, DropReason::Malformed, why);
                    return;
                }
            };
            let Queues::Accounting(senders) = queues else {
                unreachable!("Accounting-Requests are only accepted on the accounting port")
            };
            let shard = accounting::shard(&record, senders.len());
            let job = AcctJob {
                record,
                reply_to: accounting::ReplyTo {
                    echo: RequestEcho::of(&packet),
                    source,
                    key,
                    nas: nas.nas.clone(),
                    counters: nas.counters.clone(),
                    signer,
                    received,
                },
            };
            if senders[shard].try_send(job).is_err() {
                shared.forget(true, &key);
                shared.drop_packet(
                    Some(nas),
                    source,
                    DropReason::Overload,
                    "accounting queue full",
                );
            }
        }
        _ => unreachable!("filtered above"),
    }
}

/// Which of a NAS's secrets a request was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signer {
    Current,
    /// The secret before a rotation, still accepted for a while.
    Previous,
}

impl Signer {
    pub(crate) fn secret<'a>(&self, nas: &'a NasEntry) -> &'a [u8] {
        match (self, &nas.previous) {
            (Signer::Previous, Some(p)) => p.secret.expose(),
            _ => nas.secret.expose(),
        }
    }

    /// The secret, from the NAS record itself (for work done after the table
    /// may have been reloaded).
    pub(crate) fn secret_of<'a>(&self, nas: &'a Nas) -> &'a [u8] {
        match (self, &nas.previous_secret) {
            (Signer::Previous, Some(p)) => p.expose(),
            _ => nas.secret.expose(),
        }
    }

    pub(crate) fn key<'a>(&self, nas: &'a NasEntry) -> &'a MacKey {
        match (self, &nas.previous) {
            (Signer::Previous, Some(p)) => &p.mac_key,
            _ => &nas.mac_key,
        }
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
    let code = packet.code();
    let previous_ok = nas.previous.as_ref().is_some_and(|p| now < p.until);
    let candidates = [Signer::Current, Signer::Previous]
        .into_iter()
        .take(if previous_ok { 2 } else { 1 });
    let has_ma = packet.has_message_authenticator();
    let mut chosen = None;
    for signer in candidates {
        let ok = if code == Code::AccountingRequest {
            verify_request_authenticator(packet, signer.secret(nas))
        } else if has_ma {
            packet.verify_request_message_authenticator_keyed(signer.key(nas)) == Some(true)
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
        let (reason, detail) = if code == Code::AccountingRequest {
            (
                DropReason::BadAuthenticator,
                "Request Authenticator does not verify",
            )
        } else {
            (
                DropReason::BadMessageAuthenticator,
                "Message-Authenticator does not verify",
            )
        };
        shared.drop_packet(Some(nas), source, reason, detail);
        return None;
    };
    if code == Code::AccountingRequest
        && has_ma
        && packet.verify_request_message_authenticator_keyed(signer.key(nas)) != Some(true)
    {
        shared.drop_packet(
            Some(nas),
            source,
            DropReason::BadMessageAuthenticator,
            "Message-Authenticator does not verify",
        );
        return None;
    }
    if !has_ma {
        // Status-Server always needs it (RFC 5997 §3); Access-Request unless the NAS is exempt.
        let required = code == Code::StatusServer
            || (code == Code::AccessRequest && nas.require_message_authenticator);
        if required {
            shared.drop_packet(
                Some(nas),
                source,
                DropReason::MissingMessageAuthenticator,
                code.name(),
            );
            return None;
        }
    }
    if signer == Signer::Previous {
        shared
            .metrics
            .previous_secret_used
            .with_label_values(&[&nas.name])
            .inc();
    }
    Some(signer)
}

pub(crate) fn record_access_outcome(
    shared: &Shared,
    nas: &Nas,
    counters: &NasCounters,
    username: &str,
    mac: Option<&str>,
    decision: &AccessDecision,
) {
    match decision {
        AccessDecision::Accept(grant) => {
            counters.accepts.inc();
            if grant.activation.is_some() {
                shared.metrics.vouchers_activated.inc();
            }
            tracing::debug!(nas = %nas.name, user = username, mac, "accept");
        }
        AccessDecision::Reject(reason) => {
            counters.rejects.inc();
            counters.reject_reason(*reason).inc();
            tracing::info!(nas = %nas.name, user = username, mac, reason = reason.label(), "reject");
        }
    }
}
