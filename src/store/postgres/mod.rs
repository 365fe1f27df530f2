//! PostgreSQL backend, for fleets and for several server instances on one database.
//!
//! The business rules are not here: an authorization batch reads the state it is
//! decided against, hands it to [`crate::policy::decide_batch`] and writes the
//! effects it returns; accounting does the same with
//! [`crate::policy::account_batch`]. What this backend adds is how that is made
//! safe and cheap when several instances share the database:
//!
//! - **Row versions, then row locks.** `authorize_batch` reads the batch's
//!   vouchers without locking them and writes its effects in one statement that
//!   updates each accepted voucher only if its row is still the version read
//!   (`ctid`, `xmin`); otherwise the statement fails (40001) and the batch is
//!   run again with the vouchers locked `FOR UPDATE` in id order. So every
//!   authorization of one voucher, in any process, that commits an accept was
//!   decided on the state the previous one committed: a single-device voucher
//!   tried from two MACs at once on two instances is accepted once and
//!   activated once ([`authorize`]). Accounting locks the session rows it
//!   updates, in id order.
//! - **Retries.** Transactions run at READ COMMITTED. A deadlock (40P01), a
//!   serialization failure (40001, including the authorization guard), or a
//!   [`StoreError::Conflict`] (a session row another instance created or adopted
//!   between our read and our write) rolls the work back, and the whole batch
//!   is run again, up to [`WRITE_ATTEMPTS`] times.
//! - **Few round trips.** Batch rows travel as typed arrays (`bigint[]`,
//!   `text[]`) expanded by `UNNEST … WITH ORDINALITY`, so a statement's text never
//!   depends on the batch size and is prepared once per connection. An
//!   authorization batch is one read and one write, each its own transaction
//!   ([`authorize`]); an accounting batch is BEGIN, one to three reads, one
//!   write, COMMIT ([`accounting`]). Pooled connections are not pinged on every
//!   acquire.
//!
//! Files: `authorize.rs` the authorization transaction; `accounting.rs` the
//! accounting transaction; `admin.rs` everything else (NAS, plans, vouchers,
//! session listing and closing, the auth log).

mod accounting;
mod admin;
mod api;
mod authorize;
mod coa;
mod events;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use super::{
    AcctRecord, AuthEvent, AuthEventFilter, AuthorizeOptions, Store, StoreError, StoreResult,
};
use crate::model::{
    Nas, NewNas, NewPlan, NewVoucher, Plan, Secret, Session, Tenant, Timestamp, Voucher,
};
use crate::policy::{AccessDecision, AccessFacts, VoucherSnapshot};

/// Connections per server instance for accounting and administration:
/// accounting batches proceed in parallel up to this many.
const MAX_CONNECTIONS: u32 = 16;

/// Connections per server instance for authorization: one per decider is
/// enough (2 by default); the REST shim's calls share them.
const AUTH_CONNECTIONS: u32 = 8;

/// How long opening the database (and later, waiting for a pooled connection)
/// may take before it is reported as an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled connection idle for longer than this is pinged before it is used.
const IDLE_CHECK: Duration = Duration::from_secs(10);

/// How often a write transaction is tried when it meets a deadlock, a
/// serialization failure or a [`StoreError::Conflict`].
const WRITE_ATTEMPTS: u32 = 4;

/// A [`Store`] on a PostgreSQL database.
pub struct PgStore {
    pool: PgPool,
    /// Authorization's connections (generic plans).
    auth_pool: PgPool,
}

impl PgStore {
    /// Connect to `url` (`postgres://…` or `postgresql://…`). Does not migrate.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse()?;
        Self::open_with(options).await
    }

    /// Connect with prepared options (e.g. a `search_path` set through
    /// [`PgConnectOptions::options`]). Does not migrate.
    ///
    /// One connection is opened first, on its own: when the server is down or
    /// refuses the login, its error is what is reported (a pool would only say
    /// that it timed out). The pool then opens its connections as they are needed.
    pub async fn open_with(options: PgConnectOptions) -> StoreResult<Self> {
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options));
        let reason = match probe.await {
            Ok(Ok(conn)) => {
                // A failed goodbye is no reason to fail the open.
                let _ = conn.close().await;
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
        };
        if let Some(reason) = reason {
            return Err(StoreError::Connect {
                server: server_name(&options),
                reason,
            });
        }
        // Authorization has connections of its own, whose statements use
        // generic plans: they take arrays whose length the planner would
        // otherwise plan for on every execution (a custom plan per call,
        // ~0.2–1 ms each), and their one generic plan is made of index and TID
        // probes per key (see `authorize`), good for any batch and table size.
        // Accounting and administration keep PostgreSQL's default: their
        // joins on arrays are planned with the arrays' real sizes.
        // Their commits do not wait for the WAL flush (`synchronous_commit =
        // off`): what a crash of PostgreSQL can then lose, and why that is
        // acceptable for auth effects only, is in ARCHITECTURE.md ("Durability").
        let auth_pool = pool_options(AUTH_CONNECTIONS)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    for setting in [
                        "SET plan_cache_mode = force_generic_plan",
                        "SET synchronous_commit = off",
                    ] {
                        sqlx::query(setting).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options.clone());
        let pool = pool_options(MAX_CONNECTIONS).connect_lazy_with(options);
        Ok(PgStore { pool, auth_pool })
    }

    /// [`Store::authorize`] with the decision function passed in: a batch of one.
    pub async fn authorize_with_policy<F>(
        &self,
        facts: &AccessFacts,
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: F,
    ) -> StoreResult<AccessDecision>
    where
        F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision + Send + Sync,
    {
        let mut decisions = self
            .authorize_batch_with_policy(std::slice::from_ref(facts), now, opts, decide)
            .await?;
        Ok(decisions.pop().expect("one decision per request"))
    }

    /// [`Store::authorize_batch`] with the decision function passed in. The
    /// trait methods pass [`crate::policy::decide`]; taking it as a parameter
    /// lets the storage effects (snapshot, activation, MAC binding, session
    /// rows, auth events, row locking) be tested apart from the voucher rules.
    pub async fn authorize_batch_with_policy<F>(
        &self,
        requests: &[AccessFacts],
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: F,
    ) -> StoreResult<Vec<AccessDecision>>
    where
        F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision + Send + Sync,
    {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        // The first run reads without locks; a run after a conflict locks the
        // batch's vouchers first, so it is decided on the winner's state.
        let mut attempt = 1;
        loop {
            let mode = if attempt == 1 {
                authorize::Mode::Optimistic
            } else {
                authorize::Mode::Locked
            };
            match authorize::authorize_batch(&self.auth_pool, requests, now, opts, &decide, mode)
                .await
            {
                Err(e) if attempt < WRITE_ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "authorization batch retried");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// A pool of up to `max` connections, opened as they are needed.
fn pool_options(max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(CONNECT_TIMEOUT)
        // sqlx pings a connection (a round trip) every time it is taken from
        // the pool unless told otherwise; under load that is one more round
        // trip per batch. Only a connection that sat idle is checked: one that
        // broke while in use fails its statement, and sqlx drops it.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_CHECK {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// The server a connection goes to, for messages: host, port, database and
/// user; never the password.
fn server_name(options: &PgConnectOptions) -> String {
    let mut name = format!(
        "PostgreSQL at {}:{}",
        options.get_host(),
        options.get_port()
    );
    if let Some(database) = options.get_database() {
        name.push_str(&format!(", database {database:?}"));
    }
    name.push_str(&format!(", user {:?}", options.get_username()));
    name
}

/// PostgreSQL aborts one side of a deadlock (40P01) or a serialization conflict
/// (40001); such a transaction did nothing and can simply be run again, as can
/// one that found a row another instance wrote meanwhile ([`StoreError::Conflict`]).
fn is_retryable(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(d)) => {
            matches!(d.code().as_deref(), Some("40001") | Some("40P01"))
        }
        StoreError::Conflict => true,
        _ => false,
    }
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(StoreError::from)
    }

    async fn ping(&self) -> StoreResult<()> {
        // A real table, not `SELECT 1`: the schema must be there and readable.
        sqlx::query("SELECT value FROM meta WHERE key = 'nas_generation'")
            .fetch_optional(&self.pool)
            .await?;
        Ok(())
    }

    async fn add_nas(&self, nas: &NewNas) -> StoreResult<Nas> {
        admin::add_nas(&self.pool, nas).await
    }

    async fn list_nas(&self) -> StoreResult<Vec<Nas>> {
        admin::list_nas(&self.pool).await
    }

    async fn remove_nas(&self, name: &str) -> StoreResult<()> {
        admin::remove_nas(&self.pool, name).await
    }

    async fn set_nas_secret(
        &self,
        name: &str,
        secret: &Secret,
        keep_previous_until: Option<Timestamp>,
    ) -> StoreResult<()> {
        admin::set_nas_secret(&self.pool, name, secret, keep_previous_until).await
    }

    async fn nas_generation(&self) -> StoreResult<i64> {
        admin::nas_generation(&self.pool).await
    }

    async fn add_plan(&self, plan: &NewPlan) -> StoreResult<Plan> {
        admin::add_plan(&self.pool, plan).await
    }

    async fn list_plans(&self) -> StoreResult<Vec<Plan>> {
        admin::list_plans(&self.pool).await
    }

    async fn get_plan(&self, name: &str) -> StoreResult<Plan> {
        admin::get_plan(&self.pool, name).await
    }

    async fn add_vouchers(&self, vouchers: &[NewVoucher]) -> StoreResult<Vec<Voucher>> {
        admin::add_vouchers(&self.pool, vouchers).await
    }

    async fn get_voucher(&self, tenant_id: i64, code: &str) -> StoreResult<Voucher> {
        admin::get_voucher(&self.pool, tenant_id, code).await
    }

    async fn add_tenant(&self, name: &str) -> StoreResult<Tenant> {
        admin::add_tenant(&self.pool, name).await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        admin::list_tenants(&self.pool).await
    }

    async fn list_vouchers(
        &self,
        plan: Option<&str>,
        batch: Option<&str>,
    ) -> StoreResult<Vec<Voucher>> {
        admin::list_vouchers(&self.pool, plan, batch).await
    }

    async fn revoke_voucher_with(
        &self,
        tenant_id: i64,
        code: &str,
        disconnect: bool,
    ) -> StoreResult<Voucher> {
        coa::revoke_voucher(&self.pool, tenant_id, code, disconnect).await
    }

    async fn set_nas_coa(
        &self,
        name: &str,
        coa_port: Option<u16>,
        coa_address: Option<Option<std::net::IpAddr>>,
    ) -> StoreResult<Nas> {
        coa::set_nas_coa(&self.pool, name, coa_port, coa_address).await
    }

    async fn update_plan(&self, plan: &Plan) -> StoreResult<u64> {
        coa::update_plan(&self.pool, plan).await
    }

    async fn set_nas_identifier(&self, name: &str, identifier: Option<&str>) -> StoreResult<Nas> {
        admin::set_nas_identifier(&self.pool, name, identifier).await
    }

    async fn set_voucher_plan(&self, tenant_id: i64, code: &str, plan: &str) -> StoreResult<u64> {
        coa::set_voucher_plan(&self.pool, tenant_id, code, plan).await
    }

    async fn voucher_page(&self, q: &crate::store::VoucherQuery) -> StoreResult<Vec<Voucher>> {
        api::voucher_page(&self.pool, q).await
    }

    async fn session_page(&self, q: &crate::store::SessionQuery) -> StoreResult<Vec<Session>> {
        api::session_page(&self.pool, q).await
    }

    async fn remove_plan(&self, name: &str) -> StoreResult<()> {
        api::remove_plan(&self.pool, name).await
    }

    async fn queue_session_disconnect(&self, session_id: i64) -> StoreResult<u64> {
        api::queue_session_disconnect(&self.pool, session_id).await
    }

    async fn add_api_token(
        &self,
        token: &crate::store::NewApiToken,
    ) -> StoreResult<crate::store::ApiToken> {
        api::add_api_token(&self.pool, token).await
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<crate::store::ApiToken>> {
        api::list_api_tokens(&self.pool).await
    }

    async fn revoke_api_token(&self, name: &str) -> StoreResult<()> {
        api::revoke_api_token(&self.pool, name).await
    }

    async fn claim_idempotency_key(
        &self,
        token_id: i64,
        key: &str,
        request_hash: &str,
        now: Timestamp,
    ) -> StoreResult<crate::store::IdempotencyClaim> {
        api::claim_idempotency_key(&self.pool, token_id, key, request_hash, now).await
    }

    async fn finish_idempotency_key(
        &self,
        token_id: i64,
        key: &str,
        answer: Option<(u16, &str)>,
    ) -> StoreResult<()> {
        api::finish_idempotency_key(&self.pool, token_id, key, answer).await
    }

    async fn get_voucher_by_id(&self, id: i64) -> StoreResult<Voucher> {
        coa::get_voucher_by_id(&self.pool, id).await
    }

    async fn get_session(&self, id: i64) -> StoreResult<Session> {
        coa::get_session(&self.pool, id).await
    }

    async fn claim_coa_requests(
        &self,
        now: Timestamp,
        limit: u32,
        reclaim_before: Timestamp,
    ) -> StoreResult<Vec<super::CoaRequest>> {
        coa::claim(&self.pool, now, limit, reclaim_before).await
    }

    async fn finish_coa_request(
        &self,
        request_id: Option<i64>,
        session_id: i64,
        kind: super::CoaKind,
        result: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        coa::finish(&self.pool, request_id, session_id, kind, result, now).await
    }

    async fn authorize(
        &self,
        facts: &AccessFacts,
        now: Timestamp,
        opts: AuthorizeOptions,
    ) -> StoreResult<AccessDecision> {
        self.authorize_with_policy(facts, now, opts, crate::policy::decide)
            .await
    }

    async fn authorize_batch(
        &self,
        requests: &[AccessFacts],
        now: Timestamp,
        opts: AuthorizeOptions,
    ) -> StoreResult<Vec<AccessDecision>> {
        self.authorize_batch_with_policy(requests, now, opts, crate::policy::decide)
            .await
    }

    async fn add_webhook(
        &self,
        hook: &crate::events::NewWebhook,
    ) -> StoreResult<crate::events::Webhook> {
        events::add_webhook(&self.pool, hook).await
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<crate::events::Webhook>> {
        events::list_webhooks(&self.pool).await
    }

    async fn remove_webhook(&self, which: &str) -> StoreResult<u64> {
        events::remove_webhook(&self.pool, which).await
    }

    async fn list_deliveries(
        &self,
        filter: &crate::events::DeliveryFilter,
    ) -> StoreResult<Vec<crate::events::Delivery>> {
        events::list_deliveries(&self.pool, filter).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        per_webhook: u32,
        skip: &[i64],
    ) -> StoreResult<Vec<crate::events::DeliveryJob>> {
        events::claim(&self.pool, now, lease_until, limit, per_webhook, skip).await
    }

    async fn finish_delivery(
        &self,
        id: i64,
        outcome: &crate::events::DeliveryOutcome,
        now: Timestamp,
    ) -> StoreResult<()> {
        events::finish(&self.pool, id, outcome, now).await
    }

    async fn events_after(
        &self,
        tenant: Option<i64>,
        after: Option<crate::events::EventCursor>,
        limit: u32,
    ) -> StoreResult<Vec<crate::events::EventRecord>> {
        events::events_after(&self.pool, tenant, after, limit).await
    }

    async fn prune_events(&self, before: Timestamp) -> StoreResult<u64> {
        events::prune_events(&self.pool, before).await
    }

    async fn delivery_backlog(&self) -> StoreResult<i64> {
        events::delivery_backlog(&self.pool).await
    }

    async fn record_accounting(&self, records: &[AcctRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut attempt = 1;
        loop {
            match accounting::record_accounting(&self.pool, records).await {
                Err(e) if attempt < WRITE_ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(attempt, error = %e, "accounting batch retried");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn close_nas_sessions(
        &self,
        nas_id: i64,
        router: &str,
        keep_prefix: Option<&str>,
        cause: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let mut conn = self.pool.acquire().await?;
        admin::close_nas_sessions(&mut conn, nas_id, router, keep_prefix, cause, now).await
    }

    async fn close_stale_sessions(
        &self,
        now: Timestamp,
        default_interim: u64,
        grace: u64,
        authorized_ttl: u64,
    ) -> StoreResult<u64> {
        admin::close_stale_sessions(&self.pool, now, default_interim, grace, authorized_ttl).await
    }

    async fn list_sessions(&self, open_only: bool) -> StoreResult<Vec<Session>> {
        admin::list_sessions(&self.pool, open_only).await
    }

    async fn open_sessions_by_nas(&self) -> StoreResult<Vec<(String, i64)>> {
        admin::open_sessions_by_nas(&self.pool).await
    }

    async fn auth_events(&self, filter: &AuthEventFilter) -> StoreResult<Vec<AuthEvent>> {
        admin::auth_events(&self.pool, filter).await
    }

    async fn prune_auth_events(&self, before: Timestamp) -> StoreResult<u64> {
        admin::prune_auth_events(&self.pool, before).await
    }

    async fn log_repeated_rejects(
        &self,
        rows: &[crate::store::RepeatedRejects],
    ) -> StoreResult<()> {
        admin::log_repeated_rejects(&self.pool, rows).await
    }
}
