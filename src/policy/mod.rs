//! The voucher decision (DESIGN §5): pure code, no I/O, `now` passed in.
//!
//! The UDP path and the REST shim both reach this through `Store::authorize_batch`:
//! storage reads the state a batch needs, calls [`decide_batch`] (which calls
//! [`decide`] per request) and persists the [`AuthEffects`] it returns. Accounting
//! goes the same way through [`account_batch`]. There is no second copy of these
//! rules, and storage decides nothing.
//!
//! Files: `decide.rs` holds the decision and the reply attributes it grants;
//! `batch.rs` a batch of decisions and the effects to persist (activation, MAC
//! binding, session rows); `accounting.rs` the session state machine and usage;
//! `credential.rs` the PAP/CHAP password check (also used by the REST shim);
//! `attributes.rs` the attribute values both transports map the same way
//! (Acct-Status-Type, CHAP-Password, Acct-Terminate-Cause);
//! `tests.rs` the table of decision cases.

use crate::model::{Plan, Timestamp, Voucher};

pub mod accounting;
mod attributes;
pub mod batch;
mod credential;
mod decide;
pub mod session_change;
#[cfg(test)]
mod tests;

pub use accounting::{account_batch, AcctEffects, AcctRecord, AcctSession, AcctState, AcctStatus};
pub use attributes::{acct_status, chap_credential, event_time, terminate_cause_name};
pub use batch::{
    decide_batch, decide_batch_state, AuthEffects, AuthState, LiveSession, SessionGrant,
};
pub use credential::{chap_response, credential_matches};
pub use decide::decide;
pub use session_change::{
    change_for_session, quota_end, session_changes, voucher_quota_end, with_default_interim,
    QuotaEnd, QuotaUse, SessionChange,
};

/// The credential a request carried, already un-hidden by the protocol layer.
#[derive(Clone)]
pub enum Credential {
    /// PAP: the cleartext password (trailing NULs removed).
    Pap(Vec<u8>),
    /// CHAP: identifier, 16-byte response, and the challenge (CHAP-Challenge, or the
    /// Request Authenticator when the request had none — RFC 2865 §2.2).
    Chap {
        ident: u8,
        response: [u8; 16],
        challenge: Vec<u8>,
    },
    /// Neither User-Password nor CHAP-Password was present (or it was malformed).
    Missing,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password.
        match self {
            Credential::Pap(_) => f.write_str("Pap(****)"),
            Credential::Chap { .. } => f.write_str("Chap(****)"),
            Credential::Missing => f.write_str("Missing"),
        }
    }
}

/// What an Access-Request (UDP or REST) asks, independent of wire format.
#[derive(Clone, Debug)]
pub struct AccessFacts {
    pub nas_id: i64,
    /// Which router of the entry sent it ([`crate::model::Nas::router_key`]).
    pub router: String,
    pub nas_name: String,
    /// Site scope of the NAS; a voucher of another site is unknown here.
    pub nas_site: Option<String>,
    /// The NAS's tenant: only its vouchers are looked up.
    pub tenant_id: i64,
    /// User-Name = voucher code.
    pub username: String,
    pub credential: Credential,
    /// Calling-Station-Id normalised to `AA:BB:CC:DD:EE:FF`, when present and parseable.
    pub mac: Option<String>,
    /// Acct-Session-Id from the Access-Request (MikroTik sends it), ties the accept to accounting.
    pub acct_session_id: Option<String>,
    /// Framed-IP-Address as text.
    pub framed_ip: Option<String>,
}

/// The voucher as storage sees it inside the authorization transaction.
#[derive(Clone, Debug)]
pub struct VoucherSnapshot {
    pub voucher: Voucher,
    pub plan: Plan,
    /// Distinct MACs with a live session of this voucher (open, or authorized
    /// recently and not yet started), in any order. May include the requesting MAC.
    pub active_macs: Vec<String>,
}

/// Why a voucher was refused. The label is a bounded metrics/log value; the
/// message is what the hotspot login page shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    UnknownVoucher,
    MissingPassword,
    WrongPassword,
    Revoked,
    /// The plan's absolute expiry has passed.
    Expired,
    /// The validity period since first login has ended.
    ValidityEnded,
    TimeQuotaUsed,
    DataQuotaUsed,
    /// MAC-locked to another device.
    MacLocked,
    /// Plan requires a MAC lock but the request carried no usable Calling-Station-Id.
    MissingMac,
    SharedUsersLimit,
    /// Refused without a decision: too many failed logins from this device or
    /// at this NAS (see `handler::guard`).
    TooManyFailures,
    /// The plan is valid at some sites only, and this NAS is at none of them.
    WrongSite,
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
        RejectReason::UnknownVoucher,
        RejectReason::MissingPassword,
        RejectReason::WrongPassword,
        RejectReason::Revoked,
        RejectReason::Expired,
        RejectReason::ValidityEnded,
        RejectReason::TimeQuotaUsed,
        RejectReason::DataQuotaUsed,
        RejectReason::MacLocked,
        RejectReason::MissingMac,
        RejectReason::SharedUsersLimit,
        RejectReason::TooManyFailures,
        RejectReason::WrongSite,
    ];

    /// Stable snake_case label for metrics, logs and the auth log.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::UnknownVoucher => "unknown_voucher",
            RejectReason::MissingPassword => "missing_password",
            RejectReason::WrongPassword => "wrong_password",
            RejectReason::Revoked => "revoked",
            RejectReason::Expired => "expired",
            RejectReason::ValidityEnded => "validity_ended",
            RejectReason::TimeQuotaUsed => "time_quota_used",
            RejectReason::DataQuotaUsed => "data_quota_used",
            RejectReason::MacLocked => "mac_locked",
            RejectReason::MissingMac => "missing_mac",
            RejectReason::SharedUsersLimit => "shared_users_limit",
            RejectReason::TooManyFailures => "too_many_failures",
            RejectReason::WrongSite => "wrong_site",
        }
    }

    /// A reject that looks like guessing a code or password; the login guard
    /// counts these.
    pub fn is_guess(self) -> bool {
        matches!(
            self,
            RejectReason::UnknownVoucher
                | RejectReason::WrongPassword
                | RejectReason::MissingPassword
        )
    }

    pub fn from_label(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.label() == s)
    }

    /// Short Reply-Message shown by the hotspot login page.
    pub fn message(self) -> &'static str {
        match self {
            RejectReason::UnknownVoucher => "Unknown voucher code",
            RejectReason::MissingPassword => "No password was sent",
            RejectReason::WrongPassword => "Wrong password for this voucher",
            RejectReason::Revoked => "This voucher has been revoked",
            RejectReason::Expired => "This voucher has expired",
            RejectReason::ValidityEnded => "This voucher's validity period has ended",
            RejectReason::TimeQuotaUsed => "No time left on this voucher",
            RejectReason::DataQuotaUsed => "No data left on this voucher",
            RejectReason::MacLocked => "This voucher is locked to another device",
            RejectReason::MissingMac => "Device address missing; cannot lock voucher",
            RejectReason::SharedUsersLimit => "This voucher is already in use on another device",
            RejectReason::TooManyFailures => {
                "Too many failed logins: please wait a few minutes, then try again"
            }
            RejectReason::WrongSite => "This voucher is not valid at this location",
        }
    }
}

/// A reply attribute the hotspot honours, in wire-neutral form. `server` encodes
/// these as RADIUS attributes; `http` as rlm_rest JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyAttribute {
    SessionTimeout(u32),
    IdleTimeout(u32),
    AcctInterimInterval(u32),
    /// Echoed by the NAS in accounting; ties sessions back to the voucher.
    Class(String),
    MikrotikRateLimit(String),
    /// Low 32 bits of the bytes left.
    MikrotikTotalLimit(u32),
    /// High 32 bits of the bytes left.
    MikrotikTotalLimitGigawords(u32),
    MikrotikGroup(String),
    MikrotikAddressList(String),
}

/// State changes an accept makes, applied by storage in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    pub first_login_at: Timestamp,
    /// first login + validity, capped by the absolute expiry; `None` when neither is set.
    pub valid_until: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub voucher_id: i64,
    /// In the order they should be sent.
    pub reply: Vec<ReplyAttribute>,
    /// `Some` on the voucher's first login.
    pub activation: Option<Activation>,
    /// `Some(mac)` when this login binds the voucher to a MAC (mac_lock, first login).
    pub bind_mac: Option<String>,
    /// Interim interval granted (for stale-session detection).
    pub interim_interval: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessDecision {
    Accept(Grant),
    Reject(RejectReason),
}

/// The Class value that ties accounting back to a voucher.
pub fn class_for_voucher(voucher_id: i64) -> String {
    format!("rrnet:v1:{voucher_id}")
}

/// Parse a Class produced by [`class_for_voucher`].
pub fn voucher_id_from_class(class: &[u8]) -> Option<i64> {
    std::str::from_utf8(class)
        .ok()?
        .strip_prefix("rrnet:v1:")?
        .parse()
        .ok()
}
