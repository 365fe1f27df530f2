//! Plans: checking what `plan add` / `plan set` and the API's plan bodies
//! ask for, and how a plan is shown.

use serde_json::json;

use super::FieldError;
use crate::cli::output::ts;
use crate::cli::{PlanAddArgs, PlanSetArgs};
use crate::model::{NewPlan, Plan};
use crate::units::{parse_duration, parse_size};

fn opt_duration(v: &Option<String>, what: &str) -> Result<Option<u64>, FieldError> {
    v.as_deref()
        .map(|s| parse_duration(s).map_err(|e| FieldError::flag(what, format!("--{what}: {e}"))))
        .transpose()
}

fn opt_u32_duration(v: &Option<String>, what: &str) -> Result<Option<u32>, FieldError> {
    opt_duration(v, what)?
        .map(|s| {
            u32::try_from(s).map_err(|_| FieldError::flag(what, format!("--{what}: too long")))
        })
        .transpose()
}

fn check_sites(sites: &[String]) -> Result<(), FieldError> {
    if sites.iter().any(|s| s.trim().is_empty() || s.contains(',')) {
        return Err(FieldError::flag(
            "sites",
            "--sites: give site names separated by commas, e.g. north,south",
        ));
    }
    Ok(())
}

/// `plan add` and `POST /api/v1/plans`: the plan to store, checked.
pub fn new_plan(a: &PlanAddArgs, tenant_id: i64) -> Result<NewPlan, FieldError> {
    check_sites(&a.sites)?;
    if a.name.trim().is_empty() {
        return Err(FieldError::flag("name", "the plan name must not be empty"));
    }
    if a.shared_users == 0 {
        return Err(FieldError::flag(
            "shared-users",
            "--shared-users must be at least 1",
        ));
    }
    let expires_at = a
        .expires
        .as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| d.timestamp())
                .map_err(|e| {
                    FieldError::flag(
                        "expires",
                        format!(
                            "--expires {s:?}: not an RFC 3339 time ({e}); e.g. 2026-12-31T23:59:59Z"
                        ),
                    )
                })
        })
        .transpose()?;
    let data_quota = a
        .data
        .as_deref()
        .map(|s| parse_size(s).map_err(|e| FieldError::flag("data", format!("--data: {e}"))))
        .transpose()?;
    check_plan_strings(
        &a.rate_limit,
        &a.after_data_rate_limit,
        &a.group,
        &a.address_list,
    )?;
    if a.after_data_rate_limit.is_some() && a.data.is_none() {
        return Err(FieldError::flag(
            "after-data-rate-limit",
            "--after-data-rate-limit needs --data: it applies once the data quota is used up",
        ));
    }
    Ok(NewPlan {
        tenant_id: Some(tenant_id),
        sites: a.sites.iter().map(|s| s.trim().to_owned()).collect(),
        name: a.name.clone(),
        time_quota: opt_duration(&a.time, "time")?,
        validity: opt_duration(&a.validity, "validity")?,
        expires_at,
        data_quota,
        rate_limit: a.rate_limit.clone(),
        after_data_rate_limit: a.after_data_rate_limit.clone(),
        shared_users: a.shared_users,
        mac_lock: a.mac_lock,
        idle_timeout: opt_u32_duration(&a.idle_timeout, "idle-timeout")?,
        interim_interval: opt_u32_duration(&a.interim, "interim")?,
        mikrotik_group: a.group.clone(),
        address_list: a.address_list.clone(),
        price: a.price.clone(),
    })
}

/// Lengths of the strings a plan sends as attributes, and RouterOS syntax of
/// its rate limits.
fn check_plan_strings(
    rate_limit: &Option<String>,
    after_data_rate_limit: &Option<String>,
    group: &Option<String>,
    address_list: &Option<String>,
) -> Result<(), FieldError> {
    for (v, what) in [
        (rate_limit, "rate-limit"),
        (after_data_rate_limit, "after-data-rate-limit"),
        (group, "group"),
        (address_list, "address-list"),
    ] {
        if let Some(s) = v {
            if s.is_empty() || s.len() > 247 {
                return Err(FieldError::flag(
                    what,
                    format!("--{what} must be 1 to 247 characters"),
                ));
            }
        }
    }
    for (v, what) in [
        (rate_limit, "rate-limit"),
        (after_data_rate_limit, "after-data-rate-limit"),
    ] {
        if let Some(r) = v {
            if !r
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " /.".contains(c))
            {
                return Err(FieldError::flag(
                    what,
                    format!("--{what} {r:?}: expected RouterOS syntax like 2M/4M or 1M/2M 4M/8M 1M/2M 10/10"),
                ));
            }
        }
    }
    Ok(())
}

/// `Some(None)` for `none` (clear), `Some(Some(v))` for a value, `None` when
/// the flag was not given.
fn clearable(v: &Option<String>) -> Option<Option<String>> {
    v.as_ref().map(|s| (s != "none").then(|| s.clone()))
}

/// `plan set`: the plan as stored with the given flags applied.
pub fn changed_plan(mut p: Plan, a: &PlanSetArgs) -> Result<Plan, FieldError> {
    if let Some(n) = &a.rename {
        if n.trim().is_empty() {
            return Err(FieldError::flag("name", "the plan name must not be empty"));
        }
        p.name = n.clone();
    }
    if let Some(v) = clearable(&a.time) {
        p.time_quota = opt_duration(&v, "time")?;
    }
    if let Some(v) = clearable(&a.validity) {
        p.validity = opt_duration(&v, "validity")?;
    }
    if let Some(v) = clearable(&a.expires) {
        p.expires_at = v
            .as_deref()
            .map(|s| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|d| d.timestamp())
                    .map_err(|e| {
                        FieldError::flag(
                            "expires",
                            format!("--expires {s:?}: not an RFC 3339 time ({e})"),
                        )
                    })
            })
            .transpose()?;
    }
    if let Some(v) = clearable(&a.data) {
        p.data_quota = v
            .as_deref()
            .map(|s| parse_size(s).map_err(|e| FieldError::flag("data", format!("--data: {e}"))))
            .transpose()?;
    }
    if let Some(v) = clearable(&a.rate_limit) {
        p.rate_limit = v;
    }
    if let Some(v) = clearable(&a.after_data_rate_limit) {
        p.after_data_rate_limit = v;
    }
    if let Some(n) = a.shared_users {
        if n == 0 {
            return Err(FieldError::flag(
                "shared-users",
                "--shared-users must be at least 1",
            ));
        }
        p.shared_users = n;
    }
    if a.mac_lock {
        p.mac_lock = true;
    }
    if a.no_mac_lock {
        p.mac_lock = false;
    }
    if let Some(v) = clearable(&a.idle_timeout) {
        p.idle_timeout = opt_u32_duration(&v, "idle-timeout")?;
    }
    if let Some(v) = clearable(&a.interim) {
        p.interim_interval = opt_u32_duration(&v, "interim")?;
    }
    if let Some(v) = clearable(&a.group) {
        p.mikrotik_group = v;
    }
    if let Some(v) = clearable(&a.address_list) {
        p.address_list = v;
    }
    if let Some(v) = clearable(&a.price) {
        p.price = v;
    }
    if let Some(v) = clearable(&a.sites) {
        p.sites = v
            .map(|s| s.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default();
        check_sites(&p.sites)?;
    }
    check_plan_strings(
        &p.rate_limit,
        &p.after_data_rate_limit,
        &p.mikrotik_group,
        &p.address_list,
    )?;
    if p.after_data_rate_limit.is_some() && p.data_quota.is_none() {
        return Err(FieldError::flag(
            "after-data-rate-limit",
            "--after-data-rate-limit needs a data quota (--data)",
        ));
    }
    Ok(p)
}

/// A plan as `plan list --format json` and the API show it.
pub fn plan_json(p: &Plan) -> serde_json::Value {
    json!({
        "name": p.name,
        "time_quota_seconds": p.time_quota,
        "validity_seconds": p.validity,
        "expires_at": p.expires_at.map(|t| ts(Some(t))),
        "data_quota_bytes": p.data_quota,
        "rate_limit": p.rate_limit,
        "after_data_rate_limit": p.after_data_rate_limit,
        "shared_users": p.shared_users,
        "mac_lock": p.mac_lock,
        "idle_timeout_seconds": p.idle_timeout,
        "interim_interval_seconds": p.interim_interval,
        "mikrotik_group": p.mikrotik_group,
        "address_list": p.address_list,
        "price": p.price,
        "sites": p.sites,
    })
}
