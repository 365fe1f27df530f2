//! What authorization decides on, kept in memory: vouchers with their plans
//! and the live sessions of each, by voucher code.
//!
//! A batch whose every code is here is decided on the caller's thread without
//! waiting for the engine: [`AuthMemory::state_for`] gives the state,
//! `policy::decide_batch_state` decides, [`AuthMemory::remember`] takes the
//! state the batch left, and the batch's effects and auth events go to the
//! engine as an [`EffectsJob`] in the same critical section, so the engine
//! writes them in the order they were decided. A batch that names a code not
//! here (or one whose entry may be out of date) goes to the engine instead,
//! which reads the missing entries from its connection and decides there.
//!
//! The memory is right because every change to what it holds is either made
//! through it or makes it drop entries:
//! - this process's authorization changes it first and the database after
//!   (the engine applies effects in decision order);
//! - accounting, the stale-session sweep, admin jobs and commits of other
//!   processes (the CLI; SQLite's `data_version`) drop the entries they may
//!   have changed;
//! - an entry whose effects are handed to the engine but not yet written is
//!   never dropped at once: it is marked stale (no longer decided on here) and
//!   dropped when its last effects are written, so that a read on the engine
//!   always sees what the memory had;
//! - an entry older than [`ENTRY_MAX_AGE`] is read again, which bounds any
//!   difference the rules above do not cover (a request reusing the
//!   Acct-Session-Id of a row the memory never loaded).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, params_from_iter, Connection, ToSql};

use super::engine::{GroupJob, GroupOutcome};
use crate::model::{Plan, SessionState, Timestamp, Voucher};
use crate::policy::{AccessDecision, AccessFacts, AuthEffects, AuthState, LiveSession};
use crate::store::rows::{LiveSessionRow, PlanRow, VoucherRow, LIVE_SESSION_COLS};
use crate::store::{decision_result, StoreError, StoreResult};

/// An entry is read again from the database after this long.
pub const ENTRY_MAX_AGE: Duration = Duration::from_secs(60);
/// How long an admin generation read stays good: a read per batch (a
/// read transaction on a file the engine writes without pause) cost more
/// than the decision. An admin change (a revoked voucher) is therefore
/// honoured by decisions from memory within this much of its commit.
pub const ADMIN_CHECK_EVERY: Duration = Duration::from_millis(50);
/// More entries than this and the memory starts over.
const MAX_ENTRIES: usize = 100_000;
/// Batches of effects handed to the engine and not yet written, past which
/// authorization goes through the engine (and so waits for it): the bound on
/// what the engine may be behind, and on what a crash can lose.
pub const MAX_PENDING: u64 = 256;

/// The shared handle.
pub type Memory = Arc<Mutex<AuthMemory>>;

/// Lock the memory; a panic while it was held leaves it as it was (every
/// change is a whole entry), so a poisoned lock is taken as is.
pub fn lock(memory: &Mutex<AuthMemory>) -> std::sync::MutexGuard<'_, AuthMemory> {
    memory.lock().unwrap_or_else(|p| p.into_inner())
}

/// A session row's key: NAS entry, router within it, Acct-Session-Id.
type SessionKey = (i64, String, String);

fn session_key(nas_id: i64, router: &str, acct_session_id: &str) -> SessionKey {
    (nas_id, router.to_owned(), acct_session_id.to_owned())
}

struct Entry {
    /// The voucher and its plan; `None`: no voucher has this code.
    found: Option<(Voucher, Plan)>,
    /// Its live sessions (and rows accepts of this process wrote).
    sessions: Vec<LiveSession>,
    loaded: Instant,
    /// The last batch of effects that changed this entry.
    pending_until: u64,
    /// The database may hold a change this entry lacks: not decided on here.
    stale: bool,
}

/// A voucher code within its tenant: codes are unique per tenant only.
type CodeKey = (i64, String);

/// Entries by code, then by tenant: a lookup borrows the request's User-Name
/// and allocates nothing; a code is almost always in one tenant only.
#[derive(Default)]
struct Entries(HashMap<String, Vec<(i64, Entry)>>);

impl Entries {
    fn get(&self, tenant: i64, code: &str) -> Option<&Entry> {
        self.0
            .get(code)?
            .iter()
            .find(|(t, _)| *t == tenant)
            .map(|(_, e)| e)
    }

    fn get_mut(&mut self, tenant: i64, code: &str) -> Option<&mut Entry> {
        self.0
            .get_mut(code)?
            .iter_mut()
            .find(|(t, _)| *t == tenant)
            .map(|(_, e)| e)
    }

    fn insert(&mut self, tenant: i64, code: String, entry: Entry) {
        let slot = self.0.entry(code).or_default();
        slot.retain(|(t, _)| *t != tenant);
        slot.push((tenant, entry));
    }

    fn remove(&mut self, tenant: i64, code: &str) -> Option<Entry> {
        let slot = self.0.get_mut(code)?;
        let i = slot.iter().position(|(t, _)| *t == tenant)?;
        let (_, e) = slot.swap_remove(i);
        if slot.is_empty() {
            self.0.remove(code);
        }
        Some(e)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn iter(&self) -> impl Iterator<Item = (i64, &String, &Entry)> {
        self.0
            .iter()
            .flat_map(|(code, v)| v.iter().map(move |(t, e)| (*t, code, e)))
    }
}

#[derive(Default)]
pub struct AuthMemory {
    entries: Entries,
    code_of: HashMap<i64, CodeKey>,
    /// Which voucher's entry holds a session row.
    owner: HashMap<SessionKey, i64>,
    /// Sequence number of the last batch of effects handed to the engine.
    handed: u64,
    /// ... and of the last one the engine wrote.
    written: u64,
    data_version: Option<i64>,
    /// A read-only connection of its own, to see admin changes (the CLI's
    /// `admin_generation`) before batches decided here (see [`ADMIN_CHECK_EVERY`]).
    watch: Option<Connection>,
    admin_generation: Option<i64>,
    /// When `admin_generation` was last read and found unchanged.
    admin_checked: Option<Instant>,
}

/// One auth event, owned, for the engine to write.
pub struct EventRow {
    nas_id: i64,
    nas_name: String,
    username: String,
    mac: Option<String>,
    result: &'static str,
    reason: Option<&'static str>,
}

/// The auth events of a decided batch.
pub fn events(requests: &[AccessFacts], decisions: &[AccessDecision]) -> Vec<EventRow> {
    requests
        .iter()
        .zip(decisions)
        .map(|(f, d)| {
            let (result, reason) = decision_result(d);
            EventRow {
                nas_id: f.nas_id,
                nas_name: f.nas_name.clone(),
                username: f.username.clone(),
                mac: f.mac.clone(),
                result,
                reason: reason.map(|r| r.label()),
            }
        })
        .collect()
}

impl AuthMemory {
    /// Effects handed to the engine and not yet written.
    pub fn backlog(&self) -> u64 {
        self.handed - self.written
    }

    /// Give the memory its connection for [`Self::admin_unchanged`].
    pub fn watch(&mut self, conn: Connection) {
        self.watch = Some(conn);
    }

    /// No admin command changed vouchers, plans or sessions since the last
    /// look; if one did, everything is read again (through the engine).
    fn admin_unchanged(&mut self) -> bool {
        let Some(conn) = &self.watch else {
            return false;
        };
        let now = Instant::now();
        if self
            .admin_checked
            .is_some_and(|t| now.duration_since(t) < ADMIN_CHECK_EVERY)
        {
            return true;
        }
        match super::admin::admin_generation(conn) {
            Ok(g) if self.admin_generation == Some(g) => {
                self.admin_checked = Some(now);
                true
            }
            Ok(g) => {
                self.admin_checked = None;
                if self.admin_generation.is_some() {
                    self.invalidate_all();
                }
                self.admin_generation = Some(g);
                false
            }
            Err(_) => false,
        }
    }

    /// The state to decide `requests` on, if memory holds all of it, no admin
    /// change is pending and the engine is not too far behind.
    pub fn state_for(&mut self, requests: &[AccessFacts]) -> Option<AuthState> {
        if self.backlog() >= MAX_PENDING || !self.admin_unchanged() {
            return None;
        }
        for f in requests {
            let e = self.entries.get(f.tenant_id, &f.username)?;
            if e.stale || e.loaded.elapsed() >= ENTRY_MAX_AGE {
                return None;
            }
        }
        Some(self.build_state(requests, &[]))
    }

    /// The state of `requests` from entries that are all present, plus `extra`
    /// rows read for their session keys.
    fn build_state(&self, requests: &[AccessFacts], extra: &[LiveSession]) -> AuthState {
        let mut state = AuthState::default();
        let mut codes: HashSet<(i64, &str)> = HashSet::new();
        let mut ids: HashSet<i64> = HashSet::new();
        for f in requests {
            if !codes.insert((f.tenant_id, f.username.as_str())) {
                continue;
            }
            let Some(e) = self.entries.get(f.tenant_id, &f.username) else {
                continue;
            };
            if let Some(vp) = &e.found {
                ids.insert(vp.0.id);
                state.vouchers.push(vp.clone());
                state.sessions.extend(e.sessions.iter().cloned());
            }
        }
        // Rows with a request's NAS + Acct-Session-Id that belong to a voucher
        // outside the batch: an accept moves them.
        let mut seen: HashSet<(i64, &str, &str)> = HashSet::new();
        for f in requests {
            let Some(asid) = f.acct_session_id.as_deref().filter(|a| !a.is_empty()) else {
                continue;
            };
            if !seen.insert((f.nas_id, &f.router, asid)) {
                continue;
            }
            if let Some(s) = self.session(f.nas_id, &f.router, asid) {
                if !s.voucher_id.is_some_and(|v| ids.contains(&v)) {
                    state.sessions.push(s.clone());
                }
            }
        }
        for s in extra {
            if self
                .session(s.nas_id, &s.router, &s.acct_session_id)
                .is_none()
            {
                state.sessions.push(s.clone());
            }
        }
        state
    }

    fn session(&self, nas_id: i64, router: &str, asid: &str) -> Option<&LiveSession> {
        let id = self
            .owner
            .get(&(nas_id, router.to_owned(), asid.to_owned()))?;
        let (tenant, code) = self.code_of.get(id)?;
        self.entries
            .get(*tenant, code)?
            .sessions
            .iter()
            .find(|s| s.nas_id == nas_id && s.router == router && s.acct_session_id == asid)
    }

    /// Take the state a decided batch left (`after`, from
    /// `decide_batch_state`) and number its effects. Returns the sequence
    /// number to hand the effects to the engine with, and the vouchers whose
    /// entries changed.
    pub fn remember(
        &mut self,
        after: AuthState,
        effects: &AuthEffects,
        now: Timestamp,
        authorized_ttl: u64,
    ) -> (u64, Vec<i64>) {
        self.handed += 1;
        let seq = self.handed;
        let mut touched: Vec<i64> = Vec::new();
        for (voucher, plan) in after.vouchers {
            let id = voucher.id;
            if let Some(e) = self.entry_of_mut(id) {
                e.found = Some((voucher, plan));
                e.pending_until = seq;
                touched.push(id);
            }
        }
        let live_after = now.saturating_sub(i64::try_from(authorized_ttl).unwrap_or(i64::MAX));
        let rows: HashMap<(i64, &str, &str), &LiveSession> = after
            .sessions
            .iter()
            .map(|s| ((s.nas_id, s.router.as_str(), s.acct_session_id.as_str()), s))
            .collect();
        for g in &effects.sessions {
            let Some(row) = rows.get(&(g.nas_id, g.router.as_str(), g.acct_session_id.as_str()))
            else {
                continue;
            };
            let key = session_key(g.nas_id, &g.router, &g.acct_session_id);
            if let Some(old) = self.owner.remove(&key) {
                if let Some(e) = self.entry_of_mut(old) {
                    e.sessions
                        .retain(|s| session_key(s.nas_id, &s.router, &s.acct_session_id) != key);
                    e.pending_until = seq;
                    touched.push(old);
                }
            }
            if let Some(e) = self.entry_of_mut(g.voucher_id) {
                e.sessions.push((*row).clone());
                e.pending_until = seq;
                self.owner.insert(key, g.voucher_id);
                touched.push(g.voucher_id);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        // Rows that no longer hold a device slot are forgotten, and so are all
        // but the two newest `authorized` rows of a device (as the database
        // read keeps them): a device that logs in again and again would
        // otherwise pile up rows that every later batch copies.
        for id in &touched {
            let Some((tenant, code)) = self.code_of.get(id) else {
                continue;
            };
            let Some(e) = self.entries.get_mut(*tenant, code) else {
                continue;
            };
            e.sessions.sort_by(|a, b| {
                (
                    &a.mac,
                    a.state != SessionState::Open,
                    std::cmp::Reverse(a.authorized_at),
                )
                    .cmp(&(
                        &b.mac,
                        b.state != SessionState::Open,
                        std::cmp::Reverse(b.authorized_at),
                    ))
            });
            let mut kept_authorized: HashMap<String, usize> = HashMap::new();
            let owner = &mut self.owner;
            e.sessions.retain(|s| {
                let keep = match (&s.mac, s.state) {
                    (None, _) | (_, SessionState::Closed) => false,
                    (Some(_), SessionState::Open) => true,
                    (Some(mac), SessionState::Authorized) => {
                        let n = kept_authorized.entry(mac.clone()).or_default();
                        *n += 1;
                        *n <= 2 && s.authorized_at.is_some_and(|t| t > live_after)
                    }
                };
                if !keep {
                    let key = session_key(s.nas_id, &s.router, &s.acct_session_id);
                    if owner.get(&key) == Some(id) {
                        owner.remove(&key);
                    }
                }
                keep
            });
        }
        (seq, touched)
    }

    fn entry_of_mut(&mut self, voucher_id: i64) -> Option<&mut Entry> {
        let (tenant, code) = self.code_of.get(&voucher_id)?;
        self.entries.get_mut(*tenant, code)
    }

    /// The engine has written the effects numbered `seq`, which changed
    /// `touched`: stale entries with nothing left to write are dropped.
    pub fn written(&mut self, seq: u64, touched: &[i64]) {
        self.written = self.written.max(seq);
        for id in touched {
            let drop = self
                .entry_of_mut(*id)
                .is_some_and(|e| e.stale && e.pending_until <= seq);
            if drop {
                self.remove_id(*id);
            }
        }
    }

    /// The database may have changed voucher `id` or its sessions.
    pub fn invalidate(&mut self, id: i64) {
        let written = self.written;
        let Some(e) = self.entry_of_mut(id) else {
            return;
        };
        if e.pending_until <= written {
            self.remove_id(id);
        } else {
            e.stale = true;
        }
    }

    /// The database may have changed anything.
    pub fn invalidate_all(&mut self) {
        let written = self.written;
        let mut keep = Entries::default();
        for (code, slot) in std::mem::take(&mut self.entries.0) {
            for (tenant, mut e) in slot {
                if e.pending_until > written {
                    e.stale = true;
                    keep.insert(tenant, code.clone(), e);
                }
            }
        }
        self.entries = keep;
        self.rebuild_indexes();
    }

    fn rebuild_indexes(&mut self) {
        self.code_of.clear();
        self.owner.clear();
        for (tenant, code, e) in self.entries.iter() {
            if let Some((v, _)) = &e.found {
                self.code_of.insert(v.id, (tenant, code.clone()));
                for s in &e.sessions {
                    self.owner
                        .insert(session_key(s.nas_id, &s.router, &s.acct_session_id), v.id);
                }
            }
        }
    }

    fn remove_id(&mut self, id: i64) {
        let Some((tenant, code)) = self.code_of.remove(&id) else {
            return;
        };
        if let Some(e) = self.entries.remove(tenant, &code) {
            for s in e.sessions {
                let key = (s.nas_id, s.router, s.acct_session_id);
                if self.owner.get(&key) == Some(&id) {
                    self.owner.remove(&key);
                }
            }
        }
    }

    /// Drop everything if another connection (the CLI) has committed since
    /// the last look.
    pub fn check(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if self.data_version != Some(version) {
            if self.data_version.is_some() {
                self.invalidate_all();
            }
            self.data_version = Some(version);
        }
        Ok(())
    }

    /// On the engine: make sure every code of `requests` has an entry that
    /// may be decided on, reading what is missing or out of date from `conn`
    /// (which holds everything written so far), and return the batch's state.
    pub fn load(
        &mut self,
        conn: &Connection,
        requests: &[AccessFacts],
        now: Timestamp,
        authorized_ttl: u64,
    ) -> StoreResult<AuthState> {
        self.check(conn)?;
        if self.entries.len() >= MAX_ENTRIES {
            self.invalidate_all();
        }
        let live_after = now.saturating_sub(i64::try_from(authorized_ttl).unwrap_or(i64::MAX));
        let mut codes = HashSet::new();
        for f in requests {
            if !codes.insert((f.tenant_id, f.username.as_str())) {
                continue;
            }
            if let Some(e) = self.entries.get(f.tenant_id, &f.username) {
                let old = e.stale || e.loaded.elapsed() >= ENTRY_MAX_AGE;
                // With effects still to write, what memory has is newer than
                // the database: keep deciding on it.
                if !old || e.pending_until > self.written {
                    continue;
                }
                match e.found.as_ref().map(|(v, _)| v.id) {
                    Some(id) => self.remove_id(id),
                    None => {
                        self.entries.remove(f.tenant_id, &f.username);
                    }
                }
            }
            let found = read_voucher(conn, f.tenant_id, &f.username)?;
            let sessions = match &found {
                Some((v, _)) => read_live_sessions(conn, v.id, live_after)?,
                None => Vec::new(),
            };
            if let Some((v, _)) = &found {
                self.code_of.insert(v.id, (f.tenant_id, f.username.clone()));
                for s in &sessions {
                    let key = session_key(s.nas_id, &s.router, &s.acct_session_id);
                    // A row another entry holds is that entry's until it moves.
                    self.owner.entry(key).or_insert(v.id);
                }
            }
            let sessions = match &found {
                Some((v, _)) => sessions
                    .into_iter()
                    .filter(|s| {
                        self.owner
                            .get(&session_key(s.nas_id, &s.router, &s.acct_session_id))
                            == Some(&v.id)
                    })
                    .collect(),
                None => sessions,
            };
            self.entries.insert(
                f.tenant_id,
                f.username.clone(),
                Entry {
                    found,
                    sessions,
                    loaded: Instant::now(),
                    pending_until: 0,
                    stale: false,
                },
            );
        }
        // Rows with a request's session key that memory does not hold.
        let mut extra: Vec<LiveSession> = Vec::new();
        let sql = format!(
            "SELECT {LIVE_SESSION_COLS} FROM sessions \
             WHERE nas_id = ?1 AND router = ?2 AND acct_session_id = ?3"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut asked: HashSet<(i64, &str, &str)> = HashSet::new();
        for f in requests {
            let Some(asid) = f.acct_session_id.as_deref().filter(|a| !a.is_empty()) else {
                continue;
            };
            if !asked.insert((f.nas_id, &f.router, asid))
                || self.session(f.nas_id, &f.router, asid).is_some()
            {
                continue;
            }
            let mut rows = stmt.query(params![f.nas_id, f.router, asid])?;
            if let Some(row) = rows.next()? {
                extra.push(live_session(row)?);
            }
        }
        Ok(self.build_state(requests, &extra))
    }
}

/// Voucher and plan by code, both in one row.
const VOUCHER_BY_CODE: &str = "SELECT v.id, v.code, v.password, v.plan_id, p.name, v.site, \
     v.state, v.first_login_at, v.valid_until, v.used_seconds, v.used_bytes, v.bound_mac, \
     v.batch, v.created_at, p.time_quota, p.validity, p.expires_at, p.data_quota, \
     p.rate_limit, p.shared_users, p.mac_lock, p.idle_timeout, p.interim_interval, \
     p.mikrotik_group, p.address_list, p.price, p.created_at, p.after_data_rate_limit, \
     v.tenant_id, p.tenant_id, p.sites \
     FROM vouchers v JOIN plans p ON p.id = v.plan_id WHERE v.tenant_id = ?1 AND v.code = ?2";

fn read_voucher(
    conn: &Connection,
    tenant_id: i64,
    code: &str,
) -> StoreResult<Option<(Voucher, Plan)>> {
    let mut stmt = conn.prepare_cached(VOUCHER_BY_CODE)?;
    let mut rows = stmt.query(params![tenant_id, code])?;
    match rows.next()? {
        Some(row) => Ok(Some(voucher_and_plan(row)?)),
        None => Ok(None),
    }
}

/// A voucher's live sessions, at most two rows per device: a device is live
/// if any of its rows is, and the second row keeps it live should an accept
/// move the first to another voucher. A router that logs a device in again
/// and again leaves many rows; reading them all would cost per login.
fn read_live_sessions(
    conn: &Connection,
    voucher_id: i64,
    live_after: Timestamp,
) -> StoreResult<Vec<LiveSession>> {
    let sql = format!(
        "SELECT {LIVE_SESSION_COLS} FROM (SELECT {LIVE_SESSION_COLS}, row_number() OVER \
         (PARTITION BY mac ORDER BY state, authorized_at DESC) AS n FROM sessions \
         WHERE voucher_id = ?1 AND mac IS NOT NULL \
         AND (state = 'open' OR (state = 'authorized' AND authorized_at > ?2))) WHERE n <= 2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![voucher_id, live_after])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(live_session(row)?);
    }
    Ok(out)
}

fn voucher_and_plan(row: &rusqlite::Row<'_>) -> StoreResult<(Voucher, Plan)> {
    let voucher = VoucherRow {
        id: row.get(0)?,
        code: row.get(1)?,
        password: row.get(2)?,
        plan_id: row.get(3)?,
        plan_name: row.get(4)?,
        site: row.get(5)?,
        state: row.get(6)?,
        first_login_at: row.get(7)?,
        valid_until: row.get(8)?,
        used_seconds: row.get(9)?,
        used_bytes: row.get(10)?,
        bound_mac: row.get(11)?,
        batch: row.get(12)?,
        created_at: row.get(13)?,
        tenant_id: row.get(28)?,
    }
    .into_model()?;
    let plan = PlanRow {
        id: voucher.plan_id,
        name: voucher.plan_name.clone(),
        time_quota: row.get(14)?,
        validity: row.get(15)?,
        expires_at: row.get(16)?,
        data_quota: row.get(17)?,
        rate_limit: row.get(18)?,
        shared_users: row.get(19)?,
        mac_lock: row.get(20)?,
        idle_timeout: row.get(21)?,
        interim_interval: row.get(22)?,
        mikrotik_group: row.get(23)?,
        address_list: row.get(24)?,
        price: row.get(25)?,
        created_at: row.get(26)?,
        after_data_rate_limit: row.get(27)?,
        tenant_id: row.get(29)?,
        sites: row.get(30)?,
    }
    .into_model()?;
    Ok((voucher, plan))
}

fn live_session(row: &rusqlite::Row<'_>) -> StoreResult<LiveSession> {
    LiveSessionRow {
        nas_id: row.get(0)?,
        acct_session_id: row.get(1)?,
        voucher_id: row.get(2)?,
        mac: row.get(3)?,
        state: row.get(4)?,
        authorized_at: row.get(5)?,
        router: row.get(6)?,
    }
    .into_model()
}

/// A decided batch's effects and auth events, written by the engine in
/// decision order into the group transaction.
pub struct EffectsJob {
    pub seq: u64,
    pub effects: AuthEffects,
    pub events: Vec<EventRow>,
    pub touched: Vec<i64>,
    pub now: Timestamp,
}

impl GroupJob for EffectsJob {
    fn fail(self: Box<Self>, error: StoreError) {
        tracing::error!(error = %error, events = self.events.len(), "the effects of an answered authorization batch could not be stored");
    }

    /// Each write stands on its own (a guarded activation, a binding, a
    /// session upsert, an event): a failure keeps those before it, as a crash
    /// would, and memory reads the touched vouchers again.
    fn savepoint(&self) -> bool {
        false
    }

    fn run(self: Box<Self>, conn: &Connection, memory: &Mutex<AuthMemory>) -> GroupOutcome {
        let result = write(conn, &self.effects, &self.events, self.now);
        let mut mem = lock(memory);
        mem.written(self.seq, &self.touched);
        if let Err(e) = result {
            // Memory holds what the database now lacks: read it again.
            for id in &self.touched {
                mem.invalidate(*id);
            }
            tracing::error!(error = %e, events = self.events.len(), "an authorization batch was answered but storing its effects failed");
        }
        GroupOutcome::Done
    }
}

/// Write a batch's effects and events.
pub fn write(
    conn: &Connection,
    effects: &AuthEffects,
    events: &[EventRow],
    now: Timestamp,
) -> StoreResult<()> {
    write_effects(conn, effects, now)?;
    // A reject identical to one logged within REPEAT_WINDOW (same NAS, user,
    // device and reason) adds to that row instead of a row of its own: a
    // customer retrying an expired code, or a router re-sending, cannot fill
    // the disk.
    let mut fresh = Vec::with_capacity(events.len());
    if events.iter().any(|e| e.result == "reject") {
        let mut bump = conn.prepare_cached(
            "UPDATE auth_events SET repeats = repeats + 1, last_at = ?1 \
             WHERE id = (SELECT id FROM auth_events WHERE username = ?2 AND at >= ?3 \
                         ORDER BY at DESC, id DESC LIMIT 1) \
               AND nas_id = ?4 AND mac IS ?5 AND result = 'reject' AND reason IS ?6",
        )?;
        for e in events {
            let bumped = e.result == "reject"
                && bump.execute(params![
                    now,
                    e.username,
                    now - crate::store::REPEAT_WINDOW,
                    e.nas_id,
                    e.mac,
                    e.reason
                ])? > 0;
            if !bumped {
                fresh.push(e);
            }
        }
    } else {
        fresh.extend(events.iter());
    }
    let rows: Vec<[&dyn ToSql; 7]> = fresh
        .iter()
        .map(|e| -> [&dyn ToSql; 7] {
            [
                &now,
                &e.nas_id,
                &e.nas_name,
                &e.username,
                &e.mac,
                &e.result,
                &e.reason,
            ]
        })
        .collect();
    insert_rows(
        conn,
        "INSERT INTO auth_events (at, nas_id, nas_name, username, mac, result, reason) VALUES ",
        "",
        &rows,
    )
}

/// Insert `rows` with statements of several rows each (32, 8 or 1: few
/// statement texts to prepare and cache), which costs SQLite less per row
/// than one statement a row.
fn insert_rows<const N: usize>(
    conn: &Connection,
    head: &str,
    tail: &str,
    rows: &[[&dyn ToSql; N]],
) -> StoreResult<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let n = [32, 8, 1]
            .into_iter()
            .find(|&n| rest.len() >= n)
            .unwrap_or(1);
        let (chunk, next) = rest.split_at(n);
        let one = format!("({})", vec!["?"; N].join(", "));
        let sql = format!("{head}{}{tail}", vec![one; n].join(", "));
        let mut stmt = conn.prepare_cached(&sql)?;
        stmt.execute(params_from_iter(chunk.iter().flat_map(|r| r.iter())))?;
        rest = next;
    }
    Ok(())
}

/// Activations, MAC bindings and the `voucher.activated` events.
fn write_vouchers(conn: &Connection, effects: &AuthEffects, now: Timestamp) -> StoreResult<()> {
    // Guarded like the in-memory check, so a voucher is activated (and bound)
    // once even if another process raced for it; only an activation written
    // here makes a `voucher.activated` event.
    let mut activated = Vec::new();
    if !effects.activations.is_empty() {
        let mut stmt = conn.prepare_cached(
            "UPDATE vouchers SET first_login_at = ?2, valid_until = ?3 \
             WHERE id = ?1 AND first_login_at IS NULL",
        )?;
        for (id, act) in &effects.activations {
            if stmt.execute(params![id, act.first_login_at, act.valid_until])? > 0 {
                activated.push(*id);
            }
        }
    }
    if !effects.bindings.is_empty() {
        let mut stmt = conn.prepare_cached(
            "UPDATE vouchers SET bound_mac = ?2 WHERE id = ?1 AND bound_mac IS NULL",
        )?;
        for (id, mac) in &effects.bindings {
            stmt.execute(params![id, mac])?;
        }
    }
    // After the binding, so the event shows the MAC a first login bound.
    for id in activated {
        super::events::voucher_event(conn, crate::events::EventType::VoucherActivated, id, now)?;
    }
    Ok(())
}

fn write_effects(conn: &Connection, effects: &AuthEffects, now: Timestamp) -> StoreResult<()> {
    if effects.is_empty() {
        return Ok(());
    }
    // An activation and its `voucher.activated` event stand or fall together:
    // under a savepoint of their own (first logins only, so the hot path of
    // later logins pays nothing for it).
    if effects.activations.is_empty() {
        write_vouchers(conn, effects, now)?;
    } else {
        conn.prepare_cached("SAVEPOINT activation")?.execute([])?;
        let written = write_vouchers(conn, effects, now);
        if written.is_err() {
            conn.prepare_cached("ROLLBACK TO activation")?.execute([])?;
        }
        conn.prepare_cached("RELEASE activation")?.execute([])?;
        written?;
    }
    // A row that accounting already opened (or closed) keeps its state and
    // counters; only the voucher link and device are refreshed. Grants are one
    // per session key, so no statement names a row twice.
    let interims: Vec<Option<i64>> = effects
        .sessions
        .iter()
        .map(|g| g.interim_interval.map(i64::from))
        .collect();
    const AUTHORIZED: &str = "authorized";
    let rows: Vec<[&dyn ToSql; 11]> = effects
        .sessions
        .iter()
        .zip(&interims)
        .map(|(g, interim)| -> [&dyn ToSql; 11] {
            [
                &g.nas_id,
                &g.router,
                &g.acct_session_id,
                &g.username,
                &g.voucher_id,
                &g.mac,
                &g.framed_ip,
                &AUTHORIZED,
                &now,
                &now,
                interim,
            ]
        })
        .collect();
    insert_rows(
        conn,
        "INSERT INTO sessions (nas_id, router, acct_session_id, username, voucher_id, mac, \
         framed_ip, state, authorized_at, updated_at, interim_interval) VALUES ",
        " ON CONFLICT (nas_id, acct_session_id, router) DO UPDATE SET \
         voucher_id = excluded.voucher_id, mac = COALESCE(excluded.mac, sessions.mac), \
         framed_ip = COALESCE(excluded.framed_ip, sessions.framed_ip), \
         authorized_at = excluded.authorized_at, updated_at = excluded.updated_at, \
         interim_interval = COALESCE(excluded.interim_interval, sessions.interim_interval)",
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewNas, NewPlan, NewVoucher, Secret};
    use crate::policy::{decide, decide_batch_state, Credential, RejectReason};
    use crate::store::sqlite::{admin, schema};

    const TTL: u64 = 60;
    const NOW: Timestamp = 1_700_000_000;

    /// A database file with one NAS, a single-device plan and voucher `A1`.
    fn setup(dir: &std::path::Path) -> (Connection, i64) {
        let mut c = Connection::open(dir.join("db.sqlite")).unwrap();
        schema::migrate(&mut c).unwrap();
        let nas = admin::add_nas(
            &mut c,
            &NewNas {
                name: "r1".into(),
                address: "192.0.2.1".parse().unwrap(),
                secret: Secret::new("secret-r1".to_string()),
                require_message_authenticator: true,
                coa_port: 3799,
                coa_address: None,
                site: None,
                identifier: None,
                tenant_id: crate::model::DEFAULT_TENANT,
                dynamic: None,
            },
        )
        .unwrap();
        let plan = admin::add_plan(
            &mut c,
            &NewPlan {
                name: "single".into(),
                time_quota: Some(3600),
                shared_users: 1,
                ..Default::default()
            },
        )
        .unwrap();
        admin::add_vouchers(
            &mut c,
            &[NewVoucher {
                code: "A1".into(),
                password: None,
                plan_id: plan.id,
                site: None,
                batch: None,
            }],
        )
        .unwrap();
        (c, nas.id)
    }

    fn login(nas_id: i64, mac: &str, asid: &str) -> AccessFacts {
        AccessFacts {
            nas_id,
            router: String::new(),
            nas_name: "r1".into(),
            nas_site: None,
            tenant_id: crate::model::DEFAULT_TENANT,
            username: "A1".into(),
            credential: Credential::Pap(b"A1".to_vec()),
            mac: Some(mac.into()),
            acct_session_id: Some(asid.into()),
            framed_ip: None,
        }
    }

    fn accepted(d: &AccessDecision) -> bool {
        matches!(d, AccessDecision::Accept(_))
    }

    /// An entry whose effects are still queued is not dropped by an
    /// invalidation: a decision on the engine must see the device it holds,
    /// which the database does not have yet. Once written, it is dropped.
    #[test]
    fn invalidated_entry_with_queued_effects_is_kept_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, nas) = setup(dir.path());
        let mut mem = AuthMemory::default();

        let first = [login(nas, "aa-aa-aa-aa-aa-01", "s1")];
        let state = mem.load(&conn, &first, NOW, TTL).unwrap();
        let (d, effects, after) = decide_batch_state(&first, state, NOW, TTL, decide);
        assert!(accepted(&d[0]));
        let (seq, touched) = mem.remember(after, &effects, NOW, TTL);
        assert_eq!(mem.backlog(), 1);

        // Accounting (say) changed the voucher while the accept's effects wait.
        mem.invalidate(touched[0]);
        assert!(mem
            .entries
            .get(crate::model::DEFAULT_TENANT, "A1")
            .is_some_and(|e| e.stale));
        let second = [login(nas, "aa-aa-aa-aa-aa-02", "s2")];
        let state = mem.load(&conn, &second, NOW + 1, TTL).unwrap();
        let (d, ..) = decide_batch_state(&second, state, NOW + 1, TTL, decide);
        assert_eq!(
            d[0],
            AccessDecision::Reject(RejectReason::SharedUsersLimit),
            "the queued accept still holds the only device slot"
        );

        write(&conn, &effects, &[], NOW).unwrap();
        mem.written(seq, &touched);
        assert_eq!(mem.backlog(), 0);
        assert!(
            mem.entries
                .get(crate::model::DEFAULT_TENANT, "A1")
                .is_none(),
            "dropped once written"
        );
        // Read again from the database, which now has the accept.
        let state = mem.load(&conn, &second, NOW + 2, TTL).unwrap();
        let (d, ..) = decide_batch_state(&second, state, NOW + 2, TTL, decide);
        assert_eq!(d[0], AccessDecision::Reject(RejectReason::SharedUsersLimit));
    }

    /// An admin change from another connection (the CLI) is seen by the first
    /// batch decided in memory once `ADMIN_CHECK_EVERY` has passed.
    #[test]
    fn admin_change_elsewhere_sends_the_next_batch_to_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, nas) = setup(dir.path());
        let mut mem = AuthMemory::default();
        let batch = [login(nas, "aa-aa-aa-aa-aa-01", "s1")];
        assert!(mem.state_for(&batch).is_none(), "no watch connection yet");
        mem.watch(Connection::open(dir.path().join("db.sqlite")).unwrap());
        mem.load(&conn, &batch, NOW, TTL).unwrap();
        // The first look only learns the generation.
        assert!(mem.state_for(&batch).is_none());
        assert!(mem.state_for(&batch).is_some(), "decided in memory");

        let mut cli = Connection::open(dir.path().join("db.sqlite")).unwrap();
        admin::revoke_voucher(&mut cli, "A1").unwrap();
        std::thread::sleep(ADMIN_CHECK_EVERY);
        assert!(mem.state_for(&batch).is_none(), "the revoke is noticed");
        assert!(
            mem.entries
                .get(crate::model::DEFAULT_TENANT, "A1")
                .is_none(),
            "and the entry dropped"
        );
        let state = mem.load(&conn, &batch, NOW, TTL).unwrap();
        let (d, ..) = decide_batch_state(&batch, state, NOW, TTL, decide);
        assert_eq!(d[0], AccessDecision::Reject(RejectReason::Revoked));
    }

    /// A device that logs in again and again keeps at most two `authorized`
    /// rows in memory.
    #[test]
    fn repeated_logins_keep_two_rows_per_device() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, nas) = setup(dir.path());
        let mut mem = AuthMemory::default();
        for i in 0..10 {
            let batch = [login(nas, "aa-aa-aa-aa-aa-01", &format!("s{i}"))];
            let state = mem.load(&conn, &batch, NOW + i, TTL).unwrap();
            let (d, effects, after) = decide_batch_state(&batch, state, NOW + i, TTL, decide);
            assert!(accepted(&d[0]), "the same device may log in again");
            let (seq, touched) = mem.remember(after, &effects, NOW + i, TTL);
            write(&conn, &effects, &[], NOW + i).unwrap();
            mem.written(seq, &touched);
        }
        let e = mem.entries.get(crate::model::DEFAULT_TENANT, "A1").unwrap();
        assert_eq!(e.sessions.len(), 2, "{:?}", e.sessions);
        assert!(mem.owner.len() <= 2);
    }
}
