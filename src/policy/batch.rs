//! Deciding a batch of Access-Requests: what each request is answered, and
//! what storage must persist because of it.
//!
//! Storage reads the state a batch needs (the vouchers it names with their
//! plans, and the sessions that decide who holds a device), calls
//! [`decide_batch`], and writes the [`AuthEffects`] it returns. Nothing here
//! touches a database: the rules for activation, MAC binding and the
//! `authorized` session row live here, next to the decision, and are tested
//! without one (`policy/tests.rs`).
//!
//! Requests are decided in order, and every accept updates the in-memory state
//! the next request sees, so a batch ends exactly where the same requests
//! decided one at a time would.

use std::collections::HashMap;

use super::{AccessDecision, AccessFacts, Activation, VoucherSnapshot};
use crate::model::{Plan, SessionState, Timestamp, Voucher};

/// Prefix of the Acct-Session-Id given to an accepted request that carried none.
/// Accounting for the real id adopts such a row (same NAS, voucher and MAC).
pub const SYNTHETIC_PREFIX: &str = "auth-";

/// A made-up Acct-Session-Id for an accept without one.
pub fn synthetic_session_id(now: Timestamp) -> String {
    format!("{SYNTHETIC_PREFIX}{now}-{:016x}", rand::random::<u64>())
}

/// A session row as authorization sees it: enough to count a voucher's live
/// devices, and to know whether an accept's session row already exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSession {
    pub nas_id: i64,
    /// Which router of the entry ([`crate::model::Nas::router_key`]).
    pub router: String,
    pub acct_session_id: String,
    pub voucher_id: Option<i64>,
    pub mac: Option<String>,
    pub state: SessionState,
    pub authorized_at: Option<Timestamp>,
}

/// The `authorized` session row an accept writes (an upsert on NAS +
/// Acct-Session-Id). A row that accounting already opened or closed keeps its
/// state and counters; only the voucher link, device and times are refreshed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionGrant {
    pub nas_id: i64,
    /// Which router of the entry ([`crate::model::Nas::router_key`]).
    pub router: String,
    pub acct_session_id: String,
    /// Used only when the row is new: an existing row keeps its username.
    pub username: String,
    pub voucher_id: i64,
    /// `None` keeps the stored value.
    pub mac: Option<String>,
    /// `None` keeps the stored value.
    pub framed_ip: Option<String>,
    /// `None` keeps the stored value.
    pub interim_interval: Option<u32>,
}

impl SessionGrant {
    /// Fold a later accept for the same session into this one, as two
    /// consecutive upserts would: the newer voucher, and each value unless the
    /// later accept lacks it.
    fn merge(&mut self, later: SessionGrant) {
        self.voucher_id = later.voucher_id;
        if later.mac.is_some() {
            self.mac = later.mac;
        }
        if later.framed_ip.is_some() {
            self.framed_ip = later.framed_ip;
        }
        if later.interim_interval.is_some() {
            self.interim_interval = later.interim_interval;
        }
    }
}

/// What a batch of decisions asks storage to persist. The decisions themselves
/// (one auth event each) are returned beside it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthEffects {
    /// First logins: `(voucher id, activation)`. Written only where the voucher
    /// has no `first_login_at` yet, so a voucher is activated once even if two
    /// batches raced for it.
    pub activations: Vec<(i64, Activation)>,
    /// MAC locks taken: `(voucher id, MAC)`, written only where none is bound.
    pub bindings: Vec<(i64, String)>,
    /// Session rows, at most one per (NAS, Acct-Session-Id), in first-accept order.
    pub sessions: Vec<SessionGrant>,
}

impl AuthEffects {
    pub fn is_empty(&self) -> bool {
        self.activations.is_empty() && self.bindings.is_empty() && self.sessions.is_empty()
    }
}

/// Everything a batch is decided against, as storage read it.
#[derive(Clone, Debug, Default)]
pub struct AuthState {
    /// Each voucher the batch names (that exists), with its plan.
    pub vouchers: Vec<(Voucher, Plan)>,
    /// Live sessions of those vouchers (open, or authorized after
    /// `now - authorized_ttl`) and any rows with the NAS + Acct-Session-Id of a
    /// request, whatever their voucher or state.
    pub sessions: Vec<LiveSession>,
}

/// Distinct MACs of `voucher_id`'s live sessions: open, or authorized after
/// `live_after` (not started yet, but holding a device slot).
pub fn live_macs(sessions: &[LiveSession], voucher_id: i64, live_after: Timestamp) -> Vec<String> {
    let mut macs: Vec<String> = sessions
        .iter()
        .filter(|s| {
            s.voucher_id == Some(voucher_id)
                && match s.state {
                    SessionState::Open => true,
                    SessionState::Authorized => s.authorized_at.is_some_and(|t| t > live_after),
                    SessionState::Closed => false,
                }
        })
        .filter_map(|s| s.mac.clone())
        .collect();
    macs.sort_unstable();
    macs.dedup();
    macs
}

/// Decide `requests` in order with `decide` (normally [`super::decide`]),
/// against `state`. Returns one decision per request, in order, and the
/// effects to persist.
pub fn decide_batch<F>(
    requests: &[AccessFacts],
    state: AuthState,
    now: Timestamp,
    authorized_ttl: u64,
    decide: F,
) -> (Vec<AccessDecision>, AuthEffects)
where
    F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision,
{
    let (decisions, effects, _) = decide_batch_state(requests, state, now, authorized_ttl, decide);
    (decisions, effects)
}

/// [`decide_batch`], also returning the state as the batch left it: the
/// vouchers with their activations and bindings, and the sessions with the
/// accepts' rows (what a store that keeps the state in memory carries on from).
pub fn decide_batch_state<F>(
    requests: &[AccessFacts],
    state: AuthState,
    now: Timestamp,
    authorized_ttl: u64,
    decide: F,
) -> (Vec<AccessDecision>, AuthEffects, AuthState)
where
    F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision,
{
    let live_after = now.saturating_sub(i64::try_from(authorized_ttl).unwrap_or(i64::MAX));
    let mut snapshots: Vec<VoucherSnapshot> = state
        .vouchers
        .into_iter()
        .map(|(voucher, plan)| VoucherSnapshot {
            voucher,
            plan,
            active_macs: Vec::new(),
        })
        .collect();
    // Codes are unique per tenant only: a request finds the voucher of its
    // NAS's tenant, never another tenant's with the same code.
    let mut by_code: HashMap<String, Vec<(i64, usize)>> = HashMap::new();
    for (i, s) in snapshots.iter().enumerate() {
        by_code
            .entry(s.voucher.code.clone())
            .or_default()
            .push((s.voucher.tenant_id, i));
    }
    let by_id: HashMap<i64, usize> = snapshots
        .iter()
        .enumerate()
        .map(|(i, s)| (s.voucher.id, i))
        .collect();
    let mut sessions = state.sessions;
    let mut session_at: HashMap<(i64, String, String), usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.nas_id, s.router.clone(), s.acct_session_id.clone()), i))
        .collect();

    let mut decisions = Vec::with_capacity(requests.len());
    let mut effects = AuthEffects::default();
    let mut grant_at: HashMap<(i64, String, String), usize> = HashMap::new();
    for facts in requests {
        // Site scope: a voucher of another site is unknown at this NAS.
        let found = by_code
            .get(&facts.username)
            .and_then(|v| v.iter().find(|(t, _)| *t == facts.tenant_id))
            .map(|&(_, i)| i)
            .filter(|&i| {
                let site = &snapshots[i].voucher.site;
                site.is_none() || facts.nas_site.is_none() || *site == facts.nas_site
            });
        if let Some(i) = found {
            snapshots[i].active_macs = live_macs(&sessions, snapshots[i].voucher.id, live_after);
        }
        let decision = decide(facts, found.map(|i| &snapshots[i]), now);

        if let AccessDecision::Accept(grant) = &decision {
            // The effects go into the snapshot at once, so the next request of
            // the batch sees them as it would after a commit.
            let target = by_id.get(&grant.voucher_id).copied();
            if let Some(act) = &grant.activation {
                let first = match target {
                    Some(t) => {
                        let v = &mut snapshots[t].voucher;
                        let first = v.first_login_at.is_none();
                        if first {
                            v.first_login_at = Some(act.first_login_at);
                            v.valid_until = act.valid_until;
                        }
                        first
                    }
                    None => true,
                };
                if first {
                    effects.activations.push((grant.voucher_id, act.clone()));
                }
            }
            if let Some(mac) = &grant.bind_mac {
                let first = match target {
                    Some(t) => {
                        let v = &mut snapshots[t].voucher;
                        let first = v.bound_mac.is_none();
                        if first {
                            v.bound_mac = Some(mac.clone());
                        }
                        first
                    }
                    None => true,
                };
                if first {
                    effects.bindings.push((grant.voucher_id, mac.clone()));
                }
            }

            let acct_session_id = facts
                .acct_session_id
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| synthetic_session_id(now));
            let key = (facts.nas_id, facts.router.clone(), acct_session_id);
            match session_at.get(&key) {
                Some(&i) => {
                    // An existing row keeps its state (an open session stays
                    // open); it now belongs to this voucher and device.
                    let s = &mut sessions[i];
                    s.voucher_id = Some(grant.voucher_id);
                    if facts.mac.is_some() {
                        s.mac = facts.mac.clone();
                    }
                    s.authorized_at = Some(now);
                }
                None => {
                    session_at.insert(key.clone(), sessions.len());
                    sessions.push(LiveSession {
                        nas_id: facts.nas_id,
                        router: facts.router.clone(),
                        acct_session_id: key.2.clone(),
                        voucher_id: Some(grant.voucher_id),
                        mac: facts.mac.clone(),
                        state: SessionState::Authorized,
                        authorized_at: Some(now),
                    });
                }
            }
            let row = SessionGrant {
                nas_id: facts.nas_id,
                router: facts.router.clone(),
                acct_session_id: key.2.clone(),
                username: facts.username.clone(),
                voucher_id: grant.voucher_id,
                mac: facts.mac.clone(),
                framed_ip: facts.framed_ip.clone(),
                interim_interval: grant.interim_interval,
            };
            match grant_at.get(&key) {
                Some(&i) => effects.sessions[i].merge(row),
                None => {
                    grant_at.insert(key, effects.sessions.len());
                    effects.sessions.push(row);
                }
            }
        }
        decisions.push(decision);
    }
    let after = AuthState {
        vouchers: snapshots.into_iter().map(|s| (s.voucher, s.plan)).collect(),
        sessions,
    };
    (decisions, effects, after)
}
