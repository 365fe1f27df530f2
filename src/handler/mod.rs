//! One request handler for every transport: the UDP server and the REST shim
//! hand it wire-neutral requests — [`AccessFacts`] and [`AcctRecord`] — with a
//! way to answer, and it does everything around the decision the same way for
//! both:
//!
//! - Access-Requests queue to a decider chosen by User-Name (one voucher's
//!   requests keep their order); a decider takes everything waiting, up to
//!   `auth_batch_max`, into one `Store::authorize_batch` call, then answers each.
//! - Accounting records queue to a writer chosen by (NAS, Acct-Session-Id); a
//!   writer stores everything waiting in one `Store::record_accounting` call and
//!   acknowledges each record only after that call returned (it committed).
//! - The queues are bounded: a request that finds its queue full is refused at
//!   once and counted as a drop with reason `overload` (the NAS retries).
//! - Outcomes are counted in the same metrics whatever the transport: requests
//!   by NAS and result, rejects by reason, activations, storage-call latency and
//!   errors, request duration, drops.
//!
//! Transports keep what is theirs. The UDP server decodes, authenticates and
//! de-duplicates datagrams and asks for a signed reply packet ([`PacketReply`]:
//! built here, in `reply.rs`, from what it kept of the request). The shim parses
//! rlm_rest bodies and awaits the outcome through a oneshot channel.
//!
//! Files: `access.rs` the deciders, `accounting.rs` the writers and NAS reboot
//! detection, `reply.rs` reply packets, `drop_reason.rs` and `log_limit.rs` how
//! a request that gets no answer is counted and logged.

mod access;
mod accounting;
mod drop_reason;
pub mod guard;
mod isolate;
pub(crate) mod log_limit;
mod reply;
#[cfg(test)]
pub(crate) mod test_store;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use drop_reason::DropReason;
pub use reply::{access_reply, accounting_reply, status_reply, ReplyTooLong};

use crate::metrics::{Metrics, NasCounters, UNKNOWN_NAS};
use crate::model::Nas;
use crate::policy::{AccessDecision, AccessFacts, AcctRecord};
use crate::proto::{DedupKey, DuplicateCache, MacKey, RequestEcho};
use crate::store::{AuthorizeOptions, Store};
pub use guard::GuardConfig;
use guard::{LoginGuard, Who};
use log_limit::LogLimiter;

/// Unix seconds now. The only clock read on the request path.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Tunables of the deciders and writers.
#[derive(Clone, Copy, Debug)]
pub struct HandlerConfig {
    /// Access-Requests queued, over all deciders; beyond this a request is refused.
    pub max_in_flight: usize,
    /// Access-Request deciders (requests are sharded by User-Name).
    pub auth_workers: usize,
    /// Most Access-Requests decided in one storage call.
    pub auth_batch_max: usize,
    pub authorize: AuthorizeOptions,
    /// Accounting records queued, over all writers; beyond this a record is refused.
    pub acct_queue: usize,
    /// Most accounting records per storage call.
    pub acct_batch_max: usize,
    /// Accounting writers (sessions are sharded, so each session's records stay in order).
    pub acct_writers: usize,
    /// Guessing defence.
    pub guard: GuardConfig,
    /// Most Access-Requests of one NAS queued at once, so one NAS cannot take
    /// every slot of `max_in_flight` (0: no per-NAS limit).
    pub nas_in_flight: usize,
    /// Acct-Interim-Interval (seconds) of an Access-Accept whose plan sets none:
    /// every Accept carries one (`policy::with_default_interim`).
    pub default_interim: u32,
}

/// How a request reached the server, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// RADIUS over UDP (RFC 2865/2866).
    Udp,
    /// The REST shim (FreeRADIUS rlm_rest).
    Rest,
    /// RADIUS over TLS (RadSec, RFC 6614).
    RadSec,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Rest, Transport::RadSec];

    /// The `transport` label of the metrics and log lines.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Rest => "rest",
            Transport::RadSec => "radsec",
        }
    }
}

/// Who asked and when: what counting and timing a request needs.
pub struct Origin {
    pub nas: Arc<Nas>,
    /// How the request came in.
    pub transport: Transport,
    /// The NAS's metrics, resolved when the NAS table was loaded.
    pub counters: Arc<NasCounters>,
    /// When the request arrived, for `request_duration`.
    pub received: Instant,
}

/// How the outcome of a request goes back to its transport.
// Jobs move by value through fixed-size channel slots; boxing the packet
// variant would cost the UDP path an allocation per request to save the shim
// a few hundred bytes of slot.
#[allow(clippy::large_enum_variant)]
pub enum Answer<T> {
    /// A RADIUS reply packet, signed and sent on the port the request came in on.
    Packet(PacketReply),
    /// The outcome, to a task awaiting it (the REST shim).
    Channel(oneshot::Sender<Result<T, Refused>>),
}

impl<T> Answer<T> {
    /// The sender of a datagram; `None` for a request that came over HTTP.
    fn source(&self) -> Option<SocketAddr> {
        match self {
            Answer::Packet(p) => Some(p.source),
            Answer::Channel(_) => None,
        }
    }
}

/// What answering a RADIUS request with a packet needs once it is decided or stored.
pub struct PacketReply {
    pub port: Arc<DatagramPort>,
    pub source: SocketAddr,
    /// The request's duplicate-cache entry: filled with the reply, or forgotten
    /// when there is none, so that a retransmission is processed afresh.
    pub key: DedupKey,
    /// What the reply takes from the request, kept from its one decode.
    pub echo: RequestEcho,
    /// Which secret the request was made with; the reply uses the same.
    pub signer: Signer,
    /// That secret prepared for HMAC-MD5 (Message-Authenticator).
    pub mac_key: MacKey,
}

/// A UDP port the server answers on: its socket and its duplicate cache
/// (RFC 5080). std Mutex: never held across an await.
pub struct DatagramPort {
    pub socket: UdpSocket,
    pub dedup: Mutex<DuplicateCache>,
}

impl DatagramPort {
    pub fn new(socket: UdpSocket, dedup: DuplicateCache) -> Self {
        DatagramPort {
            socket,
            dedup: Mutex::new(dedup),
        }
    }

    /// Keep `reply` for retransmissions of the request `key` names.
    pub fn answered(&self, key: DedupKey, reply: &[u8]) {
        self.dedup
            .lock()
            .expect("dedup lock poisoned")
            .answered(key, reply.to_vec());
    }

    /// Drop expired duplicate-cache entries now (and give back the room a
    /// burst took), also when no request comes to do it.
    pub fn tidy(&self) {
        self.dedup
            .lock()
            .expect("dedup lock poisoned")
            .expire(Instant::now());
    }

    /// Forget a request that gets no reply, so its retransmission is worked on.
    pub fn forget(&self, key: &DedupKey) {
        self.dedup.lock().expect("dedup lock poisoned").forget(key);
    }
}

/// Which of a NAS's secrets a request was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    Current,
    /// The secret before a rotation, still accepted for a while.
    Previous,
}

impl Signer {
    /// The secret, from the NAS record (work done after the request was
    /// received may see a reloaded NAS table; the record it came with stays).
    pub fn secret_of<'a>(&self, nas: &'a Nas) -> &'a [u8] {
        match (self, &nas.previous_secret) {
            (Signer::Previous, Some(p)) => p.expose(),
            _ => nas.secret.expose(),
        }
    }
}

/// Why a request was not worked on. Peers see at most these words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Its queue was full; the NAS (or FreeRADIUS) retries.
    #[error("too many requests in flight")]
    Overloaded,
    /// The storage call failed; nothing of its batch was answered.
    #[error("storage error")]
    StorageError,
    /// The handler stopped before answering.
    #[error("the server is stopping")]
    Stopping,
}

/// One Access-Request on its way to a decider.
pub(crate) struct AccessJob {
    /// What storage decides on; moved into the batch, not copied.
    facts: AccessFacts,
    origin: Origin,
    answer: Answer<AccessDecision>,
}

/// One accounting record on its way to a writer.
pub(crate) struct AcctJob {
    /// What storage keeps; moved into the batch, not copied.
    record: AcctRecord,
    origin: Origin,
    answer: Answer<()>,
}

/// State the deciders and writers share.
struct Core {
    store: Arc<dyn Store>,
    metrics: Metrics,
    config: HandlerConfig,
    log_limit: LogLimiter,
    /// Reject log lines: a wrong-password flood must not fill the disk either.
    reject_log: LogLimiter,
    guard: LoginGuard,
    /// Where each network-addressed NAS last sent from, for CoA (`crate::coa`).
    last_sources: Arc<crate::coa::LastSources>,
}

impl Core {
    /// Count a request handed to the handler under its transport.
    fn count_transport(&self, origin: &Origin) {
        self.metrics
            .requests_by_transport
            .with_label_values(&[origin.transport.label()])
            .inc();
    }

    /// Take one of `origin`'s NAS slots; `false` when its share is used up.
    fn take_nas_slot(&self, origin: &Origin) -> bool {
        let limit = self.config.nas_in_flight;
        if limit == 0 {
            return true;
        }
        let n = &origin.counters.in_flight;
        if n.fetch_add(1, Ordering::AcqRel) >= limit {
            n.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Give back a slot taken by [`Core::take_nas_slot`].
    fn release_nas_slot(&self, origin: &Origin) {
        if self.config.nas_in_flight > 0 {
            origin.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A request its queue had no room for: counted as an `overload` drop, and a
    /// datagram's duplicate-cache entry forgotten so its retransmission is tried again.
    fn refuse<T>(&self, origin: &Origin, answer: &Answer<T>, detail: &str) -> Refused {
        if let Answer::Packet(p) = answer {
            p.port.forget(&p.key);
        }
        self.drop_request(
            Some(&origin.nas),
            origin.transport,
            answer.source(),
            DropReason::Overload,
            detail,
        );
        Refused::Overloaded
    }

    /// A request whose storage call failed: no answer for a datagram (the NAS
    /// retries, and its retransmission is processed afresh), `StorageError` to a
    /// waiting task. Counted as a `storage_error` drop either way.
    fn fail<T>(&self, origin: &Origin, answer: Answer<T>, detail: &str) {
        self.drop_request(
            Some(&origin.nas),
            origin.transport,
            answer.source(),
            DropReason::StorageError,
            detail,
        );
        match answer {
            Answer::Packet(p) => p.port.forget(&p.key),
            Answer::Channel(tx) => {
                let _ = tx.send(Err(Refused::StorageError));
            }
        }
    }

    /// Count a request that gets no answer and log it (rate-limited so a flood
    /// cannot fill the disk). `source` is the sender when known; `None` for a
    /// request that came over HTTP (the shim answers it with an HTTP status).
    fn drop_request(
        &self,
        nas: Option<&Nas>,
        transport: Transport,
        source: Option<SocketAddr>,
        reason: DropReason,
        detail: &str,
    ) {
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
            match source {
                Some(source) => {
                    tracing::warn!(nas = nas_label, transport = transport.label(), %source, reason = reason.label(), detail, "dropped request")
                }
                None => {
                    tracing::warn!(
                        nas = nas_label,
                        transport = transport.label(),
                        reason = reason.label(),
                        detail,
                        "dropped request"
                    )
                }
            }
        }
    }
}

/// The request handler. Cheap to clone; every clone feeds the same deciders
/// and writers, which stop once every clone is gone and their queues are empty.
#[derive(Clone)]
pub struct RequestHandler {
    core: Arc<Core>,
    deciders: Arc<[mpsc::Sender<AccessJob>]>,
    writers: Arc<[mpsc::Sender<AcctJob>]>,
}

/// The deciders' and writers' tasks, to wait for at shutdown.
pub struct Workers(Vec<JoinHandle<()>>);

impl Workers {
    /// Wait until every queued request is answered and the tasks ended (which
    /// needs every [`RequestHandler`] clone dropped), at most `within`.
    /// Returns false if they were still working.
    pub async fn finish(self, within: Duration) -> bool {
        let all = async {
            for w in self.0 {
                let _ = w.await;
            }
        };
        tokio::time::timeout(within, all).await.is_ok()
    }
}

impl RequestHandler {
    /// Start the deciders and writers.
    pub fn start(
        store: Arc<dyn Store>,
        metrics: Metrics,
        config: HandlerConfig,
    ) -> (RequestHandler, Workers) {
        let core = Arc::new(Core {
            store,
            metrics,
            config,
            log_limit: LogLimiter::new(20),
            reject_log: LogLimiter::new(20),
            guard: LoginGuard::new(config.guard),
            last_sources: Arc::default(),
        });
        let (deciders, mut tasks) = access::spawn_deciders(&core);
        let (writers, writer_tasks) = accounting::spawn_writers(&core);
        tasks.extend(writer_tasks);
        let handler = RequestHandler {
            core,
            deciders: deciders.into(),
            writers: writers.into(),
        };
        (handler, Workers(tasks))
    }

    /// Queue an Access-Request. A full queue refuses it at once, counted as an
    /// `overload` drop; the caller then forgets anything it kept for it. A
    /// request the login guard refuses is answered here, without a decision;
    /// one over its NAS's share of the queue is refused as `nas_busy`.
    pub fn submit_access(
        &self,
        facts: AccessFacts,
        origin: Origin,
        answer: Answer<AccessDecision>,
    ) -> Result<(), Refused> {
        self.core.count_transport(&origin);
        let who = Who {
            nas_id: origin.nas.id,
            nas_name: &origin.nas.name,
            mac: facts.mac.as_deref(),
            username: &facts.username,
        };
        if let Some((scope, _wait)) = self.core.guard.check(&who, Instant::now(), unix_now()) {
            access::refuse_early(&self.core, &facts, origin, answer, scope);
            return Ok(());
        }
        if !self.core.take_nas_slot(&origin) {
            if let Answer::Packet(p) = &answer {
                p.port.forget(&p.key);
            }
            self.core.drop_request(
                Some(&origin.nas),
                origin.transport,
                answer.source(),
                DropReason::NasBusy,
                "this NAS's share of requests in flight is used up",
            );
            return Err(Refused::Overloaded);
        }
        let shard = access::shard(&facts.username, self.deciders.len());
        let job = AccessJob {
            facts,
            origin,
            answer,
        };
        self.deciders[shard].try_send(job).map_err(|e| {
            let job = e.into_inner();
            self.core.release_nas_slot(&job.origin);
            self.core
                .refuse(&job.origin, &job.answer, "too many requests in flight")
        })
    }

    /// The login guard's refusals held back from the auth log since the last
    /// call, summed up (see [`guard`]).
    pub fn take_guard_summaries(&self) -> Vec<guard::HeldSummary> {
        let held = self.core.guard.take_held(Instant::now());
        self.core
            .metrics
            .guard_devices
            .set(self.core.guard.tracked() as i64);
        held
    }

    /// Queue an accounting record; as [`RequestHandler::submit_access`].
    pub fn submit_accounting(
        &self,
        record: AcctRecord,
        origin: Origin,
        answer: Answer<()>,
    ) -> Result<(), Refused> {
        self.core.count_transport(&origin);
        let shard = accounting::shard(&record, self.writers.len());
        let job = AcctJob {
            record,
            origin,
            answer,
        };
        self.writers[shard].try_send(job).map_err(|e| {
            let job = e.into_inner();
            self.core
                .refuse(&job.origin, &job.answer, "accounting queue full")
        })
    }

    /// Decide one Access-Request, batched with whatever else is waiting.
    pub async fn decide(
        &self,
        facts: AccessFacts,
        origin: Origin,
    ) -> Result<AccessDecision, Refused> {
        let (tx, rx) = oneshot::channel();
        self.submit_access(facts, origin, Answer::Channel(tx))?;
        rx.await.unwrap_or(Err(Refused::Stopping))
    }

    /// Store one accounting record, group-committed with whatever else is
    /// waiting; `Ok` only once it is stored.
    pub async fn store_accounting(
        &self,
        record: AcctRecord,
        origin: Origin,
    ) -> Result<(), Refused> {
        let (tx, rx) = oneshot::channel();
        self.submit_accounting(record, origin, Answer::Channel(tx))?;
        rx.await.unwrap_or(Err(Refused::Stopping))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.core.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.core.metrics
    }

    /// The source addresses NASes last sent authenticated requests from
    /// (network-addressed NASes only), for the CoA worker.
    pub fn last_sources(&self) -> &Arc<crate::coa::LastSources> {
        &self.core.last_sources
    }

    /// Count and log a packet that gets no reply (see [`DropReason`]).
    pub fn drop_packet(
        &self,
        nas: Option<&Nas>,
        transport: Transport,
        source: SocketAddr,
        reason: DropReason,
        detail: &str,
    ) {
        self.core
            .drop_request(nas, transport, Some(source), reason, detail);
    }
}
