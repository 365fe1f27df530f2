//! Storage: one trait with domain-level methods, implemented for SQLite (the
//! embedded default) and PostgreSQL (fleets). The backend is chosen once, from the
//! database URL's scheme, by [`open`].

mod postgres;
pub mod rows;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::events::{
    Delivery, DeliveryFilter, DeliveryJob, DeliveryOutcome, EventCursor, EventRecord, NewWebhook,
    Webhook,
};
use crate::model::{Nas, NewNas, NewPlan, NewVoucher, Plan, Session, Tenant, Timestamp, Voucher};
use crate::policy::{AccessDecision, AccessFacts, RejectReason};

/// Storage errors. Peers never see these; the CLI prints them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Duplicate(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("database URL {0:?} is not supported: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// The database server could not be reached, or refused the login. Names
    /// the server (host, port, database, user), never the password.
    #[error("cannot connect to {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another instance wrote a row this transaction was about to create; the
    /// transaction was rolled back and is retried as a whole.
    #[error("concurrent write conflict")]
    Conflict,
    /// The row is still used by others (a plan that vouchers use).
    #[error("{0}")]
    InUse(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

pub use crate::policy::{AcctRecord, AcctStatus};

/// One authorization outcome kept for "why can't this customer log in?".
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuthEvent {
    pub id: i64,
    pub at: Timestamp,
    pub nas_id: i64,
    pub nas_name: String,
    pub username: String,
    pub mac: Option<String>,
    /// "accept" or "reject".
    pub result: String,
    /// Reject reason label ([`RejectReason::label`]); `None` for accepts.
    pub reason: Option<String>,
    /// How many identical outcomes this row stands for (the login guard sums
    /// up its refusals); 1 for a single decision.
    pub repeats: i64,
    /// With `repeats` > 1: when the last of them happened (`at` is the first).
    pub last_at: Option<Timestamp>,
}

/// Seconds within which a reject identical to the last one logged for that user
/// (same NAS, device and reason) adds to its row (`repeats`, `last_at`) rather
/// than writing one of its own.
pub const REPEAT_WINDOW: Timestamp = 60;

/// Refusals summed up into one auth-log row (see `handler::guard`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepeatedRejects {
    pub nas_id: i64,
    pub nas_name: String,
    pub username: String,
    pub mac: Option<String>,
    pub reason: RejectReason,
    pub count: u64,
    pub first: Timestamp,
    pub last: Timestamp,
}

#[derive(Clone, Debug, Default)]
pub struct AuthEventFilter {
    pub username: Option<String>,
    pub nas_name: Option<String>,
    pub since: Option<Timestamp>,
    pub limit: Option<u32>,
}

/// A management API token as stored: the SHA-256 of the token, never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// The only tenant it sees; `None` for an operator-wide token.
    pub tenant_id: Option<i64>,
    /// GET only.
    pub read_only: bool,
    /// Lower-case hex SHA-256 of the token.
    pub token_hash: String,
    pub created_at: Timestamp,
}

/// What `token add` stores.
#[derive(Clone, Debug)]
pub struct NewApiToken {
    pub name: String,
    pub tenant_id: Option<i64>,
    pub read_only: bool,
    pub token_hash: String,
}

/// The vouchers `GET /api/v1/vouchers` asks for: filters, then at most
/// `limit` with an id above `after`, oldest first.
#[derive(Clone, Debug, Default)]
pub struct VoucherQuery {
    /// Only this tenant's; `None`: every tenant's.
    pub tenant_id: Option<i64>,
    pub plan: Option<String>,
    pub batch: Option<String>,
    pub state: Option<crate::model::VoucherState>,
    /// `Some(true)`: logged in at least once; `Some(false)`: never.
    pub used: Option<bool>,
    pub after: i64,
    pub limit: u32,
}

/// The sessions `GET /api/v1/sessions` asks for: filters, then at most
/// `limit` with an id below `before`, newest first.
#[derive(Clone, Debug, Default)]
pub struct SessionQuery {
    /// Only sessions at this tenant's NAS entries; `None`: every tenant's.
    pub tenant_id: Option<i64>,
    pub state: Option<crate::model::SessionState>,
    pub voucher_id: Option<i64>,
    pub nas_name: Option<String>,
    pub before: Option<i64>,
    pub limit: u32,
}

/// Seconds an idempotency key and its answer are kept.
pub const IDEMPOTENCY_KEEP: Timestamp = 86_400;

/// Seconds after which a key whose first request never answered (the
/// server stopped mid-way) may be taken again: well past the HTTP listener's
/// request timeout.
pub const IDEMPOTENCY_ABANDONED: Timestamp = 120;

/// What [`Store::claim_idempotency_key`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key is new and now taken by this request.
    Claimed,
    /// An earlier request with the key is still being worked on.
    InProgress { request_hash: String },
    /// An earlier request with the key was answered with `status` and `body`.
    Done {
        request_hash: String,
        status: u16,
        body: String,
    },
}

/// Tunables for the authorization transaction.
#[derive(Clone, Copy, Debug)]
pub struct AuthorizeOptions {
    /// An authorized session without an Accounting-Start stops counting against
    /// shared users after this many seconds.
    pub authorized_ttl: u64,
}

impl Default for AuthorizeOptions {
    fn default() -> Self {
        AuthorizeOptions { authorized_ttl: 60 }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Apply pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Make this store the one that authorizes, where a backend allows only
    /// one (SQLite: one server per database file). `serve` calls it at start,
    /// so that a second server on the same file stops with the reason.
    async fn claim_decider(&self) -> StoreResult<()> {
        Ok(())
    }

    // ---- tenants ----
    async fn add_tenant(&self, name: &str) -> StoreResult<Tenant>;
    /// Every tenant, `default` (id 1) first.
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// The tenant named `name`.
    async fn get_tenant(&self, name: &str) -> StoreResult<Tenant> {
        self.list_tenants()
            .await?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| StoreError::NotFound(format!("tenant {name}")))
    }

    // ---- NAS ----
    async fn add_nas(&self, nas: &NewNas) -> StoreResult<Nas>;
    async fn list_nas(&self) -> StoreResult<Vec<Nas>>;
    async fn remove_nas(&self, name: &str) -> StoreResult<()>;
    /// Give a NAS a new shared secret. With `keep_previous_until`, the old one
    /// stays valid until then, so routers can be switched without a gap;
    /// with `None` it stops working at once.
    async fn set_nas_secret(
        &self,
        name: &str,
        secret: &crate::model::Secret,
        keep_previous_until: Option<Timestamp>,
    ) -> StoreResult<()>;
    /// A number that changes whenever a NAS row is added, removed or changed, so a
    /// running server can poll it and reload its in-memory NAS table.
    async fn nas_generation(&self) -> StoreResult<i64>;

    // ---- plans ----
    async fn add_plan(&self, plan: &NewPlan) -> StoreResult<Plan>;
    async fn list_plans(&self) -> StoreResult<Vec<Plan>>;
    async fn get_plan(&self, name: &str) -> StoreResult<Plan>;

    // ---- vouchers ----
    /// Insert all or none; a duplicate code fails the whole call with `Duplicate`.
    async fn add_vouchers(&self, vouchers: &[NewVoucher]) -> StoreResult<Vec<Voucher>>;
    /// The voucher `code` of tenant `tenant_id`.
    async fn get_voucher(&self, tenant_id: i64, code: &str) -> StoreResult<Voucher>;
    async fn list_vouchers(
        &self,
        plan: Option<&str>,
        batch: Option<&str>,
    ) -> StoreResult<Vec<Voucher>>;
    /// Revoke a voucher and queue a Disconnect-Request for each of its open
    /// sessions, in one transaction: [`Store::revoke_voucher_with`] with
    /// `disconnect`.
    async fn revoke_voucher(&self, tenant_id: i64, code: &str) -> StoreResult<Voucher> {
        self.revoke_voucher_with(tenant_id, code, true).await
    }

    /// Revoke a voucher; with `disconnect`, queue a Disconnect-Request for
    /// each of its open sessions in the same transaction (the running server
    /// sends them, see [`crate::coa`]).
    async fn revoke_voucher_with(
        &self,
        _tenant_id: i64,
        _code: &str,
        _disconnect: bool,
    ) -> StoreResult<Voucher> {
        Err(unsupported("revoke_voucher_with"))
    }

    // ---- CoA / Disconnect (RFC 5176) ----
    /// Change where a NAS's CoA/Disconnect requests go: its port, and its
    /// address (`Some(None)` clears it). Returns the NAS as stored.
    async fn set_nas_coa(
        &self,
        _name: &str,
        _coa_port: Option<u16>,
        _coa_address: Option<Option<std::net::IpAddr>>,
    ) -> StoreResult<Nas> {
        Err(unsupported("set_nas_coa"))
    }

    /// Give a NAS an identifier (its router's NAS-Identifier), or take it away
    /// with `None`, under the rule of [`check_shared_address`] against the
    /// other entries of its address. Returns the NAS as stored.
    async fn set_nas_identifier(&self, _name: &str, _identifier: Option<&str>) -> StoreResult<Nas> {
        Err(unsupported("set_nas_identifier"))
    }

    /// Replace a plan's settings (found by `plan.id`; the name may change) and
    /// queue a CoA-Request for each open session of its vouchers, in one
    /// transaction. Returns how many were queued.
    async fn update_plan(&self, _plan: &Plan) -> StoreResult<u64> {
        Err(unsupported("update_plan"))
    }

    /// Move a voucher to another plan and queue a CoA-Request for each of its
    /// open sessions, in one transaction. Returns how many were queued.
    async fn set_voucher_plan(
        &self,
        _tenant_id: i64,
        _code: &str,
        _plan: &str,
    ) -> StoreResult<u64> {
        Err(unsupported("set_voucher_plan"))
    }

    async fn get_voucher_by_id(&self, _id: i64) -> StoreResult<Voucher> {
        Err(unsupported("get_voucher_by_id"))
    }

    async fn get_session(&self, _id: i64) -> StoreResult<Session> {
        Err(unsupported("get_session"))
    }

    /// Take up to `limit` queued CoA/Disconnect requests to send: the pending
    /// ones, and those claimed before `reclaim_before` and never finished (a
    /// server that stopped mid-exchange). Each is marked claimed at `now`;
    /// on PostgreSQL two servers never take the same one.
    async fn claim_coa_requests(
        &self,
        _now: Timestamp,
        _limit: u32,
        _reclaim_before: Timestamp,
    ) -> StoreResult<Vec<CoaRequest>> {
        Ok(Vec::new())
    }

    /// Record the outcome of a CoA/Disconnect exchange on the session
    /// (`coa_result`; a Disconnect also sets `disconnect_requested_at` if it
    /// was not) and, for a queued request, mark it done.
    async fn finish_coa_request(
        &self,
        _request_id: Option<i64>,
        _session_id: i64,
        _kind: CoaKind,
        _result: &str,
        _now: Timestamp,
    ) -> StoreResult<()> {
        Err(unsupported("finish_coa_request"))
    }

    // ---- events and webhooks (see crate::events) ----
    /// Add a webhook; it hears of events written from now on.
    async fn add_webhook(&self, _hook: &NewWebhook) -> StoreResult<Webhook> {
        Err(unsupported("add_webhook"))
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<Webhook>> {
        Err(unsupported("list_webhooks"))
    }

    /// Remove the webhook with id `which`, or every webhook with URL `which`,
    /// with their deliveries. Returns how many webhooks.
    async fn remove_webhook(&self, _which: &str) -> StoreResult<u64> {
        Err(unsupported("remove_webhook"))
    }

    /// Deliveries, newest first.
    async fn list_deliveries(&self, _filter: &DeliveryFilter) -> StoreResult<Vec<Delivery>> {
        Err(unsupported("list_deliveries"))
    }

    /// Take up to `limit` pending deliveries due at `now`, at most
    /// `per_webhook` of each webhook and none of the webhooks in `skip`, and
    /// lease them until `lease_until` (another claim skips them until then;
    /// on PostgreSQL two servers never take the same one).
    async fn claim_deliveries(
        &self,
        _now: Timestamp,
        _lease_until: Timestamp,
        _limit: u32,
        _per_webhook: u32,
        _skip: &[i64],
    ) -> StoreResult<Vec<DeliveryJob>> {
        Ok(Vec::new())
    }

    /// Record an attempt: one more attempt, its status or error, and the new
    /// state (delivered, pending with the next attempt's time, or failed).
    async fn finish_delivery(
        &self,
        _id: i64,
        _outcome: &DeliveryOutcome,
        _now: Timestamp,
    ) -> StoreResult<()> {
        Err(unsupported("finish_delivery"))
    }

    /// Events after `after`, in order, of `tenant` (all with `None`); only
    /// those no earlier event can still join (see [`crate::events::page`]).
    async fn events_after(
        &self,
        _tenant: Option<i64>,
        _after: Option<EventCursor>,
        _limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        Err(unsupported("events_after"))
    }

    /// Delete events created before `before`, with their deliveries. Returns how many.
    async fn prune_events(&self, _before: Timestamp) -> StoreResult<u64> {
        Ok(0)
    }

    /// Deliveries waiting (pending), for the backlog gauge.
    async fn delivery_backlog(&self) -> StoreResult<i64> {
        Ok(0)
    }

    /// One page of vouchers, filtered in storage.
    async fn voucher_page(&self, q: &VoucherQuery) -> StoreResult<Vec<Voucher>> {
        Ok(self
            .list_vouchers(q.plan.as_deref(), q.batch.as_deref())
            .await?
            .into_iter()
            .filter(|v| q.tenant_id.is_none_or(|t| v.tenant_id == t))
            .filter(|v| q.state.is_none_or(|s| v.state == s))
            .filter(|v| q.used.is_none_or(|u| v.first_login_at.is_some() == u))
            .filter(|v| v.id > q.after)
            .take(q.limit as usize)
            .collect())
    }

    /// One page of sessions, filtered in storage.
    async fn session_page(&self, _q: &SessionQuery) -> StoreResult<Vec<Session>> {
        Err(unsupported("session_page"))
    }

    /// Remove a plan no voucher uses; `InUse` when some do.
    async fn remove_plan(&self, _name: &str) -> StoreResult<()> {
        Err(unsupported("remove_plan"))
    }

    /// Queue a Disconnect-Request for one live session (the running server
    /// sends it, see [`crate::coa`]). Returns how many were queued: 0 when the
    /// session is not live or a Disconnect is already on its way.
    async fn queue_session_disconnect(&self, _session_id: i64) -> StoreResult<u64> {
        Err(unsupported("queue_session_disconnect"))
    }

    // ---- management API tokens and idempotency keys ----
    /// Store a new token (its hash only). `Duplicate` when the name is taken.
    async fn add_api_token(&self, _token: &NewApiToken) -> StoreResult<ApiToken> {
        Err(unsupported("add_api_token"))
    }

    /// Every token, oldest first.
    async fn list_api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        Ok(Vec::new())
    }

    /// Delete the token `name` (and the answers kept for its idempotency keys).
    async fn revoke_api_token(&self, _name: &str) -> StoreResult<()> {
        Err(unsupported("revoke_api_token"))
    }

    /// Take `key` for a request of `token_id` whose body hashes to
    /// `request_hash`, or find what an earlier request with that key did.
    /// Keys older than [`IDEMPOTENCY_KEEP`] seconds are forgotten first; a key
    /// still unanswered after [`IDEMPOTENCY_ABANDONED`] seconds is taken again.
    async fn claim_idempotency_key(
        &self,
        _token_id: i64,
        _key: &str,
        _request_hash: &str,
        _now: Timestamp,
    ) -> StoreResult<IdempotencyClaim> {
        Err(unsupported("claim_idempotency_key"))
    }

    /// Keep the answer to a request that claimed `key`; `None` gives the key
    /// up (the request failed, and a retry may try again).
    async fn finish_idempotency_key(
        &self,
        _token_id: i64,
        _key: &str,
        _answer: Option<(u16, &str)>,
    ) -> StoreResult<()> {
        Err(unsupported("finish_idempotency_key"))
    }

    // ---- the hot path ----
    /// Decide one Access-Request: a batch of one.
    async fn authorize(
        &self,
        facts: &AccessFacts,
        now: Timestamp,
        opts: AuthorizeOptions,
    ) -> StoreResult<AccessDecision> {
        let mut d = self
            .authorize_batch(std::slice::from_ref(facts), now, opts)
            .await?;
        d.pop()
            .ok_or_else(|| StoreError::Invalid("no decision for the request".into()))
    }

    /// Decide several Access-Requests, in order: read the vouchers they name
    /// (in the NAS's scope) with their plans and live devices, decide with
    /// [`crate::policy::decide_batch`] — each request sees the effects of those
    /// before it (activation, MAC binding, live devices), exactly as if they
    /// were decided one at a time — and persist the effects and an auth event
    /// per request. The result has one decision per request, in order. When
    /// the effects are durable relative to the reply is the backend's choice,
    /// stated in ARCHITECTURE.md ("Durability"). Two server processes on one
    /// PostgreSQL database agree.
    async fn authorize_batch(
        &self,
        requests: &[AccessFacts],
        now: Timestamp,
        opts: AuthorizeOptions,
    ) -> StoreResult<Vec<AccessDecision>>;

    /// Store a batch of accounting records in one transaction (group commit).
    /// Returns only after commit; on error nothing of the batch is stored.
    /// Idempotent per (nas_id, router, acct_session_id); counters only move
    /// forward and the voucher's usage moves by the same deltas in the same
    /// transaction. Accounting-On/Off close all live sessions of that router.
    async fn record_accounting(&self, records: &[AcctRecord]) -> StoreResult<()>;

    /// Close sessions of `nas_id`'s `router` ([`crate::model::Nas::router_key`];
    /// rows stored before routers were told apart count as every router's) with
    /// `cause`: with `keep_prefix`, the open ones whose Acct-Session-Id does not
    /// start with it (a NAS reboot); with `None`, every live one, open or
    /// authorized (Accounting-On/Off). Returns how many.
    async fn close_nas_sessions(
        &self,
        nas_id: i64,
        router: &str,
        keep_prefix: Option<&str>,
        cause: &str,
        now: Timestamp,
    ) -> StoreResult<u64>;

    /// Close open sessions with no accounting for 2 × interim interval + `grace`
    /// (`default_interim` when the session has none), and drop authorized sessions
    /// older than `authorized_ttl` that never started. Returns how many were closed.
    async fn close_stale_sessions(
        &self,
        now: Timestamp,
        default_interim: u64,
        grace: u64,
        authorized_ttl: u64,
    ) -> StoreResult<u64>;

    async fn list_sessions(&self, open_only: bool) -> StoreResult<Vec<Session>>;
    /// Open sessions per NAS name, for the metrics gauge.
    async fn open_sessions_by_nas(&self) -> StoreResult<Vec<(String, i64)>>;

    // ---- auth log ----
    async fn auth_events(&self, filter: &AuthEventFilter) -> StoreResult<Vec<AuthEvent>>;
    /// Delete auth events older than `before`. Returns how many.
    async fn prune_auth_events(&self, before: Timestamp) -> StoreResult<u64>;
    /// Write summed-up refusals to the auth log, one row each.
    async fn log_repeated_rejects(&self, rows: &[RepeatedRejects]) -> StoreResult<()>;
}

/// Why `nas add` refuses an address another NAS entry already has: requests
/// from it would all go to one entry, and the other router would get no answer.
/// Whether a new entry for `address` with `identifier` may join the entries
/// that already have that address (`holders`: their names and identifiers).
/// Several entries may share an address or network only when each has its
/// own identifier (the router's NAS-Identifier): a packet from the shared
/// address is then matched by it. Otherwise requests from one address would be
/// checked with one entry's secret and the other router would get no answer.
pub fn check_shared_address(
    address: &impl std::fmt::Display,
    identifier: Option<&str>,
    holders: &[(String, Option<String>)],
) -> StoreResult<()> {
    if identifier.is_none() && address.to_string() == "any" {
        return Err(StoreError::Invalid(
            "an entry for any source (--address any) needs an identifier: the router's \
             NAS-Identifier is what picks it"
                .into(),
        ));
    }
    let Some((first, _)) = holders.first() else {
        return Ok(());
    };
    let text = address.to_string();
    if text.starts_with("radsec:") {
        // One certificate, one router: two entries would make the choice arbitrary.
        return Err(StoreError::Invalid(format!(
            "the certificate {text} already identifies NAS {first}"
        )));
    }
    let explain = "several routers may share an address (behind one NAT address) only when every \
                   entry for it has its own --identifier, the router's NAS-Identifier (RouterOS \
                   `/system identity`)";
    if let Some(id) = identifier {
        if let Some((holder, _)) = holders.iter().find(|(_, h)| h.as_deref() == Some(id)) {
            return Err(StoreError::Invalid(format!(
                "address {address} already has NAS {holder} with identifier {id:?}: {explain}; \
                 give this router another identity"
            )));
        }
    }
    match (identifier, holders.iter().find(|(_, h)| h.is_none())) {
        (_, Some((holder, _))) => Err(StoreError::Invalid(format!(
            "address {address} already belongs to NAS {holder}, which has no identifier: \
             {explain}; give {holder} one first (`nas set {holder} --identifier ID`)"
        ))),
        (None, None) => Err(StoreError::Invalid(format!(
            "address {address} already belongs to NAS {first}: {explain}; \
             add this one with --identifier ID"
        ))),
        (Some(_), None) => Ok(()),
    }
}

/// A tenant name: what `--tenant` takes, so plain and short.
pub fn check_tenant_name(name: &str) -> StoreResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "tenant name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// A voucher may only move to a plan of its own tenant.
pub fn other_tenant_plan(plan: &str) -> StoreError {
    StoreError::Invalid(format!(
        "plan {plan} belongs to another tenant than the voucher"
    ))
}

fn unsupported(what: &str) -> StoreError {
    StoreError::Invalid(format!("{what} is not supported by this store"))
}

pub use crate::coa::CoaKind;

/// A queued CoA/Disconnect request and the session it is for, as the CoA
/// worker sends it.
#[derive(Clone, Debug)]
pub struct CoaRequest {
    pub id: i64,
    pub kind: CoaKind,
    /// Why it was queued: `revoked`, `quota_used`, `fair_use`, `plan_changed`.
    pub reason: String,
    pub session: Session,
}

/// Helper for implementations: the auth-event fields for a decision.
pub fn decision_result(decision: &AccessDecision) -> (&'static str, Option<RejectReason>) {
    match decision {
        AccessDecision::Accept(_) => ("accept", None),
        AccessDecision::Reject(r) => ("reject", Some(*r)),
    }
}

/// Open the store named by `url`: `sqlite://PATH` or `sqlite:PATH` (the file is
/// created when missing; a relative path is relative to the working directory), or
/// `postgres://…` / `postgresql://…`. Migrations are not run here: the caller calls
/// [`Store::migrate`], so that a read-only command never changes a schema.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        // Only the scheme is echoed: the rest of a URL may hold a password.
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        Err(StoreError::UnsupportedUrl(format!("{scheme}:…")))
    }
}
