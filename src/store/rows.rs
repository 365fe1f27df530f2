//! Typed rows: each table's columns as a struct with names, read the same way by
//! both backends (`sqlx::FromRow` on PostgreSQL, by column name on SQLite), and
//! turned into the domain records of [`crate::model`] in one place. The column
//! lists are shared SQL text: both schemas use the same names, BIGINT times and
//! counters.

use super::{AuthEvent, StoreError, StoreResult};
use crate::model::{Nas, Plan, Secret, Session, SessionState, Timestamp, Voucher, VoucherState};
use crate::policy::{AcctSession, LiveSession};

/// Columns of `nas`, in [`NasRow`] order.
pub const NAS_COLS: &str = "id, name, address, secret, require_message_authenticator, \
     coa_port, site, created_at, previous_secret, previous_secret_until, coa_address, identifier, tenant_id";

/// Columns of `plans`, in [`PlanRow`] order.
pub const PLAN_COLS: &str = "id, name, time_quota, validity, expires_at, data_quota, \
     rate_limit, shared_users, mac_lock, idle_timeout, interim_interval, mikrotik_group, \
     address_list, price, created_at, after_data_rate_limit, tenant_id, sites";

/// Columns of `plans p` beside a voucher's, prefixed `p_`, in [`VoucherPlanRow`] order.
pub const PLAN_COLS_P: &str = "p.id AS p_id, p.name AS p_name, p.time_quota AS p_time_quota, \
     p.validity AS p_validity, p.expires_at AS p_expires_at, p.data_quota AS p_data_quota, \
     p.rate_limit AS p_rate_limit, p.shared_users AS p_shared_users, p.mac_lock AS p_mac_lock, \
     p.idle_timeout AS p_idle_timeout, p.interim_interval AS p_interim_interval, \
     p.mikrotik_group AS p_mikrotik_group, p.address_list AS p_address_list, p.price AS p_price, \
     p.created_at AS p_created_at, p.after_data_rate_limit AS p_after_data_rate_limit, \
     p.tenant_id AS p_tenant_id, p.sites AS p_sites";

/// Columns of `vouchers v JOIN plans p`, in [`VoucherRow`] order.
pub const VOUCHER_COLS: &str = "v.id, v.code, v.password, v.plan_id, p.name AS plan_name, \
     v.site, v.state, v.first_login_at, v.valid_until, v.used_seconds, v.used_bytes, \
     v.bound_mac, v.batch, v.created_at, v.tenant_id";

/// Columns of `sessions s JOIN nas n`, in [`SessionRow`] order.
pub const SESSION_COLS: &str = "s.id, s.nas_id, n.name AS nas_name, s.acct_session_id, \
     s.username, s.voucher_id, s.mac, s.framed_ip, s.state, s.authorized_at, s.started_at, \
     s.updated_at, s.stopped_at, s.session_time, s.input_octets, s.output_octets, \
     s.terminate_cause, s.interim_interval, s.disconnect_requested_at, s.coa_result, s.router";

/// Columns of `sessions` that accounting reads and writes, in [`AcctSessionRow`] order.
pub const ACCT_SESSION_COLS: &str = "id, nas_id, acct_session_id, username, voucher_id, mac, \
     framed_ip, state, started_at, updated_at, stopped_at, terminate_cause, session_time, \
     input_octets, output_octets, router";

/// Columns of `sessions` that authorization reads, in [`LiveSessionRow`] order.
pub const LIVE_SESSION_COLS: &str =
    "nas_id, acct_session_id, voucher_id, mac, state, authorized_at, router";

/// Columns of `auth_events`, in [`AuthEventRow`] order.
pub const AUTH_EVENT_COLS: &str =
    "id, at, nas_id, nas_name, username, mac, result, reason, repeats, last_at";

pub fn now() -> Timestamp {
    chrono::Utc::now().timestamp()
}

/// Operator input (plan quotas) that does not fit a BIGINT is refused.
pub fn u64_to_i64(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is too large")))
}

pub fn opt_u64_to_i64(v: Option<u64>, what: &str) -> StoreResult<Option<i64>> {
    v.map(|v| u64_to_i64(v, what)).transpose()
}

/// Stored counters are never negative; a negative value would only come from a
/// hand-edited row and reads as zero.
pub fn i64_to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub fn i64_to_u32(v: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| StoreError::Invalid(format!("stored {what} {v} is out of range")))
}

fn session_state(s: &str) -> StoreResult<SessionState> {
    SessionState::parse(s).ok_or_else(|| StoreError::Invalid(format!("stored session state {s:?}")))
}

#[derive(Debug, sqlx::FromRow)]
pub struct NasRow {
    pub id: i64,
    pub name: String,
    pub address: String,
    pub secret: String,
    pub require_message_authenticator: bool,
    pub coa_port: i64,
    pub site: Option<String>,
    pub created_at: i64,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<i64>,
    pub coa_address: Option<String>,
    pub identifier: Option<String>,
    pub tenant_id: i64,
}

impl NasRow {
    pub fn into_model(self) -> StoreResult<Nas> {
        let name = self.name;
        let (address, dynamic) = crate::model::parse_nas_address(&self.address)
            .map_err(|e| StoreError::Invalid(format!("NAS {name}: stored address: {e}")))?;
        let coa_port = u16::try_from(self.coa_port).map_err(|_| {
            StoreError::Invalid(format!("NAS {name}: stored CoA port {}", self.coa_port))
        })?;
        let coa_address = self
            .coa_address
            .map(|a| {
                a.parse().map_err(|_| {
                    StoreError::Invalid(format!("NAS {name}: stored CoA address {a:?}"))
                })
            })
            .transpose()?;
        Ok(Nas {
            id: self.id,
            dynamic,
            coa_address,
            address,
            secret: Secret::new(self.secret),
            require_message_authenticator: self.require_message_authenticator,
            coa_port,
            site: self.site,
            identifier: self.identifier,
            tenant_id: self.tenant_id,
            created_at: self.created_at,
            previous_secret: self.previous_secret.map(Secret::new),
            previous_secret_until: self.previous_secret_until,
            name,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct PlanRow {
    pub id: i64,
    pub name: String,
    pub time_quota: Option<i64>,
    pub validity: Option<i64>,
    pub expires_at: Option<i64>,
    pub data_quota: Option<i64>,
    pub rate_limit: Option<String>,
    pub shared_users: i64,
    pub mac_lock: bool,
    pub idle_timeout: Option<i64>,
    pub interim_interval: Option<i64>,
    pub mikrotik_group: Option<String>,
    pub address_list: Option<String>,
    pub price: Option<String>,
    pub created_at: i64,
    pub after_data_rate_limit: Option<String>,
    pub tenant_id: i64,
    /// Comma-separated site names; NULL: everywhere.
    pub sites: Option<String>,
}

/// Plan sites as stored: comma-separated, NULL when none.
pub fn sites_to_column(sites: &[String]) -> Option<String> {
    (!sites.is_empty()).then(|| sites.join(","))
}

fn sites_from_column(sites: Option<String>) -> Vec<String> {
    sites
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl PlanRow {
    pub fn into_model(self) -> StoreResult<Plan> {
        let opt_u32 = |v: Option<i64>, what| v.map(|v| i64_to_u32(v, what)).transpose();
        Ok(Plan {
            id: self.id,
            tenant_id: self.tenant_id,
            sites: sites_from_column(self.sites),
            name: self.name,
            time_quota: self.time_quota.map(i64_to_u64),
            validity: self.validity.map(i64_to_u64),
            expires_at: self.expires_at,
            data_quota: self.data_quota.map(i64_to_u64),
            rate_limit: self.rate_limit,
            after_data_rate_limit: self.after_data_rate_limit,
            shared_users: i64_to_u32(self.shared_users, "shared_users")?,
            mac_lock: self.mac_lock,
            idle_timeout: opt_u32(self.idle_timeout, "idle_timeout")?,
            interim_interval: opt_u32(self.interim_interval, "interim_interval")?,
            mikrotik_group: self.mikrotik_group,
            address_list: self.address_list,
            price: self.price,
            created_at: self.created_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct VoucherRow {
    pub id: i64,
    pub code: String,
    pub password: String,
    pub plan_id: i64,
    pub plan_name: String,
    pub site: Option<String>,
    pub state: String,
    pub first_login_at: Option<i64>,
    pub valid_until: Option<i64>,
    pub used_seconds: i64,
    pub used_bytes: i64,
    pub bound_mac: Option<String>,
    pub batch: Option<String>,
    pub created_at: i64,
    pub tenant_id: i64,
}

impl VoucherRow {
    pub fn into_model(self) -> StoreResult<Voucher> {
        let state = VoucherState::parse(&self.state)
            .ok_or_else(|| StoreError::Invalid(format!("stored voucher state {:?}", self.state)))?;
        Ok(Voucher {
            id: self.id,
            tenant_id: self.tenant_id,
            code: self.code,
            password: self.password,
            plan_id: self.plan_id,
            plan_name: self.plan_name,
            site: self.site,
            state,
            first_login_at: self.first_login_at,
            valid_until: self.valid_until,
            used_seconds: i64_to_u64(self.used_seconds),
            used_bytes: i64_to_u64(self.used_bytes),
            bound_mac: self.bound_mac,
            batch: self.batch,
            created_at: self.created_at,
        })
    }
}

/// A voucher and its plan in one row (`SELECT {VOUCHER_COLS}, {PLAN_COLS_P}`),
/// as authorization reads them: one statement, one row lock per voucher.
#[derive(Debug, sqlx::FromRow)]
pub struct VoucherPlanRow {
    #[sqlx(flatten)]
    pub voucher: VoucherRow,
    pub p_id: i64,
    pub p_name: String,
    pub p_time_quota: Option<i64>,
    pub p_validity: Option<i64>,
    pub p_expires_at: Option<i64>,
    pub p_data_quota: Option<i64>,
    pub p_rate_limit: Option<String>,
    pub p_shared_users: i64,
    pub p_mac_lock: bool,
    pub p_idle_timeout: Option<i64>,
    pub p_interim_interval: Option<i64>,
    pub p_mikrotik_group: Option<String>,
    pub p_address_list: Option<String>,
    pub p_price: Option<String>,
    pub p_created_at: i64,
    pub p_after_data_rate_limit: Option<String>,
    pub p_tenant_id: i64,
    pub p_sites: Option<String>,
}

impl VoucherPlanRow {
    pub fn into_model(self) -> StoreResult<(Voucher, Plan)> {
        let plan = PlanRow {
            id: self.p_id,
            name: self.p_name,
            time_quota: self.p_time_quota,
            validity: self.p_validity,
            expires_at: self.p_expires_at,
            data_quota: self.p_data_quota,
            rate_limit: self.p_rate_limit,
            shared_users: self.p_shared_users,
            mac_lock: self.p_mac_lock,
            idle_timeout: self.p_idle_timeout,
            interim_interval: self.p_interim_interval,
            mikrotik_group: self.p_mikrotik_group,
            address_list: self.p_address_list,
            price: self.p_price,
            created_at: self.p_created_at,
            after_data_rate_limit: self.p_after_data_rate_limit,
            tenant_id: self.p_tenant_id,
            sites: self.p_sites,
        };
        Ok((self.voucher.into_model()?, plan.into_model()?))
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct SessionRow {
    pub id: i64,
    pub nas_id: i64,
    pub nas_name: String,
    pub acct_session_id: String,
    pub username: String,
    pub voucher_id: Option<i64>,
    pub mac: Option<String>,
    pub framed_ip: Option<String>,
    pub state: String,
    pub authorized_at: Option<i64>,
    pub started_at: Option<i64>,
    pub updated_at: i64,
    pub stopped_at: Option<i64>,
    pub session_time: i64,
    pub input_octets: i64,
    pub output_octets: i64,
    pub terminate_cause: Option<String>,
    pub interim_interval: Option<i64>,
    pub disconnect_requested_at: Option<i64>,
    pub coa_result: Option<String>,
    pub router: String,
}

impl SessionRow {
    pub fn into_model(self) -> StoreResult<Session> {
        Ok(Session {
            id: self.id,
            nas_id: self.nas_id,
            nas_name: self.nas_name,
            acct_session_id: self.acct_session_id,
            username: self.username,
            voucher_id: self.voucher_id,
            mac: self.mac,
            framed_ip: self.framed_ip,
            state: session_state(&self.state)?,
            authorized_at: self.authorized_at,
            started_at: self.started_at,
            updated_at: self.updated_at,
            stopped_at: self.stopped_at,
            session_time: i64_to_u64(self.session_time),
            input_octets: i64_to_u64(self.input_octets),
            output_octets: i64_to_u64(self.output_octets),
            terminate_cause: self.terminate_cause,
            interim_interval: self
                .interim_interval
                .map(|v| i64_to_u32(v, "interim_interval"))
                .transpose()?,
            disconnect_requested_at: self.disconnect_requested_at,
            coa_result: self.coa_result,
            router: self.router,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct AcctSessionRow {
    pub id: i64,
    pub nas_id: i64,
    pub acct_session_id: String,
    pub username: String,
    pub voucher_id: Option<i64>,
    pub mac: Option<String>,
    pub framed_ip: Option<String>,
    pub state: String,
    pub started_at: Option<i64>,
    pub updated_at: i64,
    pub stopped_at: Option<i64>,
    pub terminate_cause: Option<String>,
    pub session_time: i64,
    pub input_octets: i64,
    pub output_octets: i64,
    pub router: String,
}

impl AcctSessionRow {
    pub fn into_model(self) -> StoreResult<AcctSession> {
        Ok(AcctSession {
            id: Some(self.id),
            nas_id: self.nas_id,
            router: self.router,
            acct_session_id: self.acct_session_id,
            username: self.username,
            voucher_id: self.voucher_id,
            mac: self.mac,
            framed_ip: self.framed_ip,
            state: session_state(&self.state)?,
            started_at: self.started_at,
            updated_at: self.updated_at,
            stopped_at: self.stopped_at,
            terminate_cause: self.terminate_cause,
            session_time: self.session_time,
            input_octets: self.input_octets,
            output_octets: self.output_octets,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct LiveSessionRow {
    pub nas_id: i64,
    pub acct_session_id: String,
    pub voucher_id: Option<i64>,
    pub mac: Option<String>,
    pub state: String,
    pub authorized_at: Option<i64>,
    pub router: String,
}

impl LiveSessionRow {
    pub fn into_model(self) -> StoreResult<LiveSession> {
        Ok(LiveSession {
            nas_id: self.nas_id,
            router: self.router,
            acct_session_id: self.acct_session_id,
            voucher_id: self.voucher_id,
            mac: self.mac,
            state: session_state(&self.state)?,
            authorized_at: self.authorized_at,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct AuthEventRow {
    pub id: i64,
    pub at: i64,
    pub nas_id: i64,
    pub nas_name: String,
    pub username: String,
    pub mac: Option<String>,
    pub result: String,
    pub reason: Option<String>,
    pub repeats: i64,
    pub last_at: Option<i64>,
}

impl AuthEventRow {
    pub fn into_model(self) -> AuthEvent {
        AuthEvent {
            id: self.id,
            at: self.at,
            nas_id: self.nas_id,
            nas_name: self.nas_name,
            username: self.username,
            mac: self.mac,
            result: self.result,
            reason: self.reason,
            repeats: self.repeats,
            last_at: self.last_at,
        }
    }
}
