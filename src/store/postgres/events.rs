//! Events and webhooks on PostgreSQL: event rows written by the statements
//! (or in the transactions) of the changes, and the webhook tables the CLI
//! and the delivery worker use. See `crate::events`.

use std::sync::LazyLock;

use sqlx::{PgConnection, PgPool, Row};

use crate::events::{
    self, Delivery, DeliveryFilter, DeliveryJob, DeliveryOutcome, Dialect, EventCursor,
    EventRecord, EventType, NewWebhook, Webhook,
};
use crate::model::Timestamp;
use crate::store::{StoreError, StoreResult};

/// Event `$1` at `$2` for each voucher in `$3`.
static VOUCHER_EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO events (tenant_id, type, created_at, object) \
         SELECT v.tenant_id, $1, $2, {} FROM vouchers v JOIN plans p ON p.id = v.plan_id \
         JOIN tenants t ON t.id = v.tenant_id WHERE v.id = ANY($3) ORDER BY v.id",
        events::voucher_object_sql(Dialect::Postgres)
    )
});

/// The voucher `v` of session `s`, looked up by its key. Every lookup here is a
/// LATERAL subquery with `OFFSET 0` (as in authorization's read): an index
/// probe per row whatever the planner's statistics say. A fresh table's cached
/// plan would otherwise scan `sessions` whole on every batch once it has grown.
const VOUCHER_OF_SESSION: &str =
    "LEFT JOIN LATERAL (SELECT * FROM vouchers v WHERE v.id = s.voucher_id OFFSET 0) v ON true";

/// Events `$3[i]` at `$4` for the sessions keyed (`$1[i]`, `$5[i]`, `$2[i]`), in order.
static SESSION_EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO events (tenant_id, type, created_at, object) \
         SELECT n.tenant_id, e.type, $4, {} \
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $5::text[]) WITH ORDINALITY \
              AS e(nas_id, acct_session_id, type, router, ord) \
         CROSS JOIN LATERAL (SELECT * FROM sessions s WHERE s.nas_id = e.nas_id \
              AND s.acct_session_id = e.acct_session_id AND s.router = e.router OFFSET 0) s \
         JOIN nas n ON n.id = s.nas_id JOIN tenants t ON t.id = n.tenant_id \
         {VOUCHER_OF_SESSION} ORDER BY e.ord",
        events::session_object_sql(Dialect::Postgres)
    )
});

/// The SQL of a data-modifying CTE named `name` that writes `session.stopped`
/// at `$now` for the started rows of the CTE `closed` (which returns whole
/// session rows).
pub(super) fn stopped_events_cte(name: &str, closed: &str, now: &str) -> String {
    format!(
        "{name} AS (INSERT INTO events (tenant_id, type, created_at, object) \
         SELECT n.tenant_id, 'session.stopped', {now}, {} FROM {closed} s \
         JOIN nas n ON n.id = s.nas_id JOIN tenants t ON t.id = n.tenant_id \
         {VOUCHER_OF_SESSION} \
         WHERE s.started_at IS NOT NULL ORDER BY s.id)",
        events::session_object_sql(Dialect::Postgres)
    )
}

/// The SQL of a data-modifying CTE named `name` that writes
/// `voucher.activated` at `$now` for the rows of the CTE `changed` (whole
/// voucher rows and a boolean `activated`).
pub(super) fn activated_events_cte(name: &str, changed: &str, now: &str) -> String {
    format!(
        "{name} AS (INSERT INTO events (tenant_id, type, created_at, object) \
         SELECT v.tenant_id, 'voucher.activated', {now}, {} FROM {changed} v \
         JOIN plans p ON p.id = v.plan_id JOIN tenants t ON t.id = v.tenant_id \
         WHERE v.activated ORDER BY v.id)",
        events::voucher_object_sql(Dialect::Postgres)
    )
}

/// Write event `t` for each voucher in `ids`, as they are in `conn`'s transaction.
pub(super) async fn voucher_events(
    conn: &mut PgConnection,
    t: EventType,
    ids: &[i64],
    now: Timestamp,
) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(&VOUCHER_EVENTS)
        .bind(t.as_str())
        .bind(now)
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Write the session events `rows` (NAS, router, Acct-Session-Id, type), in order.
pub(super) async fn session_events(
    conn: &mut PgConnection,
    rows: &[(i64, &str, &str, EventType)],
    now: Timestamp,
) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let nas: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let router: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let asid: Vec<&str> = rows.iter().map(|r| r.2).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    sqlx::query(&SESSION_EVENTS)
        .bind(&nas)
        .bind(&asid)
        .bind(&types)
        .bind(now)
        .bind(&router)
        .execute(conn)
        .await?;
    Ok(())
}

const WEBHOOK_COLS: &str = "w.id, t.name, w.url, w.events, w.created_at";

fn webhook_row(r: &sqlx::postgres::PgRow) -> Result<Webhook, sqlx::Error> {
    Ok(Webhook {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        url: r.try_get(2)?,
        events: events::events_from_column(r.try_get::<Option<String>, _>(3)?.as_deref()),
        created_at: r.try_get(4)?,
    })
}

pub(super) async fn add_webhook(pool: &PgPool, hook: &NewWebhook) -> StoreResult<Webhook> {
    let inserted = sqlx::query(
        "INSERT INTO webhooks (tenant_id, url, events, secret, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(hook.tenant_id)
    .bind(&hook.url)
    .bind(hook.events_column())
    .bind(&hook.secret)
    .bind(crate::store::rows::now())
    .fetch_one(pool)
    .await;
    let id: i64 = match inserted {
        Ok(r) => r.try_get(0)?,
        Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
            return Err(StoreError::NotFound(format!(
                "tenant {}",
                hook.tenant_id.unwrap_or_default()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let row = sqlx::query(&format!(
        "SELECT {WEBHOOK_COLS} FROM webhooks w LEFT JOIN tenants t ON t.id = w.tenant_id \
         WHERE w.id = $1"
    ))
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(webhook_row(&row)?)
}

pub(super) async fn list_webhooks(pool: &PgPool) -> StoreResult<Vec<Webhook>> {
    let rows = sqlx::query(&format!(
        "SELECT {WEBHOOK_COLS} FROM webhooks w LEFT JOIN tenants t ON t.id = w.tenant_id \
         ORDER BY w.id"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(webhook_row)
        .collect::<Result<_, sqlx::Error>>()?)
}

pub(super) async fn remove_webhook(pool: &PgPool, which: &str) -> StoreResult<u64> {
    let done = match which.parse::<i64>() {
        Ok(id) => {
            sqlx::query("DELETE FROM webhooks WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
        }
        Err(_) => {
            sqlx::query("DELETE FROM webhooks WHERE url = $1")
                .bind(which)
                .execute(pool)
                .await?
        }
    };
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("webhook {which}")));
    }
    Ok(done.rows_affected())
}

pub(super) async fn list_deliveries(
    pool: &PgPool,
    f: &DeliveryFilter,
) -> StoreResult<Vec<Delivery>> {
    let (by_id, by_url) = match f.webhook.as_deref().map(|w| (w, w.parse::<i64>())) {
        None => (None, None),
        Some((_, Ok(id))) => (Some(id), None),
        Some((w, Err(_))) => (None, Some(w.to_string())),
    };
    let rows = sqlx::query(
        "SELECT d.id, d.webhook_id, w.url, d.event_id, e.type, d.state, d.attempts::bigint, \
         d.next_attempt_at, d.last_attempt_at, d.last_status::bigint, d.last_error, \
         d.delivered_at, d.created_at \
         FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id JOIN events e ON e.id = d.event_id \
         WHERE ($1::bigint IS NULL OR d.webhook_id = $1) AND ($2::text IS NULL OR w.url = $2) \
         AND (NOT $3 OR d.state = 'failed') ORDER BY d.id DESC LIMIT $4",
    )
    .bind(by_id)
    .bind(by_url)
    .bind(f.failed_only)
    .bind(i64::from(f.limit.unwrap_or(1000)))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let state: String = r.try_get(5)?;
        out.push(Delivery {
            id: r.try_get(0)?,
            webhook_id: r.try_get(1)?,
            url: r.try_get(2)?,
            event_id: events::event_id(r.try_get(3)?),
            event_type: r.try_get(4)?,
            next_attempt_at: if state == "pending" {
                r.try_get(7)?
            } else {
                None
            },
            state,
            attempts: r.try_get(6)?,
            last_attempt_at: r.try_get(8)?,
            last_status: r.try_get(9)?,
            last_error: r.try_get(10)?,
            delivered_at: r.try_get(11)?,
            created_at: r.try_get(12)?,
        });
    }
    Ok(out)
}

/// Due deliveries locked with `SKIP LOCKED` (another server's claim in
/// progress is passed over), at most `$3` per webhook and `$4` in all, leased
/// until `$2`, returned with their webhook and event.
const CLAIM: &str = "\
WITH due AS (
    SELECT id, webhook_id, next_attempt_at FROM deliveries
    WHERE state = 'pending' AND next_attempt_at <= $1 AND NOT (webhook_id = ANY($5))
    ORDER BY next_attempt_at, id LIMIT $4 * 4
    FOR UPDATE SKIP LOCKED
),
picked AS (
    SELECT id FROM (
        SELECT id, next_attempt_at,
               row_number() OVER (PARTITION BY webhook_id ORDER BY next_attempt_at, id) AS rn
        FROM due) r
    WHERE rn <= $3 ORDER BY next_attempt_at, id LIMIT $4
),
claimed AS (
    UPDATE deliveries d SET next_attempt_at = $2 FROM picked
    WHERE d.id = picked.id
    RETURNING d.id, d.webhook_id, d.event_id, d.attempts, d.created_at
)
SELECT c.id, c.webhook_id, w.url, w.secret, c.attempts::bigint, c.created_at,
       e.id, e.tenant_id, e.type, e.created_at, e.object, e.txid
FROM claimed c JOIN webhooks w ON w.id = c.webhook_id JOIN events e ON e.id = c.event_id
ORDER BY c.id";

pub(super) async fn claim(
    pool: &PgPool,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
    per_webhook: u32,
    skip: &[i64],
) -> StoreResult<Vec<DeliveryJob>> {
    // A read first: the poll usually finds nothing, which then locks nothing.
    let due: Option<(i64,)> = sqlx::query_as(
        "SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $1 LIMIT 1",
    )
    .bind(now)
    .fetch_optional(pool)
    .await?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(CLAIM)
        .bind(now)
        .bind(lease_until)
        .bind(i64::from(per_webhook))
        .bind(i64::from(limit))
        .bind(skip)
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(DeliveryJob {
            id: r.try_get(0)?,
            webhook_id: r.try_get(1)?,
            url: r.try_get(2)?,
            secret: r.try_get(3)?,
            attempts: r.try_get(4)?,
            created_at: r.try_get(5)?,
            event: EventRecord {
                id: r.try_get(6)?,
                tenant_id: r.try_get(7)?,
                event_type: r.try_get(8)?,
                created_at: r.try_get(9)?,
                object: r.try_get(10)?,
                order: r.try_get(11)?,
            },
        });
    }
    Ok(out)
}

pub(super) async fn finish(
    pool: &PgPool,
    id: i64,
    o: &DeliveryOutcome,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE deliveries SET state = $2, attempts = attempts + 1, last_attempt_at = $3, \
         last_status = $4, last_error = $5, next_attempt_at = COALESCE($6, next_attempt_at), \
         delivered_at = CASE WHEN $2 = 'delivered' THEN $3 ELSE delivered_at END WHERE id = $1",
    )
    .bind(id)
    .bind(o.state)
    .bind(now)
    .bind(o.status.and_then(|s| i32::try_from(s).ok()))
    .bind(o.error.as_deref())
    .bind(o.next_attempt_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn events_after(
    pool: &PgPool,
    tenant: Option<i64>,
    after: Option<EventCursor>,
    limit: u32,
) -> StoreResult<Vec<EventRecord>> {
    let after = after.unwrap_or_default();
    // Only events of transactions older than every one still running: an
    // event that commits later always sorts after what is returned here.
    let rows = sqlx::query(
        "SELECT id, tenant_id, type, created_at, object, txid FROM events \
         WHERE (txid, id) > ($1, $2) \
         AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
         AND ($3::bigint IS NULL OR tenant_id = $3) ORDER BY txid, id LIMIT $4",
    )
    .bind(after.order)
    .bind(after.id)
    .bind(tenant)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(EventRecord {
            id: r.try_get(0)?,
            tenant_id: r.try_get(1)?,
            event_type: r.try_get(2)?,
            created_at: r.try_get(3)?,
            object: r.try_get(4)?,
            order: r.try_get(5)?,
        });
    }
    Ok(out)
}

pub(super) async fn prune_events(pool: &PgPool, before: Timestamp) -> StoreResult<u64> {
    // Deliveries go with their events (ON DELETE CASCADE).
    let done = sqlx::query("DELETE FROM events WHERE created_at < $1")
        .bind(before)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

pub(super) async fn delivery_backlog(pool: &PgPool) -> StoreResult<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM deliveries WHERE state = 'pending'")
        .fetch_one(pool)
        .await?;
    Ok(n)
}
