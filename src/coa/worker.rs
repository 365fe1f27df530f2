//! The server's side of CoA: poll the `coa_requests` table, send what is
//! waiting, record each outcome. The table is written in the transaction that
//! calls for a request — a revoke (possibly by the CLI, another process), an
//! accounting batch that used a quota up, a plan change — so nothing is lost
//! between the decision and the send, and a server that restarts sends what
//! was pending (or in flight: a claim older than [`RECLAIM_AFTER`] is taken
//! again).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::client::{CoaClient, Outcome};
use super::metrics::CoaMetrics;
use super::packet::CoaKind;
use super::{coa_target, session_ident, session_router, LastSources};
use crate::handler::unix_now;
use crate::model::{Nas, SessionState};
use crate::policy::{change_for_session, SessionChange};
use crate::store::{CoaRequest, Store};

/// How often the table is polled: a revoke reaches the router within about
/// this much plus one round trip.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A claim older than this (seconds) is taken to belong to a server that
/// stopped mid-exchange, and is sent again. Longer than one exchange (7 s).
pub const RECLAIM_AFTER: i64 = 30;

/// Requests claimed per poll, at most.
const CLAIM_BATCH: u32 = 64;

/// The CoA worker: one per server process.
pub struct CoaWorker {
    pub store: Arc<dyn Store>,
    pub client: Arc<CoaClient>,
    pub metrics: CoaMetrics,
    pub sources: Arc<LastSources>,
    pub poll: Duration,
    /// Exchanges in flight at once (each holds a socket for up to 7 s).
    pub max_in_flight: usize,
}

impl CoaWorker {
    pub fn new(
        store: Arc<dyn Store>,
        client: Arc<CoaClient>,
        metrics: CoaMetrics,
        sources: Arc<LastSources>,
    ) -> CoaWorker {
        CoaWorker {
            store,
            client,
            metrics,
            sources,
            poll: POLL_INTERVAL,
            max_in_flight: super::DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// Poll and send until `stop` turns true; exchanges in flight then get
    /// up to 2 s to finish (the rest are sent again after a restart).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let worker = Arc::new(self);
        let mut tick = tokio::time::interval(worker.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running: JoinSet<()> = JoinSet::new();
        let mut nas_cache = NasCache::default();
        // Polls that failed in a row: a database that is down is logged at the
        // first failure and then once a minute, not twice a second.
        let mut failing: u32 = 0;
        let log_every = (60_000 / worker.poll.as_millis().max(1)).max(1) as u32;
        if *stop.borrow() {
            return;
        }
        loop {
            tokio::select! {
                biased;
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tick.tick() => {
                    let room = worker.max_in_flight.saturating_sub(running.len());
                    if room == 0 {
                        continue;
                    }
                    let now = unix_now();
                    let claimed = worker
                        .store
                        .claim_coa_requests(now, (room as u32).min(CLAIM_BATCH), now - RECLAIM_AFTER)
                        .await;
                    let requests = match claimed {
                        Ok(r) => {
                            if failing > 0 {
                                tracing::info!(failed_polls = failing, "reading the CoA queue works again");
                            }
                            failing = 0;
                            r
                        }
                        Err(e) => {
                            if failing.is_multiple_of(log_every) {
                                tracing::warn!(error = %e, failed_polls = failing + 1, "reading the CoA queue failed; requests wait in the database");
                            }
                            failing = failing.saturating_add(1);
                            continue;
                        }
                    };
                    if requests.is_empty() {
                        continue;
                    }
                    let nas = match nas_cache.get(worker.store.as_ref()).await {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the NAS table for CoA failed");
                            continue;
                        }
                    };
                    for request in requests {
                        let w = worker.clone();
                        let nas = nas.get(&request.session.nas_id).cloned();
                        running.spawn(async move { w.handle(request, nas).await });
                    }
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while running.join_next().await.is_some() {}
        })
        .await;
    }

    /// Send one queued request and record its outcome.
    async fn handle(&self, request: CoaRequest, nas: Option<Arc<Nas>>) {
        let session = &request.session;
        let Some(nas) = nas else {
            // The session's NAS was removed (its sessions go with it) or the
            // table is behind; nothing to send to.
            self.finish(&request, None, "nas-unknown", "unreachable", "")
                .await;
            return;
        };
        if session.state == SessionState::Closed {
            // Ended before the request went out (a Stop, the stale sweep).
            self.finish(&request, Some(&nas), "session-closed", "skipped", "")
                .await;
            return;
        }
        // A network entry's session knows its router's address; else the
        // entry's latest source.
        let source = session_router(&nas, session).or_else(|| self.sources.get(nas.id));
        let Some(target) = coa_target(&nas, source) else {
            tracing::warn!(
                nas = %nas.name,
                kind = request.kind.label(),
                reason = %request.reason,
                user = ?session.username,
                acct_session_id = ?session.acct_session_id,
                "no CoA address for this NAS: it is a network and has sent nothing since the server started; set one with `nas set NAME --coa-address IP`"
            );
            self.finish(&request, Some(&nas), "unreachable", "unreachable", "")
                .await;
            return;
        };
        let now = unix_now();
        let mut kind = request.kind;
        let mut changes = Vec::new();
        if kind == CoaKind::Coa {
            // The new limits come from the voucher and plan as they are now.
            match self.voucher_and_plan(session.voucher_id).await {
                Some((voucher, plan)) => {
                    match change_for_session(&plan, &voucher, session.session_time, now) {
                        SessionChange::End => kind = CoaKind::Disconnect,
                        SessionChange::Limits(c) => changes = c,
                    }
                }
                None => {
                    self.finish(&request, Some(&nas), "voucher-unknown", "skipped", "")
                        .await;
                    return;
                }
            }
            if kind == CoaKind::Coa && changes.is_empty() {
                self.finish(&request, Some(&nas), "nothing-to-change", "skipped", "")
                    .await;
                return;
            }
        }
        let exchange = self
            .client
            .send(target, kind, &session_ident(session), &changes, &nas.secret)
            .await;
        for bad in &exchange.bad_answers {
            tracing::warn!(nas = %nas.name, %target, reason = bad.label(), detail = %bad, "CoA answer dropped");
        }
        if exchange.bad_answer_count > 0 {
            // Count every one, whichever were kept for the log.
            let label = exchange.bad_answers.first().map_or("other", |b| b.label());
            self.metrics
                .bad_answers
                .with_label_values(&[&nas.name, label])
                .inc_by(exchange.bad_answer_count as u64);
        }
        let outcome = &exchange.outcome;
        let described = outcome.describe(kind);
        match outcome {
            Outcome::Ack => tracing::info!(
                nas = %nas.name, %target, kind = kind.label(), reason = %request.reason,
                user = ?session.username, acct_session_id = ?session.acct_session_id,
                result = outcome.label(), tries = exchange.tries, "CoA outcome"
            ),
            Outcome::Nak(_) => tracing::warn!(
                nas = %nas.name, %target, kind = kind.label(), reason = %request.reason,
                user = ?session.username, acct_session_id = ?session.acct_session_id,
                result = outcome.label(), error_cause = outcome.error_cause(),
                tries = exchange.tries, "CoA outcome"
            ),
            Outcome::Timeout => tracing::warn!(
                nas = %nas.name, %target, kind = kind.label(), reason = %request.reason,
                user = ?session.username, acct_session_id = ?session.acct_session_id,
                result = outcome.label(), tries = exchange.tries, "CoA outcome: no answer"
            ),
            Outcome::Failed(why) => tracing::warn!(
                nas = %nas.name, %target, kind = kind.label(), reason = %request.reason,
                user = ?session.username, acct_session_id = ?session.acct_session_id,
                result = outcome.label(), detail = %why, "CoA outcome: not sent"
            ),
        }
        self.metrics
            .requests
            .with_label_values(&[
                &nas.name,
                kind.label(),
                outcome.label(),
                outcome.error_cause(),
            ])
            .inc();
        if let Err(e) = self
            .store
            .finish_coa_request(Some(request.id), session.id, kind, &described, unix_now())
            .await
        {
            tracing::warn!(error = %e, "recording a CoA outcome failed");
        }
    }

    /// Record a request that was not sent: counted (`unreachable`, or not at
    /// all when there was nothing to do) and marked done, never retried.
    async fn finish(
        &self,
        request: &CoaRequest,
        nas: Option<&Nas>,
        detail: &str,
        result: &str,
        error_cause: &str,
    ) {
        let kind = request.kind;
        if result == "unreachable" {
            self.metrics
                .requests
                .with_label_values(&[
                    nas.map_or("unknown", |n| n.name.as_str()),
                    kind.label(),
                    result,
                    error_cause,
                ])
                .inc();
        } else {
            tracing::debug!(kind = kind.label(), reason = %request.reason, detail, "CoA request not sent");
        }
        let text = format!("{} {detail}", kind.label());
        if let Err(e) = self
            .store
            .finish_coa_request(
                Some(request.id),
                request.session.id,
                kind,
                &text,
                unix_now(),
            )
            .await
        {
            tracing::warn!(error = %e, "recording a CoA outcome failed");
        }
    }

    async fn voucher_and_plan(
        &self,
        voucher_id: Option<i64>,
    ) -> Option<(crate::model::Voucher, crate::model::Plan)> {
        let voucher = self.store.get_voucher_by_id(voucher_id?).await.ok()?;
        let plan = self.store.get_plan(&voucher.plan_name).await.ok()?;
        Some((voucher, plan))
    }
}

/// The NAS table as the worker last read it, read again when it changed.
#[derive(Default)]
struct NasCache {
    generation: Option<i64>,
    by_id: Arc<HashMap<i64, Arc<Nas>>>,
}

impl NasCache {
    async fn get(
        &mut self,
        store: &dyn Store,
    ) -> crate::store::StoreResult<Arc<HashMap<i64, Arc<Nas>>>> {
        let generation = store.nas_generation().await?;
        if self.generation != Some(generation) {
            let list = store.list_nas().await?;
            self.by_id = Arc::new(list.into_iter().map(|n| (n.id, Arc::new(n))).collect());
            self.generation = Some(generation);
        }
        Ok(self.by_id.clone())
    }
}
