//! What the management API stores on SQLite beyond the CLI's rows: its
//! tokens, the answers kept for idempotency keys, plan removal and a
//! Disconnect queued for one session.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::coa::CoaKind;
use crate::model::Timestamp;
use crate::model::{Session, Voucher};
use crate::store::rows::{now, SESSION_COLS, VOUCHER_COLS};
use crate::store::{
    ApiToken, IdempotencyClaim, NewApiToken, SessionQuery, StoreError, StoreResult, VoucherQuery,
    IDEMPOTENCY_ABANDONED, IDEMPOTENCY_KEEP,
};

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        name: r.get(1)?,
        tenant_id: r.get(2)?,
        read_only: r.get(3)?,
        token_hash: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const TOKEN_COLS: &str = "id, name, tenant_id, read_only, token_hash, created_at";

pub fn add_api_token(c: &mut Connection, t: &NewApiToken) -> StoreResult<ApiToken> {
    let inserted = c
        .prepare_cached(&format!(
            "INSERT INTO api_tokens (name, tenant_id, read_only, token_hash, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING {TOKEN_COLS}"
        ))?
        .query_row(
            params![t.name, t.tenant_id, t.read_only, t.token_hash, now()],
            token_row,
        );
    inserted.map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::Duplicate(format!("token {}", t.name))
        }
        _ => StoreError::Sqlite(e),
    })
}

pub fn list_api_tokens(c: &mut Connection) -> StoreResult<Vec<ApiToken>> {
    let mut stmt = c.prepare_cached(&format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY id"))?;
    let rows = stmt.query_map([], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn revoke_api_token(c: &mut Connection, name: &str) -> StoreResult<()> {
    let n = c
        .prepare_cached("DELETE FROM api_tokens WHERE name = ?1")?
        .execute([name])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("token {name}")));
    }
    Ok(())
}

pub fn claim_idempotency_key(
    c: &mut Connection,
    token_id: i64,
    key: &str,
    request_hash: &str,
    at: Timestamp,
) -> StoreResult<IdempotencyClaim> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached("DELETE FROM api_idempotency WHERE created_at < ?1")?
        .execute([at - IDEMPOTENCY_KEEP])?;
    tx.prepare_cached("DELETE FROM api_idempotency WHERE status IS NULL AND created_at < ?1")?
        .execute([at - IDEMPOTENCY_ABANDONED])?;
    let found: Option<(String, Option<u16>, Option<String>)> = tx
        .prepare_cached(
            "SELECT request_hash, status, body FROM api_idempotency \
             WHERE token_id = ?1 AND key = ?2",
        )?
        .query_row(params![token_id, key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let claim = match found {
        Some((request_hash, Some(status), body)) => IdempotencyClaim::Done {
            request_hash,
            status,
            body: body.unwrap_or_default(),
        },
        Some((request_hash, None, _)) => IdempotencyClaim::InProgress { request_hash },
        None => {
            tx.prepare_cached(
                "INSERT INTO api_idempotency (token_id, key, request_hash, created_at) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![token_id, key, request_hash, at])?;
            IdempotencyClaim::Claimed
        }
    };
    tx.commit()?;
    Ok(claim)
}

pub fn finish_idempotency_key(
    c: &mut Connection,
    token_id: i64,
    key: &str,
    answer: Option<(u16, String)>,
) -> StoreResult<()> {
    match answer {
        Some((status, body)) => c
            .prepare_cached(
                "UPDATE api_idempotency SET status = ?3, body = ?4 \
                 WHERE token_id = ?1 AND key = ?2",
            )?
            .execute(params![token_id, key, status, body])?,
        None => c
            .prepare_cached("DELETE FROM api_idempotency WHERE token_id = ?1 AND key = ?2")?
            .execute(params![token_id, key])?,
    };
    Ok(())
}

pub fn remove_plan(c: &mut Connection, name: &str) -> StoreResult<()> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id: i64 = tx
        .prepare_cached("SELECT id FROM plans WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("plan {name}")))?;
    let used: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM vouchers WHERE plan_id = ?1")?
        .query_row([id], |r| r.get(0))?;
    if used > 0 {
        return Err(StoreError::InUse(format!(
            "plan {name} is used by {used} voucher(s)"
        )));
    }
    tx.prepare_cached("DELETE FROM plans WHERE id = ?1")?
        .execute([id])?;
    tx.commit()?;
    Ok(())
}

pub fn queue_session_disconnect(c: &mut Connection, session_id: i64) -> StoreResult<u64> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let exists: Option<i64> = tx
        .prepare_cached("SELECT id FROM sessions WHERE id = ?1")?
        .query_row([session_id], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::NotFound(format!("session {session_id}")));
    }
    let n = super::coa::queue(
        &tx,
        super::coa::Sessions::One(session_id),
        CoaKind::Disconnect,
        "requested",
        now(),
    )?;
    tx.commit()?;
    Ok(n)
}

pub fn voucher_page(c: &mut Connection, q: &VoucherQuery) -> StoreResult<Vec<Voucher>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
         WHERE (?1 IS NULL OR v.tenant_id = ?1) AND (?2 IS NULL OR p.name = ?2) \
         AND (?3 IS NULL OR v.batch = ?3) AND (?4 IS NULL OR v.state = ?4) \
         AND (?5 IS NULL OR (v.first_login_at IS NOT NULL) = ?5) AND v.id > ?6 \
         ORDER BY v.id LIMIT ?7"
    ))?;
    let rows = stmt.query_map(
        params![
            q.tenant_id,
            q.plan,
            q.batch,
            q.state.map(|s| s.as_str()),
            q.used,
            q.after,
            q.limit
        ],
        super::admin::voucher_row,
    )?;
    rows.map(|r| r?.into_model()).collect()
}

pub fn session_page(c: &mut Connection, q: &SessionQuery) -> StoreResult<Vec<Session>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {SESSION_COLS} FROM sessions s JOIN nas n ON n.id = s.nas_id \
         WHERE (?1 IS NULL OR n.tenant_id = ?1) AND (?2 IS NULL OR s.state = ?2) \
         AND (?3 IS NULL OR s.voucher_id = ?3) AND (?4 IS NULL OR n.name = ?4) \
         AND (?5 IS NULL OR s.id < ?5) ORDER BY s.id DESC LIMIT ?6"
    ))?;
    let rows = stmt.query_map(
        params![
            q.tenant_id,
            q.state.map(|s| s.as_str()),
            q.voucher_id,
            q.nas_name,
            q.before,
            q.limit
        ],
        super::admin::session_row,
    )?;
    rows.map(|r| r?.into_model()).collect()
}
