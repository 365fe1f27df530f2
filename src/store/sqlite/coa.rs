//! The CoA/Disconnect queue on SQLite (`coa_requests`): written in the
//! transaction that calls for a request (revoke, accounting, plan change),
//! claimed and finished by the server's CoA worker. See `crate::coa`.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::admin::session_row;
use crate::coa::CoaKind;
use crate::model::Timestamp;
use crate::policy::{quota_end, QuotaEnd, QuotaUse};
use crate::store::rows::{i64_to_u64, SESSION_COLS};
use crate::store::{CoaRequest, StoreError, StoreResult};

/// Finished requests are kept this long (seconds): they keep a fair-use
/// slow-down from being sent again at every Interim-Update.
const KEEP_DONE: i64 = 7 * 86_400;

/// Sessions that may be online on the router: open ones, and accepted ones
/// whose Accounting-Start has not arrived yet (RouterOS sends the real
/// Acct-Session-Id in the Access-Request; rows with a server-made id cannot be
/// named to the router). Authorized rows stop being live after
/// `authorized_ttl`, when the stale sweep closes them.
const LIVE: &str = "(s.state = 'open' OR (s.state = 'authorized' \
     AND substr(s.acct_session_id, 1, 5) <> 'auth-'))";

/// Which open sessions a queued request is for.
pub(super) enum Sessions {
    /// The open sessions of one voucher.
    OfVoucher(i64),
    /// The open sessions of every voucher of one plan.
    OfPlan(i64),
    /// One session, by id.
    One(i64),
}

/// Whether a request for `reason` is sent once per session: an end (revoke,
/// quota) or a slow-down is not sent again once acknowledged or while in
/// flight; a plan change is sent again for every change (the values are
/// read when it is sent, so one still waiting covers the next change).
fn once(reason: &str) -> bool {
    reason != "plan_changed"
}

/// Queue `kind` for the live sessions `which` names ([`LIVE`]), except those
/// that already have a request for the same reason waiting to be sent — or,
/// for a reason sent [`once`], one in flight or acknowledged. A Disconnect also
/// marks the sessions `disconnect_requested_at`. Returns how many were queued.
pub(super) fn queue(
    tx: &Connection,
    which: Sessions,
    kind: CoaKind,
    reason: &str,
    now: Timestamp,
) -> StoreResult<u64> {
    let (filter, id) = match which {
        Sessions::OfVoucher(id) => ("s.voucher_id = ?1", id),
        Sessions::OfPlan(id) => (
            "s.voucher_id IN (SELECT v.id FROM vouchers v WHERE v.plan_id = ?1)",
            id,
        ),
        Sessions::One(id) => ("s.id = ?1", id),
    };
    let n = tx
        .prepare_cached(&format!(
            "INSERT INTO coa_requests (session_id, kind, reason, state, created_at) \
             SELECT s.id, ?2, ?3, 'pending', ?4 FROM sessions s \
             WHERE {filter} AND {LIVE} AND NOT EXISTS (SELECT 1 FROM coa_requests r \
             WHERE r.session_id = s.id AND r.reason = ?3 \
             AND (r.state = 'pending' OR (?5 AND (r.state = 'sending' OR r.result LIKE '% ack'))))"
        ))?
        .execute(params![id, kind.label(), reason, now, once(reason)])?;
    if kind == CoaKind::Disconnect && n > 0 {
        tx.prepare_cached(&format!(
            "UPDATE sessions SET disconnect_requested_at = ?2 FROM \
             (SELECT s.id AS sid FROM sessions s WHERE {filter} AND {LIVE}) \
             WHERE id = sid AND disconnect_requested_at IS NULL"
        ))?
        .execute(params![id, now])?;
    }
    Ok(n as u64)
}

/// After an accounting batch added usage to vouchers (`(id, seconds, bytes)`
/// added): queue a Disconnect (or, on a fair-use plan with the data used up,
/// a CoA with the slow rate) for the open sessions of each voucher whose
/// quota is now used up, and write `voucher.used_up` for each that this
/// usage used up. The rule is `policy::quota_end`; this only reads and writes.
pub(super) fn queue_quota_ends(
    tx: &Connection,
    usage: &[(i64, i64, i64)],
    now: Timestamp,
) -> StoreResult<()> {
    for &(id, added_seconds, added_bytes) in usage {
        let row = tx
            .prepare_cached(
                "SELECT v.used_seconds, v.used_bytes, p.time_quota, p.data_quota, \
                 p.after_data_rate_limit FROM vouchers v JOIN plans p ON p.id = v.plan_id \
                 WHERE v.id = ?1",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })
            .optional()?;
        let Some((used_seconds, used_bytes, time_quota, data_quota, fair)) = row else {
            continue;
        };
        let at = |seconds: i64, bytes: i64| {
            quota_end(&QuotaUse {
                time_quota: time_quota.map(i64_to_u64),
                data_quota: data_quota.map(i64_to_u64),
                after_data_rate_limit: fair.as_deref(),
                used_seconds: i64_to_u64(seconds),
                used_bytes: i64_to_u64(bytes),
            })
        };
        let end = at(used_seconds, used_bytes);
        let before = at(used_seconds - added_seconds, used_bytes - added_bytes);
        if crate::events::used_up(before, end) {
            super::events::voucher_event(tx, crate::events::EventType::VoucherUsedUp, id, now)?;
        }
        let kind = match end {
            None => continue,
            Some(QuotaEnd::Disconnect) => CoaKind::Disconnect,
            Some(QuotaEnd::SlowDown) => CoaKind::Coa,
        };
        let reason = end.map_or("", QuotaEnd::reason);
        queue(tx, Sessions::OfVoucher(id), kind, reason, now)?;
    }
    Ok(())
}

pub(super) fn claim(
    conn: &mut Connection,
    now: Timestamp,
    limit: u32,
    reclaim_before: Timestamp,
) -> StoreResult<Vec<CoaRequest>> {
    // A read first: the poll runs every half second and usually finds nothing,
    // which then costs no write transaction.
    let waiting: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM coa_requests WHERE state = 'pending' \
             UNION ALL SELECT id FROM coa_requests WHERE state = 'sending' AND claimed_at < ?1 \
             LIMIT 1",
        )?
        .query_row([reclaim_before], |r| r.get(0))
        .optional()?;
    if waiting.is_none() {
        return Ok(Vec::new());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let picked: Vec<(i64, String, String, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, kind, reason, session_id FROM (\
             SELECT id, kind, reason, session_id FROM coa_requests WHERE state = 'pending' \
             UNION ALL SELECT id, kind, reason, session_id FROM coa_requests \
             WHERE state = 'sending' AND claimed_at < ?1) ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![reclaim_before, i64::from(limit)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut out = Vec::with_capacity(picked.len());
    {
        let mut mark = tx.prepare_cached(
            "UPDATE coa_requests SET state = 'sending', claimed_at = ?2 WHERE id = ?1",
        )?;
        let mut session = tx.prepare_cached(&format!(
            "SELECT {SESSION_COLS} FROM sessions s JOIN nas n ON n.id = s.nas_id WHERE s.id = ?1"
        ))?;
        for (id, kind, reason, session_id) in picked {
            mark.execute(params![id, now])?;
            let kind = CoaKind::parse(&kind)
                .ok_or_else(|| StoreError::Invalid(format!("stored CoA kind {kind:?}")))?;
            let Some(row) = session.query_row([session_id], session_row).optional()? else {
                continue;
            };
            out.push(CoaRequest {
                id,
                kind,
                reason,
                session: row.into_model()?,
            });
        }
    }
    tx.commit()?;
    Ok(out)
}

pub(super) fn finish(
    conn: &mut Connection,
    request_id: Option<i64>,
    session_id: i64,
    kind: CoaKind,
    result: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(id) = request_id {
        tx.prepare_cached(
            "UPDATE coa_requests SET state = 'done', done_at = ?2, result = ?3 WHERE id = ?1",
        )?
        .execute(params![id, now, result])?;
        tx.prepare_cached("DELETE FROM coa_requests WHERE state = 'done' AND done_at < ?1")?
            .execute([now - KEEP_DONE])?;
    }
    tx.prepare_cached(
        "UPDATE sessions SET coa_result = ?2, disconnect_requested_at = \
         CASE WHEN ?3 THEN COALESCE(disconnect_requested_at, ?4) ELSE disconnect_requested_at END \
         WHERE id = ?1",
    )?
    .execute(params![
        session_id,
        result,
        kind == CoaKind::Disconnect,
        now
    ])?;
    tx.commit()?;
    Ok(())
}
