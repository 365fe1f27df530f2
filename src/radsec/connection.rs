//! One RadSec connection: the TLS handshake, the NAS its certificate names,
//! then packets read by their Length field and handed to the request
//! handler; replies go out through one writer task, in the order they are ready.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::framing::{packet_len, HEADER_LEN};
use super::{Close, Handshake, Shared, Slot};
use crate::handler::{
    access_reply, accounting_reply, status_reply, DropReason, Origin, Signer, Transport,
};
use crate::metrics::UNKNOWN_NAS;
use crate::proto::{Code, DedupKey, DuplicateCache, MacKey, Packet, RequestEcho, Seen};
use crate::server::request::{access_facts, acct_record};
use crate::server::{unix_now, verify_request, CertificateNames, NasEntry, NasTable};

/// How often a connection checks that its NAS entry still exists.
const NAS_CHECK: Duration = Duration::from_millis(250);

/// Most time a reply may wait for the peer to take it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most time to answer what is in flight when the server stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Which handshake failures are the client certificate's fault.
fn classify(e: &std::io::Error) -> Handshake {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            Handshake::BadCertificate
        }
        _ => Handshake::Failed,
    }
}

/// Counts an open connection for as long as it lives.
struct OpenGauge(prometheus::IntGauge);

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
    stop: watch::Receiver<bool>,
) {
    let handshakes = |r: Handshake| {
        shared
            .metrics
            .radsec_handshakes
            .with_label_values(&[r.label()])
            .inc();
    };
    let acceptor = TlsAcceptor::from(shared.tls.current());
    let tls = match tokio::time::timeout(shared.limits.handshake_timeout, acceptor.accept(tcp))
        .await
    {
        Err(_) => {
            handshakes(Handshake::Timeout);
            tracing::debug!(%peer, "RadSec handshake timed out");
            return;
        }
        Ok(Err(e)) => {
            let result = classify(&e);
            handshakes(result);
            // A wrong certificate is an operator's mistake worth seeing (at
            // most 20 lines a second); other failures are scanners and noise.
            // The error is a field value: the log format quotes and escapes it.
            if result == Handshake::BadCertificate && shared.refusal_log.allow().is_some() {
                tracing::warn!(%peer, error = e.to_string().as_str(), "RadSec client certificate refused");
            } else {
                tracing::debug!(%peer, error = e.to_string().as_str(), "RadSec handshake failed");
            }
            return;
        }
        Ok(Ok(s)) => s,
    };
    let names = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| super::tls::certificate_names(c));
    let table = shared.nas_table();
    let found = names
        .as_ref()
        .and_then(|n| table.by_certificate(n).map(|e| e.nas.clone()));
    let (Some(names), Some(nas)) = (names, found) else {
        handshakes(Handshake::UnknownNas);
        shared
            .metrics
            .drops
            .with_label_values(&[UNKNOWN_NAS, DropReason::UnknownNas.label()])
            .inc();
        let mut tls = tls;
        if shared.refusal_log.allow().is_none() {
            let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
            return;
        }
        tracing::warn!(
            %peer,
            transport = "radsec",
            // Logged as a field: the text format quotes and escapes it.
            certificate = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| super::tls::certificate_names(c))
                .and_then(|n| n.common_name)
                .as_deref(),
            "RadSec certificate matches no NAS entry; connection closed (bind one with `nas add --radsec-cn`)"
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
        return;
    };
    handshakes(Handshake::Ok);
    shared.metrics.radsec_connections_open.inc();
    let _open = OpenGauge(shared.metrics.radsec_connections_open.clone());
    tracing::info!(%peer, nas = %nas.name, "RadSec connection");

    let (reader, mut writer) = tokio::io::split(tls);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(shared.limits.max_in_flight + 16);
    let write_shared = shared.clone();
    let write_task = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&reply)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    write_shared.closed(Close::WriteTimeout);
                    return;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
    });
    let conn = Conn {
        shared: shared.clone(),
        peer,
        names,
        table,
        nas_id: nas.id,
        replies: tx,
        in_flight: Arc::new(Semaphore::new(shared.limits.max_in_flight)),
        dedup: Arc::new(Mutex::new(DuplicateCache::new(
            shared.limits.dedup_lifetime,
            (shared.limits.max_in_flight * 8).max(256),
        ))),
    };
    let ended = conn.read_loop(reader, stop).await;
    if let Some(reason) = ended {
        shared.closed(reason);
        tracing::info!(%peer, nas = %nas.name, reason = reason.label(), "RadSec connection closed");
    }
    // Answer what is in flight (the writer ends when the last reply sender,
    // held by those requests, is gone), but not forever.
    let _ = tokio::time::timeout(DRAIN, write_task).await;
}

/// A connection after its handshake.
struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// The client certificate's names, to find its NAS entry in a reloaded table.
    names: CertificateNames,
    /// The table the NAS entry is read from; replaced when the table is reloaded.
    table: Arc<NasTable>,
    /// The NAS entry's id; a reloaded table naming another one closes the connection.
    nas_id: i64,
    /// Replies to the writer task.
    replies: mpsc::Sender<Vec<u8>>,
    /// Requests being decided or stored, at most `max_in_flight`.
    in_flight: Arc<Semaphore>,
    /// Retransmissions on this connection (RFC 5080 §2.2.2). std Mutex: never
    /// held across an await.
    dedup: Arc<Mutex<DuplicateCache>>,
}

impl Conn {
    /// Read and handle packets until the peer closes, a limit is hit, the NAS
    /// goes away or the server stops; the reason when the server closed it.
    async fn read_loop(
        mut self,
        mut reader: impl AsyncRead + Unpin,
        mut stop: watch::Receiver<bool>,
    ) -> Option<Close> {
        let mut buf = vec![0u8; 2 * crate::proto::MAX_PACKET_LEN];
        let mut filled = 0usize;
        let idle = self.shared.limits.idle_timeout;
        let mut deadline = tokio::time::Instant::now() + idle;
        let mut check = tokio::time::interval(NAS_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Every complete packet in the buffer first.
            while filled >= HEADER_LEN {
                let header: [u8; HEADER_LEN] = buf[..HEADER_LEN].try_into().expect("4 bytes");
                let len = match packet_len(&header) {
                    Ok(len) => len,
                    Err(bad) => {
                        self.drop_packet(DropReason::Malformed, "bad Length field; closing");
                        tracing::debug!(peer = %self.peer, length = bad.0, "RadSec framing error");
                        return Some(Close::BadLength);
                    }
                };
                if filled < len {
                    break;
                }
                self.handle(&buf[..len]);
                buf.copy_within(len..filled, 0);
                filled -= len;
                deadline = tokio::time::Instant::now() + idle;
            }
            // `read` is cancel-safe: a branch below winning loses no byte.
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Some(Close::Shutdown),
                _ = check.tick() => {
                    if !self.nas_still_bound() {
                        return Some(Close::NasRemoved);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Some(Close::IdleTimeout),
                r = reader.read(&mut buf[filled..]) => match r {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => filled += n,
                },
            }
        }
    }

    /// Follow a reloaded NAS table; `false` when it no longer binds this
    /// certificate to the same NAS entry.
    fn nas_still_bound(&mut self) -> bool {
        let current = self.shared.nas_table();
        if Arc::ptr_eq(&current, &self.table) {
            return true;
        }
        match current.by_certificate(&self.names) {
            Some(e) if e.id == self.nas_id => {
                self.table = current;
                true
            }
            _ => {
                tracing::info!(peer = %self.peer, "RadSec NAS entry removed or re-bound");
                false
            }
        }
    }

    /// The NAS entry; always there, for the table is only taken when it
    /// binds the certificate (handshake, `nas_still_bound`).
    fn entry(&self) -> Option<&NasEntry> {
        self.table.by_certificate(&self.names)
    }

    fn drop_packet(&self, reason: DropReason, detail: &str) {
        self.shared.handler.drop_packet(
            self.entry().map(|e| &*e.nas),
            Transport::RadSec,
            self.peer,
            reason,
            detail,
        );
    }

    /// One packet, framed. Work that waits for storage goes to its own task.
    fn handle(&self, bytes: &[u8]) {
        let received = Instant::now();
        let Some(entry) = self.entry() else {
            return self.drop_packet(DropReason::UnknownNas, "NAS entry gone");
        };
        let packet = match Packet::decode(bytes) {
            Ok(p) => p,
            Err(e) => return self.drop_packet(DropReason::Malformed, e.label()),
        };
        let code = packet.code();
        if !matches!(
            code,
            Code::StatusServer | Code::AccessRequest | Code::AccountingRequest
        ) {
            return self.drop_packet(DropReason::UnexpectedCode, code.name());
        }
        let now_s = unix_now();
        let signer = match verify_request(entry, &packet, now_s) {
            Ok(s) => s,
            Err((reason, detail)) => return self.drop_packet(reason, detail),
        };
        entry.counters.last_seen.set(now_s);
        // CoA/Disconnect go over UDP to where the router last spoke from
        // (unless the entry has --coa-address).
        self.shared
            .handler
            .last_sources()
            .note(&entry.nas, self.peer.ip());
        let key = DedupKey {
            source: self.peer,
            identifier: packet.identifier(),
            authenticator: *packet.authenticator(),
        };
        let seen = {
            let mut cache = self.dedup.lock().expect("dedup lock poisoned");
            match cache.check(key, received) {
                Seen::New => None,
                Seen::Answered(reply) => Some(Ok(reply.to_vec())),
                Seen::InProgress => Some(Err(())),
            }
        };
        match seen {
            None => {}
            Some(Ok(reply)) => {
                entry.counters.duplicates.inc();
                let _ = self.replies.try_send(reply);
                return;
            }
            Some(Err(())) => {
                return self.drop_packet(DropReason::DuplicateInProgress, code.name());
            }
        }
        let secret = entry.secret_for(signer);
        let mac_key = entry.key_for(signer);
        if code == Code::StatusServer {
            // RFC 6614 §2.6 / RFC 5997 §4.2: Access-Accept, whichever port.
            let reply = status_reply(Vec::with_capacity(64), &packet, false, secret, mac_key);
            self.answered(key, reply);
            entry.counters.status_answered.inc();
            self.shared
                .metrics
                .status_duration
                .observe(received.elapsed().as_secs_f64());
            return;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            self.forget(&key);
            return self.drop_packet(
                DropReason::Overload,
                "this connection's requests in flight are at the cap",
            );
        };
        let origin = Origin {
            nas: entry.nas.clone(),
            transport: Transport::RadSec,
            counters: entry.counters.clone(),
            received,
        };
        let reply = Reply {
            key,
            echo: RequestEcho::of(&packet),
            signer,
            mac_key: mac_key.clone(),
            replies: self.replies.clone(),
            dedup: self.dedup.clone(),
        };
        let handler = self.shared.handler.clone();
        if code == Code::AccessRequest {
            let facts = match access_facts(&packet, &entry.nas, self.peer.ip(), secret) {
                Ok(f) => f,
                Err((reason, detail)) => {
                    self.forget(&key);
                    return self.drop_packet(reason, detail);
                }
            };
            tokio::spawn(async move {
                let nas = origin.nas.clone();
                let decided = handler.decide(facts, origin).await;
                match decided {
                    Ok(decision) => {
                        let secret = reply.signer.secret_of(&nas);
                        match access_reply(
                            Vec::with_capacity(256),
                            &reply.echo,
                            &decision,
                            secret,
                            &reply.mac_key,
                        ) {
                            Ok(bytes) => reply.send(bytes),
                            Err(_) => reply.forget(),
                        }
                    }
                    // Counted by the handler (overload, storage error).
                    Err(_) => reply.forget(),
                }
                drop(permit);
            });
        } else {
            let record = match acct_record(&packet, &entry.nas, self.peer.ip(), unix_now()) {
                Ok(r) => r,
                Err((reason, detail)) => {
                    self.forget(&key);
                    return self.drop_packet(reason, detail);
                }
            };
            tokio::spawn(async move {
                let nas = origin.nas.clone();
                // The Accounting-Response goes only once the record is stored.
                match handler.store_accounting(record, origin).await {
                    Ok(()) => {
                        let bytes = accounting_reply(
                            Vec::with_capacity(64),
                            &reply.echo,
                            reply.signer.secret_of(&nas),
                        );
                        reply.send(bytes);
                    }
                    Err(_) => reply.forget(),
                }
                drop(permit);
            });
        }
    }

    fn answered(&self, key: DedupKey, reply: Vec<u8>) {
        self.dedup
            .lock()
            .expect("dedup lock poisoned")
            .answered(key, reply.clone());
        let _ = self.replies.try_send(reply);
    }

    fn forget(&self, key: &DedupKey) {
        self.dedup.lock().expect("dedup lock poisoned").forget(key);
    }
}

/// What answering one request needs once it is decided or stored.
struct Reply {
    key: DedupKey,
    echo: RequestEcho,
    signer: Signer,
    mac_key: MacKey,
    replies: mpsc::Sender<Vec<u8>>,
    dedup: Arc<Mutex<DuplicateCache>>,
}

impl Reply {
    /// Keep the reply for retransmissions, then send it.
    fn send(self, bytes: Vec<u8>) {
        self.dedup
            .lock()
            .expect("dedup lock poisoned")
            .answered(self.key, bytes.clone());
        // Room for every request in flight is reserved in the channel; a
        // connection already closing just loses it.
        let _ = self.replies.try_send(bytes);
    }

    /// No reply: a retransmission is worked on afresh.
    fn forget(self) {
        self.dedup
            .lock()
            .expect("dedup lock poisoned")
            .forget(&self.key);
    }
}
