//! Events for the ERP: what happened to vouchers and sessions, written to an
//! outbox table (`events`) in the transaction of the change, read page by page
//! ([`page`], behind `GET /api/v1/events`) and POSTed to webhooks by the
//! server's [`DeliveryWorker`].
//!
//! An event is `{"type", "id", "created", "data"}`; `data` is the voucher or
//! session as it was right after the change. Storage builds `data` in SQL
//! from the rows it has just written ([`voucher_object_sql`],
//! [`session_object_sql`]), so the hot path builds no JSON in Rust, and an
//! Interim-Update (which changes nothing an event reports) writes none.
//! Deliveries are rows too (`deliveries`, one per webhook and event, made by a
//! trigger when the event is written): at least once, retried with back-off
//! ([`retry_delay`]), signed ([`signature`]).

mod client;
mod metrics;
mod worker;

use std::fmt;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

pub use client::{PostOutcome, WebhookClient};
pub use metrics::WebhookMetrics;
pub use worker::{DeliveryWorker, WorkerSettings};

use crate::model::Timestamp;
use crate::store::{Store, StoreError, StoreResult};

/// The kinds of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A voucher's first login activated it.
    VoucherActivated,
    /// Accounting used up a voucher's time or data quota: its sessions are
    /// ended (fair use with only the data used up slows them instead, which
    /// is not this event).
    VoucherUsedUp,
    /// The voucher was revoked.
    VoucherRevoked,
    /// A session started (its first accounting record).
    SessionStarted,
    /// A session stopped: Accounting-Stop, or closed by the server (router
    /// reboot, Accounting-On/Off, no accounting for too long).
    SessionStopped,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::VoucherActivated,
        EventType::VoucherUsedUp,
        EventType::VoucherRevoked,
        EventType::SessionStarted,
        EventType::SessionStopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::VoucherActivated => "voucher.activated",
            EventType::VoucherUsedUp => "voucher.used_up",
            EventType::VoucherRevoked => "voucher.revoked",
            EventType::SessionStarted => "session.started",
            EventType::SessionStopped => "session.stopped",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// A comma-separated list of event types (`--events a,b`), in order,
    /// without repeats.
    pub fn parse_list(s: &str) -> StoreResult<Vec<EventType>> {
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let t = EventType::parse(name).ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                StoreError::Invalid(format!(
                    "unknown event type {name:?}: use {}",
                    known.join(", ")
                ))
            })?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        if out.is_empty() {
            return Err(StoreError::Invalid("no event type given".into()));
        }
        Ok(out)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SQL dialect an object is built in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// `fields` as a JSON object expression. PostgreSQL's text output of
/// `json_build_object` differs in spacing from SQLite's; readers parse the
/// object, so what goes out is the same on both.
fn json_object(d: Dialect, fields: &[(&str, String)]) -> String {
    let args: Vec<String> = fields.iter().map(|(k, v)| format!("'{k}', {v}")).collect();
    match d {
        Dialect::Sqlite => format!("json_object({})", args.join(", ")),
        Dialect::Postgres => format!("json_build_object({})::text", args.join(", ")),
    }
}

/// A Unix-seconds column as RFC 3339 UTC text (NULL stays NULL).
fn rfc3339(d: Dialect, expr: &str) -> String {
    match d {
        Dialect::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%SZ', {expr}, 'unixepoch')"),
        Dialect::Postgres => format!(
            "to_char(to_timestamp({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        ),
    }
}

/// What is left of a quota: NULL when unlimited, never below 0.
fn left(quota: &str, used: &str) -> String {
    format!(
        "CASE WHEN {quota} IS NULL THEN NULL WHEN {quota} > {used} THEN {quota} - {used} ELSE 0 END"
    )
}

/// The voucher object, from `v` (vouchers), `p` (its plan) and `t` (its
/// tenant). Documented in README ("Events and webhooks").
pub fn voucher_object_sql(d: Dialect) -> String {
    json_object(
        d,
        &[
            ("code", "v.code".into()),
            ("tenant", "t.name".into()),
            ("plan", "p.name".into()),
            ("state", "v.state".into()),
            ("batch", "v.batch".into()),
            ("first_used", rfc3339(d, "v.first_login_at")),
            ("valid_until", rfc3339(d, "v.valid_until")),
            ("used_seconds", "v.used_seconds".into()),
            ("used_bytes", "v.used_bytes".into()),
            ("time_quota", "p.time_quota".into()),
            ("data_quota", "p.data_quota".into()),
            ("time_left", left("p.time_quota", "v.used_seconds")),
            ("data_left", left("p.data_quota", "v.used_bytes")),
            ("bound_mac", "v.bound_mac".into()),
        ],
    )
}

/// The session object, from `s` (sessions), `n` (its NAS), `t` (the NAS's
/// tenant) and `v` (its voucher, LEFT JOINed). Documented in README.
pub fn session_object_sql(d: Dialect) -> String {
    json_object(
        d,
        &[
            ("id", "s.id".into()),
            ("tenant", "t.name".into()),
            ("nas", "n.name".into()),
            ("router", "s.router".into()),
            ("voucher", "v.code".into()),
            ("username", "s.username".into()),
            ("acct_session_id", "s.acct_session_id".into()),
            ("mac", "s.mac".into()),
            ("ip", "s.framed_ip".into()),
            ("state", "s.state".into()),
            ("started", rfc3339(d, "s.started_at")),
            ("stopped", rfc3339(d, "s.stopped_at")),
            ("session_time", "s.session_time".into()),
            ("input_octets", "s.input_octets".into()),
            ("output_octets", "s.output_octets".into()),
            ("terminate_cause", "s.terminate_cause".into()),
        ],
    )
}

/// One stored event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    pub id: i64,
    pub tenant_id: i64,
    pub event_type: String,
    pub created_at: Timestamp,
    /// The voucher or session object as stored (JSON text).
    pub object: String,
    /// Where the event sorts among others ([`EventCursor`]): the writing
    /// transaction's id on PostgreSQL, 0 on SQLite (one writer, ids in commit order).
    pub order: i64,
}

impl EventRecord {
    /// The event as delivered and listed: `{"type","id","created","data"}`.
    pub fn to_json(&self) -> serde_json::Value {
        // Stored by this program's own SQL; should it ever not parse, the
        // text is passed on as a string rather than the event lost.
        let data = serde_json::from_str(&self.object)
            .unwrap_or_else(|_| serde_json::Value::String(self.object.clone()));
        serde_json::json!({
            "type": self.event_type,
            "id": event_id(self.id),
            "created": rfc3339_text(self.created_at),
            "data": data,
        })
    }

    /// The body a webhook is sent: [`Self::to_json`], compact.
    pub fn body(&self) -> String {
        self.to_json().to_string()
    }

    pub fn cursor(&self) -> EventCursor {
        EventCursor {
            order: self.order,
            id: self.id,
        }
    }
}

/// The public id of event `id`: what `Rrnet-Event-Id` carries, stable across
/// retries, so a receiver can drop a delivery it has seen.
pub fn event_id(id: i64) -> String {
    format!("evt_{id}")
}

/// Unix seconds as RFC 3339 UTC, as the object SQL writes them.
pub fn rfc3339_text(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// A position in the event stream: events after it are those with a greater
/// `(order, id)`. Opaque to clients (hex text).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventCursor {
    pub order: i64,
    pub id: i64,
}

impl EventCursor {
    pub fn encode(self) -> String {
        hex::encode(format!("v1:{}:{}", self.order, self.id))
    }

    pub fn decode(s: &str) -> StoreResult<EventCursor> {
        let bad = || StoreError::Invalid(format!("cursor {s:?} is not one this server gave out"));
        if s.len() > 128 {
            return Err(bad());
        }
        let text = String::from_utf8(hex::decode(s).map_err(|_| bad())?).map_err(|_| bad())?;
        let mut parts = text.split(':');
        let (Some("v1"), Some(order), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(EventCursor {
            order: order.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// A page of events: the body of `GET /api/v1/events`.
#[derive(Clone, Debug, Serialize)]
pub struct EventsPage {
    /// In order; each the same object a webhook is sent.
    pub events: Vec<serde_json::Value>,
    /// The cursor to ask with next (`?after=`): after the last event here,
    /// or the one asked with when there was none.
    pub next: String,
}

/// Events per page by default, and at most.
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;

/// The events after `after` (from the start without it), of `tenant` (every
/// tenant's with `None`), at most `limit` (capped at [`MAX_PAGE`]). Asking
/// again with `next` continues with no gap and no repeat, also while events
/// are being written.
pub async fn page(
    store: &dyn Store,
    tenant: Option<i64>,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<EventsPage> {
    let cursor = after.map(EventCursor::decode).transpose()?;
    let limit = limit.clamp(1, MAX_PAGE);
    let events = store.events_after(tenant, cursor, limit).await?;
    let next = events
        .last()
        .map(EventRecord::cursor)
        .or(cursor)
        .unwrap_or_default()
        .encode();
    Ok(EventsPage {
        events: events.iter().map(EventRecord::to_json).collect(),
        next,
    })
}

type HmacSha256 = Hmac<Sha256>;

/// The `Rrnet-Signature` header value for `body` sent at `t` (Unix seconds):
/// `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with secret>`. Putting
/// `t` under the MAC lets a receiver refuse old deliveries replayed.
pub fn signature(secret: &str, t: Timestamp, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A fresh signing secret: 32 random bytes, hex, after `whsec_`.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", hex::encode(bytes))
}

/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Check a webhook URL: http or https, a host, no user name or password (the
/// signature is the authentication, and the URL is printed by `webhook list`).
pub fn check_url(s: &str) -> StoreResult<url::Url> {
    let bad = |why: &str| StoreError::Invalid(format!("webhook URL {s:?}: {why}"));
    if s.len() > MAX_URL_LEN {
        return Err(bad("longer than 2048 bytes"));
    }
    let u = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(bad("use http:// or https://"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad(
            "a user name or password in the URL is not supported; receivers check the signature",
        ));
    }
    Ok(u)
}

/// A webhook to add.
#[derive(Clone, Debug)]
pub struct NewWebhook {
    /// `None`: every tenant's events.
    pub tenant_id: Option<i64>,
    pub url: String,
    /// `None`: every type.
    pub events: Option<Vec<EventType>>,
    pub secret: String,
}

impl NewWebhook {
    /// The `events` column: `,a,b,` (so a type is found with `,type,`), or NULL.
    pub fn events_column(&self) -> Option<String> {
        self.events.as_ref().map(|ts| {
            let names: Vec<&str> = ts.iter().map(|t| t.as_str()).collect();
            format!(",{},", names.join(","))
        })
    }
}

/// A stored webhook. The secret is not part of it: it is printed once, by
/// `webhook add`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Webhook {
    pub id: i64,
    /// Tenant name; `None`: every tenant.
    pub tenant: Option<String>,
    pub url: String,
    /// Event types; empty: every type.
    pub events: Vec<String>,
    pub created_at: Timestamp,
}

/// Split the stored `events` column.
pub fn events_from_column(c: Option<&str>) -> Vec<String> {
    c.map(|c| {
        c.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// A delivery as `webhook deliveries` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub url: String,
    pub event_id: String,
    pub event_type: String,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    /// The receiver's last HTTP status.
    pub last_status: Option<i64>,
    /// Why the last attempt failed, when it did without a status (timeout,
    /// connection refused) or with one that is not 2xx.
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// Which deliveries to list.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    /// A webhook by id or URL.
    pub webhook: Option<String>,
    /// Only those that were given up.
    pub failed_only: bool,
    pub limit: Option<u32>,
}

/// A delivery claimed by the worker, with what sending it needs.
#[derive(Clone)]
pub struct DeliveryJob {
    pub id: i64,
    pub webhook_id: i64,
    pub url: String,
    pub secret: String,
    /// Attempts before this one.
    pub attempts: i64,
    pub created_at: Timestamp,
    pub event: EventRecord,
}

/// Without the secret: a job printed in a log must not carry it.
impl fmt::Debug for DeliveryJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryJob")
            .field("id", &self.id)
            .field("webhook_id", &self.webhook_id)
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .field("event", &self.event.id)
            .finish_non_exhaustive()
    }
}

/// What becomes of a delivery after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The receiver's status, if it answered.
    pub status: Option<i64>,
    /// Why it failed (no 2xx), else `None`.
    pub error: Option<String>,
    /// The new state: delivered, pending (retry) or failed (given up).
    pub state: &'static str,
    /// With `pending`: when to try again.
    pub next_attempt_at: Option<Timestamp>,
}

/// The back-off after failed attempt number `attempt` (1 for the first):
/// `base` doubled per attempt up to `max`, then ±20 % jitter from `jitter`
/// (in [0, 1)), so receivers that failed together are not retried together.
pub fn retry_delay(attempt: i64, base: u64, max: u64, jitter: f64) -> u64 {
    let shift = u32::try_from(attempt.saturating_sub(1).clamp(0, 32)).unwrap_or(32);
    let raw = base.saturating_mul(1u64 << shift.min(40)).min(max).max(1);
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    ((raw as f64) * factor).round().max(1.0) as u64
}

/// The session events an accounting batch calls for, in order: for each row it
/// wrote, as (NAS, router, Acct-Session-Id, type): `session.started` when the row got its start (`started_at`) and
/// `session.stopped` when a started row was closed. `before` has, by row id,
/// whether the stored row had started and whether it was closed; a row new in
/// this batch has no entry. Interim-Updates change neither, so they cost a
/// lookup and no event.
pub fn session_events<'a>(
    before: &std::collections::HashMap<i64, (bool, bool)>,
    rows: impl Iterator<Item = &'a crate::policy::AcctSession>,
) -> Vec<(i64, &'a str, &'a str, EventType)> {
    let mut out = Vec::new();
    for s in rows {
        let (was_started, was_closed) =
            s.id.and_then(|id| before.get(&id).copied())
                .unwrap_or((false, false));
        let started = s.started_at.is_some();
        let closed = s.state == crate::model::SessionState::Closed;
        if started && !was_started {
            out.push((
                s.nas_id,
                s.router.as_str(),
                s.acct_session_id.as_str(),
                EventType::SessionStarted,
            ));
        }
        if started && closed && !was_closed {
            out.push((
                s.nas_id,
                s.router.as_str(),
                s.acct_session_id.as_str(),
                EventType::SessionStopped,
            ));
        }
    }
    out
}

/// Whether usage that moved a voucher from `before` to `after` used it up
/// (`policy::quota_end` says end its sessions now and did not before).
pub fn used_up(
    before: Option<crate::policy::QuotaEnd>,
    after: Option<crate::policy::QuotaEnd>,
) -> bool {
    use crate::policy::QuotaEnd;
    after == Some(QuotaEnd::Disconnect) && before != Some(QuotaEnd::Disconnect)
}

#[cfg(test)]
mod tests;

/// Add a webhook for `url`, of tenant `tenant_id` (every tenant's events with
/// `None`), for the event types listed in `events` (comma-separated; every
/// type with `None`). Returns it with its new signing secret, which is not
/// shown again. What `webhook add` (and the API) call.
pub async fn add_webhook(
    store: &dyn Store,
    url: &str,
    tenant_id: Option<i64>,
    events: Option<&str>,
) -> StoreResult<(Webhook, String)> {
    let url = check_url(url)?;
    let events = events.map(EventType::parse_list).transpose()?;
    let secret = new_secret();
    let hook = store
        .add_webhook(&NewWebhook {
            tenant_id,
            url: url.to_string(),
            events,
            secret: secret.clone(),
        })
        .await?;
    Ok((hook, secret))
}
