//! Group commit for accounting: records queue per writer, each writer stores as
//! many as are waiting in one transaction, then answers each of them. A record
//! is acknowledged only after its transaction commits; if storage fails, none of
//! the batch is answered and the NASes retry.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::drop_reason::DropReason;
use super::request::{accounting_reply, boot_prefix};
use super::{unix_now, Shared};
use crate::metrics::acct_index;
use crate::model::Nas;
use crate::proto::{DedupKey, RequestEcho};
use crate::store::{AcctRecord, AcctStatus};

pub struct AcctJob {
    /// What storage keeps; moved into the batch, not copied.
    pub record: AcctRecord,
    pub reply_to: ReplyTo,
}

/// What answering a record needs once it is stored.
pub struct ReplyTo {
    /// What the reply takes from the request, kept from its one decode.
    pub echo: RequestEcho,
    pub source: SocketAddr,
    pub key: DedupKey,
    pub nas: Arc<Nas>,
    /// The NAS's metrics, resolved when the table was loaded.
    pub counters: Arc<crate::metrics::NasCounters>,
    /// Which secret the request was made with; the reply uses the same.
    pub signer: super::Signer,
    pub received: Instant,
}

/// Which writer a record goes to: all records of one session go to the same
/// writer, so a Stop is never stored before its Start.
pub fn shard(record: &AcctRecord, writers: usize) -> usize {
    if writers <= 1 {
        return 0;
    }
    let mut h = DefaultHasher::new();
    record.nas_id.hash(&mut h);
    record.acct_session_id.hash(&mut h);
    (h.finish() % writers as u64) as usize
}

pub(super) fn spawn_writers(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
) -> (Vec<mpsc::Sender<AcctJob>>, Vec<JoinHandle<()>>) {
    let n = shared.config.acct_writers.max(1);
    let per_writer = (shared.config.acct_queue / n).max(16);
    let boots = Arc::new(Mutex::new(HashMap::new()));
    let mut senders = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel(per_writer);
        senders.push(tx);
        handles.push(tokio::spawn(writer(
            shared.clone(),
            socket.clone(),
            rx,
            boots.clone(),
        )));
    }
    (senders, handles)
}

async fn writer(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    mut rx: mpsc::Receiver<AcctJob>,
    boots: Arc<Mutex<HashMap<i64, String>>>,
) {
    let max = shared.config.acct_batch_max.max(1);
    let mut batch: Vec<ReplyTo> = Vec::with_capacity(max);
    let mut records: Vec<AcctRecord> = Vec::with_capacity(max);
    let mut reply_buf = Vec::with_capacity(64);
    while let Some(first) = rx.recv().await {
        records.clear();
        records.push(first.record);
        batch.push(first.reply_to);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(j) => {
                    records.push(j.record);
                    batch.push(j.reply_to);
                }
                Err(_) => break,
            }
        }
        detect_reboots(&shared, &records, &batch, &boots).await;
        let t = Instant::now();
        let result = shared.store.record_accounting(&records).await;
        shared.metrics.storage_call("record_accounting", t, &result);
        match result {
            Ok(()) => {
                shared
                    .metrics
                    .accounting_batch_size
                    .observe(batch.len() as f64);
                for (job, record) in batch.drain(..).zip(records.iter()) {
                    let reply = accounting_reply(
                        std::mem::take(&mut reply_buf),
                        &job.echo,
                        job.signer.secret_of(&job.nas),
                    );
                    // Cached before sending, so that a retransmission crossing
                    // the reply is answered from the cache rather than dropped.
                    shared.answered(true, job.key, &reply);
                    let _ = socket.send_to(&reply, job.source).await;
                    reply_buf = reply;
                    job.counters.accounting[acct_index(record.status)].inc();
                    shared
                        .metrics
                        .accounting_duration
                        .observe(job.received.elapsed().as_secs_f64());
                }
            }
            Err(e) => {
                let detail = e.to_string();
                for job in batch.drain(..) {
                    shared.forget(true, &job.key);
                    shared.drop_packet(
                        Some(&job.nas),
                        job.source,
                        DropReason::StorageError,
                        &detail,
                    );
                }
            }
        }
    }
}

/// A Start whose Acct-Session-Id carries a new reboot counter means the NAS
/// restarted and its older sessions are gone (RouterOS hotspots do not send
/// Accounting-On reliably). Only for NAS entries that are a single host: a CIDR
/// entry can cover several routers with different counters.
async fn detect_reboots(
    shared: &Shared,
    records: &[AcctRecord],
    batch: &[ReplyTo],
    boots: &Mutex<HashMap<i64, String>>,
) {
    for (record, job) in records.iter().zip(batch) {
        if record.status != AcctStatus::Start {
            continue;
        }
        let single_host = job.nas.address.prefix
            == if job.nas.address.addr.is_ipv4() {
                32
            } else {
                128
            };
        if !single_host {
            continue;
        }
        let Some(prefix) = boot_prefix(&record.acct_session_id) else {
            continue;
        };
        let changed = {
            let mut map = boots.lock().expect("boot map lock poisoned");
            match map.insert(job.nas.id, prefix.to_string()) {
                Some(old) => old != prefix,
                // First Start seen since this process started: close sessions of
                // other boots too, in case the NAS rebooted while we were down.
                None => true,
            }
        };
        if changed {
            let t = Instant::now();
            let result = shared
                .store
                .close_nas_sessions(job.nas.id, Some(prefix), "nas-reboot", unix_now())
                .await;
            shared
                .metrics
                .storage_call("close_nas_sessions", t, &result);
            match result {
                Ok(n) if n > 0 => {
                    shared
                        .metrics
                        .sessions_closed
                        .with_label_values(&["nas-reboot"])
                        .inc_by(n);
                    tracing::info!(nas = %job.nas.name, closed = n, "NAS reboot detected: closed its older sessions");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(nas = %job.nas.name, error = %e, "closing sessions after NAS reboot failed")
                }
            }
        }
    }
}
