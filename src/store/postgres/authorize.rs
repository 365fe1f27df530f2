//! The authorization transaction: read the state a batch of Access-Requests is
//! decided against, let [`policy::decide_batch`] decide, write its effects.
//!
//! Five round trips whatever the batch size:
//!
//! 1. BEGIN;
//! 2. the batch's vouchers with their plans, locked `FOR UPDATE OF v` in id
//!    order: every authorization of a voucher, on any instance, waits for the
//!    previous one to commit and then sees its activation, MAC binding and
//!    session row; two batches sharing vouchers queue rather than deadlock;
//! 3. the sessions that decide who holds a device: the live ones of those
//!    vouchers, and any row with a request's NAS + Acct-Session-Id (an accept
//!    upserts it, which may move it to another voucher or make it live again);
//! 4. one statement writing all effects: activations and MAC bindings, session
//!    upserts and auth events, as data-modifying CTEs;
//! 5. COMMIT.
//!
//! The decision itself is pure code, between 3 and 4. Batch rows are bound as
//! typed arrays and expanded with `UNNEST`, so each statement's text is fixed
//! and prepared once per connection.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use sqlx::{PgConnection, PgPool};

use crate::model::Timestamp;
use crate::policy::{self, AccessDecision, AccessFacts, AuthEffects, AuthState, VoucherSnapshot};
use crate::store::rows::{
    LiveSessionRow, VoucherPlanRow, LIVE_SESSION_COLS, PLAN_COLS_P, VOUCHER_COLS,
};
use crate::store::{decision_result, AuthorizeOptions, StoreResult};

/// The vouchers named by `$1` (codes) with their plans, row-locked in id order.
static READ_VOUCHERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {VOUCHER_COLS}, {PLAN_COLS_P} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
         WHERE v.code = ANY($1::text[]) ORDER BY v.id FOR UPDATE OF v"
    )
});

/// Live sessions of the vouchers `$1` (open, or authorized after `$2`), and the
/// rows keyed by the (NAS, Acct-Session-Id) pairs `$3`, `$4`. Each half uses
/// its index: (voucher_id, state) and (nas_id, acct_session_id).
static READ_SESSIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {LIVE_SESSION_COLS} FROM sessions \
         WHERE voucher_id = ANY($1::bigint[]) AND mac IS NOT NULL \
         AND state IN ('open', 'authorized') AND (state = 'open' OR authorized_at > $2) \
         UNION \
         SELECT {LIVE_SESSION_COLS} FROM sessions \
         WHERE (nas_id, acct_session_id) IN \
         (SELECT * FROM UNNEST($3::bigint[], $4::text[]))"
    )
});

/// Every effect of a batch in one statement; `$5` is `now`.
///
/// PostgreSQL lets one statement change a row only once. That holds here:
/// `vouchers_changed` has one row per voucher (activation and binding merged),
/// `sessions_granted` one per (NAS, Acct-Session-Id), and auth events are new
/// rows. The guards make a write a no-op when the voucher already has a first
/// login or a bound MAC, so a voucher is activated and bound once; an existing
/// session row (which accounting may already have opened or closed) keeps its
/// state and counters, and only its voucher, device and times are refreshed.
const WRITE_EFFECTS: &str = "\
WITH vouchers_changed AS (
    UPDATE vouchers v SET
        first_login_at = CASE WHEN v.first_login_at IS NULL AND w.first_login_at IS NOT NULL
                              THEN w.first_login_at ELSE v.first_login_at END,
        valid_until = CASE WHEN v.first_login_at IS NULL AND w.first_login_at IS NOT NULL
                           THEN w.valid_until ELSE v.valid_until END,
        bound_mac = CASE WHEN v.bound_mac IS NULL AND w.bind_mac IS NOT NULL
                         THEN w.bind_mac ELSE v.bound_mac END
    FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[])
         AS w(id, first_login_at, valid_until, bind_mac)
    WHERE v.id = w.id
      AND ((v.first_login_at IS NULL AND w.first_login_at IS NOT NULL)
           OR (v.bound_mac IS NULL AND w.bind_mac IS NOT NULL))
),
sessions_granted AS (
    INSERT INTO sessions (nas_id, acct_session_id, username, voucher_id, mac, framed_ip, state,
                          authorized_at, updated_at, interim_interval)
    SELECT g.nas_id, g.acct_session_id, g.username, g.voucher_id, g.mac, g.framed_ip,
           'authorized', $5, $5, g.interim_interval
    FROM UNNEST($6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[],
                $12::bigint[])
         WITH ORDINALITY AS g(nas_id, acct_session_id, username, voucher_id, mac, framed_ip,
                              interim_interval, ord)
    ORDER BY g.ord
    ON CONFLICT (nas_id, acct_session_id) DO UPDATE SET
        voucher_id = excluded.voucher_id,
        mac = COALESCE(excluded.mac, sessions.mac),
        framed_ip = COALESCE(excluded.framed_ip, sessions.framed_ip),
        authorized_at = excluded.authorized_at,
        updated_at = excluded.updated_at,
        interim_interval = COALESCE(excluded.interim_interval, sessions.interim_interval)
)
INSERT INTO auth_events (at, nas_id, nas_name, username, mac, result, reason)
SELECT $5, e.nas_id, e.nas_name, e.username, e.mac, e.result, e.reason
FROM UNNEST($13::bigint[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[])
     WITH ORDINALITY AS e(nas_id, nas_name, username, mac, result, reason, ord)
ORDER BY e.ord";

/// Decide `requests` in one transaction (one attempt; the caller retries).
pub(super) async fn authorize_batch<F>(
    pool: &PgPool,
    requests: &[AccessFacts],
    now: Timestamp,
    opts: AuthorizeOptions,
    decide: &F,
) -> StoreResult<Vec<AccessDecision>>
where
    F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision + Send + Sync,
{
    let mut tx = pool.begin().await?;
    let state = read_state(&mut tx, requests, now, opts).await?;
    let (decisions, effects) =
        policy::decide_batch(requests, state, now, opts.authorized_ttl, decide);
    write_effects(&mut tx, requests, &decisions, &effects, now).await?;
    tx.commit().await?;
    Ok(decisions)
}

/// The vouchers the batch names (locked) and the sessions that count.
async fn read_state(
    conn: &mut PgConnection,
    requests: &[AccessFacts],
    now: Timestamp,
    opts: AuthorizeOptions,
) -> StoreResult<AuthState> {
    let mut codes: Vec<&str> = requests.iter().map(|f| f.username.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    let rows: Vec<VoucherPlanRow> = sqlx::query_as(&READ_VOUCHERS)
        .bind(&codes)
        .fetch_all(&mut *conn)
        .await?;
    let vouchers = rows
        .into_iter()
        .map(VoucherPlanRow::into_model)
        .collect::<StoreResult<Vec<_>>>()?;

    let voucher_ids: Vec<i64> = vouchers.iter().map(|(v, _)| v.id).collect();
    let mut keys: Vec<(i64, &str)> = requests
        .iter()
        .filter_map(|f| {
            let asid = f.acct_session_id.as_deref().filter(|a| !a.is_empty())?;
            Some((f.nas_id, asid))
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if voucher_ids.is_empty() && keys.is_empty() {
        return Ok(AuthState {
            vouchers,
            sessions: Vec::new(),
        });
    }
    let (key_nas, key_asid): (Vec<i64>, Vec<&str>) = keys.into_iter().unzip();
    let ttl = i64::try_from(opts.authorized_ttl).unwrap_or(i64::MAX);
    let rows: Vec<LiveSessionRow> = sqlx::query_as(&READ_SESSIONS)
        .bind(&voucher_ids)
        .bind(now.saturating_sub(ttl))
        .bind(&key_nas)
        .bind(&key_asid)
        .fetch_all(&mut *conn)
        .await?;
    let sessions = rows
        .into_iter()
        .map(LiveSessionRow::into_model)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(AuthState { vouchers, sessions })
}

/// Activations, bindings, session rows and one auth event per request, in one
/// statement.
async fn write_effects(
    conn: &mut PgConnection,
    requests: &[AccessFacts],
    decisions: &[AccessDecision],
    effects: &AuthEffects,
    now: Timestamp,
) -> StoreResult<()> {
    // One row per voucher: an activation and a binding of the same voucher (a
    // first login on a MAC-locked plan) are one UPDATE of its row.
    #[derive(Default)]
    struct VoucherChange<'a> {
        first_login_at: Option<Timestamp>,
        valid_until: Option<Timestamp>,
        bind_mac: Option<&'a str>,
    }
    let mut changes: BTreeMap<i64, VoucherChange<'_>> = BTreeMap::new();
    for (id, act) in &effects.activations {
        let c = changes.entry(*id).or_default();
        c.first_login_at = Some(act.first_login_at);
        c.valid_until = act.valid_until;
    }
    for (id, mac) in &effects.bindings {
        changes.entry(*id).or_default().bind_mac = Some(mac);
    }
    let voucher_ids: Vec<i64> = changes.keys().copied().collect();
    let first_login_at: Vec<Option<i64>> = changes.values().map(|c| c.first_login_at).collect();
    let valid_until: Vec<Option<i64>> = changes.values().map(|c| c.valid_until).collect();
    let bind_mac: Vec<Option<&str>> = changes.values().map(|c| c.bind_mac).collect();

    let grants = &effects.sessions;
    let g_nas: Vec<i64> = grants.iter().map(|g| g.nas_id).collect();
    let g_asid: Vec<&str> = grants.iter().map(|g| g.acct_session_id.as_str()).collect();
    let g_user: Vec<&str> = grants.iter().map(|g| g.username.as_str()).collect();
    let g_voucher: Vec<i64> = grants.iter().map(|g| g.voucher_id).collect();
    let g_mac: Vec<Option<&str>> = grants.iter().map(|g| g.mac.as_deref()).collect();
    let g_ip: Vec<Option<&str>> = grants.iter().map(|g| g.framed_ip.as_deref()).collect();
    let g_interim: Vec<Option<i64>> = grants
        .iter()
        .map(|g| g.interim_interval.map(i64::from))
        .collect();

    let e_nas: Vec<i64> = requests.iter().map(|f| f.nas_id).collect();
    let e_nas_name: Vec<&str> = requests.iter().map(|f| f.nas_name.as_str()).collect();
    let e_user: Vec<&str> = requests.iter().map(|f| f.username.as_str()).collect();
    let e_mac: Vec<Option<&str>> = requests.iter().map(|f| f.mac.as_deref()).collect();
    let (e_result, e_reason): (Vec<&str>, Vec<Option<&str>>) = decisions
        .iter()
        .map(|d| {
            let (result, reason) = decision_result(d);
            (result, reason.map(|r| r.label()))
        })
        .unzip();

    sqlx::query(WRITE_EFFECTS)
        .bind(&voucher_ids)
        .bind(&first_login_at)
        .bind(&valid_until)
        .bind(&bind_mac)
        .bind(now)
        .bind(&g_nas)
        .bind(&g_asid)
        .bind(&g_user)
        .bind(&g_voucher)
        .bind(&g_mac)
        .bind(&g_ip)
        .bind(&g_interim)
        .bind(&e_nas)
        .bind(&e_nas_name)
        .bind(&e_user)
        .bind(&e_mac)
        .bind(&e_result)
        .bind(&e_reason)
        .execute(conn)
        .await?;
    Ok(())
}
