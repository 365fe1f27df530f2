//! The authorization transaction: read the state a batch of Access-Requests is
//! decided against, let [`policy::decide_batch`] decide, write its effects.
//!
//! Two round trips whatever the batch size, each statement its own transaction:
//!
//! 1. **one read**: the batch's vouchers with their plans, each with the version
//!    of its row (`ctid`, `xmin`), the live sessions of those vouchers, and any
//!    session row with a request's NAS + Acct-Session-Id (an accept upserts it,
//!    which may move it to another voucher or make it live again). One snapshot,
//!    no lock;
//! 2. the decision, in pure code;
//! 3. **one write**: every voucher the batch accepted is updated (activation and
//!    MAC binding merged in; otherwise rewritten as it is) only where its row is
//!    still the version that was read; the session upserts and the auth events
//!    are data-modifying CTEs of the same statement, which ends with
//!    `rrnet_vouchers_unchanged(updated, accepted)`: if another transaction
//!    changed an accepted voucher since the read (another instance accepted it,
//!    accounting added usage), fewer rows were updated and the whole statement
//!    fails with a serialization failure (40001), writing nothing.
//!
//! Every accept therefore rewrites its voucher row, and two authorizations of one
//! voucher (on any instance) cannot both commit an accept decided on the same
//! version: the second one's write finds the row changed (PostgreSQL re-checks
//! the guard against the committed version when it had to wait for the row),
//! and its batch is run again. A run again is [`Mode::Locked`]: BEGIN, the
//! batch's vouchers locked `FOR UPDATE` in id order, the same read (a new
//! snapshot, taken after the locks), the decision, the same write, COMMIT. Under
//! the locks the guard cannot fail, so a batch that lost a race is decided
//! against the winner's committed state on its second try: a single-device
//! voucher tried from two MACs at once on two instances is accepted once and
//! activated once.
//!
//! Within one instance a voucher's requests all go to one decider, so a conflict
//! needs two instances, the REST shim and the UDP path at the same instant, or
//! accounting updating the voucher between the read and the write.
//!
//! Batch rows are bound as typed arrays and expanded with `UNNEST`, and every
//! per-row lookup is an index probe in a `LATERAL` subquery, so each statement's
//! text is fixed, prepared once per connection, and has one (generic) plan that
//! does not depend on table statistics (see `plan_cache_mode` in `mod.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgPool, Row};

use crate::model::Timestamp;
use crate::policy::{
    self, AccessDecision, AccessFacts, AuthEffects, AuthState, LiveSession, VoucherSnapshot,
};
use crate::store::rows::{VoucherPlanRow, PLAN_COLS_P, VOUCHER_COLS};
use crate::store::{decision_result, AuthorizeOptions, StoreError, StoreResult};

/// How a batch is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Read, decide, write, without locks; the write fails (40001) if an accepted
    /// voucher changed in between. Two round trips.
    Optimistic,
    /// The same inside a transaction that first locks the batch's vouchers: the
    /// run after a conflict, which cannot conflict again on a voucher.
    Locked,
}

/// The batch's vouchers (by tenant and code), locked in id order. Locked mode only.
const LOCK_VOUCHERS: &str = "SELECT id FROM vouchers \
     WHERE (tenant_id, code) IN (SELECT * FROM UNNEST($1::bigint[], $2::text[])) \
     ORDER BY id FOR UPDATE";

/// How many columns the session rows of [`READ_STATE`] leave NULL: the voucher
/// and plan columns and the row version.
const VOUCHER_ROW_COLS: usize = 15 + 18 + 2;

/// Everything a batch is decided against, in one statement (one snapshot), as
/// rows of three kinds: 0 a voucher named by `$5`, `$1` (tenants, codes: a code
/// is looked up only in the tenant of the NAS that asked) with its plan and the
/// version of its row; 1 a live session of one of those vouchers (open, or
/// authorized after `$2`); 2 the session row of a (NAS, Acct-Session-Id) pair of
/// `$3`, `$4`, if any. A session can come twice (kinds 1 and 2). Every lookup
/// is an index probe per key (`LATERAL … OFFSET 0` keeps the planner from
/// turning it into a join that scans a small table).
static READ_STATE: LazyLock<String> = LazyLock::new(|| {
    let nulls = vec!["NULL"; VOUCHER_ROW_COLS].join(", ");
    format!(
        "WITH v AS (
    SELECT x.* FROM UNNEST($5::bigint[], $1::text[]) AS c(tenant_id, code)
    CROSS JOIN LATERAL (
        SELECT v.*, v.ctid::text AS v_ctid, v.xmin::text::bigint AS v_xmin
        FROM vouchers v WHERE v.tenant_id = c.tenant_id AND v.code = c.code OFFSET 0
    ) x
)
SELECT 0 AS kind, {VOUCHER_COLS}, {PLAN_COLS_P}, v.v_ctid, v.v_xmin,
       NULL::bigint AS s_nas_id, NULL::text AS s_acct_session_id,
       NULL::bigint AS s_voucher_id, NULL::text AS s_mac, NULL::text AS s_state,
       NULL::bigint AS s_authorized_at, NULL::text AS s_router
FROM v JOIN plans p ON p.id = v.plan_id
UNION ALL
SELECT 1, {nulls},
       s.nas_id, s.acct_session_id, s.voucher_id, s.mac, s.state, s.authorized_at, s.router
FROM v CROSS JOIN LATERAL (
    SELECT * FROM sessions s
    WHERE s.voucher_id = v.id AND s.mac IS NOT NULL AND s.state IN ('open', 'authorized')
      AND (s.state = 'open' OR s.authorized_at > $2)
    OFFSET 0
) s
UNION ALL
SELECT 2, {nulls},
       s.nas_id, s.acct_session_id, s.voucher_id, s.mac, s.state, s.authorized_at, s.router
FROM UNNEST($3::bigint[], $6::text[], $4::text[]) AS k(nas_id, router, acct_session_id)
CROSS JOIN LATERAL (
    SELECT * FROM sessions s
    WHERE s.nas_id = k.nas_id AND s.router = k.router AND s.acct_session_id = k.acct_session_id
    OFFSET 0
) s"
    )
});

/// Every effect of a batch in one statement; `$7` is `now`, `$21` the number
/// of accepted vouchers.
///
/// `vouchers_changed` has one row per accepted voucher, found by the `ctid` it
/// was read at and updated only if it is still that version (same id and
/// `xmin`). `ctid = ANY(…)` makes that a TID scan whatever the statistics say
/// (a join on `ctid` alone was planned as a sequential scan of the whole table
/// while it had no statistics), and the `xmin` comparison is made as `xid`,
/// with no conversion per row; activation and binding are merged into that update and are
/// guarded as well (`first_login_at IS NULL`, `bound_mac IS NULL`), so a voucher
/// is activated and bound once. The final SELECT fails the statement unless
/// every accepted voucher was updated. `sessions_granted` has one row per (NAS,
/// Acct-Session-Id): an existing session row (which accounting may already have
/// opened or closed) keeps its state and counters, and only its voucher, device
/// and times are refreshed. Auth events are new rows. PostgreSQL lets one
/// statement change a row only once, which this respects.
///
/// `voucher.activated` events are a CTE too, written from the rows
/// `vouchers_changed` returns (an activation is only ever asked for a voucher
/// read unactivated, and the row guard means it still was).
static WRITE_EFFECTS: LazyLock<String> = LazyLock::new(|| {
    WRITE_EFFECTS_HEAD.replace(
        "-- activated events --",
        &format!(
            ",\n{}",
            super::events::activated_events_cte("activated", "vouchers_changed", "$7")
        ),
    )
});

/// [`WRITE_EFFECTS`] for a batch without rejects: no repeated-reject CTEs,
/// whose plan nodes PostgreSQL would set up and run on every execution.
static WRITE_EFFECTS_NO_REJECT: LazyLock<String> = LazyLock::new(|| {
    let full = WRITE_EFFECTS.as_str();
    let (start, end) = (
        full.find("repeat_of AS (").expect("the reject CTEs"),
        full.find("events AS (").expect("the events CTE"),
    );
    let filter = "    WHERE e.ord NOT IN (SELECT ord FROM repeated)\n";
    assert!(full[end..].contains(filter), "the events CTE's filter");
    format!("{}{}", &full[..start], &full[end..]).replacen(filter, "", 1)
});

const WRITE_EFFECTS_HEAD: &str = "\
WITH vouchers_changed AS (
    UPDATE vouchers v SET
        first_login_at = CASE WHEN v.first_login_at IS NULL AND w.first_login_at IS NOT NULL
                              THEN w.first_login_at ELSE v.first_login_at END,
        valid_until = CASE WHEN v.first_login_at IS NULL AND w.first_login_at IS NOT NULL
                           THEN w.valid_until ELSE v.valid_until END,
        bound_mac = CASE WHEN v.bound_mac IS NULL AND w.bind_mac IS NOT NULL
                         THEN w.bind_mac ELSE v.bound_mac END
    FROM UNNEST($1::bigint[], $2::text[]::tid[], $3::bigint[], $4::bigint[], $5::bigint[],
                $6::text[])
         AS w(id, row_ctid, row_xmin, first_login_at, valid_until, bind_mac)
    WHERE v.ctid = ANY($2::text[]::tid[])
      AND v.ctid = w.row_ctid AND v.id = w.id AND v.xmin = w.row_xmin::text::xid
    RETURNING v.*, (w.first_login_at IS NOT NULL) AS activated
),
sessions_granted AS (
    INSERT INTO sessions (nas_id, acct_session_id, username, voucher_id, mac, framed_ip, state,
                          authorized_at, updated_at, interim_interval, router)
    SELECT g.nas_id, g.acct_session_id, g.username, g.voucher_id, g.mac, g.framed_ip,
           'authorized', $7, $7, g.interim_interval, g.router
    FROM UNNEST($8::bigint[], $9::text[], $10::text[], $11::bigint[], $12::text[], $13::text[],
                $14::bigint[], $22::text[])
         WITH ORDINALITY AS g(nas_id, acct_session_id, username, voucher_id, mac, framed_ip,
                              interim_interval, router, ord)
    ORDER BY g.ord
    ON CONFLICT (nas_id, acct_session_id, router) DO UPDATE SET
        voucher_id = excluded.voucher_id,
        mac = COALESCE(excluded.mac, sessions.mac),
        framed_ip = COALESCE(excluded.framed_ip, sessions.framed_ip),
        authorized_at = excluded.authorized_at,
        updated_at = excluded.updated_at,
        interim_interval = COALESCE(excluded.interim_interval, sessions.interim_interval)
),
events_in AS (
    SELECT e.*
    FROM UNNEST($15::bigint[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[])
         WITH ORDINALITY AS e(nas_id, nas_name, username, mac, result, reason, ord)
),
repeat_of AS (
    -- A reject identical to the user's last logged event within 60 s (REPEAT_WINDOW)
    -- adds to that row: found per reject by an index probe, then updated by the
    -- ctid it was found at (a join of the batch with auth_events could be
    -- planned, while the table was small, as a scan of all of it).
    SELECT e.ord, x.row_ctid
    FROM events_in e
    CROSS JOIN LATERAL (
        SELECT x.ctid AS row_ctid, x.nas_id, x.mac, x.result, x.reason FROM auth_events x
        WHERE x.username = e.username AND x.at >= $7 - 60
        ORDER BY x.at DESC, x.id DESC LIMIT 1
    ) x
    WHERE e.result = 'reject'
      AND x.nas_id = e.nas_id AND x.mac IS NOT DISTINCT FROM e.mac
      AND x.result = 'reject' AND x.reason IS NOT DISTINCT FROM e.reason
),
repeated AS (
    UPDATE auth_events a SET repeats = a.repeats + 1, last_at = $7
    FROM repeat_of r
    WHERE a.ctid = ANY(ARRAY(SELECT row_ctid FROM repeat_of)) AND a.ctid = r.row_ctid
    RETURNING r.ord
),
events AS (
    INSERT INTO auth_events (at, nas_id, nas_name, username, mac, result, reason)
    SELECT $7, e.nas_id, e.nas_name, e.username, e.mac, e.result, e.reason
    FROM events_in e
    WHERE e.ord NOT IN (SELECT ord FROM repeated)
    ORDER BY e.ord
)-- activated events --
SELECT rrnet_vouchers_unchanged((SELECT count(*) FROM vouchers_changed), $21)";

/// Where a voucher's row was when it was read: the write updates that version only.
#[derive(Clone, Debug)]
struct RowVersion {
    ctid: String,
    xmin: i64,
}

/// Decide `requests` (one attempt; the caller retries).
pub(super) async fn authorize_batch<F>(
    pool: &PgPool,
    requests: &[AccessFacts],
    now: Timestamp,
    opts: AuthorizeOptions,
    decide: &F,
    mode: Mode,
) -> StoreResult<Vec<AccessDecision>>
where
    F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision + Send + Sync,
{
    let codes = batch_codes(requests);
    match mode {
        Mode::Optimistic => {
            // Each statement commits on its own: no BEGIN, no COMMIT.
            let mut conn = pool.acquire().await?;
            decide_and_write(&mut conn, requests, &codes, now, opts, decide).await
        }
        Mode::Locked => {
            let mut tx = pool.begin().await?;
            let (tenants, names): (Vec<i64>, Vec<&str>) = codes.iter().copied().unzip();
            sqlx::query(LOCK_VOUCHERS)
                .bind(&tenants)
                .bind(&names)
                .execute(&mut *tx)
                .await?;
            let decisions = decide_and_write(&mut tx, requests, &codes, now, opts, decide).await?;
            tx.commit().await?;
            Ok(decisions)
        }
    }
}

/// The distinct (tenant, User-Name) pairs of a batch, sorted.
fn batch_codes(requests: &[AccessFacts]) -> Vec<(i64, &str)> {
    let mut codes: Vec<(i64, &str)> = requests
        .iter()
        .map(|f| (f.tenant_id, f.username.as_str()))
        .collect();
    codes.sort_unstable();
    codes.dedup();
    codes
}

async fn decide_and_write<F>(
    conn: &mut PgConnection,
    requests: &[AccessFacts],
    codes: &[(i64, &str)],
    now: Timestamp,
    opts: AuthorizeOptions,
    decide: &F,
) -> StoreResult<Vec<AccessDecision>>
where
    F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision + Send + Sync,
{
    let (state, versions) = read_state(conn, requests, codes, now, opts).await?;
    let (decisions, effects) =
        policy::decide_batch(requests, state, now, opts.authorized_ttl, decide);
    write_effects(conn, requests, &decisions, &effects, &versions, now).await?;
    Ok(decisions)
}

/// The vouchers the batch names, the versions of their rows, and the sessions
/// that count.
async fn read_state(
    conn: &mut PgConnection,
    requests: &[AccessFacts],
    codes: &[(i64, &str)],
    now: Timestamp,
    opts: AuthorizeOptions,
) -> StoreResult<(AuthState, HashMap<i64, RowVersion>)> {
    let (tenants, names): (Vec<i64>, Vec<&str>) = codes.iter().copied().unzip();
    let mut keys: Vec<(i64, &str, &str)> = requests
        .iter()
        .filter_map(|f| {
            let asid = f.acct_session_id.as_deref().filter(|a| !a.is_empty())?;
            Some((f.nas_id, f.router.as_str(), asid))
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let key_nas: Vec<i64> = keys.iter().map(|k| k.0).collect();
    let key_router: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let key_asid: Vec<&str> = keys.iter().map(|k| k.2).collect();
    let ttl = i64::try_from(opts.authorized_ttl).unwrap_or(i64::MAX);
    let rows: Vec<PgRow> = sqlx::query(&READ_STATE)
        .bind(&names)
        .bind(now.saturating_sub(ttl))
        .bind(&key_nas)
        .bind(&key_asid)
        .bind(&tenants)
        .bind(&key_router)
        .fetch_all(&mut *conn)
        .await?;

    let mut state = AuthState::default();
    let mut versions = HashMap::new();
    let mut seen: HashSet<(i64, String, String)> = HashSet::new();
    for row in &rows {
        if row.try_get::<i32, _>("kind")? == 0 {
            let (voucher, plan) = VoucherPlanRow::from_row(row)?.into_model()?;
            versions.insert(
                voucher.id,
                RowVersion {
                    ctid: row.try_get("v_ctid")?,
                    xmin: row.try_get("v_xmin")?,
                },
            );
            state.vouchers.push((voucher, plan));
        } else {
            let nas_id: i64 = row.try_get("s_nas_id")?;
            let acct_session_id: String = row.try_get("s_acct_session_id")?;
            let router: String = row.try_get("s_router")?;
            if !seen.insert((nas_id, router.clone(), acct_session_id.clone())) {
                continue;
            }
            let s_state: String = row.try_get("s_state")?;
            state.sessions.push(LiveSession {
                nas_id,
                router,
                acct_session_id,
                voucher_id: row.try_get("s_voucher_id")?,
                mac: row.try_get("s_mac")?,
                state: crate::model::SessionState::parse(&s_state).ok_or_else(|| {
                    StoreError::Invalid(format!("stored session state {s_state:?}"))
                })?,
                authorized_at: row.try_get("s_authorized_at")?,
            });
        }
    }
    Ok((state, versions))
}

/// Every accepted voucher (guarded by its row version, with its activation and
/// MAC binding), session rows and one auth event per request, in one statement.
async fn write_effects(
    conn: &mut PgConnection,
    requests: &[AccessFacts],
    decisions: &[AccessDecision],
    effects: &AuthEffects,
    versions: &HashMap<i64, RowVersion>,
    now: Timestamp,
) -> StoreResult<()> {
    // One row per accepted voucher: an activation and a binding of the same
    // voucher (a first login on a MAC-locked plan) are one UPDATE of its row.
    #[derive(Default)]
    struct VoucherChange<'a> {
        first_login_at: Option<Timestamp>,
        valid_until: Option<Timestamp>,
        bind_mac: Option<&'a str>,
    }
    let mut changes: BTreeMap<i64, VoucherChange<'_>> = BTreeMap::new();
    for d in decisions {
        if let AccessDecision::Accept(grant) = d {
            changes.entry(grant.voucher_id).or_default();
        }
    }
    for (id, act) in &effects.activations {
        let c = changes.entry(*id).or_default();
        c.first_login_at = Some(act.first_login_at);
        c.valid_until = act.valid_until;
    }
    for (id, mac) in &effects.bindings {
        changes.entry(*id).or_default().bind_mac = Some(mac);
    }
    // An accept names a voucher the read returned (the decision is made on its
    // snapshot); one that did not would have no version to guard.
    let mut voucher_ids = Vec::with_capacity(changes.len());
    let mut ctids = Vec::with_capacity(changes.len());
    let mut xmins = Vec::with_capacity(changes.len());
    let mut first_login_at: Vec<Option<i64>> = Vec::with_capacity(changes.len());
    let mut valid_until: Vec<Option<i64>> = Vec::with_capacity(changes.len());
    let mut bind_mac: Vec<Option<&str>> = Vec::with_capacity(changes.len());
    for (id, c) in &changes {
        let Some(v) = versions.get(id) else { continue };
        voucher_ids.push(*id);
        ctids.push(v.ctid.as_str());
        xmins.push(v.xmin);
        first_login_at.push(c.first_login_at);
        valid_until.push(c.valid_until);
        bind_mac.push(c.bind_mac);
    }
    let accepted = i64::try_from(voucher_ids.len()).unwrap_or(i64::MAX);

    let grants = &effects.sessions;
    let g_nas: Vec<i64> = grants.iter().map(|g| g.nas_id).collect();
    let g_asid: Vec<&str> = grants.iter().map(|g| g.acct_session_id.as_str()).collect();
    let g_router: Vec<&str> = grants.iter().map(|g| g.router.as_str()).collect();
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

    let statement = if e_result.contains(&"reject") {
        &*WRITE_EFFECTS
    } else {
        &*WRITE_EFFECTS_NO_REJECT
    };
    sqlx::query(statement)
        .bind(&voucher_ids)
        .bind(&ctids)
        .bind(&xmins)
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
        .bind(accepted)
        .bind(&g_router)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variant without rejects leaves out exactly the repeated-reject
    /// CTEs, and still names every parameter the full statement does (an
    /// unnamed one would have no type for PostgreSQL to infer).
    #[test]
    fn the_no_reject_write_drops_only_the_reject_ctes() {
        let (full, lean) = (WRITE_EFFECTS.as_str(), WRITE_EFFECTS_NO_REJECT.as_str());
        assert!(
            full.contains("repeat_of AS (") && full.contains("NOT IN (SELECT ord FROM repeated)")
        );
        assert!(!lean.contains("repeat_of") && !lean.contains("repeated"));
        assert!(lean.contains("events AS (") && lean.contains("INSERT INTO auth_events"));
        for n in 1..=22 {
            let p = format!("${n}");
            let named = |sql: &str| {
                sql.match_indices(&p)
                    .any(|(i, _)| !sql[i + p.len()..].starts_with(|c: char| c.is_ascii_digit()))
            };
            assert!(named(full), "{p} in the full statement");
            assert!(named(lean), "{p} in the statement without rejects");
        }
    }
}
