//! Accounting (RFC 2866) as a state machine over session rows: what a batch of
//! Start / Interim-Update / Stop records does to the sessions they name and to
//! their vouchers' usage. Pure: storage reads the rows, calls
//! [`account_batch`], and writes the [`AcctEffects`] it returns.
//!
//! Rules:
//! - a session is keyed by NAS + Acct-Session-Id; a record for an unknown
//!   session creates it (a lost Start is normal: the first record may be an
//!   Interim or a Stop);
//! - counters only move forward, so a retransmission (with a new
//!   Acct-Delay-Time) or a reordered older record adds nothing, and the voucher's
//!   usage moves by exactly the difference;
//! - a session closed by a Stop or by the NAS stays closed; one the server only
//!   *guessed* had ended (stale, never started) is reopened by its accounting;
//! - a new session adopts the synthetic `authorized` row of an accept that
//!   carried no Acct-Session-Id (same NAS, voucher and MAC), so one login is one row.

use std::collections::HashMap;

use crate::model::{SessionState, Timestamp};

/// Acct-Status-Type values the server handles (RFC 2866 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcctStatus {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
}

impl AcctStatus {
    pub fn label(self) -> &'static str {
        match self {
            AcctStatus::Start => "start",
            AcctStatus::Stop => "stop",
            AcctStatus::InterimUpdate => "interim_update",
            AcctStatus::AccountingOn => "accounting_on",
            AcctStatus::AccountingOff => "accounting_off",
        }
    }
}

/// One Accounting-Request, decoded and authenticated, in wire-neutral form.
#[derive(Clone, Debug)]
pub struct AcctRecord {
    pub nas_id: i64,
    /// The NAS's tenant: a record is matched only to that tenant's vouchers.
    pub tenant_id: i64,
    /// Which router of the NAS entry sent it ([`crate::model::Nas::router_key`]).
    pub router: String,
    pub status: AcctStatus,
    /// Acct-Session-Id (empty for Accounting-On/Off).
    pub acct_session_id: String,
    pub username: String,
    pub mac: Option<String>,
    pub framed_ip: Option<String>,
    /// Acct-Session-Time seconds.
    pub session_time: u64,
    /// Acct-Input-Octets + 2^32 × Acct-Input-Gigawords.
    pub input_octets: u64,
    /// Acct-Output-Octets + 2^32 × Acct-Output-Gigawords.
    pub output_octets: u64,
    /// Acct-Terminate-Cause by dictionary name, on Stop.
    pub terminate_cause: Option<String>,
    /// Voucher id parsed from the Class attribute, if present.
    pub class_voucher_id: Option<i64>,
    /// When the server received it (Acct-Delay-Time is deliberately not used for
    /// counters: counters only move forward, so a retransmission counts once).
    pub received_at: Timestamp,
    /// When the reported event happened ([`super::event_time`]): a session's
    /// start and stop times, so that a Stop the router queued for 90 s records
    /// when the session ended, not when the record arrived.
    pub event_at: Timestamp,
}

/// Causes the server writes when it *guesses* a session ended. Accounting for
/// such a session proves the guess wrong and reopens it; a session closed by a
/// Stop or by the NAS (Accounting-On/Off, reboot) stays closed.
pub const GUESSED_CAUSES: [&str; 2] = ["stale", "not-started"];

/// Counters reported by a NAS are clamped rather than refused: 2^63 bytes cannot
/// occur in practice, and refusing would fail the whole accounting batch, which
/// the NAS would then retransmit forever.
pub fn counter_to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A session row as accounting sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcctSession {
    /// `None` for a row this batch creates.
    pub id: Option<i64>,
    pub nas_id: i64,
    /// See [`AcctRecord::router`]; empty on rows stored before routers were told apart.
    pub router: String,
    pub acct_session_id: String,
    pub username: String,
    pub voucher_id: Option<i64>,
    pub mac: Option<String>,
    pub framed_ip: Option<String>,
    pub state: SessionState,
    pub started_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub stopped_at: Option<Timestamp>,
    pub terminate_cause: Option<String>,
    pub session_time: i64,
    pub input_octets: i64,
    pub output_octets: i64,
}

impl AcctSession {
    /// The row a record for an unknown session creates.
    pub fn new_open(rec: &AcctRecord, voucher_id: Option<i64>) -> Self {
        AcctSession {
            id: None,
            nas_id: rec.nas_id,
            router: rec.router.clone(),
            acct_session_id: rec.acct_session_id.clone(),
            username: rec.username.clone(),
            voucher_id,
            mac: rec.mac.clone(),
            framed_ip: rec.framed_ip.clone(),
            state: SessionState::Open,
            started_at: None,
            updated_at: rec.received_at,
            stopped_at: None,
            terminate_cause: None,
            session_time: 0,
            input_octets: 0,
            output_octets: 0,
        }
    }

    /// Apply one Start / Interim-Update / Stop and return the usage it adds to
    /// the voucher, (seconds, bytes).
    pub fn apply(&mut self, rec: &AcctRecord, voucher_id: Option<i64>) -> (i64, i64) {
        let session_time = self.session_time.max(counter_to_i64(rec.session_time));
        let input_octets = self.input_octets.max(counter_to_i64(rec.input_octets));
        let output_octets = self.output_octets.max(counter_to_i64(rec.output_octets));
        let delta_seconds = session_time - self.session_time;
        let delta_bytes =
            (input_octets - self.input_octets).saturating_add(output_octets - self.output_octets);

        let closed_for_good = self.state == SessionState::Closed
            && !self
                .terminate_cause
                .as_deref()
                .is_some_and(|c| GUESSED_CAUSES.contains(&c));
        if closed_for_good {
            // A late or retransmitted record for a session that really ended
            // keeps its end; only the counters may still move.
        } else if rec.status == AcctStatus::Stop {
            self.state = SessionState::Closed;
            self.stopped_at = Some(rec.event_at);
            self.terminate_cause = rec.terminate_cause.clone();
        } else {
            self.state = SessionState::Open;
            self.stopped_at = None;
            self.terminate_cause = None;
        }
        // A session first seen by an Interim or a Stop (lost Start) began
        // session_time seconds before the event this record reports.
        self.started_at = Some(
            self.started_at
                .unwrap_or(rec.event_at.saturating_sub(session_time)),
        );
        self.voucher_id = voucher_id;
        if rec.mac.is_some() {
            self.mac = rec.mac.clone();
        }
        if rec.framed_ip.is_some() {
            self.framed_ip = rec.framed_ip.clone();
        }
        self.session_time = session_time;
        self.input_octets = input_octets;
        self.output_octets = output_octets;
        self.updated_at = rec.received_at;
        (delta_seconds, delta_bytes)
    }
}

/// A session row's key: NAS entry, router within it, Acct-Session-Id.
type SessionKey<'a> = (i64, &'a str, &'a str);

impl AcctSession {
    fn key(&self) -> SessionKey<'_> {
        (
            self.nas_id,
            self.router.as_str(),
            self.acct_session_id.as_str(),
        )
    }
}

/// The entry of `map` for `rec`'s session: its router's row, else a row stored
/// before routers were told apart (empty router).
fn lookup<'m, V>(map: &'m HashMap<SessionKey<'m>, V>, rec: &'m AcctRecord) -> Option<&'m V> {
    let asid = rec.acct_session_id.as_str();
    map.get(&(rec.nas_id, rec.router.as_str(), asid))
        .or_else(|| map.get(&(rec.nas_id, "", asid)))
}

/// What an accounting batch is applied to, as storage read it.
#[derive(Clone, Debug, Default)]
pub struct AcctState {
    /// The stored rows for the records' NAS + Acct-Session-Id keys.
    pub sessions: Vec<AcctSession>,
    /// `(id, tenant, code)` of the vouchers the records may belong to: by Class id,
    /// else by User-Name.
    pub vouchers: Vec<(i64, i64, String)>,
    /// Synthetic `authorized` rows of those vouchers, newest first.
    pub adoptable: Vec<AcctSession>,
}

/// What storage writes for an accounting batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcctEffects {
    /// Rows to create, in record order.
    pub inserts: Vec<AcctSession>,
    /// Stored rows to update (every column), by id. Includes adopted rows, whose
    /// `acct_session_id` is the new one.
    pub updates: Vec<AcctSession>,
    /// Synthetic rows adopted: `(row id, new Acct-Session-Id)`. Storage checks
    /// that each is still a synthetic `authorized` row when it writes.
    pub adopted: Vec<(i64, String)>,
    /// Usage added per voucher: `(voucher id, seconds, bytes)`, in id order.
    pub usage: Vec<(i64, i64, i64)>,
}

/// The (NAS, Acct-Session-Id) pairs of `records`, sorted and deduplicated;
/// records without an Acct-Session-Id are left out. Storage reads the rows of
/// every router of the entry for each pair; [`account_batch`] picks the
/// record's router's row.
pub fn session_keys(records: &[AcctRecord]) -> Vec<(i64, &str)> {
    let mut keys: Vec<(i64, &str)> = records
        .iter()
        .filter(|r| !r.acct_session_id.is_empty())
        .map(|r| (r.nas_id, r.acct_session_id.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Which vouchers `records` may need, given the stored `sessions`: the Class
/// id, tenant and User-Name of each record whose session is new or has no
/// voucher. Storage reads a Class id's voucher and a User-Name's only within
/// the tenant.
pub fn wanted_vouchers<'a>(
    records: &'a [AcctRecord],
    sessions: &[AcctSession],
) -> Vec<(Option<i64>, i64, &'a str)> {
    let linked: HashMap<SessionKey<'_>, bool> = sessions
        .iter()
        .map(|s| (s.key(), s.voucher_id.is_some()))
        .collect();
    let mut wanted: Vec<(Option<i64>, i64, &str)> = records
        .iter()
        .filter(|r| !r.acct_session_id.is_empty())
        .filter(|r| !lookup(&linked, r).copied().unwrap_or(false))
        .map(|r| (r.class_voucher_id, r.tenant_id, r.username.as_str()))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// Vouchers whose synthetic `authorized` rows the batch may adopt: those of
/// records with a MAC whose session is not stored yet.
pub fn adoption_vouchers(
    records: &[AcctRecord],
    sessions: &[AcctSession],
    vouchers: &[(i64, i64, String)],
) -> Vec<i64> {
    let stored: HashMap<SessionKey<'_>, ()> = sessions.iter().map(|s| (s.key(), ())).collect();
    let index = VoucherIndex::new(vouchers);
    let mut ids: Vec<i64> = records
        .iter()
        .filter(|r| r.mac.is_some() && !r.acct_session_id.is_empty())
        .filter(|r| lookup(&stored, r).is_none())
        .filter_map(|r| index.of(r))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The vouchers a batch may belong to, by id and by tenant and code.
struct VoucherIndex<'a> {
    tenant_of: HashMap<i64, i64>,
    by_code: HashMap<(i64, &'a str), i64>,
}

impl<'a> VoucherIndex<'a> {
    fn new(vouchers: &'a [(i64, i64, String)]) -> Self {
        VoucherIndex {
            tenant_of: vouchers.iter().map(|(id, t, _)| (*id, *t)).collect(),
            by_code: vouchers
                .iter()
                .map(|(id, t, c)| ((*t, c.as_str()), *id))
                .collect(),
        }
    }

    /// The voucher a record belongs to: by its Class (when that voucher still
    /// exists in the record's tenant), else by User-Name in that tenant.
    fn of(&self, rec: &AcctRecord) -> Option<i64> {
        if let Some(id) = rec
            .class_voucher_id
            .filter(|id| self.tenant_of.get(id) == Some(&rec.tenant_id))
        {
            return Some(id);
        }
        if rec.username.is_empty() {
            return None;
        }
        self.by_code
            .get(&(rec.tenant_id, rec.username.as_str()))
            .copied()
    }
}

/// Apply a run of Start / Interim-Update / Stop records (no Accounting-On/Off
/// among them), in order, to `state`. Records without an Acct-Session-Id are
/// skipped (nothing to key them on; storing them would fail the batch and the
/// NAS would retransmit forever) and counted in the second value.
pub fn account_batch(records: &[AcctRecord], state: AcctState) -> (AcctEffects, usize) {
    let index = VoucherIndex::new(&state.vouchers);
    let voucher_for = |rec: &AcctRecord| index.of(rec);

    let mut sessions: Vec<AcctSession> = state.sessions;
    let mut at: HashMap<(i64, String, String), usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.nas_id, s.router.clone(), s.acct_session_id.clone()), i))
        .collect();
    let mut adoptable: Vec<Option<AcctSession>> = state.adoptable.into_iter().map(Some).collect();
    let mut adopted = Vec::new();
    let mut skipped = 0;
    let mut usage: HashMap<i64, (i64, i64)> = HashMap::new();

    for rec in records {
        if rec.acct_session_id.is_empty() {
            skipped += 1;
            continue;
        }
        let key = (rec.nas_id, rec.router.clone(), rec.acct_session_id.clone());
        let stored = match at.get(&key) {
            Some(&i) => Some(i),
            None => {
                // A row stored before routers were told apart becomes this router's.
                let legacy = (rec.nas_id, String::new(), rec.acct_session_id.clone());
                let i = at.remove(&legacy);
                if let Some(i) = i {
                    sessions[i].router.clone_from(&rec.router);
                    at.insert(key.clone(), i);
                }
                i
            }
        };
        let (i, resolved) = match stored {
            Some(i) => (i, None),
            None => {
                let voucher_id = voucher_for(rec);
                let mut row = None;
                if let (Some(v), Some(mac)) = (voucher_id, rec.mac.as_deref()) {
                    // Only the newest matching row is taken, as one
                    // `SELECT … ORDER BY authorized_at DESC LIMIT 1` would.
                    let found = adoptable.iter_mut().find(|c| {
                        c.as_ref().is_some_and(|c| {
                            c.nas_id == rec.nas_id
                                && (c.router == rec.router || c.router.is_empty())
                                && c.voucher_id == Some(v)
                                && c.mac.as_deref() == Some(mac)
                        })
                    });
                    if let Some(slot) = found {
                        let mut s = slot.take().expect("matched a present row");
                        if let Some(id) = s.id {
                            adopted.push((id, rec.acct_session_id.clone()));
                        }
                        s.acct_session_id = rec.acct_session_id.clone();
                        s.router.clone_from(&rec.router);
                        row = Some(s);
                    }
                }
                let s = row.unwrap_or_else(|| AcctSession::new_open(rec, voucher_id));
                at.insert(key, sessions.len());
                sessions.push(s);
                (sessions.len() - 1, Some(voucher_id))
            }
        };
        let voucher_id = match (sessions[i].voucher_id, resolved) {
            (Some(v), _) => Some(v),
            (None, Some(r)) => r,
            (None, None) => voucher_for(rec),
        };
        let (seconds, bytes) = sessions[i].apply(rec, voucher_id);
        if let Some(v) = voucher_id {
            if seconds > 0 || bytes > 0 {
                let u = usage.entry(v).or_default();
                u.0 = u.0.saturating_add(seconds);
                u.1 = u.1.saturating_add(bytes);
            }
        }
    }

    let (inserts, updates): (Vec<AcctSession>, Vec<AcctSession>) =
        sessions.into_iter().partition(|s| s.id.is_none());
    let mut usage: Vec<(i64, i64, i64)> = usage.into_iter().map(|(v, (s, b))| (v, s, b)).collect();
    // Id order: row locks (PostgreSQL) are taken in the same order by every batch.
    usage.sort_unstable();
    (
        AcctEffects {
            inserts,
            updates,
            adopted,
            usage,
        },
        skipped,
    )
}
