//! Access-Requests are decided in groups: each worker takes every request waiting
//! in its queue (up to a limit), decides them in one storage transaction
//! (`Store::authorize_batch`), then answers each. Requests for one voucher always
//! go to the same worker, so they are decided in arrival order.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::drop_reason::DropReason;
use super::request::access_reply;
use super::{record_access_outcome, unix_now, Shared};
use crate::model::Nas;
use crate::policy::AccessFacts;
use crate::proto::{DedupKey, RequestEcho};

pub struct AccessJob {
    /// What storage decides on; moved into the batch, not copied.
    pub facts: AccessFacts,
    pub reply_to: ReplyTo,
}

/// What answering a request needs once it is decided.
pub struct ReplyTo {
    /// What the reply takes from the request, kept from its one decode.
    pub echo: RequestEcho,
    pub source: SocketAddr,
    pub key: DedupKey,
    pub nas: Arc<Nas>,
    /// The NAS's metrics, resolved when the table was loaded.
    pub counters: Arc<crate::metrics::NasCounters>,
    /// The NAS secret prepared for signing the reply.
    pub mac_key: crate::proto::MacKey,
    /// Which secret the request was made with; the reply uses the same.
    pub signer: super::Signer,
    pub received: Instant,
}

/// Which worker decides requests for `username`.
pub fn shard(username: &str, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let mut h = DefaultHasher::new();
    username.hash(&mut h);
    (h.finish() % workers as u64) as usize
}

pub(super) fn spawn_workers(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
) -> (Vec<mpsc::Sender<AccessJob>>, Vec<JoinHandle<()>>) {
    let n = shared.config.auth_workers.max(1);
    // The queues are the bound on work in flight: a full queue drops (the NAS retries).
    let per_worker = (shared.config.max_in_flight / n).max(1);
    let mut senders = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel(per_worker);
        senders.push(tx);
        handles.push(tokio::spawn(worker(shared.clone(), socket.clone(), rx)));
    }
    (senders, handles)
}

async fn worker(shared: Arc<Shared>, socket: Arc<UdpSocket>, mut rx: mpsc::Receiver<AccessJob>) {
    let max = shared.config.auth_batch_max.max(1);
    let mut jobs: Vec<ReplyTo> = Vec::with_capacity(max);
    let mut facts: Vec<AccessFacts> = Vec::with_capacity(max);
    let mut reply_buf = Vec::with_capacity(512);
    while let Some(first) = rx.recv().await {
        facts.clear();
        facts.push(first.facts);
        jobs.push(first.reply_to);
        while jobs.len() < max {
            match rx.try_recv() {
                Ok(j) => {
                    facts.push(j.facts);
                    jobs.push(j.reply_to);
                }
                Err(_) => break,
            }
        }
        let t = Instant::now();
        let result = shared
            .store
            .authorize_batch(&facts, unix_now(), shared.config.authorize)
            .await;
        shared.metrics.storage_call("authorize", t, &result);
        match result {
            Ok(decisions) => {
                for ((job, decision), facts) in
                    jobs.drain(..).zip(decisions.iter()).zip(facts.iter())
                {
                    let reply = access_reply(
                        std::mem::take(&mut reply_buf),
                        &job.echo,
                        decision,
                        job.signer.secret_of(&job.nas),
                        &job.mac_key,
                    );
                    // Cached before sending: a retransmission racing the reply
                    // must find the answer, not "in progress" (RFC 5080 §2.2.2).
                    shared.answered(false, job.key, &reply);
                    let _ = socket.send_to(&reply, job.source).await;
                    reply_buf = reply;
                    record_access_outcome(
                        &shared,
                        &job.nas,
                        &job.counters,
                        &facts.username,
                        facts.mac.as_deref(),
                        decision,
                    );
                    shared
                        .metrics
                        .access_duration
                        .observe(job.received.elapsed().as_secs_f64());
                }
            }
            Err(e) => {
                let detail = e.to_string();
                for job in jobs.drain(..) {
                    shared.forget(false, &job.key);
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
