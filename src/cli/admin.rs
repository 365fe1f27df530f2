//! NAS, plan, voucher and session commands.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use rand::Rng;
use serde_json::json;

use super::output::{csv_field, opt, print_table, ts};
use super::{
    Format, ListFormat, NasCommand, PlanAddArgs, PlanCommand, PlanSetArgs, SessionCommand,
    TenantCommand, TenantScope, VoucherCommand,
};
use crate::model::{
    CertIdentity, NewNas, NewPlan, NewVoucher, Plan, Secret, Timestamp, Voucher, DEFAULT_TENANT,
};
use crate::store::Store;
use crate::units::{format_duration, format_size, parse_duration, parse_size};

/// Unambiguous code alphabet: no 0/O, no 1/I. 32 symbols = 5 bits each.
pub const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialize")
    );
}

/// The tenant a command works in: `--tenant`, else `default`.
pub struct Scope {
    pub id: i64,
    /// Whether `--tenant` was given (listings then show only that tenant).
    pub given: bool,
}

impl Scope {
    pub async fn resolve(store: &dyn Store, scope: &TenantScope) -> anyhow::Result<Scope> {
        Ok(match &scope.tenant {
            None => Scope {
                id: DEFAULT_TENANT,
                given: false,
            },
            Some(name) => Scope {
                id: store.get_tenant(name).await?.id,
                given: true,
            },
        })
    }

    /// Whether a listing shows something of `tenant_id`.
    pub(super) fn shows(&self, tenant_id: i64) -> bool {
        !self.given || tenant_id == self.id
    }

    /// The tenant of a new voucher of `plan`: the plan's, which must be the
    /// one `--tenant` names when given.
    fn voucher_tenant(&self, plan: &Plan) -> anyhow::Result<i64> {
        if self.given && plan.tenant_id != self.id {
            bail!("plan {} belongs to another tenant", plan.name);
        }
        Ok(plan.tenant_id)
    }
}

pub async fn tenant(store: Arc<dyn Store>, cmd: &TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Add { name } => {
            let t = store.add_tenant(name).await?;
            println!("added tenant {}", t.name);
        }
        TenantCommand::List { format } => {
            let list = store.list_tenants().await?;
            match format {
                Format::Json => print_json(&json!(list
                    .iter()
                    .map(|t| json!({"name": t.name, "created_at": ts(Some(t.created_at))}))
                    .collect::<Vec<_>>())),
                Format::Text => print_table(
                    &["NAME", "CREATED"],
                    &list
                        .iter()
                        .map(|t| vec![t.name.clone(), ts(Some(t.created_at))])
                        .collect::<Vec<_>>(),
                ),
            }
        }
    }
    Ok(())
}

/// Tenant names by id, for listings.
async fn tenant_names(store: &dyn Store) -> anyhow::Result<HashMap<i64, String>> {
    Ok(store
        .list_tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect())
}

pub async fn nas(store: Arc<dyn Store>, scope: &Scope, cmd: &NasCommand) -> anyhow::Result<()> {
    match cmd {
        NasCommand::Add {
            name,
            address,
            secret,
            no_require_message_authenticator,
            coa_port,
            coa_address,
            site,
            identifier,
            radsec_cn,
            radsec_fingerprint,
        } => {
            let radsec = match (radsec_cn, radsec_fingerprint) {
                (Some(cn), _) => {
                    Some(CertIdentity::name(cn).map_err(|e| anyhow!("--radsec-cn: {e}"))?)
                }
                (None, Some(fp)) => Some(
                    CertIdentity::sha256(fp).map_err(|e| anyhow!("--radsec-fingerprint: {e}"))?,
                ),
                (None, None) => None,
            };
            let (address, dynamic, secret) = match (radsec, address) {
                (Some(identity), _) => {
                    if secret.is_some() {
                        bail!("a RadSec NAS has no --secret: RadSec's shared secret is fixed to `radsec` (RFC 6614), the client certificate identifies the router");
                    }
                    let (address, dynamic) = crate::model::parse_nas_address(&identity.to_string())
                        .map_err(|e| anyhow!("{e}"))?;
                    (address, dynamic, crate::radsec::RADSEC_SECRET.to_string())
                }
                (None, Some(address)) => {
                    let (address, dynamic) = crate::model::parse_nas_address(address)
                        .map_err(|e| anyhow!("--address {e}"))?;
                    if matches!(dynamic, Some(crate::model::DynamicAddress::RadSec(_))) {
                        bail!(
                            "--address: give a RadSec NAS with --radsec-cn or --radsec-fingerprint"
                        );
                    }
                    let Some(secret) = secret else {
                        bail!("--secret is required (or RRNET_NAS_SECRET)");
                    };
                    if secret.len() < 8 {
                        bail!("the shared secret must be at least 8 characters");
                    }
                    (address, dynamic, secret.clone())
                }
                (None, None) => bail!("give --address, --radsec-cn or --radsec-fingerprint"),
            };
            if let Some(id) = identifier {
                if id.is_empty() || id.contains('\0') {
                    bail!("--identifier must be a non-empty text without NUL");
                }
            }
            if dynamic == Some(crate::model::DynamicAddress::Any) {
                if identifier.is_none() {
                    bail!("--address any needs --identifier: the router's NAS-Identifier is what picks this entry");
                }
                if *no_require_message_authenticator {
                    bail!("--address any requires Message-Authenticator: leave out --no-require-message-authenticator");
                }
            }
            if name.trim().is_empty() {
                bail!("the NAS name must not be empty");
            }
            let nas = store
                .add_nas(&NewNas {
                    name: name.clone(),
                    address,
                    dynamic,
                    secret: Secret::new(secret),
                    require_message_authenticator: !no_require_message_authenticator,
                    coa_port: *coa_port,
                    coa_address: *coa_address,
                    site: site.clone(),
                    identifier: identifier.clone(),
                    tenant_id: scope.id,
                })
                .await?;
            match &nas.identifier {
                Some(id) => println!(
                    "added NAS {} ({}, NAS-Identifier {id:?})",
                    nas.name,
                    nas.address_text()
                ),
                None => println!("added NAS {} ({})", nas.name, nas.address_text()),
            }
            if *no_require_message_authenticator {
                eprintln!("warning: NAS {} may send Access-Requests without Message-Authenticator (BlastRADIUS, CVE-2024-3596)", nas.name);
            }
            Ok(())
        }
        NasCommand::List { format } => {
            let tenants = tenant_names(&*store).await?;
            let list: Vec<_> = store
                .list_nas()
                .await?
                .into_iter()
                .filter(|n| scope.shows(n.tenant_id))
                .collect();
            match format {
                Format::Json => print_json(&json!(list
                    .iter()
                    .map(|n| json!({
                        "name": n.name,
                        "address": n.address_text(),
                        "require_message_authenticator": n.require_message_authenticator,
                        "coa_port": n.coa_port,
                        "coa_address": n.coa_address.map(|a| a.to_string()),
                        "site": n.site,
                        "identifier": n.identifier,
                        "tenant": tenants.get(&n.tenant_id),
                        "created_at": ts(Some(n.created_at)),
                        "previous_secret_until": n.previous_secret_until.map(|t| ts(Some(t))),
                    }))
                    .collect::<Vec<_>>())),
                Format::Text => print_table(
                    &[
                        "NAME",
                        "ADDRESS",
                        "IDENTIFIER",
                        "TENANT",
                        "REQUIRE-MA",
                        "COA-PORT",
                        "SITE",
                    ],
                    &list
                        .iter()
                        .map(|n| {
                            vec![
                                n.name.clone(),
                                n.address_text(),
                                opt(&n.identifier),
                                opt(&tenants.get(&n.tenant_id).cloned()),
                                if n.require_message_authenticator {
                                    "yes"
                                } else {
                                    "no"
                                }
                                .into(),
                                n.coa_port.to_string(),
                                opt(&n.site),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            Ok(())
        }
        NasCommand::SetSecret {
            name,
            secret,
            keep_old,
        } => {
            if secret.len() < 8 {
                bail!("the shared secret must be at least 8 characters");
            }
            let keep = parse_duration(keep_old).map_err(|e| anyhow!("--keep-old: {e}"))?;
            let until = (keep > 0).then(|| crate::server::unix_now() + keep as i64);
            store
                .set_nas_secret(name, &Secret::new(secret.clone()), until)
                .await?;
            match until {
                Some(t) => println!(
                    "NAS {name}: new secret set; the old one is accepted until {}",
                    ts(Some(t))
                ),
                None => println!("NAS {name}: new secret set; the old one no longer works"),
            }
            Ok(())
        }
        NasCommand::Set {
            name,
            identifier,
            coa_port,
            coa_address,
        } => {
            if let Some(id) = identifier {
                if id.is_empty() || id.contains('\0') {
                    bail!("--identifier must be a non-empty text without NUL (or none)");
                }
                let id = (id != "none").then_some(id.as_str());
                let nas = store.set_nas_identifier(name, id).await?;
                match &nas.identifier {
                    Some(id) => println!(
                        "NAS {}: only packets with NAS-Identifier {id:?} match it now \
                         (/system identity set name=… on the router)",
                        nas.name
                    ),
                    None => println!("NAS {}: no identifier", nas.name),
                }
                if coa_port.is_none() && coa_address.is_none() {
                    return Ok(());
                }
            }
            let address = match coa_address.as_deref() {
                None => None,
                Some("none") => Some(None),
                Some(a) => Some(Some(a.parse::<std::net::IpAddr>().map_err(|_| {
                    anyhow!("--coa-address {a:?}: expected an IP address or none")
                })?)),
            };
            if coa_port.is_none() && address.is_none() {
                bail!("nothing to change: give --identifier, --coa-port or --coa-address");
            }
            let nas = store.set_nas_coa(name, *coa_port, address).await?;
            let target = crate::coa::coa_target(&nas, None)
                .map(|t| t.to_string())
                .unwrap_or_else(|| {
                    format!("the source of its latest request, port {}", nas.coa_port)
                });
            println!("NAS {}: CoA/Disconnect requests go to {target}", nas.name);
            Ok(())
        }
        NasCommand::Remove { name } => {
            store.remove_nas(name).await?;
            println!("removed NAS {name}");
            Ok(())
        }
    }
}

fn opt_duration(v: &Option<String>, what: &str) -> anyhow::Result<Option<u64>> {
    v.as_deref()
        .map(|s| parse_duration(s).map_err(|e| anyhow!("--{what}: {e}")))
        .transpose()
}

fn opt_u32_duration(v: &Option<String>, what: &str) -> anyhow::Result<Option<u32>> {
    opt_duration(v, what)?
        .map(|s| u32::try_from(s).map_err(|_| anyhow!("--{what}: too long")))
        .transpose()
}

fn check_sites(sites: &[String]) -> anyhow::Result<()> {
    if sites.iter().any(|s| s.trim().is_empty() || s.contains(',')) {
        bail!("--sites: give site names separated by commas, e.g. north,south");
    }
    Ok(())
}

fn new_plan(a: &PlanAddArgs, tenant_id: i64) -> anyhow::Result<NewPlan> {
    check_sites(&a.sites)?;
    if a.name.trim().is_empty() {
        bail!("the plan name must not be empty");
    }
    if a.shared_users == 0 {
        bail!("--shared-users must be at least 1");
    }
    let expires_at = a
        .expires
        .as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| d.timestamp())
                .map_err(|e| {
                    anyhow!(
                        "--expires {s:?}: not an RFC 3339 time ({e}); e.g. 2026-12-31T23:59:59Z"
                    )
                })
        })
        .transpose()?;
    let data_quota = a
        .data
        .as_deref()
        .map(|s| parse_size(s).map_err(|e| anyhow!("--data: {e}")))
        .transpose()?;
    check_plan_strings(
        &a.rate_limit,
        &a.after_data_rate_limit,
        &a.group,
        &a.address_list,
    )?;
    if a.after_data_rate_limit.is_some() && a.data.is_none() {
        bail!("--after-data-rate-limit needs --data: it applies once the data quota is used up");
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
) -> anyhow::Result<()> {
    for (v, what) in [
        (rate_limit, "rate-limit"),
        (after_data_rate_limit, "after-data-rate-limit"),
        (group, "group"),
        (address_list, "address-list"),
    ] {
        if let Some(s) = v {
            if s.is_empty() || s.len() > 247 {
                bail!("--{what} must be 1 to 247 characters");
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
                bail!("--{what} {r:?}: expected RouterOS syntax like 2M/4M or 1M/2M 4M/8M 1M/2M 10/10");
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
fn changed_plan(mut p: Plan, a: &PlanSetArgs) -> anyhow::Result<Plan> {
    if let Some(n) = &a.rename {
        if n.trim().is_empty() {
            bail!("the plan name must not be empty");
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
                    .map_err(|e| anyhow!("--expires {s:?}: not an RFC 3339 time ({e})"))
            })
            .transpose()?;
    }
    if let Some(v) = clearable(&a.data) {
        p.data_quota = v
            .as_deref()
            .map(|s| parse_size(s).map_err(|e| anyhow!("--data: {e}")))
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
            bail!("--shared-users must be at least 1");
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
        bail!("--after-data-rate-limit needs a data quota (--data)");
    }
    Ok(p)
}

fn plan_json(p: &Plan) -> serde_json::Value {
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

pub async fn plan(store: Arc<dyn Store>, scope: &Scope, cmd: &PlanCommand) -> anyhow::Result<()> {
    match cmd {
        PlanCommand::Add(a) => {
            let p = store.add_plan(&new_plan(a, scope.id)?).await?;
            println!("added plan {}", p.name);
            Ok(())
        }
        PlanCommand::Set(a) => {
            let p = store.get_plan(&a.name).await?;
            if scope.given && p.tenant_id != scope.id {
                bail!("plan {} belongs to another tenant", p.name);
            }
            let p = changed_plan(p, a)?;
            let queued = store.update_plan(&p).await?;
            println!(
                "changed plan {}; {queued} open session(s) will get the new limits by CoA",
                p.name
            );
            Ok(())
        }
        PlanCommand::List { format } => {
            let plans: Vec<_> = store
                .list_plans()
                .await?
                .into_iter()
                .filter(|p| scope.shows(p.tenant_id))
                .collect();
            match format {
                Format::Json => print_json(&json!(plans.iter().map(plan_json).collect::<Vec<_>>())),
                Format::Text => print_table(
                    &[
                        "NAME", "TIME", "VALIDITY", "EXPIRES", "DATA", "RATE", "SHARED",
                        "MAC-LOCK", "INTERIM",
                    ],
                    &plans
                        .iter()
                        .map(|p| {
                            vec![
                                p.name.clone(),
                                p.time_quota.map(format_duration).unwrap_or("-".into()),
                                p.validity.map(format_duration).unwrap_or("-".into()),
                                ts(p.expires_at),
                                p.data_quota.map(format_size).unwrap_or("-".into()),
                                opt(&p.rate_limit),
                                p.shared_users.to_string(),
                                if p.mac_lock { "yes" } else { "no" }.into(),
                                p.interim_interval
                                    .map(|v| format_duration(v.into()))
                                    .unwrap_or("-".into()),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            Ok(())
        }
    }
}

/// A random code over [`CODE_ALPHABET`] from the OS CSPRNG.
pub fn random_code(len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

fn check_code(code: &str) -> anyhow::Result<()> {
    if code.is_empty() || code.len() > 64 {
        bail!("voucher code must be 1 to 64 characters");
    }
    if code.chars().any(|c| c.is_control() || c.is_whitespace()) {
        bail!("voucher code {code:?} contains whitespace or control characters");
    }
    Ok(())
}

/// When the voucher stops working by date: the end of its validity window (set at
/// first login, capped by the plan's expiry then) or the plan's absolute expiry,
/// whichever comes first. `None` while neither applies, e.g. before the first
/// login of a plan with `--validity` but no `--expires`.
fn valid_until(v: &Voucher, plan: Option<&Plan>) -> Option<Timestamp> {
    [v.valid_until, plan.and_then(|p| p.expires_at)]
        .into_iter()
        .flatten()
        .min()
}

/// A voucher as `voucher show` / `voucher list --format json` print it.
/// `valid_until` is [`valid_until`], the same date the text output shows.
fn voucher_json(v: &Voucher, plan: Option<&Plan>, now: i64) -> serde_json::Value {
    let end = valid_until(v, plan);
    let mut j = json!({
        "code": v.code,
        "plan": v.plan_name,
        "site": v.site,
        "state": v.state.as_str(),
        "batch": v.batch,
        "first_login_at": v.first_login_at.map(|t| ts(Some(t))),
        "valid_until": end.map(|t| ts(Some(t))),
        "used_seconds": v.used_seconds,
        "used_bytes": v.used_bytes,
        "bound_mac": v.bound_mac,
        "created_at": ts(Some(v.created_at)),
    });
    if let Some(p) = plan {
        j["time_left_seconds"] = json!(p.time_quota.map(|q| q.saturating_sub(v.used_seconds)));
        j["data_left_bytes"] = json!(p.data_quota.map(|q| q.saturating_sub(v.used_bytes)));
        j["expired"] = json!(end.is_some_and(|e| now >= e));
    }
    j
}

pub async fn voucher(
    store: Arc<dyn Store>,
    scope: &Scope,
    cmd: &VoucherCommand,
) -> anyhow::Result<()> {
    match cmd {
        VoucherCommand::Add {
            code,
            plan,
            password,
            site,
            batch,
        } => {
            check_code(code)?;
            let plan = store.get_plan(plan).await?;
            scope.voucher_tenant(&plan)?;
            store
                .add_vouchers(&[NewVoucher {
                    code: code.clone(),
                    password: password.clone(),
                    plan_id: plan.id,
                    site: site.clone(),
                    batch: batch.clone(),
                }])
                .await?;
            println!("added voucher {code} (plan {})", plan.name);
            Ok(())
        }
        VoucherCommand::Generate {
            plan,
            count,
            length,
            prefix,
            site,
            batch,
            format,
        } => {
            if !(6..=32).contains(length) {
                bail!("--length must be between 6 and 32");
            }
            if *count == 0 || *count > 100_000 {
                bail!("--count must be between 1 and 100000");
            }
            if prefix.len() + length > 64
                || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                bail!(
                    "--prefix must be printable without spaces and keep codes within 64 characters"
                );
            }
            let plan = store.get_plan(plan).await?;
            scope.voucher_tenant(&plan)?;
            let mut codes = std::collections::HashSet::new();
            while codes.len() < *count as usize {
                codes.insert(format!("{prefix}{}", random_code(*length)));
            }
            let new: Vec<NewVoucher> = codes
                .into_iter()
                .map(|code| NewVoucher {
                    code,
                    password: None,
                    plan_id: plan.id,
                    site: site.clone(),
                    batch: batch.clone(),
                })
                .collect();
            // A clash with an existing code fails the whole batch (all-or-nothing);
            // with 40+ bits per code that is vanishingly rare, so retry a few times.
            let mut attempt = 0;
            let created = loop {
                match store.add_vouchers(&new).await {
                    Ok(v) => break v,
                    Err(crate::store::StoreError::Duplicate(_)) if attempt < 3 => {
                        attempt += 1;
                        continue;
                    }
                    Err(e) => return Err(e).context("storing generated vouchers"),
                }
            };
            match format {
                ListFormat::Text => {
                    for v in &created {
                        println!("{}", v.code);
                    }
                }
                ListFormat::Csv => {
                    println!("code,password,plan,batch");
                    for v in &created {
                        println!(
                            "{},{},{},{}",
                            csv_field(&v.code),
                            csv_field(&v.password),
                            csv_field(&v.plan_name),
                            csv_field(v.batch.as_deref().unwrap_or(""))
                        );
                    }
                }
                ListFormat::Json => print_json(&json!(created
                    .iter()
                    .map(|v| json!({"code": v.code, "password": v.password, "plan": v.plan_name, "batch": v.batch}))
                    .collect::<Vec<_>>())),
            }
            Ok(())
        }
        VoucherCommand::Import {
            file,
            plan,
            site,
            batch,
        } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
            };
            let plan = store.get_plan(plan).await?;
            scope.voucher_tenant(&plan)?;
            let mut new = Vec::new();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (code, password) = match line.split_once(',') {
                    Some((c, p)) => (c.trim(), Some(p.trim().to_string())),
                    None => (line, None),
                };
                check_code(code).with_context(|| format!("{file}:{}", n + 1))?;
                new.push(NewVoucher {
                    code: code.to_string(),
                    password,
                    plan_id: plan.id,
                    site: site.clone(),
                    batch: batch.clone(),
                });
            }
            if new.is_empty() {
                bail!("{file}: no voucher codes found");
            }
            for chunk in new.chunks(50_000) {
                store.add_vouchers(chunk).await?;
            }
            println!("imported {} vouchers (plan {})", new.len(), plan.name);
            Ok(())
        }
        VoucherCommand::Show { code, format } => {
            let v = store.get_voucher(scope.id, code).await?;
            let plan = store.get_plan(&v.plan_name).await?;
            let now = crate::server::unix_now();
            let sessions: Vec<_> = store
                .list_sessions(false)
                .await?
                .into_iter()
                .filter(|s| s.voucher_id == Some(v.id))
                .collect();
            match format {
                Format::Json => {
                    let mut j = voucher_json(&v, Some(&plan), now);
                    j["sessions"] = json!(sessions);
                    print_json(&j);
                }
                Format::Text => {
                    let j = voucher_json(&v, Some(&plan), now);
                    println!("code:          {}", v.code);
                    println!("plan:          {}", v.plan_name);
                    println!("state:         {}", v.state.as_str());
                    println!("site:          {}", opt(&v.site));
                    println!("batch:         {}", opt(&v.batch));
                    println!("first login:   {}", ts(v.first_login_at));
                    println!("valid until:   {}", ts(valid_until(&v, Some(&plan))));
                    println!(
                        "time used:     {}{}",
                        format_duration(v.used_seconds),
                        plan.time_quota
                            .map(|q| format!(
                                " of {} ({} left)",
                                format_duration(q),
                                format_duration(q.saturating_sub(v.used_seconds))
                            ))
                            .unwrap_or_default()
                    );
                    println!(
                        "data used:     {}{}",
                        format_size(v.used_bytes),
                        plan.data_quota
                            .map(|q| format!(
                                " of {} ({} left)",
                                format_size(q),
                                format_size(q.saturating_sub(v.used_bytes))
                            ))
                            .unwrap_or_default()
                    );
                    println!("bound MAC:     {}", opt(&v.bound_mac));
                    if j["expired"] == json!(true) {
                        println!("expired:       yes");
                    }
                    println!("sessions:      {}", sessions.len());
                    for s in &sessions {
                        println!(
                            "  {} {} {} {} {}s in={} out={}{}",
                            s.nas_name,
                            s.acct_session_id,
                            s.state.as_str(),
                            opt(&s.mac),
                            s.session_time,
                            s.input_octets,
                            s.output_octets,
                            s.coa_result
                                .as_ref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            Ok(())
        }
        VoucherCommand::List {
            plan,
            batch,
            format,
        } => {
            let list: Vec<_> = store
                .list_vouchers(plan.as_deref(), batch.as_deref())
                .await?
                .into_iter()
                .filter(|v| scope.shows(v.tenant_id))
                .collect();
            let now = crate::server::unix_now();
            match format {
                ListFormat::Json => {
                    // The same fields as `voucher show`, which need the plan.
                    let plans: HashMap<String, Plan> = store
                        .list_plans()
                        .await?
                        .into_iter()
                        .map(|p| (p.name.clone(), p))
                        .collect();
                    print_json(&json!(list
                        .iter()
                        .map(|v| voucher_json(v, plans.get(&v.plan_name), now))
                        .collect::<Vec<_>>()))
                }
                ListFormat::Csv => {
                    println!("code,plan,state,batch,first_login_at,used_seconds,used_bytes");
                    for v in &list {
                        println!(
                            "{},{},{},{},{},{},{}",
                            csv_field(&v.code),
                            csv_field(&v.plan_name),
                            v.state.as_str(),
                            csv_field(v.batch.as_deref().unwrap_or("")),
                            v.first_login_at.map(|t| ts(Some(t))).unwrap_or_default(),
                            v.used_seconds,
                            v.used_bytes
                        );
                    }
                }
                ListFormat::Text => print_table(
                    &[
                        "CODE",
                        "PLAN",
                        "STATE",
                        "FIRST-LOGIN",
                        "USED-TIME",
                        "USED-DATA",
                        "MAC",
                        "BATCH",
                    ],
                    &list
                        .iter()
                        .map(|v| {
                            vec![
                                v.code.clone(),
                                v.plan_name.clone(),
                                v.state.as_str().into(),
                                ts(v.first_login_at),
                                format_duration(v.used_seconds),
                                format_size(v.used_bytes),
                                opt(&v.bound_mac),
                                opt(&v.batch),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            Ok(())
        }
        VoucherCommand::Revoke {
            code,
            no_disconnect,
        } => {
            store
                .revoke_voucher_with(scope.id, code, !no_disconnect)
                .await?;
            if *no_disconnect {
                println!("revoked voucher {code}; open sessions left running");
            } else {
                println!("revoked voucher {code}; the server ends its open sessions");
            }
            Ok(())
        }
        VoucherCommand::Set { code, plan } => {
            let queued = store.set_voucher_plan(scope.id, code, plan).await?;
            println!(
                "voucher {code} is now on plan {plan}; {queued} open session(s) will get the new limits by CoA"
            );
            Ok(())
        }
        VoucherCommand::Print(a) => super::print::run(store, scope, a).await,
    }
}

pub async fn session(
    store: Arc<dyn Store>,
    scope: &Scope,
    cmd: &SessionCommand,
) -> anyhow::Result<()> {
    match cmd {
        SessionCommand::List { open, format } => {
            let tenant_of: HashMap<i64, i64> = store
                .list_nas()
                .await?
                .into_iter()
                .map(|n| (n.id, n.tenant_id))
                .collect();
            let list: Vec<_> = store
                .list_sessions(*open)
                .await?
                .into_iter()
                .filter(|s| tenant_of.get(&s.nas_id).is_some_and(|t| scope.shows(*t)))
                .collect();
            match format {
                Format::Json => print_json(&json!(list)),
                Format::Text => print_table(
                    &[
                        "NAS",
                        "SESSION-ID",
                        "USER",
                        "MAC",
                        "IP",
                        "STATE",
                        "STARTED",
                        "TIME",
                        "IN",
                        "OUT",
                        "CAUSE",
                        "DISCONNECT-REQUESTED",
                        "COA",
                    ],
                    &list
                        .iter()
                        .map(|s| {
                            vec![
                                s.nas_name.clone(),
                                s.acct_session_id.clone(),
                                s.username.clone(),
                                opt(&s.mac),
                                opt(&s.framed_ip),
                                s.state.as_str().into(),
                                ts(s.started_at),
                                format_duration(s.session_time),
                                s.input_octets.to_string(),
                                s.output_octets.to_string(),
                                opt(&s.terminate_cause),
                                ts(s.disconnect_requested_at),
                                opt(&s.coa_result),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            Ok(())
        }
        SessionCommand::Disconnect { id, user } => {
            disconnect(store, scope.id, *id, user.as_deref()).await
        }
    }
}

/// `session disconnect`: send Disconnect-Request for each chosen session from
/// this process and print each answer. The outcome is recorded on the session.
async fn disconnect(
    store: Arc<dyn Store>,
    tenant: i64,
    id: Option<i64>,
    user: Option<&str>,
) -> anyhow::Result<()> {
    use crate::coa::{coa_target, session_ident, CoaClient, CoaKind, Outcome};
    let sessions = match (id, user) {
        (Some(id), _) => vec![store.get_session(id).await?],
        (None, Some(code)) => {
            let v = store.get_voucher(tenant, code).await?;
            store
                .list_sessions(true)
                .await?
                .into_iter()
                .filter(|s| s.voucher_id == Some(v.id) || s.username == code)
                .collect()
        }
        (None, None) => bail!("give --id or --user"),
    };
    if sessions.is_empty() {
        println!("no open session");
        return Ok(());
    }
    let nas: HashMap<i64, crate::model::Nas> = store
        .list_nas()
        .await?
        .into_iter()
        .map(|n| (n.id, n))
        .collect();
    let client = Arc::new(CoaClient::default());
    let mut tasks = tokio::task::JoinSet::new();
    for s in sessions {
        let Some(n) = nas.get(&s.nas_id).cloned() else {
            println!("session {} ({}): its NAS is gone", s.id, s.acct_session_id);
            continue;
        };
        let client = client.clone();
        tasks.spawn(async move {
            let Some(target) = coa_target(&n, None) else {
                return (s, n, None);
            };
            let ex = client
                .send(
                    target,
                    CoaKind::Disconnect,
                    &session_ident(&s),
                    &[],
                    &n.secret,
                )
                .await;
            (s, n, Some((target, ex)))
        });
    }
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        let (s, n, sent) = done?;
        let head = format!(
            "session {} (NAS {}, user {:?}, Acct-Session-Id {:?})",
            s.id, n.name, s.username, s.acct_session_id
        );
        let Some((target, ex)) = sent else {
            failed += 1;
            println!(
                "{head}: no CoA address (NAS {} is a network); set one with `nas set {} --coa-address IP`",
                n.name, n.name
            );
            continue;
        };
        let line = match &ex.outcome {
            Outcome::Ack => "ACK".to_string(),
            Outcome::Nak(_) => format!("NAK {}", ex.outcome.error_cause()),
            Outcome::Timeout => format!("no answer from {target} after {} tries", ex.tries),
            Outcome::Failed(why) => format!("not sent: {why}"),
        };
        if ex.outcome != Outcome::Ack {
            failed += 1;
        }
        println!("{head}: {line}");
        let now = crate::server::unix_now();
        store
            .finish_coa_request(
                None,
                s.id,
                CoaKind::Disconnect,
                &ex.outcome.describe(CoaKind::Disconnect),
                now,
            )
            .await?;
    }
    if failed > 0 {
        bail!("{failed} session(s) not disconnected");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_the_alphabet() {
        let c = random_code(32);
        assert_eq!(c.len(), 32);
        assert!(c.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_eq!(CODE_ALPHABET.len(), 32);
        for bad in [b'0', b'O', b'1', b'I'] {
            assert!(!CODE_ALPHABET.contains(&bad));
        }
    }
}
