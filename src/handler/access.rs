//! Access-Requests are decided in groups: each decider takes every request
//! waiting in its queue (up to `auth_batch_max`), decides them in one storage
//! call (`Store::authorize_batch`), then answers each — with a signed reply
//! packet or through a channel, whichever transport it came from. Requests for
//! one voucher always go to the same decider, so they are decided in arrival
//! order.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::reply::access_reply;
use super::{unix_now, AccessJob, Answer, Core, Origin};
use crate::policy::{AccessDecision, AccessFacts};

/// Which decider decides requests for `username`.
pub(super) fn shard(username: &str, deciders: usize) -> usize {
    if deciders <= 1 {
        return 0;
    }
    let mut h = DefaultHasher::new();
    username.hash(&mut h);
    (h.finish() % deciders as u64) as usize
}

pub(super) fn spawn_deciders(
    core: &Arc<Core>,
) -> (Vec<mpsc::Sender<AccessJob>>, Vec<JoinHandle<()>>) {
    let n = core.config.auth_workers.max(1);
    // The queues are the bound on work in flight: a full queue refuses.
    let per_decider = (core.config.max_in_flight / n).max(1);
    let mut senders = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel(per_decider);
        senders.push(tx);
        handles.push(tokio::spawn(decider(core.clone(), rx)));
    }
    (senders, handles)
}

/// What is left of a job once its facts went into the batch.
struct Waiting {
    origin: Origin,
    answer: Answer<AccessDecision>,
}

async fn decider(core: Arc<Core>, mut rx: mpsc::Receiver<AccessJob>) {
    let max = core.config.auth_batch_max.max(1);
    let mut waiting: Vec<Waiting> = Vec::with_capacity(max);
    let mut facts: Vec<AccessFacts> = Vec::with_capacity(max);
    let mut reply_buf = Vec::with_capacity(512);
    while let Some(first) = rx.recv().await {
        facts.clear();
        let mut next = Some(first);
        while let Some(job) = next {
            facts.push(job.facts);
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
        let t = Instant::now();
        let result = core
            .store
            .authorize_batch(&facts, unix_now(), core.config.authorize)
            .await;
        core.metrics.storage_call("authorize", t, &result);
        match result {
            Ok(decisions) => {
                core.metrics.access_batch_size.observe(facts.len() as f64);
                for ((w, mut decision), facts) in waiting.drain(..).zip(decisions).zip(facts.iter())
                {
                    if let AccessDecision::Accept(grant) = &mut decision {
                        crate::policy::with_default_interim(grant, core.config.default_interim);
                    }
                    record_outcome(&core, &w, facts, &decision);
                    match w.answer {
                        Answer::Packet(p) => {
                            core.last_sources.note(&w.origin.nas, p.source.ip());
                            let reply = access_reply(
                                std::mem::take(&mut reply_buf),
                                &p.echo,
                                &decision,
                                p.signer.secret_of(&w.origin.nas),
                                &p.mac_key,
                            );
                            // Cached before sending: a retransmission racing the
                            // reply must find the answer, not "in progress"
                            // (RFC 5080 §2.2.2).
                            p.port.answered(p.key, &reply);
                            let _ = p.port.socket.send_to(&reply, p.source).await;
                            reply_buf = reply;
                        }
                        Answer::Channel(tx) => {
                            let _ = tx.send(Ok(decision));
                        }
                    }
                    core.metrics
                        .access_duration
                        .observe(w.origin.received.elapsed().as_secs_f64());
                }
            }
            Err(e) => {
                let detail = e.to_string();
                for w in waiting.drain(..) {
                    core.fail(&w.origin, w.answer, &detail);
                }
            }
        }
    }
}

/// Count a decision under its NAS and log it (a reject at info, with its reason:
/// "why can't this customer log in?" is answered from the log too).
fn record_outcome(core: &Core, w: &Waiting, facts: &AccessFacts, decision: &AccessDecision) {
    let transport = match w.answer {
        Answer::Packet(_) => "udp",
        Answer::Channel(_) => "rest",
    };
    let (nas, counters) = (&w.origin.nas, &w.origin.counters);
    let (user, mac) = (facts.username.as_str(), facts.mac.as_deref());
    match decision {
        AccessDecision::Accept(grant) => {
            counters.accepts.inc();
            if grant.activation.is_some() {
                core.metrics.vouchers_activated.inc();
            }
            tracing::debug!(nas = %nas.name, user, mac, transport, "accept");
        }
        AccessDecision::Reject(reason) => {
            counters.rejects.inc();
            counters.reject_reason(*reason).inc();
            tracing::info!(nas = %nas.name, user, mac, reason = reason.label(), transport, "reject");
        }
    }
}
