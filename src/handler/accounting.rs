//! Group commit for accounting: records queue per writer, each writer stores as
//! many as are waiting in one storage call, then acknowledges each of them —
//! an Accounting-Response packet or `Ok` through a channel. A record is
//! acknowledged only after the call returned (its transaction committed); if
//! storage fails, none of the batch is acknowledged and the NASes retry.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::isolate::{first_error, isolate};
use super::reply::accounting_reply;
use super::{unix_now, AcctJob, Answer, Core, Origin};
use crate::metrics::acct_index;
use crate::policy::{AcctRecord, AcctStatus};

/// Which writer a record goes to: all records of one session go to the same
/// writer, so a Stop is never stored before its Start.
pub(super) fn shard(record: &AcctRecord, writers: usize) -> usize {
    if writers <= 1 {
        return 0;
    }
    let mut h = DefaultHasher::new();
    record.nas_id.hash(&mut h);
    record.acct_session_id.hash(&mut h);
    (h.finish() % writers as u64) as usize
}

pub(super) fn spawn_writers(core: &Arc<Core>) -> (Vec<mpsc::Sender<AcctJob>>, Vec<JoinHandle<()>>) {
    let n = core.config.acct_writers.max(1);
    let per_writer = (core.config.acct_queue / n).max(16);
    let boots = Arc::new(Mutex::new(HashMap::new()));
    let mut senders = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel(per_writer);
        senders.push(tx);
        handles.push(tokio::spawn(writer(core.clone(), rx, boots.clone())));
    }
    (senders, handles)
}

/// What is left of a job once its record went into the batch.
struct Waiting {
    origin: Origin,
    answer: Answer<()>,
}

async fn writer(core: Arc<Core>, mut rx: mpsc::Receiver<AcctJob>, boots: Arc<Boots>) {
    let max = core.config.acct_batch_max.max(1);
    let mut waiting: Vec<Waiting> = Vec::with_capacity(max);
    let mut records: Vec<AcctRecord> = Vec::with_capacity(max);
    let mut reply_buf = Vec::with_capacity(64);
    while let Some(first) = rx.recv().await {
        records.clear();
        let mut next = Some(first);
        while let Some(job) = next {
            records.push(job.record);
            waiting.push(Waiting {
                origin: job.origin,
                answer: job.answer,
            });
            next = if waiting.len() < max {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        detect_reboots(&core, &records, &waiting, &boots).await;
        let t = Instant::now();
        // A record the database refuses fails alone; the rest of its batch is
        // stored and acknowledged (see `isolate`).
        let store: &dyn crate::store::Store = &*core.store;
        let outcomes = isolate(&records, |part| async move {
            store
                .record_accounting(part)
                .await
                .map(|()| vec![(); part.len()])
        })
        .await;
        let result = first_error(&outcomes);
        core.metrics.storage_call("record_accounting", t, &result);
        core.metrics
            .accounting_batch_size
            .observe(records.len() as f64);
        for ((w, record), outcome) in waiting.drain(..).zip(records.iter()).zip(outcomes) {
            if let Err(detail) = outcome {
                core.fail(&w.origin, w.answer, &detail);
                continue;
            }
            match w.answer {
                Answer::Packet(p) => {
                    core.last_sources.note(&w.origin.nas, p.source.ip());
                    let reply = accounting_reply(
                        std::mem::take(&mut reply_buf),
                        &p.echo,
                        p.signer.secret_of(&w.origin.nas),
                    );
                    // Cached before sending, so that a retransmission
                    // crossing the reply is answered from the cache
                    // rather than dropped.
                    p.port.answered(p.key, &reply);
                    let _ = p.port.socket.send_to(&reply, p.source).await;
                    reply_buf = reply;
                }
                Answer::Channel(tx) => {
                    let _ = tx.send(Ok(()));
                }
            }
            w.origin.counters.accounting[acct_index(record.status)].inc();
            core.metrics
                .accounting_duration
                .observe(w.origin.received.elapsed().as_secs_f64());
        }
    }
}

/// The most routers whose reboot counters are kept.
const MAX_ROUTERS: usize = 100_000;

/// Reboot counters last seen, per NAS entry and router within it.
pub(super) type Boots = Mutex<HashMap<(i64, String), String>>;

/// A Start whose Acct-Session-Id carries a new reboot counter means the router
/// restarted and its older sessions are gone (RouterOS hotspots do not send
/// Accounting-On reliably). Per router: an entry several routers share (a
/// network, or one NAT address) keeps a counter for each of them, told apart
/// by [`crate::model::Nas::router_key`], and a reboot closes only that
/// router's sessions.
async fn detect_reboots(core: &Core, records: &[AcctRecord], waiting: &[Waiting], boots: &Boots) {
    for (record, w) in records.iter().zip(waiting) {
        if record.status != AcctStatus::Start {
            continue;
        }
        let nas = &w.origin.nas;
        let Some(prefix) = boot_prefix(&record.acct_session_id) else {
            continue;
        };
        let changed = {
            let mut map = boots.lock().expect("boot map lock poisoned");
            let full = map.len() >= MAX_ROUTERS;
            match map.get_mut(&(nas.id, record.router.clone())) {
                Some(old) if old == prefix => false,
                Some(old) => {
                    prefix.clone_into(old);
                    true
                }
                // First Start seen since this process started: close sessions of
                // other boots too, in case the NAS rebooted while we were down.
                // A NAS inventing identities cannot grow the map without bound:
                // past the cap, new routers get no reboot detection.
                None if full => false,
                None => {
                    map.insert((nas.id, record.router.clone()), prefix.to_owned());
                    true
                }
            }
        };
        if changed {
            let t = Instant::now();
            let result = core
                .store
                .close_nas_sessions(
                    nas.id,
                    &record.router,
                    Some(prefix),
                    "nas-reboot",
                    unix_now(),
                )
                .await;
            core.metrics.storage_call("close_nas_sessions", t, &result);
            match result {
                Ok(n) if n > 0 => {
                    core.metrics
                        .sessions_closed
                        .with_label_values(&["nas-reboot"])
                        .inc_by(n);
                    tracing::info!(nas = %nas.name, router = ?record.router, closed = n, "NAS reboot detected: closed its older sessions");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(nas = %nas.name, error = %e, "closing sessions after NAS reboot failed")
                }
            }
        }
    }
}

/// RFC 2866 §5.5 suggests an 8-hex-digit Acct-Session-Id whose first two digits
/// count reboots (RouterOS follows it). Returns that reboot counter.
pub(super) fn boot_prefix(acct_session_id: &str) -> Option<&str> {
    if acct_session_id.len() == 8 && acct_session_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(&acct_session_id[..2])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_prefixes() {
        assert_eq!(boot_prefix("81a00005"), Some("81"));
        assert_eq!(boot_prefix("81A0000Z"), None);
        assert_eq!(boot_prefix("81a0000"), None);
        assert_eq!(boot_prefix("auth-123"), None);
    }
}
