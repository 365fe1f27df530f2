//! The CoA/Disconnect queue on PostgreSQL (`coa_requests`), as on SQLite
//! (`store/sqlite/coa.rs`): written in the transaction that calls for a
//! request, claimed with `FOR UPDATE SKIP LOCKED` so two servers on one
//! database never send the same request.

use sqlx::{PgConnection, PgPool};

use crate::coa::CoaKind;
use crate::model::{Nas, Plan, Session, Timestamp, Voucher};
use crate::policy::{quota_end, QuotaEnd, QuotaUse};
use crate::store::rows::{
    i64_to_u64, opt_u64_to_i64, NasRow, SessionRow, VoucherRow, NAS_COLS, SESSION_COLS,
    VOUCHER_COLS,
};
use crate::store::{CoaRequest, StoreError, StoreResult};

/// Finished requests are kept this long (seconds), as on SQLite.
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
    OfVoucher(i64),
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
pub(super) async fn queue(
    conn: &mut PgConnection,
    which: Sessions,
    kind: CoaKind,
    reason: &str,
    now: Timestamp,
) -> StoreResult<u64> {
    let (filter, id) = match which {
        Sessions::OfVoucher(id) => ("s.voucher_id = $1", id),
        Sessions::OfPlan(id) => (
            "s.voucher_id IN (SELECT v.id FROM vouchers v WHERE v.plan_id = $1)",
            id,
        ),
        Sessions::One(id) => ("s.id = $1", id),
    };
    let n = sqlx::query(&format!(
        "INSERT INTO coa_requests (session_id, kind, reason, state, created_at) \
         SELECT s.id, $2, $3, 'pending', $4 FROM sessions s \
         WHERE {filter} AND {LIVE} AND NOT EXISTS (SELECT 1 FROM coa_requests r \
         WHERE r.session_id = s.id AND r.reason = $3 \
         AND (r.state = 'pending' OR ($5 AND (r.state = 'sending' OR r.result LIKE '% ack'))))"
    ))
    .bind(id)
    .bind(kind.label())
    .bind(reason)
    .bind(now)
    .bind(once(reason))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if kind == CoaKind::Disconnect && n > 0 {
        sqlx::query(&format!(
            "UPDATE sessions SET disconnect_requested_at = $2 WHERE id IN \
             (SELECT s.id FROM sessions s WHERE {filter} AND {LIVE}) \
             AND disconnect_requested_at IS NULL"
        ))
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(n)
}

/// A voucher whose usage an accounting run made grow: its totals after the
/// run, what the run added, and its plan's quotas.
pub(super) struct GrownUsage {
    pub voucher_id: i64,
    pub used_seconds: i64,
    pub used_bytes: i64,
    pub added_seconds: i64,
    pub added_bytes: i64,
    pub time_quota: Option<i64>,
    pub data_quota: Option<i64>,
    pub after_data_rate_limit: Option<String>,
}

/// After an accounting run added usage to vouchers (`grown`, read back by the
/// statement that added it): queue a Disconnect (or the fair-use CoA) for the
/// open sessions of each voucher whose quota is now used up
/// (`policy::quota_end` decides), and write `voucher.used_up` for each that
/// this usage used up.
pub(super) async fn queue_quota_ends(
    conn: &mut PgConnection,
    grown: &[GrownUsage],
    now: Timestamp,
) -> StoreResult<()> {
    let mut used_up = Vec::new();
    for g in grown {
        let at = |seconds: i64, bytes: i64| {
            quota_end(&QuotaUse {
                time_quota: g.time_quota.map(i64_to_u64),
                data_quota: g.data_quota.map(i64_to_u64),
                after_data_rate_limit: g.after_data_rate_limit.as_deref(),
                used_seconds: i64_to_u64(seconds),
                used_bytes: i64_to_u64(bytes),
            })
        };
        let end = at(g.used_seconds, g.used_bytes);
        if crate::events::used_up(
            at(
                g.used_seconds - g.added_seconds,
                g.used_bytes - g.added_bytes,
            ),
            end,
        ) {
            used_up.push(g.voucher_id);
        }
        let (kind, reason) = match end {
            None => continue,
            Some(e @ QuotaEnd::Disconnect) => (CoaKind::Disconnect, e.reason()),
            Some(e @ QuotaEnd::SlowDown) => (CoaKind::Coa, e.reason()),
        };
        queue(conn, Sessions::OfVoucher(g.voucher_id), kind, reason, now).await?;
    }
    if used_up.is_empty() {
        return Ok(());
    }
    super::events::voucher_events(conn, crate::events::EventType::VoucherUsedUp, &used_up, now)
        .await
}

pub(super) async fn claim(
    pool: &PgPool,
    now: Timestamp,
    limit: u32,
    reclaim_before: Timestamp,
) -> StoreResult<Vec<CoaRequest>> {
    let picked: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "UPDATE coa_requests r SET state = 'sending', claimed_at = $1 \
         WHERE r.id IN (SELECT id FROM coa_requests \
           WHERE state = 'pending' OR (state = 'sending' AND claimed_at < $2) \
           ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING r.id, r.kind, r.reason, r.session_id",
    )
    .bind(now)
    .bind(reclaim_before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = picked.iter().map(|p| p.3).collect();
    let rows: Vec<SessionRow> = sqlx::query_as(&format!(
        "SELECT {SESSION_COLS} FROM sessions s JOIN nas n ON n.id = s.nas_id WHERE s.id = ANY($1)"
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut sessions: std::collections::HashMap<i64, Session> = std::collections::HashMap::new();
    for r in rows {
        let s = r.into_model()?;
        sessions.insert(s.id, s);
    }
    let mut out = Vec::with_capacity(picked.len());
    let mut picked = picked;
    picked.sort_unstable_by_key(|p| p.0);
    for (id, kind, reason, session_id) in picked {
        let kind = CoaKind::parse(&kind)
            .ok_or_else(|| StoreError::Invalid(format!("stored CoA kind {kind:?}")))?;
        if let Some(session) = sessions.get(&session_id) {
            out.push(CoaRequest {
                id,
                kind,
                reason,
                session: session.clone(),
            });
        }
    }
    Ok(out)
}

pub(super) async fn finish(
    pool: &PgPool,
    request_id: Option<i64>,
    session_id: i64,
    kind: CoaKind,
    result: &str,
    now: Timestamp,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    if let Some(id) = request_id {
        sqlx::query(
            "UPDATE coa_requests SET state = 'done', done_at = $2, result = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(result)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM coa_requests WHERE state = 'done' AND done_at < $1")
            .bind(now - KEEP_DONE)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "UPDATE sessions SET coa_result = $2, disconnect_requested_at = \
         CASE WHEN $3 THEN COALESCE(disconnect_requested_at, $4) ELSE disconnect_requested_at END \
         WHERE id = $1",
    )
    .bind(session_id)
    .bind(result)
    .bind(kind == CoaKind::Disconnect)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn revoke_voucher(
    pool: &PgPool,
    tenant_id: i64,
    code: &str,
    disconnect: bool,
) -> StoreResult<Voucher> {
    let mut tx = pool.begin().await?;
    // Revoking a revoked voucher again changes nothing and makes no event.
    let done = sqlx::query(
        "UPDATE vouchers SET state = 'revoked' WHERE tenant_id = $1 AND code = $2 \
         AND state <> 'revoked'",
    )
    .bind(tenant_id)
    .bind(code)
    .execute(&mut *tx)
    .await?;
    let row: Option<VoucherRow> = sqlx::query_as(&format!(
        "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
         WHERE v.tenant_id = $1 AND v.code = $2"
    ))
    .bind(tenant_id)
    .bind(code)
    .fetch_optional(&mut *tx)
    .await?;
    let v = row
        .ok_or_else(|| StoreError::NotFound(format!("voucher {code}")))?
        .into_model()?;
    if done.rows_affected() > 0 {
        super::events::voucher_events(
            &mut tx,
            crate::events::EventType::VoucherRevoked,
            &[v.id],
            crate::store::rows::now(),
        )
        .await?;
    }
    if disconnect {
        queue(
            &mut tx,
            Sessions::OfVoucher(v.id),
            CoaKind::Disconnect,
            "revoked",
            crate::store::rows::now(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(v)
}

pub(super) async fn get_voucher_by_id(pool: &PgPool, id: i64) -> StoreResult<Voucher> {
    let row: Option<VoucherRow> = sqlx::query_as(&format!(
        "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id WHERE v.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::NotFound(format!("voucher id {id}")))?
        .into_model()
}

pub(super) async fn get_session(pool: &PgPool, id: i64) -> StoreResult<Session> {
    let row: Option<SessionRow> = sqlx::query_as(&format!(
        "SELECT {SESSION_COLS} FROM sessions s JOIN nas n ON n.id = s.nas_id WHERE s.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::NotFound(format!("session {id}")))?
        .into_model()
}

pub(super) async fn set_nas_coa(
    pool: &PgPool,
    name: &str,
    coa_port: Option<u16>,
    coa_address: Option<Option<std::net::IpAddr>>,
) -> StoreResult<Nas> {
    let mut tx = pool.begin().await?;
    let row: Option<NasRow> = sqlx::query_as(&format!(
        "UPDATE nas SET coa_port = COALESCE($2, coa_port), \
         coa_address = CASE WHEN $3 THEN $4 ELSE coa_address END WHERE name = $1 \
         RETURNING {NAS_COLS}"
    ))
    .bind(name)
    .bind(coa_port.map(i64::from))
    .bind(coa_address.is_some())
    .bind(coa_address.flatten().map(|a| a.to_string()))
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("NAS {name}")))?;
    sqlx::query("UPDATE meta SET value = value + 1 WHERE key = 'nas_generation'")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    row.into_model()
}

pub(super) async fn update_plan(pool: &PgPool, plan: &Plan) -> StoreResult<u64> {
    if plan.name.trim().is_empty() {
        return Err(StoreError::Invalid("plan name is empty".into()));
    }
    let mut tx = pool.begin().await?;
    let done = sqlx::query(
        "UPDATE plans SET name = $2, time_quota = $3, validity = $4, expires_at = $5, \
         data_quota = $6, rate_limit = $7, shared_users = $8, mac_lock = $9, \
         idle_timeout = $10, interim_interval = $11, mikrotik_group = $12, \
         address_list = $13, price = $14, after_data_rate_limit = $15, sites = $16 \
         WHERE id = $1",
    )
    .bind(plan.id)
    .bind(&plan.name)
    .bind(opt_u64_to_i64(plan.time_quota, "time quota")?)
    .bind(opt_u64_to_i64(plan.validity, "validity")?)
    .bind(plan.expires_at)
    .bind(opt_u64_to_i64(plan.data_quota, "data quota")?)
    .bind(&plan.rate_limit)
    .bind(i64::from(plan.shared_users.max(1)))
    .bind(plan.mac_lock)
    .bind(plan.idle_timeout.map(i64::from))
    .bind(plan.interim_interval.map(i64::from))
    .bind(&plan.mikrotik_group)
    .bind(&plan.address_list)
    .bind(&plan.price)
    .bind(&plan.after_data_rate_limit)
    .bind(crate::store::rows::sites_to_column(&plan.sites))
    .execute(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Duplicate(format!("plan {}", plan.name))
        }
        _ => StoreError::Database(e),
    })?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("plan {}", plan.name)));
    }
    let queued = queue(
        &mut tx,
        Sessions::OfPlan(plan.id),
        CoaKind::Coa,
        "plan_changed",
        crate::store::rows::now(),
    )
    .await?;
    tx.commit().await?;
    Ok(queued)
}

pub(super) async fn set_voucher_plan(
    pool: &PgPool,
    tenant_id: i64,
    code: &str,
    plan: &str,
) -> StoreResult<u64> {
    let mut tx = pool.begin().await?;
    let found: Option<(i64, i64)> =
        sqlx::query_as("SELECT id, tenant_id FROM plans WHERE name = $1")
            .bind(plan)
            .fetch_optional(&mut *tx)
            .await?;
    let (plan_id, plan_tenant) =
        found.ok_or_else(|| StoreError::NotFound(format!("plan {plan}")))?;
    let voucher_id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM vouchers WHERE tenant_id = $1 AND code = $2 FOR UPDATE")
            .bind(tenant_id)
            .bind(code)
            .fetch_optional(&mut *tx)
            .await?;
    let voucher_id = voucher_id.ok_or_else(|| StoreError::NotFound(format!("voucher {code}")))?;
    if plan_tenant != tenant_id {
        return Err(crate::store::other_tenant_plan(plan));
    }
    sqlx::query("UPDATE vouchers SET plan_id = $2 WHERE id = $1")
        .bind(voucher_id)
        .bind(plan_id)
        .execute(&mut *tx)
        .await?;
    let queued = queue(
        &mut tx,
        Sessions::OfVoucher(voucher_id),
        CoaKind::Coa,
        "plan_changed",
        crate::store::rows::now(),
    )
    .await?;
    tx.commit().await?;
    Ok(queued)
}
