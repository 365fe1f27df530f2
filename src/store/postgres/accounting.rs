//! The accounting transaction: read the session rows a batch of records names,
//! let [`policy::account_batch`] run the records through the session state
//! machine, write the rows and the vouchers' usage back.
//!
//! Accounting-On/Off closes the NAS's live sessions at its place in the batch:
//! the records before it are stored first, those after it see the closed rows.
//! Each run of Start / Interim-Update / Stop records between them costs:
//!
//! 1. the stored rows for the records' (NAS, Acct-Session-Id) keys, each an
//!    index probe, locked `FOR UPDATE` as found in key order (the keys are
//!    sorted), so two batches sharing sessions queue rather than deadlock and a
//!    session's counters move once per record;
//! 2. only when some record's session is new or has no voucher yet: the
//!    vouchers the records may belong to (by Class id, else by User-Name);
//! 3. only when some new session has a MAC and a voucher: the synthetic
//!    `authorized` rows (accepts without Acct-Session-Id) it may adopt;
//! 4. one statement writing everything: new rows, every column of the stored
//!    and adopted rows (by the `ctid` they were read at), and the usage added
//!    to each voucher, which returns the grown vouchers' totals and quotas for
//!    the quota check.
//!
//! A batch of Interim-Updates for known sessions is therefore BEGIN, one read,
//! one write, COMMIT.
//!
//! Another instance may create one of the batch's sessions after our read, or
//! adopt the same synthetic row: the insert then skips a row (`ON CONFLICT DO
//! NOTHING`) or the guarded update of the adopted row matches nothing, and the
//! batch fails with [`StoreError::Conflict`]. The caller runs it again; it then
//! reads the other instance's row, under lock, and adds to it.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::{PgConnection, PgPool};

use super::admin;
use super::coa::GrownUsage;
use crate::policy::{self, AcctEffects, AcctRecord, AcctSession, AcctState, AcctStatus};
use crate::store::rows::{AcctSessionRow, ACCT_SESSION_COLS};
use crate::store::{StoreError, StoreResult};

/// The stored rows for the (NAS, Acct-Session-Id) pairs `$1`, `$2` (sorted,
/// so every batch takes its locks in one order), each locked as it is found,
/// with the version of the row (`ctid`) the write addresses it by. Every key
/// is an index probe in a `LATERAL` subquery: a join of the arrays with the
/// table could be planned (and that plan cached) while `sessions` was small,
/// as a scan of the whole table.
static READ_SESSIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT l.* FROM UNNEST($1::bigint[], $2::text[]) AS k(nas_id, acct_session_id) \
         CROSS JOIN LATERAL (SELECT ctid::text AS row_ctid, {ACCT_SESSION_COLS} FROM sessions s \
           WHERE s.nas_id = k.nas_id AND s.acct_session_id = k.acct_session_id \
           ORDER BY s.id FOR UPDATE) l"
    )
});

/// `(id, tenant, code)` of the vouchers with an (id, tenant) in `$1`, `$2` or a
/// (tenant, code) in `$3`, `$4` — only the tenant of the NAS that sent the
/// record — each an index probe.
const READ_VOUCHERS: &str = "\
SELECT v.id, v.tenant_id, v.code FROM UNNEST($1::bigint[], $2::bigint[]) AS k(id, tenant_id)
 CROSS JOIN LATERAL (SELECT id, tenant_id, code FROM vouchers
                      WHERE id = k.id AND tenant_id = k.tenant_id OFFSET 0) v
UNION
SELECT v.id, v.tenant_id, v.code FROM UNNEST($3::bigint[], $4::text[]) AS k(tenant_id, code)
 CROSS JOIN LATERAL (SELECT id, tenant_id, code FROM vouchers
                      WHERE tenant_id = k.tenant_id AND code = k.code OFFSET 0) v";

/// Synthetic `authorized` rows of the vouchers `$1`, newest first. Not locked:
/// the write re-checks that each adopted row is still one.
static READ_ADOPTABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT ctid::text AS row_ctid, {ACCT_SESSION_COLS} FROM sessions \
         WHERE voucher_id = ANY($1::bigint[]) AND state = 'authorized' \
         AND acct_session_id LIKE 'auth-%' AND mac IS NOT NULL \
         ORDER BY authorized_at DESC, id DESC"
    )
});

/// Every effect of a run in one statement; returns how many rows were inserted
/// and how many updated, which must be all of them (else [`StoreError::Conflict`]),
/// and, for each voucher whose usage grew, its new totals and its plan's quotas
/// ([`GrownUsage`]), so no statement reads them again.
///
/// PostgreSQL lets one statement change a row only once. That holds here: the
/// policy yields one row per session, new or stored, and one usage row per
/// voucher. Stored rows were locked by the read; an adopted row was not, so its
/// update is guarded (still `authorized`, still a synthetic id). Both are
/// addressed by the `ctid` they were read with (`ctid = ANY(…)` is a TID scan
/// whatever the statistics say); a row changed since (an adopted one) no
/// longer matches, which makes a conflict.
const WRITE_EFFECTS: &str = "\
WITH inserted AS (
    INSERT INTO sessions (nas_id, acct_session_id, username, voucher_id, mac, framed_ip, state,
                          started_at, updated_at, stopped_at, terminate_cause, session_time,
                          input_octets, output_octets, router)
    SELECT r.nas_id, r.acct_session_id, r.username, r.voucher_id, r.mac, r.framed_ip, r.state,
           r.started_at, r.updated_at, r.stopped_at, r.terminate_cause, r.session_time,
           r.input_octets, r.output_octets, r.router
    FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::bigint[],
                $13::bigint[], $14::bigint[], $33::text[])
         WITH ORDINALITY AS r(nas_id, acct_session_id, username, voucher_id, mac, framed_ip, state,
                              started_at, updated_at, stopped_at, terminate_cause, session_time,
                              input_octets, output_octets, router, ord)
    ORDER BY r.ord
    ON CONFLICT (nas_id, acct_session_id, router) DO NOTHING
    RETURNING id
),
updated AS (
    UPDATE sessions s SET
        acct_session_id = u.acct_session_id, username = u.username, voucher_id = u.voucher_id,
        mac = u.mac, framed_ip = u.framed_ip, state = u.state, started_at = u.started_at,
        updated_at = u.updated_at, stopped_at = u.stopped_at, terminate_cause = u.terminate_cause,
        session_time = u.session_time, input_octets = u.input_octets,
        output_octets = u.output_octets, router = u.router
    FROM UNNEST($15::bigint[], $16::text[], $17::text[], $18::bigint[], $19::text[], $20::text[],
                $21::text[], $22::bigint[], $23::bigint[], $24::bigint[], $25::text[],
                $26::bigint[], $27::bigint[], $28::bigint[], $29::boolean[], $34::text[],
                $35::text[]::tid[])
         AS u(id, acct_session_id, username, voucher_id, mac, framed_ip, state, started_at,
              updated_at, stopped_at, terminate_cause, session_time, input_octets, output_octets,
              adopted, router, row_ctid)
    WHERE s.ctid = ANY($35::text[]::tid[]) AND s.ctid = u.row_ctid AND s.id = u.id
      AND (NOT u.adopted OR (s.state = 'authorized' AND s.acct_session_id LIKE 'auth-%'))
    RETURNING s.id
),
used AS (
    UPDATE vouchers v SET
        used_seconds = v.used_seconds + u.seconds,
        used_bytes = v.used_bytes + u.bytes
    FROM UNNEST($30::bigint[], $31::bigint[], $32::bigint[]) AS u(id, seconds, bytes)
    WHERE v.id = ANY($30::bigint[]) AND v.id = u.id
    RETURNING v.id, v.plan_id, v.used_seconds, v.used_bytes, u.seconds AS added_seconds,
              u.bytes AS added_bytes
)
SELECT c.inserted, c.updated, q.id, q.used_seconds, q.used_bytes, q.added_seconds,
       q.added_bytes, q.time_quota, q.data_quota, q.after_data_rate_limit
FROM (SELECT (SELECT count(*) FROM inserted) AS inserted,
             (SELECT count(*) FROM updated) AS updated) c
LEFT JOIN (SELECT used.id, used.used_seconds, used.used_bytes, used.added_seconds,
                  used.added_bytes, p.time_quota, p.data_quota, p.after_data_rate_limit
             FROM used JOIN plans p ON p.id = used.plan_id
            WHERE used.added_seconds > 0 OR used.added_bytes > 0) q ON true";

/// Store `records` in one transaction (one attempt; the caller retries).
pub(super) async fn record_accounting(pool: &PgPool, records: &[AcctRecord]) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    let mut run_start = 0;
    for (i, rec) in records.iter().enumerate() {
        let cause = match rec.status {
            AcctStatus::AccountingOn => "accounting-on",
            AcctStatus::AccountingOff => "accounting-off",
            AcctStatus::Start | AcctStatus::InterimUpdate | AcctStatus::Stop => continue,
        };
        account_sessions(&mut tx, &records[run_start..i]).await?;
        admin::close_nas_sessions(
            &mut tx,
            rec.nas_id,
            &rec.router,
            None,
            cause,
            rec.received_at,
        )
        .await?;
        run_start = i + 1;
    }
    account_sessions(&mut tx, &records[run_start..]).await?;
    tx.commit().await?;
    Ok(())
}

/// A run of Start / Interim-Update / Stop records: read, apply, write.
async fn account_sessions(conn: &mut PgConnection, records: &[AcctRecord]) -> StoreResult<()> {
    let (state, state_ctids) = read_state(conn, records).await?;
    // Whether each stored row had started and was closed: the session events
    // are the rows that change either (`events::session_events`).
    let before: std::collections::HashMap<i64, (bool, bool)> = state
        .sessions
        .iter()
        .chain(&state.adoptable)
        .filter_map(|s| {
            let closed = s.state == crate::model::SessionState::Closed;
            s.id.map(|id| (id, (s.started_at.is_some(), closed)))
        })
        .collect();
    let (effects, skipped) = policy::account_batch(records, state);
    if skipped > 0 {
        // Nothing to key such a record on; failing the batch for it would make
        // the NAS retransmit it forever.
        tracing::warn!(
            records = skipped,
            "accounting records without Acct-Session-Id ignored"
        );
    }
    let grown = write_effects(conn, &effects, &state_ctids).await?;
    let now = records.iter().map(|r| r.received_at).max().unwrap_or(0);
    // Only Starts and Stops make events; an Interim-Update costs no statement here.
    let session_events =
        crate::events::session_events(&before, effects.inserts.iter().chain(&effects.updates));
    super::events::session_events(conn, &session_events, now).await?;
    // A quota used up ends (or slows) the voucher's open sessions: the
    // requests (and `voucher.used_up`) are queued in this transaction (see crate::coa).
    super::coa::queue_quota_ends(conn, &grown, now).await
}

/// A stored session row and the version (`ctid`) it was read at.
#[derive(sqlx::FromRow)]
struct VersionedRow {
    row_ctid: String,
    #[sqlx(flatten)]
    row: AcctSessionRow,
}

/// Row id → the `ctid` it was read at, for the write to address it by.
type Versions = HashMap<i64, String>;

/// Models of `rows`, their versions noted in `versions`.
fn versioned(rows: Vec<VersionedRow>, versions: &mut Versions) -> StoreResult<Vec<AcctSession>> {
    rows.into_iter()
        .map(|r| {
            versions.insert(r.row.id, r.row_ctid);
            r.row.into_model()
        })
        .collect()
}

/// The stored sessions (locked), the vouchers and the adoptable rows a run
/// needs, and the versions of the session rows read.
async fn read_state(
    conn: &mut PgConnection,
    records: &[AcctRecord],
) -> StoreResult<(AcctState, Versions)> {
    let mut versions = Versions::new();
    let keys = policy::accounting::session_keys(records);
    if keys.is_empty() {
        return Ok((AcctState::default(), versions));
    }
    let (key_nas, key_asid): (Vec<i64>, Vec<&str>) = keys.into_iter().unzip();
    let rows: Vec<VersionedRow> = sqlx::query_as(&READ_SESSIONS)
        .bind(&key_nas)
        .bind(&key_asid)
        .fetch_all(&mut *conn)
        .await?;
    let sessions = versioned(rows, &mut versions)?;

    let wanted = policy::accounting::wanted_vouchers(records, &sessions);
    let mut vouchers = Vec::new();
    if !wanted.is_empty() {
        let (ids, id_tenants): (Vec<i64>, Vec<i64>) = wanted
            .iter()
            .filter_map(|(id, tenant, _)| id.map(|id| (id, *tenant)))
            .unzip();
        let (code_tenants, codes): (Vec<i64>, Vec<&str>) = wanted
            .iter()
            .filter(|(_, _, code)| !code.is_empty())
            .map(|(_, tenant, code)| (*tenant, *code))
            .unzip();
        vouchers = sqlx::query_as(READ_VOUCHERS)
            .bind(&ids)
            .bind(&id_tenants)
            .bind(&code_tenants)
            .bind(&codes)
            .fetch_all(&mut *conn)
            .await?;
    }

    let adopt = policy::accounting::adoption_vouchers(records, &sessions, &vouchers);
    let mut adoptable = Vec::new();
    if !adopt.is_empty() {
        let rows: Vec<VersionedRow> = sqlx::query_as(&READ_ADOPTABLE)
            .bind(&adopt)
            .fetch_all(&mut *conn)
            .await?;
        adoptable = versioned(rows, &mut versions)?;
    }
    Ok((
        AcctState {
            sessions,
            vouchers,
            adoptable,
        },
        versions,
    ))
}

/// Session rows turned into columns: the arrays [`WRITE_EFFECTS`] unnests.
struct SessionColumns<'a> {
    nas_id: Vec<i64>,
    acct_session_id: Vec<&'a str>,
    username: Vec<&'a str>,
    voucher_id: Vec<Option<i64>>,
    mac: Vec<Option<&'a str>>,
    framed_ip: Vec<Option<&'a str>>,
    state: Vec<&'static str>,
    started_at: Vec<Option<i64>>,
    updated_at: Vec<i64>,
    stopped_at: Vec<Option<i64>>,
    terminate_cause: Vec<Option<&'a str>>,
    session_time: Vec<i64>,
    input_octets: Vec<i64>,
    output_octets: Vec<i64>,
    router: Vec<&'a str>,
}

impl<'a> SessionColumns<'a> {
    fn of(rows: &'a [AcctSession]) -> Self {
        SessionColumns {
            nas_id: rows.iter().map(|s| s.nas_id).collect(),
            acct_session_id: rows.iter().map(|s| s.acct_session_id.as_str()).collect(),
            username: rows.iter().map(|s| s.username.as_str()).collect(),
            voucher_id: rows.iter().map(|s| s.voucher_id).collect(),
            mac: rows.iter().map(|s| s.mac.as_deref()).collect(),
            framed_ip: rows.iter().map(|s| s.framed_ip.as_deref()).collect(),
            state: rows.iter().map(|s| s.state.as_str()).collect(),
            started_at: rows.iter().map(|s| s.started_at).collect(),
            updated_at: rows.iter().map(|s| s.updated_at).collect(),
            stopped_at: rows.iter().map(|s| s.stopped_at).collect(),
            terminate_cause: rows.iter().map(|s| s.terminate_cause.as_deref()).collect(),
            session_time: rows.iter().map(|s| s.session_time).collect(),
            input_octets: rows.iter().map(|s| s.input_octets).collect(),
            output_octets: rows.iter().map(|s| s.output_octets).collect(),
            router: rows.iter().map(|s| s.router.as_str()).collect(),
        }
    }
}

/// New rows, stored and adopted rows (found by their `versions`), and usage,
/// in one statement; the vouchers whose usage grew, with their quotas.
async fn write_effects(
    conn: &mut PgConnection,
    effects: &AcctEffects,
    versions: &Versions,
) -> StoreResult<Vec<GrownUsage>> {
    if effects.inserts.is_empty() && effects.updates.is_empty() && effects.usage.is_empty() {
        return Ok(Vec::new());
    }
    let new = SessionColumns::of(&effects.inserts);
    let old = SessionColumns::of(&effects.updates);
    let old_id = effects
        .updates
        .iter()
        .map(|s| s.id)
        .collect::<Option<Vec<i64>>>()
        .ok_or_else(|| StoreError::Invalid("session update without a row id".into()))?;
    let old_ctid = old_id
        .iter()
        .map(|id| versions.get(id).map(String::as_str))
        .collect::<Option<Vec<&str>>>()
        .ok_or_else(|| StoreError::Invalid("session update of a row not read".into()))?;
    let adopted_ids: HashSet<i64> = effects.adopted.iter().map(|(id, _)| *id).collect();
    let adopted: Vec<bool> = old_id.iter().map(|id| adopted_ids.contains(id)).collect();
    let usage_voucher: Vec<i64> = effects.usage.iter().map(|u| u.0).collect();
    let usage_seconds: Vec<i64> = effects.usage.iter().map(|u| u.1).collect();
    let usage_bytes: Vec<i64> = effects.usage.iter().map(|u| u.2).collect();

    let written: Result<Vec<WrittenRow>, sqlx::Error> = sqlx::query_as(WRITE_EFFECTS)
        .bind(&new.nas_id)
        .bind(&new.acct_session_id)
        .bind(&new.username)
        .bind(&new.voucher_id)
        .bind(&new.mac)
        .bind(&new.framed_ip)
        .bind(&new.state)
        .bind(&new.started_at)
        .bind(&new.updated_at)
        .bind(&new.stopped_at)
        .bind(&new.terminate_cause)
        .bind(&new.session_time)
        .bind(&new.input_octets)
        .bind(&new.output_octets)
        // Stored and adopted rows: every column but nas_id (a session stays on its NAS).
        .bind(&old_id)
        .bind(&old.acct_session_id)
        .bind(&old.username)
        .bind(&old.voucher_id)
        .bind(&old.mac)
        .bind(&old.framed_ip)
        .bind(&old.state)
        .bind(&old.started_at)
        .bind(&old.updated_at)
        .bind(&old.stopped_at)
        .bind(&old.terminate_cause)
        .bind(&old.session_time)
        .bind(&old.input_octets)
        .bind(&old.output_octets)
        .bind(&adopted)
        .bind(&usage_voucher)
        .bind(&usage_seconds)
        .bind(&usage_bytes)
        .bind(&new.router)
        .bind(&old.router)
        .bind(&old_ctid)
        .fetch_all(conn)
        .await;
    let rows = match written {
        Ok(rows) => rows,
        // An adopted row renamed to an Acct-Session-Id another instance has
        // just inserted: the same race as a skipped insert.
        Err(sqlx::Error::Database(d))
            if d.is_unique_violation() && d.table() == Some("sessions") =>
        {
            return Err(StoreError::Conflict)
        }
        Err(e) => return Err(e.into()),
    };
    let (inserted, updated) = rows.first().map_or((0, 0), |r| (r.0, r.1));
    let all_inserted = usize::try_from(inserted).ok() == Some(effects.inserts.len());
    let all_updated = usize::try_from(updated).ok() == Some(effects.updates.len());
    if !all_inserted || !all_updated {
        // Another instance inserted one of these sessions, or adopted one of
        // these synthetic rows, after our read. The rollback undoes the rest.
        return Err(StoreError::Conflict);
    }
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(GrownUsage {
                voucher_id: r.2?,
                used_seconds: r.3?,
                used_bytes: r.4?,
                added_seconds: r.5?,
                added_bytes: r.6?,
                time_quota: r.7,
                data_quota: r.8,
                after_data_rate_limit: r.9,
            })
        })
        .collect())
}

/// A row of [`WRITE_EFFECTS`]: the counts, then a grown voucher's usage and
/// quotas (all NULL when none grew).
type WrittenRow = (
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);
