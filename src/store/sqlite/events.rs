//! Events and webhooks on SQLite: event rows written inside the transaction of
//! the change (the callers pass their connection), and the webhook tables the
//! CLI and the delivery worker use. See `crate::events`.

use std::sync::LazyLock;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::events::{
    self, Delivery, DeliveryFilter, DeliveryJob, DeliveryOutcome, Dialect, EventCursor,
    EventRecord, EventType, NewWebhook, Webhook,
};
use crate::model::Timestamp;
use crate::store::{StoreError, StoreResult};

static VOUCHER_EVENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO events (tenant_id, type, created_at, object) \
         SELECT v.tenant_id, ?1, ?2, {} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
         JOIN tenants t ON t.id = v.tenant_id WHERE v.id = ?3",
        events::voucher_object_sql(Dialect::Sqlite)
    )
});

static SESSION_EVENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO events (tenant_id, type, created_at, object) \
         SELECT n.tenant_id, ?1, ?2, {} FROM sessions s JOIN nas n ON n.id = s.nas_id \
         JOIN tenants t ON t.id = n.tenant_id LEFT JOIN vouchers v ON v.id = s.voucher_id \
         WHERE s.nas_id = ?3 AND s.router = ?5 AND s.acct_session_id = ?4",
        events::session_object_sql(Dialect::Sqlite)
    )
});

/// Write event `t` for voucher `id` as it is now in `conn`'s transaction.
pub(super) fn voucher_event(
    conn: &Connection,
    t: EventType,
    id: i64,
    now: Timestamp,
) -> StoreResult<()> {
    conn.prepare_cached(&VOUCHER_EVENT)?
        .execute(params![t.as_str(), now, id])?;
    Ok(())
}

/// Write event `t` for the session keyed (`nas_id`, `router`, `acct_session_id`).
pub(super) fn session_event(
    conn: &Connection,
    t: EventType,
    (nas_id, router, acct_session_id): (i64, &str, &str),
    now: Timestamp,
) -> StoreResult<()> {
    conn.prepare_cached(&SESSION_EVENT)?.execute(params![
        t.as_str(),
        now,
        nas_id,
        acct_session_id,
        router
    ])?;
    Ok(())
}

pub fn add_webhook(c: &mut Connection, hook: &NewWebhook) -> StoreResult<Webhook> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(t) = hook.tenant_id {
        let found: Option<i64> = tx
            .query_row("SELECT id FROM tenants WHERE id = ?1", [t], |r| r.get(0))
            .optional()?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!("tenant {t}")));
        }
    }
    tx.execute(
        "INSERT INTO webhooks (tenant_id, url, events, secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            hook.tenant_id,
            hook.url,
            hook.events_column(),
            hook.secret,
            crate::store::rows::now()
        ],
    )?;
    let id = tx.last_insert_rowid();
    let w = webhook_by_id(&tx, id)?;
    tx.commit()?;
    Ok(w)
}

const WEBHOOK_COLS: &str = "w.id, t.name, w.url, w.events, w.created_at";

fn webhook_row(r: &Row<'_>) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        id: r.get(0)?,
        tenant: r.get(1)?,
        url: r.get(2)?,
        events: events::events_from_column(r.get::<_, Option<String>>(3)?.as_deref()),
        created_at: r.get(4)?,
    })
}

fn webhook_by_id(c: &Connection, id: i64) -> StoreResult<Webhook> {
    c.query_row(
        &format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks w LEFT JOIN tenants t ON t.id = w.tenant_id \
             WHERE w.id = ?1"
        ),
        [id],
        webhook_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("webhook {id}")))
}

pub fn list_webhooks(c: &mut Connection) -> StoreResult<Vec<Webhook>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLS} FROM webhooks w LEFT JOIN tenants t ON t.id = w.tenant_id \
         ORDER BY w.id"
    ))?;
    let rows = stmt.query_map([], webhook_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn remove_webhook(c: &mut Connection, which: &str) -> StoreResult<u64> {
    let n = match which.parse::<i64>() {
        Ok(id) => c.execute("DELETE FROM webhooks WHERE id = ?1", [id])?,
        Err(_) => c.execute("DELETE FROM webhooks WHERE url = ?1", [which])?,
    };
    if n == 0 {
        return Err(StoreError::NotFound(format!("webhook {which}")));
    }
    Ok(n as u64)
}

const DELIVERY_COLS: &str = "d.id, d.webhook_id, w.url, d.event_id, e.type, d.state, d.attempts, \
     d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.delivered_at, d.created_at";

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let state: String = r.get(5)?;
    Ok(Delivery {
        id: r.get(0)?,
        webhook_id: r.get(1)?,
        url: r.get(2)?,
        event_id: events::event_id(r.get(3)?),
        event_type: r.get(4)?,
        next_attempt_at: if state == "pending" { r.get(7)? } else { None },
        state,
        attempts: r.get(6)?,
        last_attempt_at: r.get(8)?,
        last_status: r.get(9)?,
        last_error: r.get(10)?,
        delivered_at: r.get(11)?,
        created_at: r.get(12)?,
    })
}

pub fn list_deliveries(c: &mut Connection, f: &DeliveryFilter) -> StoreResult<Vec<Delivery>> {
    let (by_id, by_url) = match f.webhook.as_deref().map(|w| (w, w.parse::<i64>())) {
        None => (None, None),
        Some((_, Ok(id))) => (Some(id), None),
        Some((w, Err(_))) => (None, Some(w.to_string())),
    };
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {DELIVERY_COLS} FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
         JOIN events e ON e.id = d.event_id \
         WHERE (?1 IS NULL OR d.webhook_id = ?1) AND (?2 IS NULL OR w.url = ?2) \
         AND (NOT ?3 OR d.state = 'failed') ORDER BY d.id DESC LIMIT ?4"
    ))?;
    let rows = stmt.query_map(
        params![
            by_id,
            by_url,
            f.failed_only,
            i64::from(f.limit.unwrap_or(1000))
        ],
        delivery_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn claim(
    c: &mut Connection,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
    per_webhook: u32,
    skip: &[i64],
) -> StoreResult<Vec<DeliveryJob>> {
    // A read first: the poll runs twice a second and usually finds nothing,
    // which then costs no write transaction.
    let due: Option<i64> = c
        .prepare_cached(
            "SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?1 LIMIT 1",
        )?
        .query_row([now], |r| r.get(0))
        .optional()?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    let skip = serde_json::to_string(skip).unwrap_or_else(|_| "[]".into());
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let jobs: Vec<DeliveryJob> = {
        let mut stmt = tx.prepare_cached(
            "SELECT d.id, d.webhook_id, w.url, w.secret, d.attempts, d.created_at, \
                    e.id, e.tenant_id, e.type, e.created_at, e.object \
             FROM (SELECT id, row_number() OVER (PARTITION BY webhook_id \
                                                 ORDER BY next_attempt_at, id) AS rn \
                   FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?1 \
                   AND webhook_id NOT IN (SELECT value FROM json_each(?2))) due \
             JOIN deliveries d ON d.id = due.id JOIN webhooks w ON w.id = d.webhook_id \
             JOIN events e ON e.id = d.event_id \
             WHERE due.rn <= ?3 ORDER BY d.next_attempt_at, d.id LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![now, skip, i64::from(per_webhook), i64::from(limit)],
            |r| {
                Ok(DeliveryJob {
                    id: r.get(0)?,
                    webhook_id: r.get(1)?,
                    url: r.get(2)?,
                    secret: r.get(3)?,
                    attempts: r.get(4)?,
                    created_at: r.get(5)?,
                    event: EventRecord {
                        id: r.get(6)?,
                        tenant_id: r.get(7)?,
                        event_type: r.get(8)?,
                        created_at: r.get(9)?,
                        object: r.get(10)?,
                        order: 0,
                    },
                })
            },
        )?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    {
        let mut lease =
            tx.prepare_cached("UPDATE deliveries SET next_attempt_at = ?2 WHERE id = ?1")?;
        for j in &jobs {
            lease.execute(params![j.id, lease_until])?;
        }
    }
    tx.commit()?;
    Ok(jobs)
}

pub fn finish(c: &mut Connection, id: i64, o: &DeliveryOutcome, now: Timestamp) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE deliveries SET state = ?2, attempts = attempts + 1, last_attempt_at = ?3, \
         last_status = ?4, last_error = ?5, next_attempt_at = COALESCE(?6, next_attempt_at), \
         delivered_at = CASE WHEN ?2 = 'delivered' THEN ?3 ELSE delivered_at END WHERE id = ?1",
    )?
    .execute(params![
        id,
        o.state,
        now,
        o.status,
        o.error,
        o.next_attempt_at
    ])?;
    Ok(())
}

pub fn events_after(
    c: &mut Connection,
    tenant: Option<i64>,
    after: Option<EventCursor>,
    limit: u32,
) -> StoreResult<Vec<EventRecord>> {
    // One writer at a time: ids are in commit order, so the id alone is the cursor.
    let after_id = after.map_or(0, |a| a.id);
    let mut stmt = c.prepare_cached(
        "SELECT id, tenant_id, type, created_at, object FROM events \
         WHERE id > ?1 AND (?2 IS NULL OR tenant_id = ?2) ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![after_id, tenant, i64::from(limit)], |r| {
        Ok(EventRecord {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            event_type: r.get(2)?,
            created_at: r.get(3)?,
            object: r.get(4)?,
            order: 0,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn prune_events(c: &mut Connection, before: Timestamp) -> StoreResult<u64> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM events WHERE created_at < ?1)",
        [before],
    )?;
    let n = tx.execute("DELETE FROM events WHERE created_at < ?1", [before])?;
    tx.commit()?;
    Ok(n as u64)
}

pub fn delivery_backlog(c: &mut Connection) -> StoreResult<i64> {
    Ok(
        c.prepare_cached("SELECT count(*) FROM deliveries WHERE state = 'pending'")?
            .query_row([], |r| r.get(0))?,
    )
}
