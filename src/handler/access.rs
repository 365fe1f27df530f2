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

use super::guard::{Scope, Started, Who};
use super::isolate::{first_error, isolate};
use super::reply::access_reply;
use super::{unix_now, AccessJob, Answer, Core, DropReason, Origin, PacketReply};
use crate::policy::{AccessDecision, AccessFacts, RejectReason};

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
    let delayed = (!core.config.guard.reject_delay.is_zero()).then(delayed_rejects);
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
        let now = unix_now();
        let opts = core.config.authorize;
        let store: &dyn crate::store::Store = &*core.store;
        let outcomes = isolate(&facts, |part| store.authorize_batch(part, now, opts)).await;
        let result = first_error(&outcomes);
        core.metrics.storage_call("authorize", t, &result);
        core.metrics.access_batch_size.observe(facts.len() as f64);
        let decided_at = Instant::now();
        for ((w, outcome), facts) in waiting.drain(..).zip(outcomes).zip(facts.iter()) {
            let mut decision = match outcome {
                Ok(d) => d,
                Err(detail) => {
                    core.fail(&w.origin, w.answer, &detail);
                    core.release_nas_slot(&w.origin);
                    continue;
                }
            };
            if let AccessDecision::Accept(grant) = &mut decision {
                crate::policy::with_default_interim(grant, core.config.default_interim);
            }
            record_outcome(&core, &w, facts, &decision);
            guard_learns(&core, &w.origin, facts, &decision, decided_at);
            match w.answer {
                Answer::Packet(p) => {
                    core.last_sources.note(&w.origin.nas, p.source.ip());
                    match access_reply(
                        std::mem::take(&mut reply_buf),
                        &p.echo,
                        &decision,
                        p.signer.secret_of(&w.origin.nas),
                        &p.mac_key,
                    ) {
                        Ok(reply) => {
                            let is_reject = matches!(decision, AccessDecision::Reject(_));
                            match (&delayed, is_reject) {
                                (Some(queue), true) => {
                                    if let Err(back) = queue.try_send(Delayed {
                                        due: decided_at + core.config.guard.reject_delay,
                                        reply,
                                        to: p,
                                    }) {
                                        // Too many waiting: this one goes now.
                                        let d = back.into_inner();
                                        send_reply(&d.to, &d.reply).await;
                                    }
                                    reply_buf = Vec::with_capacity(512);
                                }
                                _ => {
                                    send_reply(&p, &reply).await;
                                    reply_buf = reply;
                                }
                            }
                        }
                        Err(too_long) => {
                            reply_buf = too_long.buf;
                            p.port.forget(&p.key);
                            core.drop_request(
                                Some(&w.origin.nas),
                                w.origin.transport,
                                Some(p.source),
                                DropReason::ReplyTooLong,
                                "the request's Proxy-State leaves no room for the reply",
                            );
                        }
                    }
                }
                Answer::Channel(tx) => {
                    let _ = tx.send(Ok(decision));
                }
            }
            core.release_nas_slot(&w.origin);
            core.metrics
                .access_duration
                .observe(w.origin.received.elapsed().as_secs_f64());
        }
    }
}

/// Cache a reply for retransmissions, then send it. Cached first: a
/// retransmission racing the reply must find the answer, not "in progress"
/// (RFC 5080 §2.2.2).
async fn send_reply(p: &PacketReply, reply: &[u8]) {
    p.port.answered(p.key, reply);
    let _ = p.port.socket.send_to(reply, p.source).await;
}

/// A reject held back by `reject_delay`.
struct Delayed {
    due: Instant,
    reply: Vec<u8>,
    to: PacketReply,
}

/// Most rejects held back at once; past that they are sent at once, so a
/// flood cannot grow this queue without bound.
const MAX_DELAYED: usize = 4096;

/// A task that sends each reject when its delay is over. The delay is the same
/// for all, so they are due in the order they come.
fn delayed_rejects() -> mpsc::Sender<Delayed> {
    let (tx, mut rx) = mpsc::channel::<Delayed>(MAX_DELAYED);
    tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            tokio::time::sleep_until(d.due.into()).await;
            send_reply(&d.to, &d.reply).await;
        }
    });
    tx
}

/// Refuse a request the login guard stopped: a Reject saying to wait, sent at
/// once from the caller's task, with no storage work and no auth-log row of its
/// own (the guard sums them up).
pub(super) fn refuse_early(
    core: &Core,
    facts: &AccessFacts,
    origin: Origin,
    answer: Answer<AccessDecision>,
    scope: Scope,
) {
    let reason = RejectReason::TooManyFailures;
    let decision = AccessDecision::Reject(reason);
    origin.counters.rejects.inc();
    origin.counters.reject_reason(reason).inc();
    core.metrics
        .guard_refused
        .with_label_values(&[&origin.nas.name, scope.label()])
        .inc();
    if let Some(suppressed) = core.reject_log.allow() {
        log_suppressed(suppressed);
        tracing::info!(
            nas = %origin.nas.name,
            user = facts.username.as_str(),
            mac = facts.mac.as_deref(),
            reason = reason.label(),
            guard = scope.label(),
            "reject"
        );
    }
    match answer {
        Answer::Packet(p) => {
            if let Ok(reply) = access_reply(
                Vec::with_capacity(128),
                &p.echo,
                &decision,
                p.signer.secret_of(&origin.nas),
                &p.mac_key,
            ) {
                // A full socket buffer drops it; the NAS retries and is refused again.
                let _ = p.port.socket.try_send_to(&reply, p.source);
            }
            // Not kept for retransmissions: refusing again costs as little as
            // answering from the cache, and a guessing flood then takes no room
            // there.
            p.port.forget(&p.key);
        }
        Answer::Channel(tx) => {
            let _ = tx.send(Ok(decision));
        }
    }
    core.metrics
        .access_duration
        .observe(origin.received.elapsed().as_secs_f64());
}

/// Tell the login guard how a decided request went, and log a block it starts.
fn guard_learns(
    core: &Core,
    origin: &Origin,
    facts: &AccessFacts,
    decision: &AccessDecision,
    now: Instant,
) {
    let failed = match decision {
        AccessDecision::Accept(_) => Some(false),
        AccessDecision::Reject(r) if r.is_guess() => Some(true),
        AccessDecision::Reject(_) => None,
    };
    let who = Who {
        nas_id: origin.nas.id,
        nas_name: &origin.nas.name,
        mac: facts.mac.as_deref(),
        username: &facts.username,
    };
    for started in core.guard.record(&who, failed, now) {
        match started {
            Started::DeviceBlock(block) => {
                core.metrics
                    .guard_started
                    .with_label_values(&["device"])
                    .inc();
                if let Some(suppressed) = core.reject_log.allow() {
                    log_suppressed(suppressed);
                    tracing::warn!(
                        nas = %origin.nas.name,
                        mac = facts.mac.as_deref(),
                        user = facts.username.as_str(),
                        block_seconds = block.as_secs(),
                        "login guard: too many failed logins from one device; blocked"
                    );
                }
            }
            Started::NasGuard => {
                core.metrics.guard_started.with_label_values(&["nas"]).inc();
                tracing::warn!(
                    nas = %origin.nas.name,
                    "login guard: too many failed logins at this NAS; devices that failed are refused and new ones rationed"
                );
            }
        }
    }
}

fn log_suppressed(suppressed: u64) {
    if suppressed > 0 {
        tracing::warn!(
            suppressed,
            "reject log lines suppressed by the rate limit; rrnet_radius_rejects_total counts every reject"
        );
    }
}

/// Count a decision under its NAS and log it (a reject at info, with its reason:
/// "why can't this customer log in?" is answered from the log too; rate-limited,
/// the auth log keeps every decision).
fn record_outcome(core: &Core, w: &Waiting, facts: &AccessFacts, decision: &AccessDecision) {
    let transport = w.origin.transport.label();
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
            if let Some(suppressed) = core.reject_log.allow() {
                log_suppressed(suppressed);
                tracing::info!(nas = %nas.name, user, mac, reason = reason.label(), transport, "reject");
            }
        }
    }
}
