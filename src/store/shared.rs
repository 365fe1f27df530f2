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
//! - `const LOCK_VOUCHER: &str` / `const LOCK_ROW: &str`: the row-lock suffix of the
//!   voucher+plan select and of single-table selects (empty on SQLite, whose single
//!   writer connection already serialises writers);
//! - `const WRITE_ATTEMPTS: u32`: how often a transaction is tried when the database
//!   reports a deadlock or serialization failure.

use super::StoreError;
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
        _ => false,
    }
}

/// Implements [`crate::store::Store`] for `$store` on sqlx database `$db`.
macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        type DbRow = <$db as sqlx::Database>::Row;
        type DbConn = <$db as sqlx::Database>::Connection;

        /// The columns of a session that accounting needs, read under a row lock.
        struct SessionCounters {
            id: i64,
            voucher_id: Option<i64>,
            state: String,
            started_at: Option<i64>,
            stopped_at: Option<i64>,
            terminate_cause: Option<String>,
            session_time: i64,
            input_octets: i64,
            output_octets: i64,
        }

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

            async fn lock_session(
                conn: &mut DbConn,
                nas_id: i64,
                acct_session_id: &str,
            ) -> $crate::store::StoreResult<Option<SessionCounters>> {
                use sqlx::Row;
                let sql = format!(
                    "SELECT id, voucher_id, state, started_at, stopped_at, terminate_cause, \
                     session_time, input_octets, output_octets FROM sessions \
                     WHERE nas_id = $1 AND acct_session_id = $2{}",
                    Self::LOCK_ROW
                );
                let row = sqlx::query(&sql)
                    .bind(nas_id)
                    .bind(acct_session_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some(SessionCounters {
                    id: row.try_get("id")?,
                    voucher_id: row.try_get("voucher_id")?,
                    state: row.try_get("state")?,
                    started_at: row.try_get("started_at")?,
                    stopped_at: row.try_get("stopped_at")?,
                    terminate_cause: row.try_get("terminate_cause")?,
                    session_time: row.try_get("session_time")?,
                    input_octets: row.try_get("input_octets")?,
                    output_octets: row.try_get("output_octets")?,
                }))
            }

            /// The voucher an accounting record belongs to: the one named by its
            /// Class (when it still exists), else the one whose code is the User-Name.
            async fn voucher_for_record(
                conn: &mut DbConn,
                rec: &$crate::store::AcctRecord,
            ) -> $crate::store::StoreResult<Option<i64>> {
                if let Some(id) = rec.class_voucher_id {
                    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM vouchers WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?;
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                if rec.username.is_empty() {
                    return Ok(None);
                }
                Ok(sqlx::query_scalar("SELECT id FROM vouchers WHERE code = $1")
                    .bind(&rec.username)
                    .fetch_optional(&mut *conn)
                    .await?)
            }

            /// Give the real Acct-Session-Id to the newest synthetic `authorized` row
            /// of the same NAS, voucher and MAC, so that one login is one row.
            async fn adopt_synthetic(
                conn: &mut DbConn,
                nas_id: i64,
                voucher_id: i64,
                mac: &str,
                acct_session_id: &str,
            ) -> $crate::store::StoreResult<bool> {
                let candidate: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM sessions WHERE nas_id = $1 AND voucher_id = $2 AND mac = $3 \
                     AND state = 'authorized' AND acct_session_id LIKE 'auth-%' \
                     ORDER BY authorized_at DESC, id DESC LIMIT 1",
                )
                .bind(nas_id)
                .bind(voucher_id)
                .bind(mac)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(id) = candidate else { return Ok(false) };
                // The state test is repeated so that, on PostgreSQL, a concurrent
                // adoption of the same row (re-checked after its lock) leaves it alone.
                let done = sqlx::query(
                    "UPDATE sessions SET acct_session_id = $1 \
                     WHERE id = $2 AND state = 'authorized' AND acct_session_id LIKE 'auth-%'",
                )
                .bind(acct_session_id)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            /// Apply one Start / Interim-Update / Stop inside the batch transaction.
            async fn account_session(
                conn: &mut DbConn,
                rec: &$crate::store::AcctRecord,
            ) -> $crate::store::StoreResult<()> {
                use $crate::store::shared::{counter_to_i64, GUESSED_CAUSES};
                use $crate::store::AcctStatus;

                let mut resolved: Option<Option<i64>> = None;
                let old = match Self::lock_session(conn, rec.nas_id, &rec.acct_session_id).await? {
                    Some(row) => row,
                    None => {
                        let voucher_id = Self::voucher_for_record(conn, rec).await?;
                        resolved = Some(voucher_id);
                        let adopted = match (voucher_id, rec.mac.as_deref()) {
                            (Some(v), Some(mac)) => {
                                Self::adopt_synthetic(conn, rec.nas_id, v, mac, &rec.acct_session_id).await?
                            }
                            _ => false,
                        };
                        if !adopted {
                            // DO NOTHING: on PostgreSQL another instance may insert the
                            // same session meanwhile; the locked read below sees its row.
                            sqlx::query(
                                "INSERT INTO sessions (nas_id, acct_session_id, username, voucher_id, \
                                 mac, framed_ip, state, updated_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, 'open', $7) \
                                 ON CONFLICT (nas_id, acct_session_id) DO NOTHING",
                            )
                            .bind(rec.nas_id)
                            .bind(&rec.acct_session_id)
                            .bind(&rec.username)
                            .bind(voucher_id)
                            .bind(&rec.mac)
                            .bind(&rec.framed_ip)
                            .bind(rec.received_at)
                            .execute(&mut *conn)
                            .await?;
                        }
                        Self::lock_session(conn, rec.nas_id, &rec.acct_session_id)
                            .await?
                            .ok_or_else(|| {
                                $crate::store::StoreError::Invalid(format!(
                                    "session {} vanished while being stored",
                                    rec.acct_session_id
                                ))
                            })?
                    }
                };
                let voucher_id = match (old.voucher_id, resolved) {
                    (Some(v), _) => Some(v),
                    (None, Some(r)) => r,
                    (None, None) => Self::voucher_for_record(conn, rec).await?,
                };

                // Counters only move forward, so a retransmission (or a reordered
                // older record) adds nothing.
                let session_time = old.session_time.max(counter_to_i64(rec.session_time));
                let input_octets = old.input_octets.max(counter_to_i64(rec.input_octets));
                let output_octets = old.output_octets.max(counter_to_i64(rec.output_octets));
                let delta_seconds = session_time - old.session_time;
                let delta_bytes = (input_octets - old.input_octets).saturating_add(output_octets - old.output_octets);

                let closed_for_good = old.state == "closed"
                    && !old.terminate_cause.as_deref().is_some_and(|c| GUESSED_CAUSES.contains(&c));
                let (state, stopped_at, terminate_cause) = if closed_for_good {
                    // A late or retransmitted record for a session that really ended.
                    ("closed", old.stopped_at, old.terminate_cause)
                } else if rec.status == AcctStatus::Stop {
                    ("closed", Some(rec.received_at), rec.terminate_cause.clone())
                } else {
                    ("open", None, None)
                };
                // A session first seen by an Interim or a Stop (lost Start) began
                // session_time seconds before this record.
                let started_at = old.started_at.unwrap_or(rec.received_at - session_time);

                sqlx::query(
                    "UPDATE sessions SET voucher_id = $2, mac = COALESCE($3, mac), \
                     framed_ip = COALESCE($4, framed_ip), state = $5, started_at = $6, \
                     stopped_at = $7, terminate_cause = $8, session_time = $9, \
                     input_octets = $10, output_octets = $11, updated_at = $12 WHERE id = $1",
                )
                .bind(old.id)
                .bind(voucher_id)
                .bind(&rec.mac)
                .bind(&rec.framed_ip)
                .bind(state)
                .bind(started_at)
                .bind(stopped_at)
                .bind(terminate_cause)
                .bind(session_time)
                .bind(input_octets)
                .bind(output_octets)
                .bind(rec.received_at)
                .execute(&mut *conn)
                .await?;

                if let Some(v) = voucher_id {
                    if delta_seconds > 0 || delta_bytes > 0 {
                        sqlx::query(
                            "UPDATE vouchers SET used_seconds = used_seconds + $2, \
                             used_bytes = used_bytes + $3 WHERE id = $1",
                        )
                        .bind(v)
                        .bind(delta_seconds)
                        .bind(delta_bytes)
                        .execute(&mut *conn)
                        .await?;
                    }
                }
                Ok(())
            }

            async fn record_accounting_once(
                &self,
                records: &[$crate::store::AcctRecord],
            ) -> $crate::store::StoreResult<()> {
                use $crate::store::AcctStatus;
                let mut tx = self.begin_write().await?;
                for rec in records {
                    match rec.status {
                        AcctStatus::AccountingOn | AcctStatus::AccountingOff => {
                            let cause = if rec.status == AcctStatus::AccountingOn {
                                "accounting-on"
                            } else {
                                "accounting-off"
                            };
                            Self::close_live_sessions(&mut tx, rec.nas_id, None, cause, rec.received_at).await?;
                        }
                        AcctStatus::Start | AcctStatus::InterimUpdate | AcctStatus::Stop => {
                            if rec.acct_session_id.is_empty() {
                                // Nothing to key the session on; storing it would fail
                                // the batch and the NAS would retransmit it forever.
                                tracing::warn!(nas_id = rec.nas_id, status = rec.status.label(),
                                    "accounting record without Acct-Session-Id ignored");
                                continue;
                            }
                            Self::account_session(&mut tx, rec).await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            /// [`Store::authorize`](crate::store::Store::authorize) with the decision
            /// function passed in. The trait method passes
            /// [`crate::policy::decide`]; taking it as a parameter lets the storage
            /// effects (activation, MAC binding, session row, auth event) be tested
            /// apart from the voucher rules.
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
                let mut attempt = 1;
                loop {
                    match self.authorize_once(facts, now, opts, &decide).await {
                        Err(e) if attempt < Self::WRITE_ATTEMPTS && $crate::store::shared::is_retryable(&e) => {
                            attempt += 1;
                        }
                        result => return result,
                    }
                }
            }

            async fn authorize_once<F>(
                &self,
                facts: &$crate::policy::AccessFacts,
                now: $crate::model::Timestamp,
                opts: $crate::store::AuthorizeOptions,
                decide: &F,
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
                use $crate::policy::{AccessDecision, VoucherSnapshot};
                use $crate::store::shared::{synthetic_session_id, PLAN_COLS_P, VOUCHER_COLS};

                let mut tx = self.begin_write().await?;
                // The voucher row lock (PostgreSQL) serialises every authorization of
                // one voucher across server instances: the shared-users count and the
                // first-login activation below see each other's commits.
                let sql = format!(
                    "SELECT {VOUCHER_COLS}, {PLAN_COLS_P} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
                     WHERE v.code = $1 AND ($2 IS NULL OR v.site IS NULL OR v.site = $2){}",
                    Self::LOCK_VOUCHER
                );
                let row = sqlx::query(&sql)
                    .bind(&facts.username)
                    .bind(&facts.nas_site)
                    .fetch_optional(&mut *tx)
                    .await?;
                let snapshot = match row {
                    None => None,
                    Some(row) => {
                        let voucher = Self::voucher_from_row(&row)?;
                        let plan = Self::plan_from_row(&row, "p_")?;
                        let ttl = i64::try_from(opts.authorized_ttl).unwrap_or(i64::MAX);
                        let active_macs: Vec<String> = sqlx::query_scalar(
                            "SELECT DISTINCT mac FROM sessions WHERE voucher_id = $1 AND mac IS NOT NULL \
                             AND (state = 'open' OR (state = 'authorized' AND authorized_at > $2))",
                        )
                        .bind(voucher.id)
                        .bind(now.saturating_sub(ttl))
                        .fetch_all(&mut *tx)
                        .await?;
                        Some(VoucherSnapshot { voucher, plan, active_macs })
                    }
                };

                let decision = decide(facts, snapshot.as_ref(), now);

                if let AccessDecision::Accept(grant) = &decision {
                    if let Some(act) = &grant.activation {
                        // The guard keeps activation single even if two decisions
                        // raced on a backend without row locks.
                        sqlx::query(
                            "UPDATE vouchers SET first_login_at = $2, valid_until = $3 \
                             WHERE id = $1 AND first_login_at IS NULL",
                        )
                        .bind(grant.voucher_id)
                        .bind(act.first_login_at)
                        .bind(act.valid_until)
                        .execute(&mut *tx)
                        .await?;
                    }
                    if let Some(mac) = &grant.bind_mac {
                        sqlx::query("UPDATE vouchers SET bound_mac = $2 WHERE id = $1 AND bound_mac IS NULL")
                            .bind(grant.voucher_id)
                            .bind(mac)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let acct_session_id = facts
                        .acct_session_id
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| synthetic_session_id(now));
                    // A row that accounting already opened (or closed) keeps its state
                    // and counters; only the voucher link and device are refreshed.
                    sqlx::query(
                        "INSERT INTO sessions (nas_id, acct_session_id, username, voucher_id, mac, \
                         framed_ip, state, authorized_at, updated_at, interim_interval) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'authorized', $7, $7, $8) \
                         ON CONFLICT (nas_id, acct_session_id) DO UPDATE SET \
                         voucher_id = excluded.voucher_id, mac = COALESCE(excluded.mac, sessions.mac), \
                         framed_ip = COALESCE(excluded.framed_ip, sessions.framed_ip), \
                         authorized_at = excluded.authorized_at, updated_at = excluded.updated_at, \
                         interim_interval = COALESCE(excluded.interim_interval, sessions.interim_interval)",
                    )
                    .bind(facts.nas_id)
                    .bind(&acct_session_id)
                    .bind(&facts.username)
                    .bind(grant.voucher_id)
                    .bind(&facts.mac)
                    .bind(&facts.framed_ip)
                    .bind(now)
                    .bind(grant.interim_interval.map(i64::from))
                    .execute(&mut *tx)
                    .await?;
                }

                let (result, reason) = $crate::store::decision_result(&decision);
                sqlx::query(
                    "INSERT INTO auth_events (at, nas_id, nas_name, username, mac, result, reason) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(now)
                .bind(facts.nas_id)
                .bind(&facts.nas_name)
                .bind(&facts.username)
                .bind(&facts.mac)
                .bind(result)
                .bind(reason.map(|r| r.label()))
                .execute(&mut *tx)
                .await?;

                tx.commit().await?;
                Ok(decision)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn migrate(&self) -> $crate::store::StoreResult<()> {
                self.run_migrations().await
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(self.reader()).await?;
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
