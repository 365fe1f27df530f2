//! NAS, plans, vouchers, sessions and the auth log on SQLite: what the CLI,
//! housekeeping and the listings need. Plain statements; none is on a hot path.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::model::{
    Nas, NewNas, NewPlan, NewVoucher, Plan, Secret, Session, Tenant, Timestamp, Voucher,
    VoucherState, DEFAULT_TENANT,
};
use crate::store::rows::{
    now, opt_u64_to_i64, sites_to_column, AuthEventRow, NasRow, PlanRow, SessionRow, VoucherRow,
    AUTH_EVENT_COLS, NAS_COLS, PLAN_COLS, SESSION_COLS, VOUCHER_COLS,
};
use crate::store::{AuthEvent, AuthEventFilter, RepeatedRejects, StoreError, StoreResult};

/// Map a unique-constraint violation to `Duplicate(what)`.
fn unique_or(e: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Duplicate(what())
        }
        _ => StoreError::Sqlite(e),
    }
}

fn nas_row(r: &Row<'_>) -> rusqlite::Result<NasRow> {
    Ok(NasRow {
        id: r.get(0)?,
        name: r.get(1)?,
        address: r.get(2)?,
        secret: r.get(3)?,
        require_message_authenticator: r.get(4)?,
        coa_port: r.get(5)?,
        site: r.get(6)?,
        created_at: r.get(7)?,
        previous_secret: r.get(8)?,
        previous_secret_until: r.get(9)?,
        coa_address: r.get(10)?,
        identifier: r.get(11)?,
        tenant_id: r.get(12)?,
    })
}

fn plan_row(r: &Row<'_>) -> rusqlite::Result<PlanRow> {
    Ok(PlanRow {
        id: r.get(0)?,
        name: r.get(1)?,
        time_quota: r.get(2)?,
        validity: r.get(3)?,
        expires_at: r.get(4)?,
        data_quota: r.get(5)?,
        rate_limit: r.get(6)?,
        shared_users: r.get(7)?,
        mac_lock: r.get(8)?,
        idle_timeout: r.get(9)?,
        interim_interval: r.get(10)?,
        mikrotik_group: r.get(11)?,
        address_list: r.get(12)?,
        price: r.get(13)?,
        created_at: r.get(14)?,
        after_data_rate_limit: r.get(15)?,
        tenant_id: r.get(16)?,
        sites: r.get(17)?,
    })
}

pub(super) fn voucher_row(r: &Row<'_>) -> rusqlite::Result<VoucherRow> {
    Ok(VoucherRow {
        id: r.get(0)?,
        code: r.get(1)?,
        password: r.get(2)?,
        plan_id: r.get(3)?,
        plan_name: r.get(4)?,
        site: r.get(5)?,
        state: r.get(6)?,
        first_login_at: r.get(7)?,
        valid_until: r.get(8)?,
        used_seconds: r.get(9)?,
        used_bytes: r.get(10)?,
        bound_mac: r.get(11)?,
        batch: r.get(12)?,
        created_at: r.get(13)?,
        tenant_id: r.get(14)?,
    })
}

pub(super) fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        nas_id: r.get(1)?,
        nas_name: r.get(2)?,
        acct_session_id: r.get(3)?,
        username: r.get(4)?,
        voucher_id: r.get(5)?,
        mac: r.get(6)?,
        framed_ip: r.get(7)?,
        state: r.get(8)?,
        authorized_at: r.get(9)?,
        started_at: r.get(10)?,
        updated_at: r.get(11)?,
        stopped_at: r.get(12)?,
        session_time: r.get(13)?,
        input_octets: r.get(14)?,
        output_octets: r.get(15)?,
        terminate_cause: r.get(16)?,
        interim_interval: r.get(17)?,
        disconnect_requested_at: r.get(18)?,
        coa_result: r.get(19)?,
        router: r.get(20)?,
    })
}

fn event_row(r: &Row<'_>) -> rusqlite::Result<AuthEventRow> {
    Ok(AuthEventRow {
        id: r.get(0)?,
        at: r.get(1)?,
        nas_id: r.get(2)?,
        nas_name: r.get(3)?,
        username: r.get(4)?,
        mac: r.get(5)?,
        result: r.get(6)?,
        reason: r.get(7)?,
        repeats: r.get(8)?,
        last_at: r.get(9)?,
    })
}

fn bump_nas_generation(c: &Connection) -> StoreResult<()> {
    c.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'nas_generation'",
        [],
    )?;
    Ok(())
}

/// Vouchers, plans or sessions were changed by an admin command: a server
/// deciding from memory (possibly in another process) reads them again.
fn bump_admin_generation(c: &Connection) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('admin_generation', 1) \
         ON CONFLICT (key) DO UPDATE SET value = value + 1",
    )?
    .execute([])?;
    Ok(())
}

/// The count of admin changes to vouchers, plans and sessions so far.
pub fn admin_generation(c: &Connection) -> StoreResult<i64> {
    let g: Option<i64> = c
        .prepare_cached("SELECT value FROM meta WHERE key = 'admin_generation'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(g.unwrap_or(0))
}

pub fn nas_generation(c: &mut Connection) -> StoreResult<i64> {
    let g: Option<i64> = c
        .prepare_cached("SELECT value FROM meta WHERE key = 'nas_generation'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(g.unwrap_or(0))
}

pub fn add_nas(c: &mut Connection, nas: &NewNas) -> StoreResult<Nas> {
    if nas.name.trim().is_empty() {
        return Err(StoreError::Invalid("NAS name is empty".into()));
    }
    let created_at = now();
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let holders = {
        let mut stmt =
            tx.prepare_cached("SELECT name, identifier FROM nas WHERE address = ?1 ORDER BY id")?;
        let rows = stmt.query_map(
            [crate::model::address_text(
                &nas.address,
                nas.dynamic.as_ref(),
            )],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        rows.collect::<rusqlite::Result<Vec<(String, Option<String>)>>>()?
    };
    crate::store::check_shared_address(
        &crate::model::address_text(&nas.address, nas.dynamic.as_ref()),
        nas.identifier.as_deref(),
        &holders,
    )?;
    tenant_exists(&tx, nas.tenant_id)?;
    let id: i64 = tx
        .query_row(
            "INSERT INTO nas (name, address, secret, require_message_authenticator, coa_port, \
             site, created_at, coa_address, identifier, tenant_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
            params![
                nas.name,
                crate::model::address_text(&nas.address, nas.dynamic.as_ref()),
                nas.secret.expose_str(),
                nas.require_message_authenticator,
                i64::from(nas.coa_port),
                nas.site,
                created_at,
                nas.coa_address.map(|a| a.to_string()),
                nas.identifier,
                nas.tenant_id,
            ],
            |r| r.get(0),
        )
        .map_err(|e| unique_or(e, || format!("NAS {}", nas.name)))?;
    bump_nas_generation(&tx)?;
    tx.commit()?;
    Ok(Nas {
        id,
        name: nas.name.clone(),
        address: nas.address,
        dynamic: nas.dynamic.clone(),
        secret: nas.secret.clone(),
        require_message_authenticator: nas.require_message_authenticator,
        coa_port: nas.coa_port,
        coa_address: nas.coa_address,
        site: nas.site.clone(),
        identifier: nas.identifier.clone(),
        tenant_id: nas.tenant_id,
        created_at,
        previous_secret: None,
        previous_secret_until: None,
    })
}

pub fn list_nas(c: &mut Connection) -> StoreResult<Vec<Nas>> {
    let mut stmt = c.prepare_cached(&format!("SELECT {NAS_COLS} FROM nas ORDER BY name"))?;
    let rows = stmt.query_map([], nas_row)?;
    rows.map(|r| r?.into_model()).collect()
}

pub fn remove_nas(c: &mut Connection, name: &str) -> StoreResult<()> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if tx.execute("DELETE FROM nas WHERE name = ?1", [name])? == 0 {
        return Err(StoreError::NotFound(format!("NAS {name}")));
    }
    bump_nas_generation(&tx)?;
    bump_admin_generation(&tx)?;
    tx.commit()?;
    Ok(())
}

pub fn set_nas_secret(
    c: &mut Connection,
    name: &str,
    secret: &Secret,
    keep_previous_until: Option<Timestamp>,
) -> StoreResult<()> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The old secret moves to previous_secret in the same statement, so two
    // rotations in a row keep the one routers may still be using.
    let n = tx.execute(
        "UPDATE nas SET previous_secret = CASE WHEN ?3 IS NULL THEN NULL ELSE secret END, \
         previous_secret_until = ?3, secret = ?2 WHERE name = ?1",
        params![name, secret.expose_str(), keep_previous_until],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("NAS {name}")));
    }
    bump_nas_generation(&tx)?;
    tx.commit()?;
    Ok(())
}

pub fn add_plan(c: &mut Connection, plan: &NewPlan) -> StoreResult<Plan> {
    if plan.name.trim().is_empty() {
        return Err(StoreError::Invalid("plan name is empty".into()));
    }
    // `NewPlan::default()` leaves shared_users at 0; the plan default is one device.
    let shared_users = plan.shared_users.max(1);
    let tenant_id = plan.tenant_id.unwrap_or(DEFAULT_TENANT);
    let created_at = now();
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tenant_exists(&tx, tenant_id)?;
    let id: i64 = tx
        .query_row(
            "INSERT INTO plans (name, time_quota, validity, expires_at, data_quota, rate_limit, \
             shared_users, mac_lock, idle_timeout, interim_interval, mikrotik_group, address_list, \
             price, created_at, after_data_rate_limit, tenant_id, sites) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
             RETURNING id",
            params![
                plan.name,
                opt_u64_to_i64(plan.time_quota, "time quota")?,
                opt_u64_to_i64(plan.validity, "validity")?,
                plan.expires_at,
                opt_u64_to_i64(plan.data_quota, "data quota")?,
                plan.rate_limit,
                i64::from(shared_users),
                plan.mac_lock,
                plan.idle_timeout.map(i64::from),
                plan.interim_interval.map(i64::from),
                plan.mikrotik_group,
                plan.address_list,
                plan.price,
                created_at,
                plan.after_data_rate_limit,
                tenant_id,
                sites_to_column(&plan.sites),
            ],
            |r| r.get(0),
        )
        .map_err(|e| unique_or(e, || format!("plan {}", plan.name)))?;
    bump_admin_generation(&tx)?;
    tx.commit()?;
    Ok(Plan {
        id,
        tenant_id,
        sites: plan.sites.clone(),
        name: plan.name.clone(),
        time_quota: plan.time_quota,
        validity: plan.validity,
        expires_at: plan.expires_at,
        data_quota: plan.data_quota,
        rate_limit: plan.rate_limit.clone(),
        after_data_rate_limit: plan.after_data_rate_limit.clone(),
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

pub fn list_plans(c: &mut Connection) -> StoreResult<Vec<Plan>> {
    let mut stmt = c.prepare_cached(&format!("SELECT {PLAN_COLS} FROM plans ORDER BY name"))?;
    let rows = stmt.query_map([], plan_row)?;
    rows.map(|r| r?.into_model()).collect()
}

pub fn get_plan(c: &mut Connection, name: &str) -> StoreResult<Plan> {
    c.prepare_cached(&format!("SELECT {PLAN_COLS} FROM plans WHERE name = ?1"))?
        .query_row([name], plan_row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("plan {name}")))?
        .into_model()
}

/// Insert all or none; a duplicate code fails the whole call with `Duplicate`.
pub fn add_vouchers(c: &mut Connection, vouchers: &[NewVoucher]) -> StoreResult<Vec<Voucher>> {
    let created_at = now();
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut plan_names: HashMap<i64, (String, i64)> = HashMap::new();
    let mut out = Vec::with_capacity(vouchers.len());
    {
        let mut plan_stmt = tx.prepare_cached("SELECT name, tenant_id FROM plans WHERE id = ?1")?;
        // A voucher belongs to its plan's tenant.
        let mut insert = tx.prepare_cached(
            "INSERT INTO vouchers (code, password, plan_id, site, state, batch, created_at, \
             tenant_id) VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7) RETURNING id",
        )?;
        for nv in vouchers {
            if nv.code.is_empty() {
                return Err(StoreError::Invalid("voucher code is empty".into()));
            }
            let (plan_name, tenant_id) = match plan_names.get(&nv.plan_id) {
                Some(p) => p.clone(),
                None => {
                    let p: (String, i64) = plan_stmt
                        .query_row([nv.plan_id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?
                        .ok_or_else(|| StoreError::NotFound(format!("plan id {}", nv.plan_id)))?;
                    plan_names.insert(nv.plan_id, p.clone());
                    p
                }
            };
            // The password defaults to the code: printed vouchers carry one string.
            let password = nv.password.clone().unwrap_or_else(|| nv.code.clone());
            let id: i64 = insert
                .query_row(
                    params![
                        nv.code, password, nv.plan_id, nv.site, nv.batch, created_at, tenant_id
                    ],
                    |r| r.get(0),
                )
                .map_err(|e| unique_or(e, || format!("voucher {}", nv.code)))?;
            out.push(Voucher {
                id,
                tenant_id,
                code: nv.code.clone(),
                password,
                plan_id: nv.plan_id,
                plan_name,
                site: nv.site.clone(),
                state: VoucherState::Active,
                first_login_at: None,
                valid_until: None,
                used_seconds: 0,
                used_bytes: 0,
                bound_mac: None,
                batch: nv.batch.clone(),
                created_at,
            });
        }
    }
    bump_admin_generation(&tx)?;
    tx.commit()?;
    Ok(out)
}

fn voucher_by_code(c: &Connection, tenant_id: i64, code: &str) -> StoreResult<Voucher> {
    c.prepare_cached(&format!(
        "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
         WHERE v.tenant_id = ?1 AND v.code = ?2"
    ))?
    .query_row(params![tenant_id, code], voucher_row)
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("voucher {code}")))?
    .into_model()
}

pub fn get_voucher(c: &mut Connection, tenant_id: i64, code: &str) -> StoreResult<Voucher> {
    voucher_by_code(c, tenant_id, code)
}

pub fn list_vouchers(
    c: &mut Connection,
    plan: Option<&str>,
    batch: Option<&str>,
) -> StoreResult<Vec<Voucher>> {
    if let Some(plan) = plan {
        // A misspelt plan name is an error, not an empty list.
        get_plan(c, plan)?;
    }
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
         WHERE (?1 IS NULL OR p.name = ?1) AND (?2 IS NULL OR v.batch = ?2) ORDER BY v.id"
    ))?;
    let rows = stmt.query_map(params![plan, batch], voucher_row)?;
    rows.map(|r| r?.into_model()).collect()
}

#[cfg(test)]
pub fn revoke_voucher(c: &mut Connection, code: &str) -> StoreResult<Voucher> {
    revoke_voucher_with(c, DEFAULT_TENANT, code, true)
}

/// Revoke; with `disconnect`, queue a Disconnect-Request for each open
/// session of the voucher in the same transaction.
pub fn revoke_voucher_with(
    c: &mut Connection,
    tenant_id: i64,
    code: &str,
    disconnect: bool,
) -> StoreResult<Voucher> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Revoking a revoked voucher again changes nothing and makes no event.
    let was_active = tx.execute(
        "UPDATE vouchers SET state = 'revoked' WHERE tenant_id = ?1 AND code = ?2 \
         AND state <> 'revoked'",
        params![tenant_id, code],
    )? > 0;
    let v = voucher_by_code(&tx, tenant_id, code)?;
    if was_active {
        super::events::voucher_event(&tx, crate::events::EventType::VoucherRevoked, v.id, now())?;
    }
    if disconnect {
        super::coa::queue(
            &tx,
            super::coa::Sessions::OfVoucher(v.id),
            crate::coa::CoaKind::Disconnect,
            "revoked",
            now(),
        )?;
    }
    bump_admin_generation(&tx)?;
    tx.commit()?;
    Ok(v)
}

pub fn get_voucher_by_id(c: &mut Connection, id: i64) -> StoreResult<Voucher> {
    c.prepare_cached(&format!(
        "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id WHERE v.id = ?1"
    ))?
    .query_row([id], voucher_row)
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("voucher id {id}")))?
    .into_model()
}

pub fn get_session(c: &mut Connection, id: i64) -> StoreResult<Session> {
    c.prepare_cached(&format!(
        "SELECT {SESSION_COLS} FROM sessions s JOIN nas n ON n.id = s.nas_id WHERE s.id = ?1"
    ))?
    .query_row([id], session_row)
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("session {id}")))?
    .into_model()
}

pub fn set_nas_coa(
    c: &mut Connection,
    name: &str,
    coa_port: Option<u16>,
    coa_address: Option<Option<std::net::IpAddr>>,
) -> StoreResult<Nas> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE nas SET coa_port = COALESCE(?2, coa_port),          coa_address = CASE WHEN ?3 THEN ?4 ELSE coa_address END WHERE name = ?1",
        params![
            name,
            coa_port.map(i64::from),
            coa_address.is_some(),
            coa_address.flatten().map(|a| a.to_string())
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("NAS {name}")));
    }
    bump_nas_generation(&tx)?;
    let nas = tx
        .query_row(
            &format!("SELECT {NAS_COLS} FROM nas WHERE name = ?1"),
            [name],
            nas_row,
        )?
        .into_model()?;
    tx.commit()?;
    Ok(nas)
}

pub fn set_nas_identifier(
    c: &mut Connection,
    name: &str,
    identifier: Option<&str>,
) -> StoreResult<Nas> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let address: String = tx
        .query_row("SELECT address FROM nas WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("NAS {name}")))?;
    let holders = {
        let mut stmt = tx.prepare_cached(
            "SELECT name, identifier FROM nas WHERE address = ?1 AND name <> ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![address, name], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<Vec<(String, Option<String>)>>>()?
    };
    crate::store::check_shared_address(&address, identifier, &holders)?;
    tx.execute(
        "UPDATE nas SET identifier = ?2 WHERE name = ?1",
        params![name, identifier],
    )?;
    bump_nas_generation(&tx)?;
    let nas = tx
        .query_row(
            &format!("SELECT {NAS_COLS} FROM nas WHERE name = ?1"),
            [name],
            nas_row,
        )?
        .into_model()?;
    tx.commit()?;
    Ok(nas)
}

/// Replace a plan's settings and queue a CoA-Request for the open sessions
/// of its vouchers.
pub fn update_plan(c: &mut Connection, plan: &Plan) -> StoreResult<u64> {
    if plan.name.trim().is_empty() {
        return Err(StoreError::Invalid("plan name is empty".into()));
    }
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx
        .execute(
            "UPDATE plans SET name = ?2, time_quota = ?3, validity = ?4, expires_at = ?5,              data_quota = ?6, rate_limit = ?7, shared_users = ?8, mac_lock = ?9,              idle_timeout = ?10, interim_interval = ?11, mikrotik_group = ?12,              address_list = ?13, price = ?14, after_data_rate_limit = ?15, sites = ?16 WHERE id = ?1",
            params![
                plan.id,
                plan.name,
                opt_u64_to_i64(plan.time_quota, "time quota")?,
                opt_u64_to_i64(plan.validity, "validity")?,
                plan.expires_at,
                opt_u64_to_i64(plan.data_quota, "data quota")?,
                plan.rate_limit,
                i64::from(plan.shared_users.max(1)),
                plan.mac_lock,
                plan.idle_timeout.map(i64::from),
                plan.interim_interval.map(i64::from),
                plan.mikrotik_group,
                plan.address_list,
                plan.price,
                plan.after_data_rate_limit,
                sites_to_column(&plan.sites),
            ],
        )
        .map_err(|e| unique_or(e, || format!("plan {}", plan.name)))?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("plan {}", plan.name)));
    }
    let queued = super::coa::queue(
        &tx,
        super::coa::Sessions::OfPlan(plan.id),
        crate::coa::CoaKind::Coa,
        "plan_changed",
        now(),
    )?;
    bump_admin_generation(&tx)?;
    tx.commit()?;
    Ok(queued)
}

/// Move a voucher to another plan and queue a CoA-Request for its open sessions.
pub fn set_voucher_plan(
    c: &mut Connection,
    tenant_id: i64,
    code: &str,
    plan: &str,
) -> StoreResult<u64> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (plan_id, plan_tenant): (i64, i64) = tx
        .query_row(
            "SELECT id, tenant_id FROM plans WHERE name = ?1",
            [plan],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("plan {plan}")))?;
    let v = voucher_by_code(&tx, tenant_id, code)?;
    if plan_tenant != v.tenant_id {
        return Err(crate::store::other_tenant_plan(plan));
    }
    tx.execute(
        "UPDATE vouchers SET plan_id = ?2 WHERE id = ?1",
        params![v.id, plan_id],
    )?;
    let queued = super::coa::queue(
        &tx,
        super::coa::Sessions::OfVoucher(v.id),
        crate::coa::CoaKind::Coa,
        "plan_changed",
        now(),
    )?;
    bump_admin_generation(&tx)?;
    tx.commit()?;
    Ok(queued)
}

pub fn list_sessions(c: &mut Connection, open_only: bool) -> StoreResult<Vec<Session>> {
    let filter = if open_only {
        "WHERE s.state = 'open'"
    } else {
        ""
    };
    let mut stmt = c.prepare(&format!(
        "SELECT {SESSION_COLS} FROM sessions s JOIN nas n ON n.id = s.nas_id {filter} ORDER BY s.id DESC"
    ))?;
    let rows = stmt.query_map([], session_row)?;
    rows.map(|r| r?.into_model()).collect()
}

pub fn open_sessions_by_nas(c: &mut Connection) -> StoreResult<Vec<(String, i64)>> {
    let mut stmt = c.prepare_cached(
        "SELECT n.name, COUNT(s.id) FROM nas n \
         LEFT JOIN sessions s ON s.nas_id = n.id AND s.state = 'open' \
         GROUP BY n.id, n.name ORDER BY n.name",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn auth_events(c: &mut Connection, filter: &AuthEventFilter) -> StoreResult<Vec<AuthEvent>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {AUTH_EVENT_COLS} FROM auth_events \
         WHERE (?1 IS NULL OR username = ?1) AND (?2 IS NULL OR nas_name = ?2) \
         AND (?3 IS NULL OR at >= ?3) ORDER BY at DESC, id DESC LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![
            filter.username,
            filter.nas_name,
            filter.since,
            i64::from(filter.limit.unwrap_or(100))
        ],
        event_row,
    )?;
    rows.map(|r| Ok(r?.into_model())).collect()
}

pub fn prune_auth_events(c: &mut Connection, before: Timestamp) -> StoreResult<u64> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute("DELETE FROM auth_events WHERE at < ?1", [before])?;
    tx.commit()?;
    Ok(n as u64)
}

pub fn log_repeated_rejects(c: &mut Connection, rows: &[RepeatedRejects]) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO auth_events (at, nas_id, nas_name, username, mac, result, reason, \
             repeats, last_at) VALUES (?1, ?2, ?3, ?4, ?5, 'reject', ?6, ?7, ?8)",
        )?;
        for r in rows {
            stmt.execute(params![
                r.first,
                r.nas_id,
                r.nas_name,
                r.username,
                r.mac,
                r.reason.label(),
                i64::try_from(r.count).unwrap_or(i64::MAX),
                r.last
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn tenant_exists(c: &Connection, id: i64) -> StoreResult<()> {
    let found: Option<i64> = c
        .prepare_cached("SELECT id FROM tenants WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("tenant id {id}")))
}

pub fn add_tenant(c: &mut Connection, name: &str) -> StoreResult<Tenant> {
    crate::store::check_tenant_name(name)?;
    let created_at = now();
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id: i64 = tx
        .query_row(
            "INSERT INTO tenants (name, created_at) VALUES (?1, ?2) RETURNING id",
            params![name, created_at],
            |r| r.get(0),
        )
        .map_err(|e| unique_or(e, || format!("tenant {name}")))?;
    tx.commit()?;
    Ok(Tenant {
        id,
        name: name.to_owned(),
        created_at,
    })
}

pub fn list_tenants(c: &mut Connection) -> StoreResult<Vec<Tenant>> {
    let mut stmt = c.prepare_cached("SELECT id, name, created_at FROM tenants ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        Ok(Tenant {
            id: r.get(0)?,
            name: r.get(1)?,
            created_at: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
