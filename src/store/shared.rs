//! What the SQLite and PostgreSQL backends have in common: the SQL text (both
//! schemas use 64-bit integers for timestamps and counters, and `$N` parameters
//! work on both) and the logic around it, written once as [`impl_store!`] and
//! instantiated per backend. A macro rather than generic code because sqlx's
//! backend-generic bounds (`for<'c> &'c mut DB::Connection: Executor<'c>`, one
//! `Encode`/`Decode` bound per bound type) would drown the logic.
//!
//! A backend provides, as inherent items of its store type:
//! - `async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, DB>>`:
//!   the transaction every write goes through;
//! - `fn reader(&self) -> &sqlx::Pool<DB>`: the pool plain reads use;
//! - `async fn run_migrations(&self) -> StoreResult<()>`;
//! - `const LOCK_VOUCHER: &str` / `const LOCK_SESSION: &str`: the row-lock suffix
//!   of the voucher+plan select (`vouchers v`) and of the session select
//!   (`sessions s`); empty on SQLite, whose single writer connection already
//!   serialises writers;
//! - `const WRITE_ATTEMPTS: u32`: how often a transaction is tried when the database
//!   reports a deadlock or serialization failure;
//! - `fn json_rows(n) / json_int(i) / json_text(i) -> String`: the table source that
//!   turns the JSON array bound as `$n` into rows `j` (`j.value`, ordered by
//!   `j.key`), and element `i` of `j.value` as BIGINT / text. Batches pass their
//!   rows through them, so a statement's text does not depend on the batch size.

use super::{AcctRecord, AcctStatus, StoreError};
use crate::model::Timestamp;

/// Columns of `nas`.
pub(crate) const NAS_COLS: &str =
    "id, name, address, secret, require_message_authenticator, coa_port, site, \
     created_at, previous_secret, previous_secret_until";

/// Columns of `plans`.
pub(crate) const PLAN_COLS: &str = "id, name, time_quota, validity, expires_at, data_quota, \
     rate_limit, shared_users, mac_lock, idle_timeout, interim_interval, mikrotik_group, \
     address_list, price, created_at";

/// Columns of `plans p`, prefixed `p_` so that they can sit beside a voucher's.
pub(crate) const PLAN_COLS_P: &str =
    "p.id AS p_id, p.name AS p_name, p.time_quota AS p_time_quota, \
     p.validity AS p_validity, p.expires_at AS p_expires_at, p.data_quota AS p_data_quota, \
     p.rate_limit AS p_rate_limit, p.shared_users AS p_shared_users, p.mac_lock AS p_mac_lock, \
     p.idle_timeout AS p_idle_timeout, p.interim_interval AS p_interim_interval, \
     p.mikrotik_group AS p_mikrotik_group, p.address_list AS p_address_list, p.price AS p_price, \
     p.created_at AS p_created_at";

/// Columns of `vouchers v JOIN plans p`.
pub(crate) const VOUCHER_COLS: &str = "v.id, v.code, v.password, v.plan_id, p.name AS plan_name, \
     v.site, v.state, v.first_login_at, v.valid_until, v.used_seconds, v.used_bytes, \
     v.bound_mac, v.batch, v.created_at";

/// Columns of `sessions s JOIN nas n`.
pub(crate) const SESSION_COLS: &str = "s.id, s.nas_id, n.name AS nas_name, s.acct_session_id, \
     s.username, s.voucher_id, s.mac, s.framed_ip, s.state, s.authorized_at, s.started_at, \
     s.updated_at, s.stopped_at, s.session_time, s.input_octets, s.output_octets, \
     s.terminate_cause, s.interim_interval";

/// Prefix of the Acct-Session-Id given to an accepted request that carried none.
/// Accounting for the real id adopts such a row (same NAS, voucher and MAC).
pub(crate) const SYNTHETIC_PREFIX: &str = "auth-";

/// Causes the server writes when it *guesses* a session ended. Accounting for such a
/// session proves the guess wrong and reopens it; a session closed by a Stop or by
/// the NAS (Accounting-On/Off) stays closed.
pub(crate) const GUESSED_CAUSES: [&str; 2] = ["stale", "not-started"];

pub(crate) fn now() -> Timestamp {
    chrono::Utc::now().timestamp()
}

pub(crate) fn synthetic_session_id(now: Timestamp) -> String {
    format!("{SYNTHETIC_PREFIX}{now}-{:016x}", rand::random::<u64>())
}

/// Operator input (plan quotas) that does not fit a BIGINT is refused.
pub(crate) fn u64_to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is too large")))
}

pub(crate) fn opt_u64_to_i64(v: Option<u64>, what: &str) -> Result<Option<i64>, StoreError> {
    v.map(|v| u64_to_i64(v, what)).transpose()
}

/// Counters reported by a NAS are clamped rather than refused: 2^63 bytes cannot
/// occur in practice, and refusing would fail the whole accounting batch, which the
/// NAS would then retransmit forever.
pub(crate) fn counter_to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Stored counters are never negative; a negative value would only come from a
/// hand-edited row and reads as zero.
pub(crate) fn i64_to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn i64_to_u32(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Invalid(format!("stored {what} {v} is out of range")))
}

/// Map a unique-constraint violation to `Duplicate(what)`.
pub(crate) fn unique_or(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Duplicate(what()),
        _ => StoreError::Database(e),
    }
}

/// PostgreSQL aborts one side of a deadlock (40P01) or a serialization conflict
/// (40001); the transaction did nothing and can simply be run again. Lock order
/// differs between `authorize` (voucher, then session) and accounting (session,
/// then voucher), so two instances can deadlock on the same session rarely.
pub(crate) fn is_retryable(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(d)) => {
            matches!(d.code().as_deref(), Some("40001") | Some("40P01"))
        }
        StoreError::Conflict => true,
        _ => false,
    }
}

/// The SQL text of a statement assembled from backend pieces (`json_rows` and
/// friends), formatted on first use and then reused: every `impl_store!`
/// expansion has its own static, so each backend keeps its own text, and the text
/// never varies with the batch size, so sqlx prepares it once per connection.
macro_rules! cached_sql {
    ($($fmt:tt)*) => {{
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        SQL.get_or_init(|| format!($($fmt)*)).as_str()
    }};
}

pub(crate) use cached_sql;

/// Rows for a batch statement, as one JSON array of arrays (see `json_rows`).
/// serde_json writes an i64 digit for digit and `None` as null.
pub(crate) fn json_param<T: serde::Serialize>(rows: &T) -> String {
    serde_json::to_string(rows).expect("tuples of numbers and strings always serialize")
}

/// A session row as an authorization batch sees it: enough to count a voucher's
/// live devices again after each accept of the batch.
pub(crate) struct AuthSession {
    pub nas_id: i64,
    pub acct_session_id: String,
    pub voucher_id: Option<i64>,
    pub mac: Option<String>,
    pub state: String,
    pub authorized_at: Option<Timestamp>,
}

/// Distinct MACs of `voucher_id`'s live sessions: open, or authorized after
/// `live_after` (not started yet, but still holding a device slot).
pub(crate) fn live_macs(
    sessions: &[AuthSession],
    voucher_id: i64,
    live_after: Timestamp,
) -> Vec<String> {
    let mut macs: Vec<String> = sessions
        .iter()
        .filter(|s| {
            s.voucher_id == Some(voucher_id)
                && (s.state == "open"
                    || (s.state == "authorized" && s.authorized_at.is_some_and(|t| t > live_after)))
        })
        .filter_map(|s| s.mac.clone())
        .collect();
    macs.sort_unstable();
    macs.dedup();
    macs
}

/// The `authorized` session row an accept writes. Accepts of one (NAS,
/// Acct-Session-Id) in a batch merge into one row the way consecutive upserts
/// would (PostgreSQL refuses to touch a row twice in one statement).
pub(crate) struct SessionGrant {
    pub nas_id: i64,
    pub acct_session_id: String,
    /// Only the first: the upsert does not change the username of an existing row.
    pub username: String,
    pub voucher_id: i64,
    pub mac: Option<String>,
    pub framed_ip: Option<String>,
    pub interim_interval: Option<i64>,
}

impl SessionGrant {
    /// Fold a later accept for the same session into this one, as the upsert's
    /// `DO UPDATE` would: the newer voucher, and each value unless it is missing.
    pub(crate) fn merge(&mut self, later: SessionGrant) {
        self.voucher_id = later.voucher_id;
        if later.mac.is_some() {
            self.mac = later.mac;
        }
        if later.framed_ip.is_some() {
            self.framed_ip = later.framed_ip;
        }
        if later.interim_interval.is_some() {
            self.interim_interval = later.interim_interval;
        }
    }
}

/// A session row as accounting sees it: read under a row lock (or made by this
/// batch), moved through the batch's records in memory, written back once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AcctSession {
    /// `None` for a row this batch inserts.
    pub id: Option<i64>,
    pub nas_id: i64,
    pub acct_session_id: String,
    pub username: String,
    pub voucher_id: Option<i64>,
    pub mac: Option<String>,
    pub framed_ip: Option<String>,
    pub state: String,
    pub started_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub stopped_at: Option<Timestamp>,
    pub terminate_cause: Option<String>,
    pub session_time: i64,
    pub input_octets: i64,
    pub output_octets: i64,
}

impl AcctSession {
    /// The row a record for an unknown session creates (a lost Start is normal:
    /// the first record may be an Interim or a Stop).
    pub(crate) fn new_open(rec: &AcctRecord, voucher_id: Option<i64>) -> Self {
        AcctSession {
            id: None,
            nas_id: rec.nas_id,
            acct_session_id: rec.acct_session_id.clone(),
            username: rec.username.clone(),
            voucher_id,
            mac: rec.mac.clone(),
            framed_ip: rec.framed_ip.clone(),
            state: "open".into(),
            started_at: None,
            updated_at: rec.received_at,
            stopped_at: None,
            terminate_cause: None,
            session_time: 0,
            input_octets: 0,
            output_octets: 0,
        }
    }

    /// Apply one Start / Interim-Update / Stop and return the usage it adds to
    /// the voucher, (seconds, bytes).
    pub(crate) fn apply(&mut self, rec: &AcctRecord, voucher_id: Option<i64>) -> (i64, i64) {
        // Counters only move forward, so a retransmission (or a reordered older
        // record) adds nothing.
        let session_time = self.session_time.max(counter_to_i64(rec.session_time));
        let input_octets = self.input_octets.max(counter_to_i64(rec.input_octets));
        let output_octets = self.output_octets.max(counter_to_i64(rec.output_octets));
        let delta_seconds = session_time - self.session_time;
        let delta_bytes =
            (input_octets - self.input_octets).saturating_add(output_octets - self.output_octets);

        let closed_for_good = self.state == "closed"
            && !self
                .terminate_cause
                .as_deref()
                .is_some_and(|c| GUESSED_CAUSES.contains(&c));
        if closed_for_good {
            // A late or retransmitted record for a session that really ended
            // keeps its end; only the counters may still move.
        } else if rec.status == AcctStatus::Stop {
            self.state = "closed".into();
            self.stopped_at = Some(rec.received_at);
            self.terminate_cause = rec.terminate_cause.clone();
        } else {
            self.state = "open".into();
            self.stopped_at = None;
            self.terminate_cause = None;
        }
        // A session first seen by an Interim or a Stop (lost Start) began
        // session_time seconds before this record.
        self.started_at = Some(
            self.started_at
                .unwrap_or(rec.received_at.saturating_sub(session_time)),
        );
        self.voucher_id = voucher_id;
        if rec.mac.is_some() {
            self.mac = rec.mac.clone();
        }
        if rec.framed_ip.is_some() {
            self.framed_ip = rec.framed_ip.clone();
        }
        self.session_time = session_time;
        self.input_octets = input_octets;
        self.output_octets = output_octets;
        self.updated_at = rec.received_at;
        (delta_seconds, delta_bytes)
    }
}

/// Implements [`crate::store::Store`] for `$store` on sqlx database `$db`.
macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        type DbRow = <$db as sqlx::Database>::Row;
        type DbConn = <$db as sqlx::Database>::Connection;


        impl $store {
            fn nas_from_row(row: &DbRow) -> $crate::store::StoreResult<$crate::model::Nas> {
                use sqlx::Row;
                let name: String = row.try_get("name")?;
                let address: String = row.try_get("address")?;
                let address = address.parse().map_err(|e| {
                    $crate::store::StoreError::Invalid(format!("NAS {name}: stored address: {e}"))
                })?;
                let coa_port: i64 = row.try_get("coa_port")?;
                let coa_port = u16::try_from(coa_port).map_err(|_| {
                    $crate::store::StoreError::Invalid(format!("NAS {name}: stored CoA port {coa_port}"))
                })?;
                Ok($crate::model::Nas {
                    id: row.try_get("id")?,
                    address,
                    secret: $crate::model::Secret::new(row.try_get::<String, _>("secret")?),
                    require_message_authenticator: row.try_get("require_message_authenticator")?,
                    coa_port,
                    site: row.try_get("site")?,
                    created_at: row.try_get("created_at")?,
                    previous_secret: row
                        .try_get::<Option<String>, _>("previous_secret")?
                        .map($crate::model::Secret::new),
                    previous_secret_until: row.try_get("previous_secret_until")?,
                    name,
                })
            }

            /// `prefix` is "" for `SELECT {PLAN_COLS}` and "p_" for `{PLAN_COLS_P}`.
            fn plan_from_row(row: &DbRow, prefix: &str) -> $crate::store::StoreResult<$crate::model::Plan> {
                use $crate::store::shared::{i64_to_u32, i64_to_u64};
                use sqlx::Row;
                let col = |c: &str| format!("{prefix}{c}");
                let opt_u64 = |c: &str| -> $crate::store::StoreResult<Option<u64>> {
                    Ok(row.try_get::<Option<i64>, _>(&*col(c))?.map(i64_to_u64))
                };
                let opt_u32 = |c: &str| -> $crate::store::StoreResult<Option<u32>> {
                    row.try_get::<Option<i64>, _>(&*col(c))?.map(|v| i64_to_u32(v, c)).transpose()
                };
                Ok($crate::model::Plan {
                    id: row.try_get(&*col("id"))?,
                    name: row.try_get(&*col("name"))?,
                    time_quota: opt_u64("time_quota")?,
                    validity: opt_u64("validity")?,
                    expires_at: row.try_get(&*col("expires_at"))?,
                    data_quota: opt_u64("data_quota")?,
                    rate_limit: row.try_get(&*col("rate_limit"))?,
                    shared_users: i64_to_u32(row.try_get(&*col("shared_users"))?, "shared_users")?,
                    mac_lock: row.try_get(&*col("mac_lock"))?,
                    idle_timeout: opt_u32("idle_timeout")?,
                    interim_interval: opt_u32("interim_interval")?,
                    mikrotik_group: row.try_get(&*col("mikrotik_group"))?,
                    address_list: row.try_get(&*col("address_list"))?,
                    price: row.try_get(&*col("price"))?,
                    created_at: row.try_get(&*col("created_at"))?,
                })
            }

            fn voucher_from_row(row: &DbRow) -> $crate::store::StoreResult<$crate::model::Voucher> {
                use $crate::store::shared::i64_to_u64;
                use sqlx::Row;
                let state: String = row.try_get("state")?;
                let state = $crate::model::VoucherState::parse(&state).ok_or_else(|| {
                    $crate::store::StoreError::Invalid(format!("stored voucher state {state:?}"))
                })?;
                Ok($crate::model::Voucher {
                    id: row.try_get("id")?,
                    code: row.try_get("code")?,
                    password: row.try_get("password")?,
                    plan_id: row.try_get("plan_id")?,
                    plan_name: row.try_get("plan_name")?,
                    site: row.try_get("site")?,
                    state,
                    first_login_at: row.try_get("first_login_at")?,
                    valid_until: row.try_get("valid_until")?,
                    used_seconds: i64_to_u64(row.try_get("used_seconds")?),
                    used_bytes: i64_to_u64(row.try_get("used_bytes")?),
                    bound_mac: row.try_get("bound_mac")?,
                    batch: row.try_get("batch")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            fn session_from_row(row: &DbRow) -> $crate::store::StoreResult<$crate::model::Session> {
                use $crate::store::shared::{i64_to_u32, i64_to_u64};
                use sqlx::Row;
                let state: String = row.try_get("state")?;
                let state = $crate::model::SessionState::parse(&state).ok_or_else(|| {
                    $crate::store::StoreError::Invalid(format!("stored session state {state:?}"))
                })?;
                Ok($crate::model::Session {
                    id: row.try_get("id")?,
                    nas_id: row.try_get("nas_id")?,
                    nas_name: row.try_get("nas_name")?,
                    acct_session_id: row.try_get("acct_session_id")?,
                    username: row.try_get("username")?,
                    voucher_id: row.try_get("voucher_id")?,
                    mac: row.try_get("mac")?,
                    framed_ip: row.try_get("framed_ip")?,
                    state,
                    authorized_at: row.try_get("authorized_at")?,
                    started_at: row.try_get("started_at")?,
                    updated_at: row.try_get("updated_at")?,
                    stopped_at: row.try_get("stopped_at")?,
                    session_time: i64_to_u64(row.try_get("session_time")?),
                    input_octets: i64_to_u64(row.try_get("input_octets")?),
                    output_octets: i64_to_u64(row.try_get("output_octets")?),
                    terminate_cause: row.try_get("terminate_cause")?,
                    interim_interval: row
                        .try_get::<Option<i64>, _>("interim_interval")?
                        .map(|v| i64_to_u32(v, "interim_interval"))
                        .transpose()?,
                })
            }

            async fn bump_nas_generation(conn: &mut DbConn) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE meta SET value = value + 1 WHERE key = 'nas_generation'")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            async fn close_live_sessions(
                conn: &mut DbConn,
                nas_id: i64,
                keep_prefix: Option<&str>,
                cause: &str,
                now: $crate::model::Timestamp,
            ) -> $crate::store::StoreResult<u64> {
                // With a prefix (reboot detection) only open sessions are closed:
                // authorized rows may carry server-made ids and expire on their own.
                // substr/length rather than LIKE: LIKE would treat `_` and `%` in a
                // session id as wildcards, and is case-insensitive on SQLite.
                let done = sqlx::query(
                    "UPDATE sessions SET state = 'closed', stopped_at = $3, terminate_cause = $4 \
                     WHERE nas_id = $1 AND state IN ('open', 'authorized') \
                     AND ($2 IS NULL OR (state = 'open' AND substr(acct_session_id, 1, length($2)) <> $2))",
                )
                .bind(nas_id)
                .bind(keep_prefix)
                .bind(now)
                .bind(cause)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected())
            }

            fn acct_session_from_row(row: &DbRow) -> $crate::store::StoreResult<$crate::store::shared::AcctSession> {
                use sqlx::Row;
                Ok($crate::store::shared::AcctSession {
                    id: Some(row.try_get("id")?),
                    nas_id: row.try_get("nas_id")?,
                    acct_session_id: row.try_get("acct_session_id")?,
                    username: row.try_get("username")?,
                    voucher_id: row.try_get("voucher_id")?,
                    mac: row.try_get("mac")?,
                    framed_ip: row.try_get("framed_ip")?,
                    state: row.try_get("state")?,
                    started_at: row.try_get("started_at")?,
                    updated_at: row.try_get("updated_at")?,
                    stopped_at: row.try_get("stopped_at")?,
                    terminate_cause: row.try_get("terminate_cause")?,
                    session_time: row.try_get("session_time")?,
                    input_octets: row.try_get("input_octets")?,
                    output_octets: row.try_get("output_octets")?,
                })
            }

            /// Give the real Acct-Session-Id to the synthetic `authorized` row `id`
            /// (same NAS, voucher and MAC), so that one login is one row. Returns the
            /// row, or `None` when it is no longer a synthetic authorized row.
            async fn adopt_synthetic(
                conn: &mut DbConn,
                id: i64,
                acct_session_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::shared::AcctSession>> {
                // The state test is repeated so that, on PostgreSQL, a concurrent
                // adoption of the same row (re-checked after its lock) leaves it alone.
                let row = sqlx::query(
                    "UPDATE sessions SET acct_session_id = $1 \
                     WHERE id = $2 AND state = 'authorized' AND acct_session_id LIKE 'auth-%' \
                     RETURNING id, nas_id, acct_session_id, username, voucher_id, mac, framed_ip, state, \
                     started_at, updated_at, stopped_at, terminate_cause, session_time, input_octets, output_octets",
                )
                .bind(acct_session_id)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
                row.as_ref().map(Self::acct_session_from_row).transpose()
            }

            /// Store a run of Start / Interim-Update / Stop records (no
            /// Accounting-On/Off among them) with a fixed number of statements:
            /// read every session they name (locked, in id order), the vouchers of
            /// records without one, and synthetic rows they may adopt; run every
            /// record through the session state machine in order, in memory; then
            /// insert the new rows, update the old ones and add the usage, one
            /// statement each. Only adopting a synthetic row costs a statement per row.
            async fn account_sessions(
                conn: &mut DbConn,
                records: &[$crate::store::AcctRecord],
            ) -> $crate::store::StoreResult<()> {
                use std::collections::{HashMap, HashSet};
                use sqlx::Row;
                use $crate::store::shared::{cached_sql, json_param, AcctSession};

                let records: Vec<&$crate::store::AcctRecord> = records
                    .iter()
                    .filter(|rec| {
                        if rec.acct_session_id.is_empty() {
                            // Nothing to key the session on; storing it would fail
                            // the batch and the NAS would retransmit it forever.
                            tracing::warn!(nas_id = rec.nas_id, status = rec.status.label(),
                                "accounting record without Acct-Session-Id ignored");
                            false
                        } else {
                            true
                        }
                    })
                    .collect();
                if records.is_empty() {
                    return Ok(());
                }

                let mut keys: Vec<(i64, &str)> =
                    records.iter().map(|r| (r.nas_id, r.acct_session_id.as_str())).collect();
                keys.sort_unstable();
                keys.dedup();
                // Locked in id order, so two batches that share sessions (PostgreSQL,
                // several instances) queue rather than deadlock.
                // A join driven by the keys (not `(nas_id, acct_session_id) IN (…)`,
                // which SQLite answers by scanning every session of the NAS).
                let sql = cached_sql!(
                    "SELECT s.id, s.nas_id, s.acct_session_id, s.username, s.voucher_id, s.mac, s.framed_ip, \
                     s.state, s.started_at, s.updated_at, s.stopped_at, s.terminate_cause, s.session_time, \
                     s.input_octets, s.output_octets FROM {rows} CROSS JOIN sessions s \
                     WHERE s.nas_id = {nas} AND s.acct_session_id = {asid} ORDER BY s.id{lock}",
                    nas = Self::json_int(0),
                    asid = Self::json_text(1),
                    rows = Self::json_rows(1),
                    lock = Self::LOCK_SESSION,
                );
                let rows = sqlx::query(sql).bind(json_param(&keys)).fetch_all(&mut *conn).await?;
                let mut sessions: Vec<AcctSession> = Vec::with_capacity(keys.len());
                let mut at: HashMap<(i64, &str), usize> = HashMap::with_capacity(keys.len());
                for row in &rows {
                    let s = Self::acct_session_from_row(row)?;
                    // Keyed by the record's copy of the id, which outlives `sessions`' borrows.
                    if let Ok(k) = keys.binary_search(&(s.nas_id, s.acct_session_id.as_str())) {
                        at.insert(keys[k], sessions.len());
                        sessions.push(s);
                    }
                }

                // Vouchers for the records that may need one: their session is new or
                // has none yet. By Class (when it still exists), else by User-Name.
                let mut wanted: Vec<(Option<i64>, &str)> = records
                    .iter()
                    .filter(|r| {
                        !matches!(at.get(&(r.nas_id, r.acct_session_id.as_str())),
                            Some(&i) if sessions[i].voucher_id.is_some())
                    })
                    .map(|r| (r.class_voucher_id, r.username.as_str()))
                    .collect();
                wanted.sort_unstable();
                wanted.dedup();
                let mut voucher_ids: HashSet<i64> = HashSet::new();
                let mut voucher_by_code: HashMap<String, i64> = HashMap::new();
                if !wanted.is_empty() {
                    let sql = cached_sql!(
                        "SELECT id, code FROM vouchers WHERE id IN (SELECT {id} FROM {rows}) \
                         UNION SELECT id, code FROM vouchers WHERE code IN (SELECT {code} FROM {rows})",
                        id = Self::json_int(0),
                        code = Self::json_text(1),
                        rows = Self::json_rows(1),
                    );
                    let found: Vec<(i64, String)> =
                        sqlx::query_as(sql).bind(json_param(&wanted)).fetch_all(&mut *conn).await?;
                    for (id, code) in found {
                        voucher_ids.insert(id);
                        voucher_by_code.insert(code, id);
                    }
                }
                let voucher_for = |rec: &$crate::store::AcctRecord| -> Option<i64> {
                    if let Some(id) = rec.class_voucher_id.filter(|id| voucher_ids.contains(id)) {
                        return Some(id);
                    }
                    if rec.username.is_empty() {
                        return None;
                    }
                    voucher_by_code.get(&rec.username).copied()
                };

                // Synthetic `authorized` rows (an accept without Acct-Session-Id) that a
                // new session of the same NAS, voucher and MAC adopts; newest first.
                let mut adoptable: Vec<(i64,)> = records
                    .iter()
                    .filter(|r| r.mac.is_some() && !at.contains_key(&(r.nas_id, r.acct_session_id.as_str())))
                    .filter_map(|r| voucher_for(r).map(|v| (v,)))
                    .collect();
                adoptable.sort_unstable();
                adoptable.dedup();
                // (id, nas_id, voucher_id, mac, still adoptable)
                let mut candidates: Vec<(i64, i64, i64, String, bool)> = Vec::new();
                if !adoptable.is_empty() {
                    let sql = cached_sql!(
                        "SELECT id, nas_id, voucher_id, mac FROM sessions \
                         WHERE voucher_id IN (SELECT {id} FROM {rows}) AND state = 'authorized' \
                         AND acct_session_id LIKE 'auth-%' AND mac IS NOT NULL \
                         ORDER BY authorized_at DESC, id DESC",
                        id = Self::json_int(0),
                        rows = Self::json_rows(1),
                    );
                    let rows = sqlx::query(sql).bind(json_param(&adoptable)).fetch_all(&mut *conn).await?;
                    for row in &rows {
                        candidates.push((
                            row.try_get("id")?,
                            row.try_get("nas_id")?,
                            row.try_get("voucher_id")?,
                            row.try_get("mac")?,
                            true,
                        ));
                    }
                }

                // Every record in order, in memory. Several records of one session
                // in this batch see each other exactly as separate batches would.
                let mut usage: HashMap<i64, (i64, i64)> = HashMap::new();
                for rec in &records {
                    let key = (rec.nas_id, rec.acct_session_id.as_str());
                    let (i, resolved) = match at.get(&key) {
                        Some(&i) => (i, None),
                        None => {
                            let voucher_id = voucher_for(rec);
                            let mut adopted = None;
                            if let (Some(v), Some(mac)) = (voucher_id, rec.mac.as_deref()) {
                                // Only the newest matching row is tried, as a single
                                // SELECT … LIMIT 1 would.
                                if let Some(c) = candidates
                                    .iter_mut()
                                    .find(|c| c.4 && c.1 == rec.nas_id && c.2 == v && c.3 == mac)
                                {
                                    c.4 = false;
                                    adopted = Self::adopt_synthetic(conn, c.0, &rec.acct_session_id).await?;
                                }
                            }
                            let s = adopted.unwrap_or_else(|| AcctSession::new_open(rec, voucher_id));
                            at.insert(key, sessions.len());
                            sessions.push(s);
                            (sessions.len() - 1, Some(voucher_id))
                        }
                    };
                    let voucher_id = match (sessions[i].voucher_id, resolved) {
                        (Some(v), _) => Some(v),
                        (None, Some(r)) => r,
                        (None, None) => voucher_for(rec),
                    };
                    let (seconds, bytes) = sessions[i].apply(rec, voucher_id);
                    if let Some(v) = voucher_id {
                        if seconds > 0 || bytes > 0 {
                            let u = usage.entry(v).or_default();
                            u.0 = u.0.saturating_add(seconds);
                            u.1 = u.1.saturating_add(bytes);
                        }
                    }
                }

                type SessionRow<'a> = (
                    i64, &'a str, &'a str, Option<i64>, Option<&'a str>, Option<&'a str>, &'a str,
                    Option<i64>, i64, Option<i64>, i64, i64, i64, Option<&'a str>,
                );
                let (new, old): (Vec<&AcctSession>, Vec<&AcctSession>) =
                    sessions.iter().partition(|s| s.id.is_none());
                if !new.is_empty() {
                    let rows: Vec<SessionRow<'_>> = new
                        .iter()
                        .map(|s| (
                            s.nas_id, s.acct_session_id.as_str(), s.username.as_str(), s.voucher_id,
                            s.mac.as_deref(), s.framed_ip.as_deref(), s.state.as_str(), s.started_at,
                            s.updated_at, s.stopped_at, s.session_time, s.input_octets, s.output_octets,
                            s.terminate_cause.as_deref(),
                        ))
                        .collect();
                    // `WHERE true` lets SQLite tell the upsert's ON from a join's.
                    let sql = cached_sql!(
                        "INSERT INTO sessions (nas_id, acct_session_id, username, voucher_id, mac, framed_ip, \
                         state, started_at, updated_at, stopped_at, session_time, input_octets, output_octets, \
                         terminate_cause) \
                         SELECT {c0}, {c1}, {c2}, {c3}, {c4}, {c5}, {c6}, {c7}, {c8}, {c9}, {c10}, {c11}, {c12}, {c13} \
                         FROM {rows} WHERE true ORDER BY j.key \
                         ON CONFLICT (nas_id, acct_session_id) DO NOTHING RETURNING id",
                        c0 = Self::json_int(0), c1 = Self::json_text(1), c2 = Self::json_text(2),
                        c3 = Self::json_int(3), c4 = Self::json_text(4), c5 = Self::json_text(5),
                        c6 = Self::json_text(6), c7 = Self::json_int(7), c8 = Self::json_int(8),
                        c9 = Self::json_int(9), c10 = Self::json_int(10), c11 = Self::json_int(11),
                        c12 = Self::json_int(12), c13 = Self::json_text(13),
                        rows = Self::json_rows(1),
                    );
                    let inserted = sqlx::query(sql).bind(json_param(&rows)).fetch_all(&mut *conn).await?;
                    if inserted.len() != rows.len() {
                        // Another instance inserted one of these sessions after our read
                        // (PostgreSQL). Running the whole batch again reads its row,
                        // under lock, and adds to it.
                        return Err($crate::store::StoreError::Conflict);
                    }
                }
                if !old.is_empty() {
                    type UpdateRow<'a> = (
                        i64, Option<i64>, Option<&'a str>, Option<&'a str>, &'a str, Option<i64>,
                        Option<i64>, Option<&'a str>, i64, i64, i64, i64,
                    );
                    let rows: Vec<UpdateRow<'_>> = old
                        .iter()
                        .filter_map(|s| Some((
                            s.id?, s.voucher_id, s.mac.as_deref(), s.framed_ip.as_deref(), s.state.as_str(),
                            s.started_at, s.stopped_at, s.terminate_cause.as_deref(), s.session_time,
                            s.input_octets, s.output_octets, s.updated_at,
                        )))
                        .collect();
                    let sql = cached_sql!(
                        "UPDATE sessions SET voucher_id = {c1}, mac = {c2}, framed_ip = {c3}, state = {c4}, \
                         started_at = {c5}, stopped_at = {c6}, terminate_cause = {c7}, session_time = {c8}, \
                         input_octets = {c9}, output_octets = {c10}, updated_at = {c11} \
                         FROM {rows} WHERE sessions.id = {c0}",
                        c0 = Self::json_int(0), c1 = Self::json_int(1), c2 = Self::json_text(2),
                        c3 = Self::json_text(3), c4 = Self::json_text(4), c5 = Self::json_int(5),
                        c6 = Self::json_int(6), c7 = Self::json_text(7), c8 = Self::json_int(8),
                        c9 = Self::json_int(9), c10 = Self::json_int(10), c11 = Self::json_int(11),
                        rows = Self::json_rows(1),
                    );
                    sqlx::query(sql).bind(json_param(&rows)).execute(&mut *conn).await?;
                }
                if !usage.is_empty() {
                    let mut rows: Vec<(i64, i64, i64)> =
                        usage.into_iter().map(|(v, (s, b))| (v, s, b)).collect();
                    // Id order: the voucher row locks are taken in the same order by
                    // every batch.
                    rows.sort_unstable();
                    let sql = cached_sql!(
                        "UPDATE vouchers SET used_seconds = used_seconds + {c1}, used_bytes = used_bytes + {c2} \
                         FROM {rows} WHERE vouchers.id = {c0}",
                        c0 = Self::json_int(0), c1 = Self::json_int(1), c2 = Self::json_int(2),
                        rows = Self::json_rows(1),
                    );
                    sqlx::query(sql).bind(json_param(&rows)).execute(&mut *conn).await?;
                }
                Ok(())
            }

            async fn record_accounting_once(
                &self,
                records: &[$crate::store::AcctRecord],
            ) -> $crate::store::StoreResult<()> {
                use $crate::store::AcctStatus;
                let mut tx = self.begin_write().await?;
                // Accounting-On/Off closes the NAS's live sessions at its place in the
                // order: the records before it are stored first, those after it see
                // the closed rows.
                let mut run_start = 0;
                for (i, rec) in records.iter().enumerate() {
                    let cause = match rec.status {
                        AcctStatus::AccountingOn => "accounting-on",
                        AcctStatus::AccountingOff => "accounting-off",
                        AcctStatus::Start | AcctStatus::InterimUpdate | AcctStatus::Stop => continue,
                    };
                    Self::account_sessions(&mut tx, &records[run_start..i]).await?;
                    Self::close_live_sessions(&mut tx, rec.nas_id, None, cause, rec.received_at).await?;
                    run_start = i + 1;
                }
                Self::account_sessions(&mut tx, &records[run_start..]).await?;
                tx.commit().await?;
                Ok(())
            }

            /// [`Store::authorize`](crate::store::Store::authorize) with the decision
            /// function passed in: a batch of one.
            pub async fn authorize_with_policy<F>(
                &self,
                facts: &$crate::policy::AccessFacts,
                now: $crate::model::Timestamp,
                opts: $crate::store::AuthorizeOptions,
                decide: F,
            ) -> $crate::store::StoreResult<$crate::policy::AccessDecision>
            where
                F: Fn(
                        &$crate::policy::AccessFacts,
                        Option<&$crate::policy::VoucherSnapshot>,
                        $crate::model::Timestamp,
                    ) -> $crate::policy::AccessDecision
                    + Send
                    + Sync,
            {
                let mut decisions = self
                    .authorize_batch_with_policy(std::slice::from_ref(facts), now, opts, decide)
                    .await?;
                Ok(decisions.pop().expect("one decision per request"))
            }

            /// [`Store::authorize_batch`](crate::store::Store::authorize_batch) with
            /// the decision function passed in. The trait methods pass
            /// [`crate::policy::decide`]; taking it as a parameter lets the storage
            /// effects (snapshot, activation, MAC binding, session rows, auth events,
            /// row locking) be tested apart from the voucher rules.
            pub async fn authorize_batch_with_policy<F>(
                &self,
                requests: &[$crate::policy::AccessFacts],
                now: $crate::model::Timestamp,
                opts: $crate::store::AuthorizeOptions,
                decide: F,
            ) -> $crate::store::StoreResult<Vec<$crate::policy::AccessDecision>>
            where
                F: Fn(
                        &$crate::policy::AccessFacts,
                        Option<&$crate::policy::VoucherSnapshot>,
                        $crate::model::Timestamp,
                    ) -> $crate::policy::AccessDecision
                    + Send
                    + Sync,
            {
                if requests.is_empty() {
                    return Ok(Vec::new());
                }
                let mut attempt = 1;
                loop {
                    match self.authorize_batch_once(requests, now, opts, &decide).await {
                        Err(e) if attempt < Self::WRITE_ATTEMPTS && $crate::store::shared::is_retryable(&e) => {
                            attempt += 1;
                        }
                        result => return result,
                    }
                }
            }

            /// One transaction with a fixed number of statements however many
            /// requests: read the vouchers (locked, in id order) and their live
            /// sessions, decide each request in order against an in-memory
            /// snapshot that each accept updates, then write activations and MAC
            /// bindings (rare, one statement each), the session rows and the auth
            /// events (one statement each).
            async fn authorize_batch_once<F>(
                &self,
                requests: &[$crate::policy::AccessFacts],
                now: $crate::model::Timestamp,
                opts: $crate::store::AuthorizeOptions,
                decide: &F,
            ) -> $crate::store::StoreResult<Vec<$crate::policy::AccessDecision>>
            where
                F: Fn(
                        &$crate::policy::AccessFacts,
                        Option<&$crate::policy::VoucherSnapshot>,
                        $crate::model::Timestamp,
                    ) -> $crate::policy::AccessDecision
                    + Send
                    + Sync,
            {
                use std::collections::HashMap;
                use sqlx::Row;
                use $crate::policy::{AccessDecision, Activation, VoucherSnapshot};
                use $crate::store::shared::{
                    cached_sql, json_param, live_macs, synthetic_session_id, AuthSession, SessionGrant,
                    PLAN_COLS_P, VOUCHER_COLS,
                };

                let mut tx = self.begin_write().await?;

                // The voucher row locks (PostgreSQL) serialise every authorization of
                // one voucher across workers and instances: the shared-users count and
                // the first-login activation see each other's commits. Taken in id
                // order so that two batches sharing vouchers cannot deadlock.
                let mut codes: Vec<(&str,)> = requests.iter().map(|f| (f.username.as_str(),)).collect();
                codes.sort_unstable();
                codes.dedup();
                let sql = cached_sql!(
                    "SELECT {VOUCHER_COLS}, {PLAN_COLS_P} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
                     WHERE v.code IN (SELECT {code} FROM {rows}) ORDER BY v.id{lock}",
                    code = Self::json_text(0),
                    rows = Self::json_rows(1),
                    lock = Self::LOCK_VOUCHER,
                );
                let rows = sqlx::query(sql).bind(json_param(&codes)).fetch_all(&mut *tx).await?;
                let mut snapshots: Vec<VoucherSnapshot> = Vec::with_capacity(rows.len());
                for row in &rows {
                    snapshots.push(VoucherSnapshot {
                        voucher: Self::voucher_from_row(row)?,
                        plan: Self::plan_from_row(row, "p_")?,
                        active_macs: Vec::new(),
                    });
                }
                let by_code: HashMap<String, usize> =
                    snapshots.iter().enumerate().map(|(i, s)| (s.voucher.code.clone(), i)).collect();
                let by_id: HashMap<i64, usize> =
                    snapshots.iter().enumerate().map(|(i, s)| (s.voucher.id, i)).collect();

                // Sessions that decide who is live: those of the vouchers above that
                // hold a device now, and those the accepts may upsert (an upsert can
                // move a row to another voucher or make an old authorized row live).
                let ttl = i64::try_from(opts.authorized_ttl).unwrap_or(i64::MAX);
                let live_after = now.saturating_sub(ttl);
                let voucher_ids: Vec<(i64,)> = snapshots.iter().map(|s| (s.voucher.id,)).collect();
                let mut keys: Vec<(i64, &str)> = requests
                    .iter()
                    .filter_map(|f| {
                        f.acct_session_id.as_deref().filter(|a| !a.is_empty()).map(|a| (f.nas_id, a))
                    })
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                let mut sessions: Vec<AuthSession> = Vec::new();
                if !voucher_ids.is_empty() || !keys.is_empty() {
                    // Joins driven by the batch's rows, CROSS JOIN so that SQLite keeps
                    // that order and searches the (voucher_id, state) and (nas_id,
                    // acct_session_id) indexes rather than every open session.
                    let sql = cached_sql!(
                        "SELECT s.nas_id, s.acct_session_id, s.voucher_id, s.mac, s.state, s.authorized_at \
                         FROM {rows1} CROSS JOIN sessions s WHERE s.voucher_id = {id} AND s.mac IS NOT NULL \
                         AND s.state IN ('open', 'authorized') \
                         AND (s.state = 'open' OR s.authorized_at > $2) \
                         UNION SELECT s.nas_id, s.acct_session_id, s.voucher_id, s.mac, s.state, s.authorized_at \
                         FROM {rows3} CROSS JOIN sessions s WHERE s.nas_id = {nas} AND s.acct_session_id = {asid}",
                        id = Self::json_int(0),
                        rows1 = Self::json_rows(1),
                        nas = Self::json_int(0),
                        asid = Self::json_text(1),
                        rows3 = Self::json_rows(3),
                    );
                    let rows = sqlx::query(sql)
                        .bind(json_param(&voucher_ids))
                        .bind(live_after)
                        .bind(json_param(&keys))
                        .fetch_all(&mut *tx)
                        .await?;
                    for row in &rows {
                        sessions.push(AuthSession {
                            nas_id: row.try_get("nas_id")?,
                            acct_session_id: row.try_get("acct_session_id")?,
                            voucher_id: row.try_get("voucher_id")?,
                            mac: row.try_get("mac")?,
                            state: row.try_get("state")?,
                            authorized_at: row.try_get("authorized_at")?,
                        });
                    }
                }
                let mut session_at: HashMap<(i64, String), usize> = sessions
                    .iter()
                    .enumerate()
                    .map(|(i, s)| ((s.nas_id, s.acct_session_id.clone()), i))
                    .collect();

                let mut decisions = Vec::with_capacity(requests.len());
                let mut activations: Vec<(i64, Activation)> = Vec::new();
                let mut bindings: Vec<(i64, String)> = Vec::new();
                let mut grants: Vec<SessionGrant> = Vec::new();
                let mut grant_at: HashMap<(i64, String), usize> = HashMap::new();
                for facts in requests {
                    // Site scope: a voucher of another site is unknown at this NAS.
                    let found = by_code.get(&facts.username).copied().filter(|&i| {
                        let site = &snapshots[i].voucher.site;
                        site.is_none() || facts.nas_site.is_none() || *site == facts.nas_site
                    });
                    if let Some(i) = found {
                        snapshots[i].active_macs = live_macs(&sessions, snapshots[i].voucher.id, live_after);
                    }
                    let decision = decide(facts, found.map(|i| &snapshots[i]), now);

                    if let AccessDecision::Accept(grant) = &decision {
                        // The effects go into the snapshot at once, so the next request
                        // of the batch sees them as it would after a commit. The writes
                        // are guarded like the in-memory test (first_login_at / bound_mac
                        // IS NULL), so a voucher not read here is still activated once.
                        let target = by_id.get(&grant.voucher_id).copied();
                        if let Some(act) = &grant.activation {
                            let first = match target {
                                Some(t) => {
                                    let v = &mut snapshots[t].voucher;
                                    let first = v.first_login_at.is_none();
                                    if first {
                                        v.first_login_at = Some(act.first_login_at);
                                        v.valid_until = act.valid_until;
                                    }
                                    first
                                }
                                None => true,
                            };
                            if first {
                                activations.push((grant.voucher_id, act.clone()));
                            }
                        }
                        if let Some(mac) = &grant.bind_mac {
                            let first = match target {
                                Some(t) => {
                                    let v = &mut snapshots[t].voucher;
                                    let first = v.bound_mac.is_none();
                                    if first {
                                        v.bound_mac = Some(mac.clone());
                                    }
                                    first
                                }
                                None => true,
                            };
                            if first {
                                bindings.push((grant.voucher_id, mac.clone()));
                            }
                        }

                        let acct_session_id = facts
                            .acct_session_id
                            .clone()
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| synthetic_session_id(now));
                        let key = (facts.nas_id, acct_session_id);
                        match session_at.get(&key) {
                            Some(&i) => {
                                let s = &mut sessions[i];
                                s.voucher_id = Some(grant.voucher_id);
                                if facts.mac.is_some() {
                                    s.mac = facts.mac.clone();
                                }
                                s.authorized_at = Some(now);
                            }
                            None => {
                                session_at.insert(key.clone(), sessions.len());
                                sessions.push(AuthSession {
                                    nas_id: facts.nas_id,
                                    acct_session_id: key.1.clone(),
                                    voucher_id: Some(grant.voucher_id),
                                    mac: facts.mac.clone(),
                                    state: "authorized".into(),
                                    authorized_at: Some(now),
                                });
                            }
                        }
                        let row = SessionGrant {
                            nas_id: facts.nas_id,
                            acct_session_id: key.1.clone(),
                            username: facts.username.clone(),
                            voucher_id: grant.voucher_id,
                            mac: facts.mac.clone(),
                            framed_ip: facts.framed_ip.clone(),
                            interim_interval: grant.interim_interval.map(i64::from),
                        };
                        match grant_at.get(&key) {
                            Some(&i) => grants[i].merge(row),
                            None => {
                                grant_at.insert(key, grants.len());
                                grants.push(row);
                            }
                        }
                    }
                    decisions.push(decision);
                }

                for (voucher_id, act) in &activations {
                    sqlx::query(
                        "UPDATE vouchers SET first_login_at = $2, valid_until = $3 \
                         WHERE id = $1 AND first_login_at IS NULL",
                    )
                    .bind(voucher_id)
                    .bind(act.first_login_at)
                    .bind(act.valid_until)
                    .execute(&mut *tx)
                    .await?;
                }
                for (voucher_id, mac) in &bindings {
                    sqlx::query("UPDATE vouchers SET bound_mac = $2 WHERE id = $1 AND bound_mac IS NULL")
                        .bind(voucher_id)
                        .bind(mac)
                        .execute(&mut *tx)
                        .await?;
                }
                if !grants.is_empty() {
                    let rows: Vec<_> = grants
                        .iter()
                        .map(|g| (
                            g.nas_id, g.acct_session_id.as_str(), g.username.as_str(), g.voucher_id,
                            g.mac.as_deref(), g.framed_ip.as_deref(), g.interim_interval,
                        ))
                        .collect();
                    // A row that accounting already opened (or closed) keeps its state
                    // and counters; only the voucher link and device are refreshed.
                    // `WHERE true` lets SQLite tell the upsert's ON from a join's.
                    let sql = cached_sql!(
                        "INSERT INTO sessions (nas_id, acct_session_id, username, voucher_id, mac, \
                         framed_ip, state, authorized_at, updated_at, interim_interval) \
                         SELECT {c0}, {c1}, {c2}, {c3}, {c4}, {c5}, 'authorized', $2, $2, {c6} \
                         FROM {rows} WHERE true ORDER BY j.key \
                         ON CONFLICT (nas_id, acct_session_id) DO UPDATE SET \
                         voucher_id = excluded.voucher_id, mac = COALESCE(excluded.mac, sessions.mac), \
                         framed_ip = COALESCE(excluded.framed_ip, sessions.framed_ip), \
                         authorized_at = excluded.authorized_at, updated_at = excluded.updated_at, \
                         interim_interval = COALESCE(excluded.interim_interval, sessions.interim_interval)",
                        c0 = Self::json_int(0), c1 = Self::json_text(1), c2 = Self::json_text(2),
                        c3 = Self::json_int(3), c4 = Self::json_text(4), c5 = Self::json_text(5),
                        c6 = Self::json_int(6),
                        rows = Self::json_rows(1),
                    );
                    sqlx::query(sql).bind(json_param(&rows)).bind(now).execute(&mut *tx).await?;
                }

                let events: Vec<_> = requests
                    .iter()
                    .zip(&decisions)
                    .map(|(f, d)| {
                        let (result, reason) = $crate::store::decision_result(d);
                        (f.nas_id, f.nas_name.as_str(), f.username.as_str(), f.mac.as_deref(), result, reason.map(|r| r.label()))
                    })
                    .collect();
                let sql = cached_sql!(
                    "INSERT INTO auth_events (at, nas_id, nas_name, username, mac, result, reason) \
                     SELECT $2, {c0}, {c1}, {c2}, {c3}, {c4}, {c5} FROM {rows} ORDER BY j.key",
                    c0 = Self::json_int(0), c1 = Self::json_text(1), c2 = Self::json_text(2),
                    c3 = Self::json_text(3), c4 = Self::json_text(4), c5 = Self::json_text(5),
                    rows = Self::json_rows(1),
                );
                sqlx::query(sql).bind(json_param(&events)).bind(now).execute(&mut *tx).await?;

                tx.commit().await?;
                Ok(decisions)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn migrate(&self) -> $crate::store::StoreResult<()> {
                self.run_migrations().await
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                // A real table, not `SELECT 1`: the schema must be there and readable.
                sqlx::query("SELECT value FROM meta WHERE key = 'nas_generation'")
                    .fetch_optional(self.reader())
                    .await?;
                Ok(())
            }

            async fn add_nas(&self, nas: &$crate::model::NewNas) -> $crate::store::StoreResult<$crate::model::Nas> {
                use $crate::store::shared::{now, unique_or};
                if nas.name.trim().is_empty() {
                    return Err($crate::store::StoreError::Invalid("NAS name is empty".into()));
                }
                let created_at = now();
                let mut tx = self.begin_write().await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO nas (name, address, secret, require_message_authenticator, coa_port, site, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(&nas.name)
                .bind(nas.address.to_string())
                .bind(nas.secret.expose_str())
                .bind(nas.require_message_authenticator)
                .bind(i64::from(nas.coa_port))
                .bind(&nas.site)
                .bind(created_at)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique_or(e, || format!("NAS {}", nas.name)))?;
                Self::bump_nas_generation(&mut tx).await?;
                tx.commit().await?;
                Ok($crate::model::Nas {
                    id,
                    name: nas.name.clone(),
                    address: nas.address,
                    secret: nas.secret.clone(),
                    require_message_authenticator: nas.require_message_authenticator,
                    coa_port: nas.coa_port,
                    site: nas.site.clone(),
                    created_at,
                    previous_secret: None,
                    previous_secret_until: None,
                })
            }

            async fn list_nas(&self) -> $crate::store::StoreResult<Vec<$crate::model::Nas>> {
                use $crate::store::shared::NAS_COLS;
                let rows = sqlx::query(&format!("SELECT {NAS_COLS} FROM nas ORDER BY name"))
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(Self::nas_from_row).collect()
            }

            async fn remove_nas(&self, name: &str) -> $crate::store::StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query("DELETE FROM nas WHERE name = $1").bind(name).execute(&mut *tx).await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound(format!("NAS {name}")));
                }
                Self::bump_nas_generation(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_nas_secret(
                &self,
                name: &str,
                secret: &$crate::model::Secret,
                keep_previous_until: Option<$crate::model::Timestamp>,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.begin_write().await?;
                // The old secret moves to previous_secret in the same statement, so two
                // rotations in a row keep the one that routers may still be using.
                let done = sqlx::query(
                    "UPDATE nas SET previous_secret = CASE WHEN $3 IS NULL THEN NULL ELSE secret END, \
                     previous_secret_until = $3, secret = $2 WHERE name = $1",
                )
                .bind(name)
                .bind(secret.expose_str())
                .bind(keep_previous_until)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound(format!("NAS {name}")));
                }
                Self::bump_nas_generation(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn nas_generation(&self) -> $crate::store::StoreResult<i64> {
                let generation: Option<i64> =
                    sqlx::query_scalar("SELECT value FROM meta WHERE key = 'nas_generation'")
                        .fetch_optional(self.reader())
                        .await?;
                Ok(generation.unwrap_or(0))
            }

            async fn add_plan(&self, plan: &$crate::model::NewPlan) -> $crate::store::StoreResult<$crate::model::Plan> {
                use $crate::store::shared::{now, opt_u64_to_i64, unique_or};
                if plan.name.trim().is_empty() {
                    return Err($crate::store::StoreError::Invalid("plan name is empty".into()));
                }
                // `NewPlan::default()` leaves shared_users at 0; the plan default is one device.
                let shared_users = plan.shared_users.max(1);
                let created_at = now();
                let mut tx = self.begin_write().await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO plans (name, time_quota, validity, expires_at, data_quota, rate_limit, \
                     shared_users, mac_lock, idle_timeout, interim_interval, mikrotik_group, address_list, \
                     price, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
                )
                .bind(&plan.name)
                .bind(opt_u64_to_i64(plan.time_quota, "time quota")?)
                .bind(opt_u64_to_i64(plan.validity, "validity")?)
                .bind(plan.expires_at)
                .bind(opt_u64_to_i64(plan.data_quota, "data quota")?)
                .bind(&plan.rate_limit)
                .bind(i64::from(shared_users))
                .bind(plan.mac_lock)
                .bind(plan.idle_timeout.map(i64::from))
                .bind(plan.interim_interval.map(i64::from))
                .bind(&plan.mikrotik_group)
                .bind(&plan.address_list)
                .bind(&plan.price)
                .bind(created_at)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| unique_or(e, || format!("plan {}", plan.name)))?;
                tx.commit().await?;
                Ok($crate::model::Plan {
                    id,
                    name: plan.name.clone(),
                    time_quota: plan.time_quota,
                    validity: plan.validity,
                    expires_at: plan.expires_at,
                    data_quota: plan.data_quota,
                    rate_limit: plan.rate_limit.clone(),
                    shared_users,
                    mac_lock: plan.mac_lock,
                    idle_timeout: plan.idle_timeout,
                    interim_interval: plan.interim_interval,
                    mikrotik_group: plan.mikrotik_group.clone(),
                    address_list: plan.address_list.clone(),
                    price: plan.price.clone(),
                    created_at,
                })
            }

            async fn list_plans(&self) -> $crate::store::StoreResult<Vec<$crate::model::Plan>> {
                use $crate::store::shared::PLAN_COLS;
                let rows = sqlx::query(&format!("SELECT {PLAN_COLS} FROM plans ORDER BY name"))
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(|r| Self::plan_from_row(r, "")).collect()
            }

            async fn get_plan(&self, name: &str) -> $crate::store::StoreResult<$crate::model::Plan> {
                use $crate::store::shared::PLAN_COLS;
                let row = sqlx::query(&format!("SELECT {PLAN_COLS} FROM plans WHERE name = $1"))
                    .bind(name)
                    .fetch_optional(self.reader())
                    .await?;
                match row {
                    Some(row) => Self::plan_from_row(&row, ""),
                    None => Err($crate::store::StoreError::NotFound(format!("plan {name}"))),
                }
            }

            async fn add_vouchers(
                &self,
                vouchers: &[$crate::model::NewVoucher],
            ) -> $crate::store::StoreResult<Vec<$crate::model::Voucher>> {
                use $crate::store::shared::{now, unique_or};
                use $crate::store::StoreError;
                let created_at = now();
                let mut tx = self.begin_write().await?;
                let mut plan_names: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
                let mut out = Vec::with_capacity(vouchers.len());
                for nv in vouchers {
                    if nv.code.is_empty() {
                        return Err(StoreError::Invalid("voucher code is empty".into()));
                    }
                    let plan_name = match plan_names.get(&nv.plan_id) {
                        Some(name) => name.clone(),
                        None => {
                            let name: Option<String> = sqlx::query_scalar("SELECT name FROM plans WHERE id = $1")
                                .bind(nv.plan_id)
                                .fetch_optional(&mut *tx)
                                .await?;
                            let name = name.ok_or_else(|| StoreError::NotFound(format!("plan id {}", nv.plan_id)))?;
                            plan_names.insert(nv.plan_id, name.clone());
                            name
                        }
                    };
                    // The password defaults to the code: printed vouchers carry one string.
                    let password = nv.password.clone().unwrap_or_else(|| nv.code.clone());
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO vouchers (code, password, plan_id, site, state, batch, created_at) \
                         VALUES ($1, $2, $3, $4, 'active', $5, $6) RETURNING id",
                    )
                    .bind(&nv.code)
                    .bind(&password)
                    .bind(nv.plan_id)
                    .bind(&nv.site)
                    .bind(&nv.batch)
                    .bind(created_at)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| unique_or(e, || format!("voucher {}", nv.code)))?;
                    out.push($crate::model::Voucher {
                        id,
                        code: nv.code.clone(),
                        password,
                        plan_id: nv.plan_id,
                        plan_name,
                        site: nv.site.clone(),
                        state: $crate::model::VoucherState::Active,
                        first_login_at: None,
                        valid_until: None,
                        used_seconds: 0,
                        used_bytes: 0,
                        bound_mac: None,
                        batch: nv.batch.clone(),
                        created_at,
                    });
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn get_voucher(&self, code: &str) -> $crate::store::StoreResult<$crate::model::Voucher> {
                use $crate::store::shared::VOUCHER_COLS;
                let row = sqlx::query(&format!(
                    "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id WHERE v.code = $1"
                ))
                .bind(code)
                .fetch_optional(self.reader())
                .await?;
                match row {
                    Some(row) => Self::voucher_from_row(&row),
                    None => Err($crate::store::StoreError::NotFound(format!("voucher {code}"))),
                }
            }

            async fn list_vouchers(
                &self,
                plan: Option<&str>,
                batch: Option<&str>,
            ) -> $crate::store::StoreResult<Vec<$crate::model::Voucher>> {
                use $crate::store::shared::VOUCHER_COLS;
                if let Some(plan) = plan {
                    // A misspelt plan name is an error, not an empty list.
                    self.get_plan(plan).await?;
                }
                let rows = sqlx::query(&format!(
                    "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
                     WHERE ($1 IS NULL OR p.name = $1) AND ($2 IS NULL OR v.batch = $2) ORDER BY v.id"
                ))
                .bind(plan)
                .bind(batch)
                .fetch_all(self.reader())
                .await?;
                rows.iter().map(Self::voucher_from_row).collect()
            }

            async fn revoke_voucher(&self, code: &str) -> $crate::store::StoreResult<$crate::model::Voucher> {
                use $crate::store::shared::VOUCHER_COLS;
                let mut tx = self.begin_write().await?;
                let done = sqlx::query("UPDATE vouchers SET state = 'revoked' WHERE code = $1")
                    .bind(code)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::store::StoreError::NotFound(format!("voucher {code}")));
                }
                let row = sqlx::query(&format!(
                    "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id WHERE v.code = $1"
                ))
                .bind(code)
                .fetch_one(&mut *tx)
                .await?;
                let voucher = Self::voucher_from_row(&row)?;
                tx.commit().await?;
                Ok(voucher)
            }

            async fn authorize(
                &self,
                facts: &$crate::policy::AccessFacts,
                now: $crate::model::Timestamp,
                opts: $crate::store::AuthorizeOptions,
            ) -> $crate::store::StoreResult<$crate::policy::AccessDecision> {
                self.authorize_with_policy(facts, now, opts, $crate::policy::decide).await
            }

            async fn authorize_batch(
                &self,
                requests: &[$crate::policy::AccessFacts],
                now: $crate::model::Timestamp,
                opts: $crate::store::AuthorizeOptions,
            ) -> $crate::store::StoreResult<Vec<$crate::policy::AccessDecision>> {
                self.authorize_batch_with_policy(requests, now, opts, $crate::policy::decide).await
            }

            async fn record_accounting(&self, records: &[$crate::store::AcctRecord]) -> $crate::store::StoreResult<()> {
                if records.is_empty() {
                    return Ok(());
                }
                let mut attempt = 1;
                loop {
                    match self.record_accounting_once(records).await {
                        Err(e) if attempt < Self::WRITE_ATTEMPTS && $crate::store::shared::is_retryable(&e) => {
                            attempt += 1;
                        }
                        result => return result,
                    }
                }
            }

            async fn close_nas_sessions(
                &self,
                nas_id: i64,
                keep_prefix: Option<&str>,
                cause: &str,
                now: $crate::model::Timestamp,
            ) -> $crate::store::StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let n = Self::close_live_sessions(&mut tx, nas_id, keep_prefix, cause, now).await?;
                tx.commit().await?;
                Ok(n)
            }

            async fn close_stale_sessions(
                &self,
                now: $crate::model::Timestamp,
                default_interim: u64,
                grace: u64,
                authorized_ttl: u64,
            ) -> $crate::store::StoreResult<u64> {
                use $crate::store::shared::counter_to_i64;
                let mut tx = self.begin_write().await?;
                let stale = sqlx::query(
                    "UPDATE sessions SET state = 'closed', stopped_at = $1, terminate_cause = 'stale' \
                     WHERE state = 'open' AND updated_at + 2 * COALESCE(interim_interval, $2) + $3 < $1",
                )
                .bind(now)
                .bind(counter_to_i64(default_interim))
                .bind(counter_to_i64(grace))
                .execute(&mut *tx)
                .await?;
                // Accepted but never started (the user walked away, or the hotspot
                // does no accounting): closed rather than deleted, so that `session
                // list` still shows the login; a late Start reopens the row.
                let unstarted = sqlx::query(
                    "UPDATE sessions SET state = 'closed', stopped_at = $1, terminate_cause = 'not-started' \
                     WHERE state = 'authorized' AND COALESCE(authorized_at, updated_at) <= $2",
                )
                .bind(now)
                .bind(now.saturating_sub(counter_to_i64(authorized_ttl)))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(stale.rows_affected() + unstarted.rows_affected())
            }

            async fn list_sessions(&self, open_only: bool) -> $crate::store::StoreResult<Vec<$crate::model::Session>> {
                use $crate::store::shared::SESSION_COLS;
                let filter = if open_only { "WHERE s.state = 'open'" } else { "" };
                let rows = sqlx::query(&format!(
                    "SELECT {SESSION_COLS} FROM sessions s JOIN nas n ON n.id = s.nas_id {filter} ORDER BY s.id DESC"
                ))
                .fetch_all(self.reader())
                .await?;
                rows.iter().map(Self::session_from_row).collect()
            }

            async fn open_sessions_by_nas(&self) -> $crate::store::StoreResult<Vec<(String, i64)>> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT n.name, COUNT(s.id) FROM nas n \
                     LEFT JOIN sessions s ON s.nas_id = n.id AND s.state = 'open' \
                     GROUP BY n.id, n.name ORDER BY n.name",
                )
                .fetch_all(self.reader())
                .await?;
                Ok(rows)
            }

            async fn auth_events(
                &self,
                filter: &$crate::store::AuthEventFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::store::AuthEvent>> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT id, at, nas_id, nas_name, username, mac, result, reason FROM auth_events \
                     WHERE ($1 IS NULL OR username = $1) AND ($2 IS NULL OR nas_name = $2) \
                     AND ($3 IS NULL OR at >= $3) ORDER BY at DESC, id DESC LIMIT $4",
                )
                .bind(&filter.username)
                .bind(&filter.nas_name)
                .bind(filter.since)
                .bind(i64::from(filter.limit.unwrap_or(100)))
                .fetch_all(self.reader())
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::AuthEvent {
                            id: row.try_get("id")?,
                            at: row.try_get("at")?,
                            nas_id: row.try_get("nas_id")?,
                            nas_name: row.try_get("nas_name")?,
                            username: row.try_get("username")?,
                            mac: row.try_get("mac")?,
                            result: row.try_get("result")?,
                            reason: row.try_get("reason")?,
                        })
                    })
                    .collect()
            }

            async fn prune_auth_events(&self, before: $crate::model::Timestamp) -> $crate::store::StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query("DELETE FROM auth_events WHERE at < $1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_store;
