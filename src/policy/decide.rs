//! The Access-Request decision, in the order DESIGN §5 fixes.
//!
//! The order matters to the operator, not only to the outcome: the reason a
//! reject carries is what the hotspot shows and what the auth log records, so
//! the password is checked before anything about the voucher's state is
//! revealed, and the cheap "is it usable at all" checks come before the
//! per-device ones.

use subtle::ConstantTimeEq;

use super::credential::credential_matches;
use super::session_change::fair_use_rate;
use super::{
    class_for_voucher, AccessDecision, AccessFacts, Activation, Grant, RejectReason,
    ReplyAttribute, VoucherSnapshot,
};
use crate::model::{Plan, Timestamp, Voucher, VoucherState};

/// Decide an Access-Request. `snapshot` is `None` when no voucher with this code
/// exists in the NAS's scope. Pure: `now` is passed in and nothing is read or written.
pub fn decide(
    facts: &AccessFacts,
    snapshot: Option<&VoucherSnapshot>,
    now: Timestamp,
) -> AccessDecision {
    match check(facts, snapshot, now) {
        Ok(grant) => AccessDecision::Accept(grant),
        Err(reason) => AccessDecision::Reject(reason),
    }
}

fn check(
    facts: &AccessFacts,
    snapshot: Option<&VoucherSnapshot>,
    now: Timestamp,
) -> Result<Grant, RejectReason> {
    let snapshot = snapshot.ok_or(RejectReason::UnknownVoucher)?;
    let VoucherSnapshot {
        voucher,
        plan,
        active_macs,
    } = snapshot;

    // Password before state: someone guessing codes must not learn whether a
    // code exists but is revoked or used up.
    if matches!(facts.credential, super::Credential::Missing) {
        return Err(RejectReason::MissingPassword);
    }
    if !credential_matches(&facts.credential, voucher.password.as_bytes()) {
        return Err(RejectReason::WrongPassword);
    }

    if voucher.state == VoucherState::Revoked {
        return Err(RejectReason::Revoked);
    }
    // A plan valid at some sites only: the NAS's site must be one of them
    // (a NAS without a site is at none).
    if !plan.sites.is_empty()
        && !facts
            .nas_site
            .as_ref()
            .is_some_and(|site| plan.sites.contains(site))
    {
        return Err(RejectReason::WrongSite);
    }
    if plan.expires_at.is_some_and(|t| now >= t) {
        return Err(RejectReason::Expired);
    }

    // On first login the validity window starts now; checking the window this
    // login would open catches a plan whose validity is zero seconds, which would
    // otherwise be granted a Session-Timeout of 0 (no limit on many NASes).
    let activation = voucher.first_login_at.is_none().then(|| Activation {
        first_login_at: now,
        valid_until: first_valid_until(plan, now),
    });
    let valid_until = match &activation {
        Some(a) => a.valid_until,
        None => voucher.valid_until,
    };
    if valid_until.is_some_and(|t| now >= t) {
        return Err(RejectReason::ValidityEnded);
    }

    if plan.time_quota.is_some_and(|q| voucher.used_seconds >= q) {
        return Err(RejectReason::TimeQuotaUsed);
    }
    // Fair use: with an after-data rate, a voucher whose data is used up
    // still logs in, at that rate and with no data limit.
    let data_used_up = plan.data_quota.is_some_and(|q| voucher.used_bytes >= q);
    let fair_use = fair_use_rate(plan.after_data_rate_limit.as_deref());
    if data_used_up && fair_use.is_none() {
        return Err(RejectReason::DataQuotaUsed);
    }

    let bind_mac = check_mac_lock(plan, voucher, facts.mac.as_deref())?;

    if other_devices(active_macs, facts.mac.as_deref()) >= plan.shared_users.max(1) as usize {
        return Err(RejectReason::SharedUsersLimit);
    }

    let end = min_some(valid_until, plan.expires_at);
    Ok(Grant {
        voucher_id: voucher.id,
        reply: reply_attributes(plan, voucher, end, now),
        activation,
        bind_mac,
        interim_interval: plan.interim_interval,
    })
}

/// first login + validity, capped by the absolute expiry; `None` when neither is set.
fn first_valid_until(plan: &Plan, now: Timestamp) -> Option<Timestamp> {
    let by_validity = plan
        .validity
        .map(|v| now.saturating_add(i64::try_from(v).unwrap_or(i64::MAX)));
    min_some(by_validity, plan.expires_at)
}

/// MAC lock (DESIGN §5): the first device to log in owns the voucher. Returns the
/// MAC this login binds, if it is the binding one.
fn check_mac_lock(
    plan: &Plan,
    voucher: &Voucher,
    mac: Option<&str>,
) -> Result<Option<String>, RejectReason> {
    if !plan.mac_lock {
        return Ok(None);
    }
    // Without a Calling-Station-Id there is nothing to bind to or compare with;
    // accepting would make the lock meaningless.
    let mac = mac.ok_or(RejectReason::MissingMac)?;
    match &voucher.bound_mac {
        // MACs are normalised upstream (`model::normalize_mac`), so byte equality
        // is device equality. Constant time is not needed for a MAC, which is
        // not secret, but costs nothing.
        Some(bound) if bool::from(bound.as_bytes().ct_eq(mac.as_bytes())) => Ok(None),
        Some(_) => Err(RejectReason::MacLocked),
        None => Ok(Some(mac.to_string())),
    }
}

/// Devices other than the requesting one that hold a live session. A device that
/// logs in again (MikroTik re-authenticates after a roam or a cookie expiry) is
/// not a second user. With no MAC on the request every live device counts.
fn other_devices(active_macs: &[String], mac: Option<&str>) -> usize {
    let mut others: Vec<&str> = active_macs
        .iter()
        .map(String::as_str)
        .filter(|m| Some(*m) != mac)
        .collect();
    others.sort_unstable();
    others.dedup();
    others.len()
}

/// Reply attributes for an accept, in the order they go on the wire.
fn reply_attributes(
    plan: &Plan,
    voucher: &Voucher,
    end: Option<Timestamp>,
    now: Timestamp,
) -> Vec<ReplyAttribute> {
    let mut reply = Vec::new();

    // RFC 2865 §5.27: the NAS ends the session after this many seconds. The
    // checks before this guarantee both terms are positive; 0 is still avoided
    // because some NASes read it as "no limit".
    let time_left = plan
        .time_quota
        .map(|q| q.saturating_sub(voucher.used_seconds));
    let until_end = end.map(|t| u64::try_from(t.saturating_sub(now)).unwrap_or(0));
    if let Some(secs) = min_some(time_left, until_end) {
        let secs = u32::try_from(secs).unwrap_or(u32::MAX).max(1);
        reply.push(ReplyAttribute::SessionTimeout(secs));
    }

    if let Some(t) = plan.idle_timeout {
        reply.push(ReplyAttribute::IdleTimeout(t)); // RFC 2865 §5.28
    }
    if let Some(t) = plan.interim_interval {
        reply.push(ReplyAttribute::AcctInterimInterval(t)); // RFC 2869 §5.16
    }
    // String attributes are 1..=253 octets (RFC 2865 §5); an empty value in a plan
    // means "not set" rather than an attribute the NAS would reject.
    let fair_use = fair_use_rate(plan.after_data_rate_limit.as_deref());
    let data_used_up = plan.data_quota.is_some_and(|q| voucher.used_bytes >= q);
    let rate = match fair_use {
        Some(slow) if data_used_up => Some(slow),
        _ => non_empty(&plan.rate_limit),
    };
    if let Some(rate) = rate {
        reply.push(ReplyAttribute::MikrotikRateLimit(rate.to_string()));
    }

    // Mikrotik-Total-Limit is a 32-bit integer; bytes above 4 GiB go in
    // Mikrotik-Total-Limit-Gigawords, the way Acct-*-Gigawords extend octet
    // counters (RFC 2869 §5.1). Gigawords is only sent when it is non-zero.
    // A fair-use plan sends none: the router would end the session at the
    // limit, and the session is to be slowed (by CoA) instead.
    if let Some(q) = plan.data_quota.filter(|_| fair_use.is_none()) {
        let left = q.saturating_sub(voucher.used_bytes);
        reply.push(ReplyAttribute::MikrotikTotalLimit(left as u32));
        let high = (left >> 32) as u32;
        if high != 0 {
            reply.push(ReplyAttribute::MikrotikTotalLimitGigawords(high));
        }
    }

    if let Some(group) = non_empty(&plan.mikrotik_group) {
        reply.push(ReplyAttribute::MikrotikGroup(group.to_string()));
    }
    if let Some(list) = non_empty(&plan.address_list) {
        reply.push(ReplyAttribute::MikrotikAddressList(list.to_string()));
    }

    // RFC 2865 §5.25: the NAS echoes Class unmodified in accounting, which is how
    // accounting finds the voucher even if the User-Name was rewritten.
    reply.push(ReplyAttribute::Class(class_for_voucher(voucher.id)));
    reply
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The smaller of the values that are present.
pub(super) fn min_some<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
