//! Accounting on the engine thread: the records are applied by
//! `policy::account_batch` to the rows read here, the result is written into
//! the group transaction, and the caller hears back only after that commits.

use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::oneshot;

use std::sync::Mutex;

use super::engine::{GroupJob, GroupOutcome};
use super::memory::{self, AuthMemory};

use std::collections::HashMap;

use crate::events::{self, EventType};
use crate::model::{SessionState, Timestamp};
use crate::policy::accounting::{adoption_vouchers, session_keys, wanted_vouchers};
use crate::policy::{account_batch, AcctRecord, AcctSession, AcctState, AcctStatus};
use crate::store::rows::{AcctSessionRow, ACCT_SESSION_COLS};
use crate::store::{StoreError, StoreResult};

/// An accounting batch for the engine's group transaction, acknowledged once
/// the group commits.
pub(super) struct AccountingJob {
    pub records: Vec<AcctRecord>,
    pub reply: oneshot::Sender<StoreResult<()>>,
}

impl GroupJob for AccountingJob {
    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }

    fn run(self: Box<Self>, conn: &Connection, memory: &Mutex<AuthMemory>) -> GroupOutcome {
        let AccountingJob { records, reply } = *self;
        let mut touched = Vec::new();
        let result = record(conn, &mut touched, &records);
        // What authorization holds about these vouchers may have changed
        // (sessions opened, closed or moved, usage); on failure the rows are
        // rolled back, and reading them again is right either way.
        let mut mem = memory::lock(memory);
        if touched.iter().any(|t| matches!(t, Touched::All)) {
            mem.invalidate_all();
        } else {
            for t in &touched {
                if let Touched::Voucher(id) = t {
                    mem.invalidate(*id);
                }
            }
        }
        drop(mem);
        match result {
            Ok(()) => GroupOutcome::AfterCommit(Box::new(move |committed| {
                let _ = reply.send(committed.map_err(StoreError::Invalid));
            })),
            Err(e) => {
                let _ = reply.send(Err(e));
                GroupOutcome::Failed
            }
        }
    }
}

/// What an accounting batch changed that authorization keeps in memory.
enum Touched {
    Voucher(i64),
    /// Sessions of a whole NAS.
    All,
}

fn record(
    conn: &Connection,
    touched: &mut Vec<Touched>,
    records: &[AcctRecord],
) -> StoreResult<()> {
    // Accounting-On/Off closes the NAS's live sessions at its place in the
    // order: the records before it are stored first, those after it see the
    // closed rows.
    let mut run_start = 0;
    for (i, rec) in records.iter().enumerate() {
        let cause = match rec.status {
            AcctStatus::AccountingOn => "accounting-on",
            AcctStatus::AccountingOff => "accounting-off",
            AcctStatus::Start | AcctStatus::InterimUpdate | AcctStatus::Stop => continue,
        };
        account_run(conn, touched, &records[run_start..i])?;
        touched.push(Touched::All);
        close_live_sessions(conn, rec.nas_id, &rec.router, None, cause, rec.received_at)?;
        run_start = i + 1;
    }
    account_run(conn, touched, &records[run_start..])
}

fn acct_session(row: &rusqlite::Row<'_>) -> StoreResult<AcctSession> {
    AcctSessionRow {
        id: row.get(0)?,
        nas_id: row.get(1)?,
        acct_session_id: row.get(2)?,
        username: row.get(3)?,
        voucher_id: row.get(4)?,
        mac: row.get(5)?,
        framed_ip: row.get(6)?,
        state: row.get(7)?,
        started_at: row.get(8)?,
        updated_at: row.get(9)?,
        stopped_at: row.get(10)?,
        terminate_cause: row.get(11)?,
        session_time: row.get(12)?,
        input_octets: row.get(13)?,
        output_octets: row.get(14)?,
        router: row.get(15)?,
    }
    .into_model()
}

/// A run of Start / Interim-Update / Stop records.
fn account_run(
    tx: &Connection,
    touched: &mut Vec<Touched>,
    records: &[AcctRecord],
) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut state = AcctState::default();
    {
        let sql = format!(
            "SELECT {ACCT_SESSION_COLS} FROM sessions WHERE nas_id = ?1 AND acct_session_id = ?2"
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        // Every router's row for the pair: the policy picks the record's router's.
        for (nas_id, asid) in session_keys(records) {
            let mut rows = stmt.query(params![nas_id, asid])?;
            while let Some(row) = rows.next()? {
                state.sessions.push(acct_session(row)?);
            }
        }
    }
    let wanted = wanted_vouchers(records, &state.sessions);
    if !wanted.is_empty() {
        // Only the NAS's tenant's vouchers: by Class id, else by User-Name.
        let mut by_id = tx.prepare_cached(
            "SELECT id, tenant_id, code FROM vouchers WHERE id = ?1 AND tenant_id = ?2",
        )?;
        let mut by_code = tx.prepare_cached(
            "SELECT id, tenant_id, code FROM vouchers WHERE tenant_id = ?1 AND code = ?2",
        )?;
        for (class_id, tenant_id, username) in wanted {
            let mut found = Vec::with_capacity(2);
            if let Some(id) = class_id {
                let mut rows = by_id.query(params![id, tenant_id])?;
                if let Some(row) = rows.next()? {
                    found.push((row.get(0)?, row.get(1)?, row.get(2)?));
                }
            }
            if !username.is_empty() {
                let mut rows = by_code.query(params![tenant_id, username])?;
                if let Some(row) = rows.next()? {
                    found.push((row.get(0)?, row.get(1)?, row.get(2)?));
                }
            }
            for v in found {
                if !state.vouchers.contains(&v) {
                    state.vouchers.push(v);
                }
            }
        }
    }
    let adopt = adoption_vouchers(records, &state.sessions, &state.vouchers);
    if !adopt.is_empty() {
        let sql = format!(
            "SELECT {ACCT_SESSION_COLS} FROM sessions WHERE voucher_id = ?1 \
             AND state = 'authorized' AND acct_session_id LIKE 'auth-%' AND mac IS NOT NULL \
             ORDER BY authorized_at DESC, id DESC"
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        // Newest first within each voucher: adoption matches on the voucher.
        for v in adopt {
            let mut rows = stmt.query([v])?;
            while let Some(row) = rows.next()? {
                state.adoptable.push(acct_session(row)?);
            }
        }
    }

    // Every voucher whose sessions or usage this batch may change: the rows'
    // vouchers before and after, the adopted rows', and the usage.
    for s in state.sessions.iter().chain(&state.adoptable) {
        touched.extend(s.voucher_id.map(Touched::Voucher));
    }
    // Whether each stored row had started and was closed: the session
    // events are the rows that change either (`events::session_events`).
    let before: HashMap<i64, (bool, bool)> = state
        .sessions
        .iter()
        .chain(&state.adoptable)
        .filter_map(|s| {
            let closed = s.state == SessionState::Closed;
            s.id.map(|id| (id, (s.started_at.is_some(), closed)))
        })
        .collect();
    // The indexed columns of each stored row as read: an update that leaves
    // them as they were (an Interim-Update, most of the traffic) writes only
    // the counters and times, so SQLite maintains one index (`updated_at`'s)
    // instead of four.
    let indexed: HashMap<i64, IndexedColumns> = state
        .sessions
        .iter()
        .chain(&state.adoptable)
        .filter_map(|s| s.id.map(|id| (id, IndexedColumns::of(s))))
        .collect();
    let (effects, skipped) = account_batch(records, state);
    for s in effects.inserts.iter().chain(&effects.updates) {
        touched.extend(s.voucher_id.map(Touched::Voucher));
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "accounting records without Acct-Session-Id ignored"
        );
    }
    if !effects.inserts.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO sessions (nas_id, acct_session_id, username, voucher_id, mac, framed_ip, \
             state, started_at, updated_at, stopped_at, session_time, input_octets, output_octets, \
             terminate_cause, router) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        for s in &effects.inserts {
            stmt.execute(params![
                s.nas_id,
                s.acct_session_id,
                s.username,
                s.voucher_id,
                s.mac,
                s.framed_ip,
                s.state.as_str(),
                s.started_at,
                s.updated_at,
                s.stopped_at,
                s.session_time,
                s.input_octets,
                s.output_octets,
                s.terminate_cause,
                s.router,
            ])?;
        }
    }
    if !effects.updates.is_empty() {
        let mut whole = tx.prepare_cached(
            "UPDATE sessions SET acct_session_id = ?2, voucher_id = ?3, mac = ?4, framed_ip = ?5, \
             state = ?6, started_at = ?7, stopped_at = ?8, terminate_cause = ?9, session_time = ?10, \
             input_octets = ?11, output_octets = ?12, updated_at = ?13, router = ?14 WHERE id = ?1",
        )?;
        let mut counters = tx.prepare_cached(
            "UPDATE sessions SET framed_ip = ?2, started_at = ?3, stopped_at = ?4, \
             terminate_cause = ?5, session_time = ?6, input_octets = ?7, output_octets = ?8, \
             updated_at = ?9 WHERE id = ?1",
        )?;
        for s in &effects.updates {
            let same_keys =
                s.id.and_then(|id| indexed.get(&id))
                    .is_some_and(|before| before.same_as(s));
            if same_keys {
                counters.execute(params![
                    s.id,
                    s.framed_ip,
                    s.started_at,
                    s.stopped_at,
                    s.terminate_cause,
                    s.session_time,
                    s.input_octets,
                    s.output_octets,
                    s.updated_at,
                ])?;
                continue;
            }
            whole.execute(params![
                s.id,
                s.acct_session_id,
                s.voucher_id,
                s.mac,
                s.framed_ip,
                s.state.as_str(),
                s.started_at,
                s.stopped_at,
                s.terminate_cause,
                s.session_time,
                s.input_octets,
                s.output_octets,
                s.updated_at,
                s.router,
            ])?;
        }
    }
    let now = records.iter().map(|r| r.received_at).max().unwrap_or(0);
    for (nas_id, router, asid, t) in
        events::session_events(&before, effects.inserts.iter().chain(&effects.updates))
    {
        super::events::session_event(tx, t, (nas_id, router, asid), now)?;
    }
    if !effects.usage.is_empty() {
        let mut stmt = tx.prepare_cached(
            "UPDATE vouchers SET used_seconds = used_seconds + ?2, used_bytes = used_bytes + ?3 \
             WHERE id = ?1",
        )?;
        for (id, seconds, bytes) in &effects.usage {
            touched.push(Touched::Voucher(*id));
            stmt.execute(params![id, seconds, bytes])?;
        }
        // A quota used up ends (or slows) the voucher's open sessions: the
        // requests (and the `voucher.used_up` event) are queued in this
        // transaction (see crate::coa).
        let used: Vec<(i64, i64, i64)> = effects
            .usage
            .iter()
            .filter(|(_, seconds, bytes)| *seconds > 0 || *bytes > 0)
            .copied()
            .collect();
        super::coa::queue_quota_ends(tx, &used, now)?;
    }
    Ok(())
}

/// The columns of a session row that some index of `sessions` holds, besides
/// `nas_id` (a row never changes NAS) and `updated_at` (every write changes it).
struct IndexedColumns {
    acct_session_id: String,
    voucher_id: Option<i64>,
    mac: Option<String>,
    state: SessionState,
    router: String,
}

impl IndexedColumns {
    fn of(s: &AcctSession) -> Self {
        IndexedColumns {
            acct_session_id: s.acct_session_id.clone(),
            voucher_id: s.voucher_id,
            mac: s.mac.clone(),
            state: s.state,
            router: s.router.clone(),
        }
    }

    /// Whether `s` has these values in every indexed column.
    fn same_as(&self, s: &AcctSession) -> bool {
        self.acct_session_id == s.acct_session_id
            && self.voucher_id == s.voucher_id
            && self.mac == s.mac
            && self.state == s.state
            && self.router == s.router
    }
}

/// Close sessions of `nas_id`'s `router` ([`crate::model::Nas::router_key`];
/// rows stored before routers were told apart count as every router's) with
/// `cause`: with `keep_prefix`, the open ones whose Acct-Session-Id does not
/// start with it (a NAS reboot: authorized rows may carry server-made ids and
/// expire on their own); with `None`, every live one, open or authorized
/// (Accounting-On/Off).
pub(super) fn close_live_sessions(
    tx: &Connection,
    nas_id: i64,
    router: &str,
    keep_prefix: Option<&str>,
    cause: &str,
    now: Timestamp,
) -> StoreResult<u64> {
    // substr/length rather than LIKE: LIKE would treat `_` and `%` in a session
    // id as wildcards, and is case-insensitive.
    let closed: Vec<(String, String, bool)> = {
        let mut stmt = tx.prepare_cached(
            "UPDATE sessions SET state = 'closed', stopped_at = ?3, terminate_cause = ?4 \
             WHERE nas_id = ?1 AND state IN ('open', 'authorized') AND router IN (?5, '') \
             AND (?2 IS NULL OR (state = 'open' AND substr(acct_session_id, 1, length(?2)) <> ?2)) \
             RETURNING router, acct_session_id, started_at IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![nas_id, keep_prefix, now, cause, router], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    stopped_events(
        tx,
        closed
            .iter()
            .map(|(router, a, s)| ((nas_id, router.as_str(), a.as_str()), *s)),
        now,
    )?;
    Ok(closed.len() as u64)
}

/// `session.stopped` for the sessions the server closed that had started
/// (an authorized row that never started ends without an event).
fn stopped_events<'a>(
    tx: &Connection,
    closed: impl Iterator<Item = ((i64, &'a str, &'a str), bool)>,
    now: Timestamp,
) -> StoreResult<()> {
    for (key, started) in closed {
        if started {
            super::events::session_event(tx, EventType::SessionStopped, key, now)?;
        }
    }
    Ok(())
}

/// Close open sessions with no accounting for 2 × interim + `grace`, and
/// authorized ones that never started within `authorized_ttl` (closed rather
/// than deleted, so `session list` still shows the login; a late Start
/// reopens the row).
pub(super) fn close_stale_sessions(
    conn: &mut Connection,
    now: Timestamp,
    default_interim: u64,
    grace: u64,
    authorized_ttl: u64,
) -> StoreResult<u64> {
    use crate::policy::accounting::counter_to_i64;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stale: Vec<(i64, String, String, bool)> = {
        let mut stmt = tx.prepare(
            "UPDATE sessions SET state = 'closed', stopped_at = ?1, terminate_cause = 'stale' \
             WHERE state = 'open' AND updated_at + 2 * COALESCE(interim_interval, ?2) + ?3 < ?1 \
             RETURNING nas_id, router, acct_session_id, started_at IS NOT NULL",
        )?;
        let rows = stmt.query_map(
            params![now, counter_to_i64(default_interim), counter_to_i64(grace)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    stopped_events(
        &tx,
        stale
            .iter()
            .map(|(n, r, a, s)| ((*n, r.as_str(), a.as_str()), *s)),
        now,
    )?;
    let stale = stale.len();
    let unstarted = tx.execute(
        "UPDATE sessions SET state = 'closed', stopped_at = ?1, terminate_cause = 'not-started' \
         WHERE state = 'authorized' AND COALESCE(authorized_at, updated_at) <= ?2",
        params![now, now.saturating_sub(counter_to_i64(authorized_ttl))],
    )?;
    tx.commit()?;
    Ok((stale + unstarted) as u64)
}
