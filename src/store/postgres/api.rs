//! What the management API stores on PostgreSQL beyond the CLI's rows, as on
//! SQLite (`store/sqlite/api.rs`).

use sqlx::PgPool;

use crate::coa::CoaKind;
use crate::model::Timestamp;
use crate::model::{Session, Voucher};
use crate::store::rows::{now, SessionRow, VoucherRow, SESSION_COLS, VOUCHER_COLS};
use crate::store::{
    ApiToken, IdempotencyClaim, NewApiToken, SessionQuery, StoreError, StoreResult, VoucherQuery,
    IDEMPOTENCY_ABANDONED, IDEMPOTENCY_KEEP,
};

type TokenRow = (i64, String, Option<i64>, bool, String, i64);

fn token(r: TokenRow) -> ApiToken {
    ApiToken {
        id: r.0,
        name: r.1,
        tenant_id: r.2,
        read_only: r.3,
        token_hash: r.4,
        created_at: r.5,
    }
}

const TOKEN_COLS: &str = "id, name, tenant_id, read_only, token_hash, created_at";

pub(super) async fn add_api_token(pool: &PgPool, t: &NewApiToken) -> StoreResult<ApiToken> {
    let row: TokenRow = sqlx::query_as(&format!(
        "INSERT INTO api_tokens (name, tenant_id, read_only, token_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {TOKEN_COLS}"
    ))
    .bind(&t.name)
    .bind(t.tenant_id)
    .bind(t.read_only)
    .bind(&t.token_hash)
    .bind(now())
    .fetch_one(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Duplicate(format!("token {}", t.name))
        }
        _ => StoreError::Database(e),
    })?;
    Ok(token(row))
}

pub(super) async fn list_api_tokens(pool: &PgPool) -> StoreResult<Vec<ApiToken>> {
    let rows: Vec<TokenRow> =
        sqlx::query_as(&format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY id"))
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(token).collect())
}

pub(super) async fn revoke_api_token(pool: &PgPool, name: &str) -> StoreResult<()> {
    let n = sqlx::query("DELETE FROM api_tokens WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound(format!("token {name}")));
    }
    Ok(())
}

pub(super) async fn claim_idempotency_key(
    pool: &PgPool,
    token_id: i64,
    key: &str,
    request_hash: &str,
    at: Timestamp,
) -> StoreResult<IdempotencyClaim> {
    sqlx::query(
        "DELETE FROM api_idempotency WHERE created_at < $1 \
         OR (status IS NULL AND created_at < $2)",
    )
    .bind(at - IDEMPOTENCY_KEEP)
    .bind(at - IDEMPOTENCY_ABANDONED)
    .execute(pool)
    .await?;
    // Two servers (or two retries) racing for one key: the insert decides.
    let inserted = sqlx::query(
        "INSERT INTO api_idempotency (token_id, key, request_hash, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (token_id, key) DO NOTHING",
    )
    .bind(token_id)
    .bind(key)
    .bind(request_hash)
    .bind(at)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(IdempotencyClaim::Claimed);
    }
    let found: Option<(String, Option<i32>, Option<String>)> = sqlx::query_as(
        "SELECT request_hash, status, body FROM api_idempotency WHERE token_id = $1 AND key = $2",
    )
    .bind(token_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(match found {
        Some((request_hash, Some(status), body)) => IdempotencyClaim::Done {
            request_hash,
            status: u16::try_from(status).unwrap_or(500),
            body: body.unwrap_or_default(),
        },
        Some((request_hash, None, _)) => IdempotencyClaim::InProgress { request_hash },
        // Given up between the insert and the read: the caller may retry.
        None => IdempotencyClaim::InProgress {
            request_hash: request_hash.to_owned(),
        },
    })
}

pub(super) async fn finish_idempotency_key(
    pool: &PgPool,
    token_id: i64,
    key: &str,
    answer: Option<(u16, &str)>,
) -> StoreResult<()> {
    match answer {
        Some((status, body)) => {
            sqlx::query(
                "UPDATE api_idempotency SET status = $3, body = $4 \
                 WHERE token_id = $1 AND key = $2",
            )
            .bind(token_id)
            .bind(key)
            .bind(i32::from(status))
            .bind(body)
            .execute(pool)
            .await?
        }
        None => {
            sqlx::query("DELETE FROM api_idempotency WHERE token_id = $1 AND key = $2")
                .bind(token_id)
                .bind(key)
                .execute(pool)
                .await?
        }
    };
    Ok(())
}

pub(super) async fn remove_plan(pool: &PgPool, name: &str) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar("SELECT id FROM plans WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("plan {name}")))?;
    let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vouchers WHERE plan_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if used > 0 {
        return Err(StoreError::InUse(format!(
            "plan {name} is used by {used} voucher(s)"
        )));
    }
    // A voucher added to it meanwhile fails the delete (foreign key).
    sqlx::query("DELETE FROM plans WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::InUse(format!("plan {name} is used by vouchers"))
            }
            _ => StoreError::Database(e),
        })?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn queue_session_disconnect(pool: &PgPool, session_id: i64) -> StoreResult<u64> {
    let mut tx = pool.begin().await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM sessions WHERE id = $1")
        .bind(session_id)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound(format!("session {session_id}")));
    }
    let n = super::coa::queue(
        &mut tx,
        super::coa::Sessions::One(session_id),
        CoaKind::Disconnect,
        "requested",
        now(),
    )
    .await?;
    tx.commit().await?;
    Ok(n)
}

pub(super) async fn voucher_page(pool: &PgPool, q: &VoucherQuery) -> StoreResult<Vec<Voucher>> {
    let rows: Vec<VoucherRow> = sqlx::query_as(&format!(
        "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
         WHERE ($1::bigint IS NULL OR v.tenant_id = $1) AND ($2::text IS NULL OR p.name = $2) \
         AND ($3::text IS NULL OR v.batch = $3) AND ($4::text IS NULL OR v.state = $4) \
         AND ($5::boolean IS NULL OR (v.first_login_at IS NOT NULL) = $5) AND v.id > $6 \
         ORDER BY v.id LIMIT $7"
    ))
    .bind(q.tenant_id)
    .bind(&q.plan)
    .bind(&q.batch)
    .bind(q.state.map(|s| s.as_str()))
    .bind(q.used)
    .bind(q.after)
    .bind(i64::from(q.limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(VoucherRow::into_model).collect()
}

pub(super) async fn session_page(pool: &PgPool, q: &SessionQuery) -> StoreResult<Vec<Session>> {
    let rows: Vec<SessionRow> = sqlx::query_as(&format!(
        "SELECT {SESSION_COLS} FROM sessions s JOIN nas n ON n.id = s.nas_id \
         WHERE ($1::bigint IS NULL OR n.tenant_id = $1) AND ($2::text IS NULL OR s.state = $2) \
         AND ($3::bigint IS NULL OR s.voucher_id = $3) AND ($4::text IS NULL OR n.name = $4) \
         AND ($5::bigint IS NULL OR s.id < $5) ORDER BY s.id DESC LIMIT $6"
    ))
    .bind(q.tenant_id)
    .bind(q.state.map(|s| s.as_str()))
    .bind(q.voucher_id)
    .bind(&q.nas_name)
    .bind(q.before)
    .bind(i64::from(q.limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(SessionRow::into_model).collect()
}
