//! NAS, plan, voucher and session commands.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use serde_json::json;

use super::output::{csv_field, opt, print_table, ts};
use super::{
    Format, ListFormat, NasCommand, PlanCommand, SessionCommand, TenantCommand, TenantScope,
    VoucherCommand,
};
use crate::manage::nas::{
    check_identifier, check_secret, nas_json, new_nas, new_radsec_nas, NasAdd,
};
use crate::manage::plans::{changed_plan, new_plan, plan_json};
use crate::manage::vouchers::{check_code, generate, valid_until, voucher_json, Generate};
use crate::model::{CertIdentity, NewVoucher, Plan, Secret, DEFAULT_TENANT};
use crate::store::Store;
use crate::units::{format_duration, format_size, parse_duration};

fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialize")
    );
}

pub use crate::manage::Scope;

/// The tenant a command works in: `--tenant`, else `default`.
pub async fn resolve_scope(store: &dyn Store, scope: &TenantScope) -> anyhow::Result<Scope> {
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
            let add = |address: &str, secret: &str| NasAdd {
                name: name.clone(),
                address: address.to_owned(),
                secret: secret.to_owned(),
                require_message_authenticator: !no_require_message_authenticator,
                coa_port: *coa_port,
                coa_address: *coa_address,
                site: site.clone(),
                identifier: identifier.clone(),
            };
            let new = match (radsec, address, secret) {
                (Some(_), _, Some(_)) => bail!("a RadSec NAS has no --secret: RadSec's shared secret is fixed to `radsec` (RFC 6614), the client certificate identifies the router"),
                (Some(identity), _, None) => new_radsec_nas(&add("", ""), identity, scope.id)?,
                (None, Some(address), Some(secret)) => new_nas(&add(address, secret), scope.id)?,
                (None, Some(_), None) => bail!("--secret is required (or RRNET_NAS_SECRET)"),
                (None, None, _) => bail!("give --address, --radsec-cn or --radsec-fingerprint"),
            };
            let nas = store.add_nas(&new).await?;
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
                    .map(|n| nas_json(n, &tenants))
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
            check_secret(secret)?;
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
                check_identifier(id)?;
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
            let spec = Generate {
                count: *count,
                length: *length,
                prefix: prefix.clone(),
                site: site.clone(),
                batch: batch.clone(),
            };
            spec.check()?;
            let plan = store.get_plan(plan).await?;
            scope.voucher_tenant(&plan)?;
            let created = generate(&*store, &plan, &spec)
                .await
                .context("storing generated vouchers")?;
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
