//! Everything but the hot path: NAS, plans and vouchers (what the CLI and the
//! REST shim manage), session listing and closing, and the auth log. Plain
//! statements; a transaction only where one call writes more than once (a NAS
//! change and the generation bump the servers poll, a batch of vouchers).

use std::collections::HashMap;

use std::sync::LazyLock;

use sqlx::{PgConnection, PgPool};

use crate::model::{
    Nas, NewNas, NewPlan, NewVoucher, Plan, Secret, Session, Tenant, Timestamp, Voucher,
    VoucherState, DEFAULT_TENANT,
};
use crate::policy::accounting::counter_to_i64;
use crate::store::rows::{
    now, opt_u64_to_i64, sites_to_column, AuthEventRow, NasRow, PlanRow, SessionRow, VoucherRow,
    AUTH_EVENT_COLS, NAS_COLS, PLAN_COLS, SESSION_COLS, VOUCHER_COLS,
};
use crate::store::{AuthEvent, AuthEventFilter, RepeatedRejects, StoreError, StoreResult};

/// Map a unique-constraint violation to `Duplicate(what)`.
fn unique_or(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Duplicate(what()),
        _ => StoreError::Database(e),
    }
}

/// Tell running servers that the NAS table changed (they poll the generation).
async fn bump_nas_generation(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("UPDATE meta SET value = value + 1 WHERE key = 'nas_generation'")
        .execute(conn)
        .await?;
    Ok(())
}

// ---- NAS ----

pub(super) async fn add_nas(pool: &PgPool, nas: &NewNas) -> StoreResult<Nas> {
    if nas.name.trim().is_empty() {
        return Err(StoreError::Invalid("NAS name is empty".into()));
    }
    let created_at = now();
    let mut tx = pool.begin().await?;
    // Serialise NAS additions so two at once cannot both take one address.
    sqlx::query("LOCK TABLE nas IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let holders: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT name, identifier FROM nas WHERE address = $1 ORDER BY id")
            .bind(crate::model::address_text(
                &nas.address,
                nas.dynamic.as_ref(),
            ))
            .fetch_all(&mut *tx)
            .await?;
    crate::store::check_shared_address(
        &crate::model::address_text(&nas.address, nas.dynamic.as_ref()),
        nas.identifier.as_deref(),
        &holders,
    )?;
    tenant_exists(&mut tx, nas.tenant_id).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO nas (name, address, secret, require_message_authenticator, coa_port, site, \
         created_at, coa_address, identifier, tenant_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(&nas.name)
    .bind(crate::model::address_text(
        &nas.address,
        nas.dynamic.as_ref(),
    ))
    .bind(nas.secret.expose_str())
    .bind(nas.require_message_authenticator)
    .bind(i64::from(nas.coa_port))
    .bind(&nas.site)
    .bind(created_at)
    .bind(nas.coa_address.map(|a| a.to_string()))
    .bind(&nas.identifier)
    .bind(nas.tenant_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| unique_or(e, || format!("NAS {}", nas.name)))?;
    bump_nas_generation(&mut tx).await?;
    tx.commit().await?;
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

pub(super) async fn set_nas_identifier(
    pool: &PgPool,
    name: &str,
    identifier: Option<&str>,
) -> StoreResult<Nas> {
    let mut tx = pool.begin().await?;
    // Serialised with NAS additions, which check the same rule.
    sqlx::query("LOCK TABLE nas IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let address: Option<String> = sqlx::query_scalar("SELECT address FROM nas WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
    let address = address.ok_or_else(|| StoreError::NotFound(format!("NAS {name}")))?;
    let holders: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT name, identifier FROM nas WHERE address = $1 AND name <> $2 ORDER BY id",
    )
    .bind(&address)
    .bind(name)
    .fetch_all(&mut *tx)
    .await?;
    crate::store::check_shared_address(&address, identifier, &holders)?;
    let row: NasRow = sqlx::query_as(&format!(
        "UPDATE nas SET identifier = $2 WHERE name = $1 RETURNING {NAS_COLS}"
    ))
    .bind(name)
    .bind(identifier)
    .fetch_one(&mut *tx)
    .await?;
    bump_nas_generation(&mut tx).await?;
    tx.commit().await?;
    row.into_model()
}

pub(super) async fn list_nas(pool: &PgPool) -> StoreResult<Vec<Nas>> {
    let rows: Vec<NasRow> = sqlx::query_as(&format!("SELECT {NAS_COLS} FROM nas ORDER BY name"))
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(NasRow::into_model).collect()
}

pub(super) async fn remove_nas(pool: &PgPool, name: &str) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    let done = sqlx::query("DELETE FROM nas WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("NAS {name}")));
    }
    bump_nas_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn set_nas_secret(
    pool: &PgPool,
    name: &str,
    secret: &Secret,
    keep_previous_until: Option<Timestamp>,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    // The old secret moves to previous_secret in the same statement, so two
    // rotations in a row keep the one that routers may still be using.
    let done = sqlx::query(
        "UPDATE nas SET previous_secret = CASE WHEN $3::bigint IS NULL THEN NULL ELSE secret END, \
         previous_secret_until = $3, secret = $2 WHERE name = $1",
    )
    .bind(name)
    .bind(secret.expose_str())
    .bind(keep_previous_until)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("NAS {name}")));
    }
    bump_nas_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn nas_generation(pool: &PgPool) -> StoreResult<i64> {
    let generation: Option<i64> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'nas_generation'")
            .fetch_optional(pool)
            .await?;
    Ok(generation.unwrap_or(0))
}

// ---- plans ----

pub(super) async fn add_plan(pool: &PgPool, plan: &NewPlan) -> StoreResult<Plan> {
    if plan.name.trim().is_empty() {
        return Err(StoreError::Invalid("plan name is empty".into()));
    }
    // `NewPlan::default()` leaves shared_users at 0; the plan default is one device.
    let shared_users = plan.shared_users.max(1);
    let tenant_id = plan.tenant_id.unwrap_or(DEFAULT_TENANT);
    let created_at = now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO plans (name, time_quota, validity, expires_at, data_quota, rate_limit, \
         shared_users, mac_lock, idle_timeout, interim_interval, mikrotik_group, address_list, \
         price, created_at, after_data_rate_limit, tenant_id, sites) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         RETURNING id",
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
    .bind(&plan.after_data_rate_limit)
    .bind(tenant_id)
    .bind(sites_to_column(&plan.sites))
    .fetch_one(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::NotFound(format!("tenant id {tenant_id}"))
        }
        _ => unique_or(e, || format!("plan {}", plan.name)),
    })?;
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

pub(super) async fn list_plans(pool: &PgPool) -> StoreResult<Vec<Plan>> {
    let rows: Vec<PlanRow> =
        sqlx::query_as(&format!("SELECT {PLAN_COLS} FROM plans ORDER BY name"))
            .fetch_all(pool)
            .await?;
    rows.into_iter().map(PlanRow::into_model).collect()
}

pub(super) async fn get_plan(pool: &PgPool, name: &str) -> StoreResult<Plan> {
    let row: Option<PlanRow> =
        sqlx::query_as(&format!("SELECT {PLAN_COLS} FROM plans WHERE name = $1"))
            .bind(name)
            .fetch_optional(pool)
            .await?;
    match row {
        Some(row) => row.into_model(),
        None => Err(StoreError::NotFound(format!("plan {name}"))),
    }
}

// ---- vouchers ----

/// All or none: a duplicate code fails the whole call with `Duplicate(code)`.
pub(super) async fn add_vouchers(
    pool: &PgPool,
    vouchers: &[NewVoucher],
) -> StoreResult<Vec<Voucher>> {
    let created_at = now();
    let mut tx = pool.begin().await?;
    let mut plan_names: HashMap<i64, (String, i64)> = HashMap::new();
    let mut out = Vec::with_capacity(vouchers.len());
    for nv in vouchers {
        if nv.code.is_empty() {
            return Err(StoreError::Invalid("voucher code is empty".into()));
        }
        let (plan_name, tenant_id) = match plan_names.get(&nv.plan_id) {
            Some(p) => p.clone(),
            None => {
                let p: Option<(String, i64)> =
                    sqlx::query_as("SELECT name, tenant_id FROM plans WHERE id = $1")
                        .bind(nv.plan_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let p = p.ok_or_else(|| StoreError::NotFound(format!("plan id {}", nv.plan_id)))?;
                plan_names.insert(nv.plan_id, p.clone());
                p
            }
        };
        // The password defaults to the code: printed vouchers carry one string.
        let password = nv.password.clone().unwrap_or_else(|| nv.code.clone());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO vouchers (code, password, plan_id, site, state, batch, created_at, \
             tenant_id) VALUES ($1, $2, $3, $4, 'active', $5, $6, $7) RETURNING id",
        )
        .bind(&nv.code)
        .bind(&password)
        .bind(nv.plan_id)
        .bind(&nv.site)
        .bind(&nv.batch)
        .bind(created_at)
        .bind(tenant_id)
        .fetch_one(&mut *tx)
        .await
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
    tx.commit().await?;
    Ok(out)
}

pub(super) async fn get_voucher(pool: &PgPool, tenant_id: i64, code: &str) -> StoreResult<Voucher> {
    let row: Option<VoucherRow> = sqlx::query_as(&format!(
        "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
         WHERE v.tenant_id = $1 AND v.code = $2"
    ))
    .bind(tenant_id)
    .bind(code)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => row.into_model(),
        None => Err(StoreError::NotFound(format!("voucher {code}"))),
    }
}

pub(super) async fn list_vouchers(
    pool: &PgPool,
    plan: Option<&str>,
    batch: Option<&str>,
) -> StoreResult<Vec<Voucher>> {
    if let Some(plan) = plan {
        // A misspelt plan name is an error, not an empty list.
        get_plan(pool, plan).await?;
    }
    let rows: Vec<VoucherRow> = sqlx::query_as(&format!(
        "SELECT {VOUCHER_COLS} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
         WHERE ($1::text IS NULL OR p.name = $1) AND ($2::text IS NULL OR v.batch = $2) \
         ORDER BY v.id"
    ))
    .bind(plan)
    .bind(batch)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(VoucherRow::into_model).collect()
}

// ---- sessions ----

/// Close sessions of `nas_id`'s `router` (rows stored before routers were told
/// apart count as every router's) with `cause`: with `keep_prefix`, the open
/// ones whose Acct-Session-Id does not start with it (a NAS reboot); with
/// `None`, every live one, open or authorized (Accounting-On/Off). Returns how
/// many. Runs on `conn`, so that accounting can close inside its own transaction.
pub(super) async fn close_nas_sessions(
    conn: &mut PgConnection,
    nas_id: i64,
    router: &str,
    keep_prefix: Option<&str>,
    cause: &str,
    now: Timestamp,
) -> StoreResult<u64> {
    // With a prefix (reboot detection) only open sessions are closed: authorized
    // rows may carry server-made ids and expire on their own. substr/length
    // rather than LIKE: LIKE would treat `_` and `%` in a session id as wildcards.
    // The sessions that had started get `session.stopped` in the same statement.
    static CLOSE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH closed AS (UPDATE sessions SET state = 'closed', stopped_at = $3, \
             terminate_cause = $4 WHERE nas_id = $1 AND state IN ('open', 'authorized') \
             AND router IN ($5, '') \
             AND ($2::text IS NULL \
                  OR (state = 'open' AND substr(acct_session_id, 1, length($2)) <> $2)) \
             RETURNING *), {} SELECT count(*) FROM closed",
            super::events::stopped_events_cte("stopped", "closed", "$3")
        )
    });
    let (n,): (i64,) = sqlx::query_as(&CLOSE)
        .bind(nas_id)
        .bind(keep_prefix)
        .bind(now)
        .bind(cause)
        .bind(router)
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Close open sessions with no accounting for 2 × interim interval + `grace`
/// (`default_interim` when the session has none), and authorized sessions older
/// than `authorized_ttl` that never started. Returns how many were closed.
pub(super) async fn close_stale_sessions(
    pool: &PgPool,
    now: Timestamp,
    default_interim: u64,
    grace: u64,
    authorized_ttl: u64,
) -> StoreResult<u64> {
    let mut tx = pool.begin().await?;
    // The sessions closed get `session.stopped` in the same statement.
    static STALE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH closed AS (UPDATE sessions SET state = 'closed', stopped_at = $1, \
             terminate_cause = 'stale' \
             WHERE state = 'open' AND updated_at + 2 * COALESCE(interim_interval, $2) + $3 < $1 \
             RETURNING *), {} SELECT count(*) FROM closed",
            super::events::stopped_events_cte("stopped", "closed", "$1")
        )
    });
    let (stale,): (i64,) = sqlx::query_as(&STALE)
        .bind(now)
        .bind(counter_to_i64(default_interim))
        .bind(counter_to_i64(grace))
        .fetch_one(&mut *tx)
        .await?;
    let stale = u64::try_from(stale).unwrap_or(0);
    // Accepted but never started (the user walked away, or the hotspot does no
    // accounting): closed rather than deleted, so that `session list` still
    // shows the login; a late Start reopens the row.
    let unstarted = sqlx::query(
        "UPDATE sessions SET state = 'closed', stopped_at = $1, terminate_cause = 'not-started' \
         WHERE state = 'authorized' AND COALESCE(authorized_at, updated_at) <= $2",
    )
    .bind(now)
    .bind(now.saturating_sub(counter_to_i64(authorized_ttl)))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(stale + unstarted.rows_affected())
}

pub(super) async fn list_sessions(pool: &PgPool, open_only: bool) -> StoreResult<Vec<Session>> {
    let filter = if open_only {
        "WHERE s.state = 'open'"
    } else {
        ""
    };
    let rows: Vec<SessionRow> = sqlx::query_as(&format!(
        "SELECT {SESSION_COLS} FROM sessions s JOIN nas n ON n.id = s.nas_id {filter} \
         ORDER BY s.id DESC"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(SessionRow::into_model).collect()
}

pub(super) async fn open_sessions_by_nas(pool: &PgPool) -> StoreResult<Vec<(String, i64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT n.name, COUNT(s.id) FROM nas n \
         LEFT JOIN sessions s ON s.nas_id = n.id AND s.state = 'open' \
         GROUP BY n.id, n.name ORDER BY n.name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

// ---- auth log ----

pub(super) async fn auth_events(
    pool: &PgPool,
    filter: &AuthEventFilter,
) -> StoreResult<Vec<AuthEvent>> {
    let rows: Vec<AuthEventRow> = sqlx::query_as(&format!(
        "SELECT {AUTH_EVENT_COLS} FROM auth_events \
         WHERE ($1::text IS NULL OR username = $1) AND ($2::text IS NULL OR nas_name = $2) \
         AND ($3::bigint IS NULL OR at >= $3) ORDER BY at DESC, id DESC LIMIT $4"
    ))
    .bind(&filter.username)
    .bind(&filter.nas_name)
    .bind(filter.since)
    .bind(i64::from(filter.limit.unwrap_or(100)))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(AuthEventRow::into_model).collect())
}

/// Delete auth events older than `before`. Returns how many.
pub(super) async fn prune_auth_events(pool: &PgPool, before: Timestamp) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM auth_events WHERE at < $1")
        .bind(before)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

pub(super) async fn log_repeated_rejects(
    pool: &PgPool,
    rows: &[RepeatedRejects],
) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for r in rows {
        sqlx::query(
            "INSERT INTO auth_events (at, nas_id, nas_name, username, mac, result, reason, \
             repeats, last_at) VALUES ($1, $2, $3, $4, $5, 'reject', $6, $7, $8)",
        )
        .bind(r.first)
        .bind(r.nas_id)
        .bind(&r.nas_name)
        .bind(&r.username)
        .bind(&r.mac)
        .bind(r.reason.label())
        .bind(i64::try_from(r.count).unwrap_or(i64::MAX))
        .bind(r.last)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

// ---- tenants ----

async fn tenant_exists(conn: &mut PgConnection, id: i64) -> StoreResult<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("tenant id {id}")))
}

pub(super) async fn add_tenant(pool: &PgPool, name: &str) -> StoreResult<Tenant> {
    crate::store::check_tenant_name(name)?;
    let created_at = now();
    let id: i64 =
        sqlx::query_scalar("INSERT INTO tenants (name, created_at) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(created_at)
            .fetch_one(pool)
            .await
            .map_err(|e| unique_or(e, || format!("tenant {name}")))?;
    Ok(Tenant {
        id,
        name: name.to_owned(),
        created_at,
    })
}

pub(super) async fn list_tenants(pool: &PgPool) -> StoreResult<Vec<Tenant>> {
    let rows: Vec<(i64, String, i64)> =
        sqlx::query_as("SELECT id, name, created_at FROM tenants ORDER BY id")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, created_at)| Tenant {
            id,
            name,
            created_at,
        })
        .collect())
}
