//! Authorization on the engine thread: read what the batch needs (no write),
//! decide with `policy::decide_batch`, hand the decisions back, then write the
//! effects and the auth events into the group transaction (committed within
//! `engine::MAX_GROUP_AGE`).

use std::collections::HashSet;

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::engine::{GroupJob, GroupOutcome, VoucherCache};
use crate::model::{Plan, Timestamp, Voucher};
use crate::policy::{
    decide_batch, AccessDecision, AccessFacts, AuthEffects, AuthState, LiveSession, VoucherSnapshot,
};
use crate::store::rows::{LiveSessionRow, PlanRow, VoucherRow, LIVE_SESSION_COLS};
use crate::store::{decision_result, AuthorizeOptions, StoreError, StoreResult};

/// Voucher and plan by code, both in one row.
const VOUCHER_BY_CODE: &str = "SELECT v.id, v.code, v.password, v.plan_id, p.name, v.site, \
     v.state, v.first_login_at, v.valid_until, v.used_seconds, v.used_bytes, v.bound_mac, \
     v.batch, v.created_at, p.time_quota, p.validity, p.expires_at, p.data_quota, \
     p.rate_limit, p.shared_users, p.mac_lock, p.idle_timeout, p.interim_interval, \
     p.mikrotik_group, p.address_list, p.price, p.created_at \
     FROM vouchers v JOIN plans p ON p.id = v.plan_id WHERE v.code = ?1";

/// An authorization batch for the engine's group transaction.
pub(super) struct AuthorizeJob<F> {
    pub requests: Vec<AccessFacts>,
    pub now: Timestamp,
    pub opts: AuthorizeOptions,
    pub decide: F,
    pub reply: oneshot::Sender<StoreResult<Vec<AccessDecision>>>,
}

impl<F> GroupJob for AuthorizeJob<F>
where
    F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision + Send,
{
    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }

    fn run(self: Box<Self>, conn: &Connection, cache: &mut VoucherCache) -> GroupOutcome {
        let AuthorizeJob {
            requests,
            now,
            opts,
            decide,
            reply,
        } = *self;
        // The group transaction holds the write lock from before these reads,
        // so another process (the CLI) cannot change what the batch was decided
        // on before its effects land.
        let state = match read_state(conn, cache, &requests, now, opts.authorized_ttl) {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(e));
                return GroupOutcome::Failed;
            }
        };
        let (decisions, effects) = decide_batch(&requests, state, now, opts.authorized_ttl, decide);
        let events: Vec<(&'static str, Option<&'static str>)> = decisions
            .iter()
            .map(|d| {
                let (result, reason) = decision_result(d);
                (result, reason.map(|r| r.label()))
            })
            .collect();
        // The answer goes out now; the writes below and the commit are not on its path.
        let _ = reply.send(Ok(decisions));
        for (id, _) in &effects.activations {
            cache.forget(*id);
        }
        for (id, _) in &effects.bindings {
            cache.forget(*id);
        }
        match write_effects(conn, &effects, now)
            .and_then(|()| write_events(conn, &requests, &events, now))
        {
            // Nothing waits for the commit (a failed one is logged by the engine).
            Ok(()) => GroupOutcome::Done,
            Err(e) => {
                tracing::error!(error = %e, requests = requests.len(), "an authorization batch was answered but storing its effects failed");
                GroupOutcome::Failed
            }
        }
    }
}

/// One probe per distinct code and per session key: the vouchers with their
/// plans, the live sessions of those vouchers, and the rows the accepts may
/// upsert (whatever their voucher or state).
fn read_state(
    conn: &Connection,
    cache: &mut VoucherCache,
    requests: &[AccessFacts],
    now: Timestamp,
    authorized_ttl: u64,
) -> StoreResult<AuthState> {
    let live_after = now.saturating_sub(i64::try_from(authorized_ttl).unwrap_or(i64::MAX));
    let mut state = AuthState::default();
    let mut codes = HashSet::new();
    cache.check(conn)?;
    {
        let mut stmt = conn.prepare_cached(VOUCHER_BY_CODE)?;
        for f in requests {
            if !codes.insert(f.username.as_str()) {
                continue;
            }
            let found = match cache.get(&f.username) {
                Some(found) => found.clone(),
                None => {
                    let mut rows = stmt.query([&f.username])?;
                    let found = match rows.next()? {
                        Some(row) => Some(voucher_and_plan(row)?),
                        None => None,
                    };
                    cache.insert(&f.username, found.clone());
                    found
                }
            };
            if let Some(vp) = found {
                state.vouchers.push(vp);
            }
        }
    }
    let mut seen: HashSet<(i64, String)> = HashSet::new();
    {
        // At most two rows per device: a device is live if any of its rows is,
        // and the second row keeps it live should an accept of this batch move
        // the first to another voucher. A router that logs a device in again
        // and again leaves many rows; reading them all would cost per login.
        let sql = format!(
            "SELECT {LIVE_SESSION_COLS} FROM (SELECT {LIVE_SESSION_COLS}, row_number() OVER \
             (PARTITION BY mac ORDER BY state, authorized_at DESC) AS n FROM sessions \
             WHERE voucher_id = ?1 AND mac IS NOT NULL \
             AND (state = 'open' OR (state = 'authorized' AND authorized_at > ?2))) WHERE n <= 2"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        for (v, _) in &state.vouchers {
            let mut rows = stmt.query(params![v.id, live_after])?;
            while let Some(row) = rows.next()? {
                let s = live_session(row)?;
                if seen.insert((s.nas_id, s.acct_session_id.clone())) {
                    state.sessions.push(s);
                }
            }
        }
    }
    {
        let sql = format!(
            "SELECT {LIVE_SESSION_COLS} FROM sessions WHERE nas_id = ?1 AND acct_session_id = ?2"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        for f in requests {
            let Some(asid) = f.acct_session_id.as_deref().filter(|a| !a.is_empty()) else {
                continue;
            };
            if seen.contains(&(f.nas_id, asid.to_owned())) {
                continue;
            }
            let mut rows = stmt.query(params![f.nas_id, asid])?;
            if let Some(row) = rows.next()? {
                let s = live_session(row)?;
                seen.insert((s.nas_id, s.acct_session_id.clone()));
                state.sessions.push(s);
            }
        }
    }
    Ok(state)
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
    }
    .into_model()
}

fn write_effects(conn: &Connection, effects: &AuthEffects, now: Timestamp) -> StoreResult<()> {
    if effects.is_empty() {
        return Ok(());
    }
    // Guarded like the in-memory check, so a voucher is activated (and bound)
    // once even if another process raced for it.
    if !effects.activations.is_empty() {
        let mut stmt = conn.prepare_cached(
            "UPDATE vouchers SET first_login_at = ?2, valid_until = ?3 \
             WHERE id = ?1 AND first_login_at IS NULL",
        )?;
        for (id, act) in &effects.activations {
            stmt.execute(params![id, act.first_login_at, act.valid_until])?;
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
    // A row that accounting already opened (or closed) keeps its state and
    // counters; only the voucher link and device are refreshed.
    let mut stmt = conn.prepare_cached(
        "INSERT INTO sessions (nas_id, acct_session_id, username, voucher_id, mac, framed_ip, \
         state, authorized_at, updated_at, interim_interval) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'authorized', ?7, ?7, ?8) \
         ON CONFLICT (nas_id, acct_session_id) DO UPDATE SET \
         voucher_id = excluded.voucher_id, mac = COALESCE(excluded.mac, sessions.mac), \
         framed_ip = COALESCE(excluded.framed_ip, sessions.framed_ip), \
         authorized_at = excluded.authorized_at, updated_at = excluded.updated_at, \
         interim_interval = COALESCE(excluded.interim_interval, sessions.interim_interval)",
    )?;
    for g in &effects.sessions {
        stmt.execute(params![
            g.nas_id,
            g.acct_session_id,
            g.username,
            g.voucher_id,
            g.mac,
            g.framed_ip,
            now,
            g.interim_interval.map(i64::from),
        ])?;
    }
    Ok(())
}

fn write_events(
    conn: &Connection,
    requests: &[AccessFacts],
    events: &[(&'static str, Option<&'static str>)],
    now: Timestamp,
) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO auth_events (at, nas_id, nas_name, username, mac, result, reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (f, (result, reason)) in requests.iter().zip(events) {
        stmt.execute(params![
            now, f.nas_id, f.nas_name, f.username, f.mac, result, reason
        ])?;
    }
    Ok(())
}
