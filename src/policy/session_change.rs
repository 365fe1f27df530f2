//! What happens to sessions that are already open when their voucher ends or
//! changes (DESIGN §5, RFC 5176): end them (Disconnect-Request), slow them
//! (fair use, CoA-Request), or give them the plan's new limits (CoA-Request).
//! Pure: storage reads the usage and the plan, the CoA worker sends.

use super::{decide::min_some, ReplyAttribute};
use crate::model::{Plan, Timestamp, Voucher};

/// What a voucher whose quota is used up does to its open sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaEnd {
    /// End them: no time or no data left.
    Disconnect,
    /// Data used up on a fair-use plan: slow them to `after_data_rate_limit`.
    SlowDown,
}

impl QuotaEnd {
    /// The reason recorded with the request.
    pub fn reason(self) -> &'static str {
        match self {
            QuotaEnd::Disconnect => "quota_used",
            QuotaEnd::SlowDown => "fair_use",
        }
    }
}

/// The limits [`quota_end`] looks at, as storage reads them beside the usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaUse<'a> {
    pub time_quota: Option<u64>,
    pub data_quota: Option<u64>,
    pub after_data_rate_limit: Option<&'a str>,
    pub used_seconds: u64,
    pub used_bytes: u64,
}

/// Is the voucher's quota used up, and what then? Time used up ends the
/// sessions whatever the plan; data used up ends them unless the plan has a
/// fair-use rate, which slows them instead.
pub fn quota_end(q: &QuotaUse<'_>) -> Option<QuotaEnd> {
    if q.time_quota.is_some_and(|t| q.used_seconds >= t) {
        return Some(QuotaEnd::Disconnect);
    }
    if q.data_quota.is_some_and(|d| q.used_bytes >= d) {
        return Some(if fair_use_rate(q.after_data_rate_limit).is_some() {
            QuotaEnd::SlowDown
        } else {
            QuotaEnd::Disconnect
        });
    }
    None
}

/// A fair-use rate that is set and not empty.
pub(super) fn fair_use_rate(rate: Option<&str>) -> Option<&str> {
    rate.filter(|r| !r.is_empty())
}

/// [`quota_end`] for a voucher and its plan.
pub fn voucher_quota_end(plan: &Plan, voucher: &Voucher) -> Option<QuotaEnd> {
    quota_end(&QuotaUse {
        time_quota: plan.time_quota,
        data_quota: plan.data_quota,
        after_data_rate_limit: plan.after_data_rate_limit.as_deref(),
        used_seconds: voucher.used_seconds,
        used_bytes: voucher.used_bytes,
    })
}

/// The attributes a CoA-Request gives an open session of `voucher` under
/// `plan` (after a plan change, a move to another plan, or fair use):
/// Mikrotik-Rate-Limit — the fair-use rate once the data quota is used up,
/// else the plan's — and Session-Timeout. RouterOS counts a session's timeout
/// from the session's start, so the new value is the session's time so far
/// (`session_time`, from its last accounting) plus what the voucher has left.
pub fn session_changes(
    plan: &Plan,
    voucher: &Voucher,
    session_time: u64,
    now: Timestamp,
) -> Vec<ReplyAttribute> {
    let mut out = Vec::new();
    let slowed = voucher_quota_end(plan, voucher) == Some(QuotaEnd::SlowDown);
    let rate = if slowed {
        fair_use_rate(plan.after_data_rate_limit.as_deref())
    } else {
        plan.rate_limit.as_deref().filter(|r| !r.is_empty())
    };
    let time_left = plan
        .time_quota
        .map(|q| q.saturating_sub(voucher.used_seconds));
    let end = min_some(voucher.valid_until, plan.expires_at);
    let until_end = end.map(|t| u64::try_from(t.saturating_sub(now)).unwrap_or(0));
    if let Some(left) = min_some(time_left, until_end) {
        let secs = session_time.saturating_add(left);
        out.push(ReplyAttribute::SessionTimeout(
            u32::try_from(secs).unwrap_or(u32::MAX).max(1),
        ));
    }
    if let Some(rate) = rate {
        out.push(ReplyAttribute::MikrotikRateLimit(rate.to_string()));
    }
    out
}

/// What a CoA-Request queued for an open session does when it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionChange {
    /// The voucher has ended since (revoked, time or data used up with no fair
    /// use): end the session instead.
    End,
    /// Apply these limits ([`session_changes`]); empty: nothing to change.
    Limits(Vec<ReplyAttribute>),
}

/// [`SessionChange`] for an open session of `voucher`, `session_time` seconds
/// into it, with the voucher and plan as they are at `now`.
pub fn change_for_session(
    plan: &Plan,
    voucher: &Voucher,
    session_time: u64,
    now: Timestamp,
) -> SessionChange {
    if voucher.state == crate::model::VoucherState::Revoked
        || voucher_quota_end(plan, voucher) == Some(QuotaEnd::Disconnect)
    {
        return SessionChange::End;
    }
    SessionChange::Limits(session_changes(plan, voucher, session_time, now))
}

/// Every Access-Accept carries Acct-Interim-Interval (DESIGN §5): RouterOS
/// with `radius-interim-update=received` sends no Interim-Update without it,
/// and without Interim-Updates quotas are only counted at Stop and the stale
/// sweep closes sessions that are still online. A grant whose plan has no
/// interval gets `default_interim` seconds.
pub fn with_default_interim(grant: &mut super::Grant, default_interim: u32) {
    if grant
        .reply
        .iter()
        .any(|a| matches!(a, ReplyAttribute::AcctInterimInterval(_)))
    {
        return;
    }
    let secs = default_interim.max(1);
    // After Idle-Timeout, where a plan's own interval goes.
    let at = grant
        .reply
        .iter()
        .position(|a| {
            !matches!(
                a,
                ReplyAttribute::SessionTimeout(_) | ReplyAttribute::IdleTimeout(_)
            )
        })
        .unwrap_or(grant.reply.len());
    grant
        .reply
        .insert(at, ReplyAttribute::AcctInterimInterval(secs));
    grant.interim_interval.get_or_insert(secs);
}
