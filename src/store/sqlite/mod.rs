//! SQLite backend: the embedded default (`sqlite://rrnet-radius.db`).
//!
//! One process owns the file while it serves. Everything this process does with
//! the database runs on one dedicated thread (the *engine*) that owns the only
//! connection: callers send it a job and await the answer. That gives:
//! - no per-statement hand-off between threads (a whole batch is one job), and
//!   statements prepared once and cached on the connection;
//! - one writer, so transactions never meet "database is locked" from inside the
//!   process, and a job that reads and then writes sees exactly what it read;
//! - read-your-writes in order: a read sent after a write runs after it.
//!
//! Authorization decides from memory: vouchers, plans and their live sessions
//! are kept by `memory.rs` once read, a batch whose codes are all there is
//! decided on the caller's thread with no wait for the engine, and its effects
//! and auth events are handed to the engine to write in decision order. A
//! batch that names a code memory lacks goes to the engine, which reads it,
//! decides, answers and then writes. Either way the writes and the commit are
//! off the reply's path. What that can lose in a crash is written down in
//! ARCHITECTURE.md ("Durability").
//!
//! Accounting is acknowledged only after its transaction commits.
//!
//! One store authorizes on a file (a lock next to it, `PATH.lock`): `serve`
//! takes it at start, and a second server on the same file stops with the
//! reason. Other processes (the CLI next to a running server) open the same
//! file with their own engine; SQLite's file locks and `busy_timeout`
//! arbitrate. Their changes to vouchers and plans bump `admin_generation`,
//! which the server reads before each batch it decides from memory, so a
//! revoke, a new voucher or a new plan counts from the next batch.
//!
//! Files: `schema.rs` (migrations), `admin.rs` (NAS, plans, vouchers, listings),
//! `memory.rs` (what authorization decides on), `authorize.rs`, `accounting.rs`
//! (the hot paths), `engine.rs` (the thread and its group transaction),
//! `checkpoint.rs` (the WAL).

mod accounting;
mod admin;
mod api;
mod authorize;
mod checkpoint;
mod coa;
mod engine;
mod events;
mod memory;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};

use super::{AuthEvent, AuthEventFilter, AuthorizeOptions, Store, StoreError, StoreResult};
use crate::model::{
    Nas, NewNas, NewPlan, NewVoucher, Plan, Secret, Session, Tenant, Timestamp, Voucher,
};
use crate::policy::{decide_batch_state, AccessDecision, AccessFacts, AcctRecord, VoucherSnapshot};

use engine::Job;

/// A [`Store`] on an SQLite file.
pub struct SqliteStore {
    /// Jobs for the engine thread; the thread ends when this is dropped.
    jobs: mpsc::Sender<Job>,
    /// What authorization decides on (see `memory.rs`).
    memory: memory::Memory,
    /// The lock that makes this store the one that authorizes on the file.
    decider: DeciderLock,
    /// Keeps the WAL bounded without stalling the engine (see `checkpoint.rs`).
    _checkpointer: checkpoint::Checkpointer,
}

/// How the engine's connection is set up. WAL with `synchronous=NORMAL`: a
/// committed transaction survives a crash of this process (it is in the WAL,
/// in the OS page cache); the last transactions before a power loss or kernel
/// crash may be lost (the WAL is synced at checkpoints), never the file's
/// consistency. A fleet that cannot lose an accounting record to a power cut
/// runs PostgreSQL.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_handler(Some(engine::busy_wait))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // After a checkpoint resets the WAL, cut the file back to 64 MiB: a burst
    // of accounting must not leave a WAL of its peak size on disk for good.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // Checkpoints run on their own thread (checkpoint.rs), never in a commit
    // of the engine, where they would hold up the replies waiting behind it.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // Each job of a group runs under a savepoint; its statement journal stays in
    // memory rather than in a temporary file written page by page.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // 8 MiB of page cache (SQLite's default is 2 MiB): the hot path's index
    // pages stay in the process instead of being read from the OS page by page.
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Create the database file, if it is missing, readable by its owner only: it
/// holds NAS secrets and voucher passwords. SQLite gives the `-wal` and `-shm`
/// files it makes beside it the same mode. An existing file keeps its mode.
fn create_private(path: &Path) -> StoreResult<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Invalid(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// The file named by `sqlite://PATH` or `sqlite:PATH` (query options ignored).
fn path_of(url: &str) -> StoreResult<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::UnsupportedUrl("not sqlite:".into()))?;
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    if path.is_empty() {
        return Err(StoreError::Invalid("the SQLite URL names no file".into()));
    }
    Ok(PathBuf::from(path))
}

/// One store authorizes on a database file at a time: it decides from memory
/// (`memory.rs`), which only it changes, so a second one deciding on the same
/// file could accept what the first has just given away. Held with `flock` on
/// `PATH.lock` from the first authorization until the store is dropped (or
/// the process ends); admin commands (the CLI) never take it.
struct DeciderLock {
    path: PathBuf,
    held: AtomicBool,
    file: Mutex<Option<std::fs::File>>,
}

impl DeciderLock {
    fn new(db: &Path) -> DeciderLock {
        let mut path = db.as_os_str().to_owned();
        path.push(".lock");
        DeciderLock {
            path: PathBuf::from(path),
            held: AtomicBool::new(false),
            file: Mutex::new(None),
        }
    }

    fn claim(&self) -> StoreResult<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if self.held.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_some() {
            return Ok(());
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| {
                StoreError::Invalid(format!("cannot open {}: {e}", self.path.display()))
            })?;
        match f.try_lock() {
            Ok(()) => {
                *file = Some(f);
                self.held.store(true, Ordering::Release);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Invalid(format!(
                "another rrnet-radius server authorizes on this SQLite database ({} is locked); \
                 one server per SQLite file — run several on PostgreSQL",
                self.path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Invalid(format!(
                "cannot lock {}: {e}",
                self.path.display()
            ))),
        }
    }
}

impl SqliteStore {
    /// Open (creating it if missing) the database at `url` (`sqlite://PATH` or
    /// `sqlite:PATH`; a relative path is relative to the working directory).
    /// Does not migrate.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let path = path_of(url)?;
        create_private(&path)?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let engine_path = path.clone();
        let gate = checkpoint::WalGate::new();
        let engine_gate = gate.clone();
        let memory: memory::Memory = Arc::new(Mutex::new(memory::AuthMemory::default()));
        let engine_memory = memory.clone();
        std::thread::Builder::new()
            .name("sqlite-engine".into())
            .spawn(move || {
                let opened = Connection::open_with_flags(
                    &engine_path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_CREATE
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .and_then(|c| configure(&c).map(|()| c));
                let conn = match opened {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(StoreError::from(e)));
                        return;
                    }
                };
                // Jobs run one after another until every sender is gone.
                engine::run(conn, rx, &engine_gate, &engine_memory);
            })
            .map_err(|e| StoreError::Invalid(format!("cannot start the SQLite thread: {e}")))?;
        ready_rx
            .await
            .map_err(|_| StoreError::Invalid("the SQLite thread ended at start".into()))??;
        let checkpointer = checkpoint::Checkpointer::start(&path, gate)?;
        let watch = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // No busy handler: this runs on the caller's thread, and a busy file
        // sends the batch to the engine instead of waiting here.
        memory::lock(&memory).watch(watch);
        Ok(SqliteStore {
            jobs,
            memory,
            decider: DeciderLock::new(&path),
            _checkpointer: checkpointer,
        })
    }

    /// Run `f` on the engine thread and wait for its result; `f` only reads.
    async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        self.solo(f, false).await
    }

    /// [`Self::call`] for `f` that changes vouchers, plans or sessions: what
    /// authorization holds in memory is read again after it.
    async fn call_write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        self.solo(f, true).await
    }

    async fn solo<T, F>(&self, f: F, writes: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Solo {
                run: Box::new(move |conn| {
                    let _ = tx.send(f(conn));
                }),
                writes,
            })
            .map_err(|_| StoreError::Invalid("the SQLite thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Invalid("the SQLite thread dropped a job".into()))?
    }

    /// [`Store::authorize`] with the decision function passed in (the battery
    /// tests storage apart from the voucher rules).
    pub async fn authorize_with_policy<F>(
        &self,
        facts: &AccessFacts,
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: F,
    ) -> StoreResult<AccessDecision>
    where
        F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision
            + Send
            + Sync
            + 'static,
    {
        let mut d = self
            .authorize_batch_with_policy(std::slice::from_ref(facts), now, opts, decide)
            .await?;
        Ok(d.pop().expect("one decision per request"))
    }

    /// [`Store::authorize_batch`] with the decision function passed in.
    pub async fn authorize_batch_with_policy<F>(
        &self,
        requests: &[AccessFacts],
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: F,
    ) -> StoreResult<Vec<AccessDecision>>
    where
        F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision
            + Send
            + Sync
            + 'static,
    {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        self.decider.claim()?;
        if let Some(decisions) = self.decide_in_memory(requests, now, opts, &decide)? {
            return Ok(decisions);
        }
        let requests = requests.to_vec();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Group(Box::new(authorize::AuthorizeJob {
                requests,
                now,
                opts,
                decide,
                reply: tx,
                jobs: self.jobs.clone(),
            })))
            .map_err(|_| StoreError::Invalid("the SQLite thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Invalid("the SQLite thread dropped a job".into()))?
    }

    /// Decide a batch whose vouchers are all in memory, without waiting for
    /// the engine; its effects are queued for the engine before the lock is
    /// let go, so they are written in decision order. `None`: the batch needs
    /// the engine.
    fn decide_in_memory<F>(
        &self,
        requests: &[AccessFacts],
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: &F,
    ) -> StoreResult<Option<Vec<AccessDecision>>>
    where
        F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision,
    {
        let mut mem = memory::lock(&self.memory);
        let Some(state) = mem.state_for(requests) else {
            return Ok(None);
        };
        let (decisions, effects, after) =
            decide_batch_state(requests, state, now, opts.authorized_ttl, decide);
        let (seq, touched) = mem.remember(after, &effects, now, opts.authorized_ttl);
        let job = memory::EffectsJob {
            seq,
            events: memory::events(requests, &decisions),
            effects,
            touched,
            now,
        };
        self.jobs
            .send(Job::Group(Box::new(job)))
            .map_err(|_| StoreError::Invalid("the SQLite thread has stopped".into()))?;
        Ok(Some(decisions))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        self.call_write(schema::migrate).await
    }

    async fn claim_decider(&self) -> StoreResult<()> {
        self.decider.claim()
    }

    async fn ping(&self) -> StoreResult<()> {
        // A real table, not `SELECT 1`: the schema must be there and readable.
        self.call(|c| admin::nas_generation(c).map(|_| ())).await
    }

    async fn add_nas(&self, nas: &NewNas) -> StoreResult<Nas> {
        let nas = nas.clone();
        self.call(move |c| admin::add_nas(c, &nas)).await
    }

    async fn list_nas(&self) -> StoreResult<Vec<Nas>> {
        self.call(admin::list_nas).await
    }

    async fn remove_nas(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.call_write(move |c| admin::remove_nas(c, &name)).await
    }

    async fn set_nas_secret(
        &self,
        name: &str,
        secret: &Secret,
        keep_previous_until: Option<Timestamp>,
    ) -> StoreResult<()> {
        let (name, secret) = (name.to_owned(), secret.clone());
        self.call(move |c| admin::set_nas_secret(c, &name, &secret, keep_previous_until))
            .await
    }

    async fn nas_generation(&self) -> StoreResult<i64> {
        self.call(admin::nas_generation).await
    }

    async fn add_plan(&self, plan: &NewPlan) -> StoreResult<Plan> {
        let plan = plan.clone();
        self.call_write(move |c| admin::add_plan(c, &plan)).await
    }

    async fn list_plans(&self) -> StoreResult<Vec<Plan>> {
        self.call(admin::list_plans).await
    }

    async fn get_plan(&self, name: &str) -> StoreResult<Plan> {
        let name = name.to_owned();
        self.call(move |c| admin::get_plan(c, &name)).await
    }

    async fn add_vouchers(&self, vouchers: &[NewVoucher]) -> StoreResult<Vec<Voucher>> {
        let vouchers = vouchers.to_vec();
        self.call_write(move |c| admin::add_vouchers(c, &vouchers))
            .await
    }

    async fn get_voucher(&self, tenant_id: i64, code: &str) -> StoreResult<Voucher> {
        let code = code.to_owned();
        self.call(move |c| admin::get_voucher(c, tenant_id, &code))
            .await
    }

    async fn add_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let name = name.to_owned();
        self.call_write(move |c| admin::add_tenant(c, &name)).await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.call(admin::list_tenants).await
    }

    async fn list_vouchers(
        &self,
        plan: Option<&str>,
        batch: Option<&str>,
    ) -> StoreResult<Vec<Voucher>> {
        let (plan, batch) = (plan.map(str::to_owned), batch.map(str::to_owned));
        self.call(move |c| admin::list_vouchers(c, plan.as_deref(), batch.as_deref()))
            .await
    }

    async fn revoke_voucher_with(
        &self,
        tenant_id: i64,
        code: &str,
        disconnect: bool,
    ) -> StoreResult<Voucher> {
        let code = code.to_owned();
        self.call_write(move |c| admin::revoke_voucher_with(c, tenant_id, &code, disconnect))
            .await
    }

    async fn set_nas_coa(
        &self,
        name: &str,
        coa_port: Option<u16>,
        coa_address: Option<Option<std::net::IpAddr>>,
    ) -> StoreResult<Nas> {
        let name = name.to_owned();
        self.call(move |c| admin::set_nas_coa(c, &name, coa_port, coa_address))
            .await
    }

    async fn update_plan(&self, plan: &Plan) -> StoreResult<u64> {
        let plan = plan.clone();
        self.call_write(move |c| admin::update_plan(c, &plan)).await
    }

    async fn set_nas_identifier(&self, name: &str, identifier: Option<&str>) -> StoreResult<Nas> {
        let (name, identifier) = (name.to_owned(), identifier.map(str::to_owned));
        self.call_write(move |c| admin::set_nas_identifier(c, &name, identifier.as_deref()))
            .await
    }

    async fn set_voucher_plan(&self, tenant_id: i64, code: &str, plan: &str) -> StoreResult<u64> {
        let (code, plan) = (code.to_owned(), plan.to_owned());
        self.call_write(move |c| admin::set_voucher_plan(c, tenant_id, &code, &plan))
            .await
    }

    async fn voucher_page(&self, q: &crate::store::VoucherQuery) -> StoreResult<Vec<Voucher>> {
        let q = q.clone();
        self.call(move |c| api::voucher_page(c, &q)).await
    }

    async fn session_page(&self, q: &crate::store::SessionQuery) -> StoreResult<Vec<Session>> {
        let q = q.clone();
        self.call(move |c| api::session_page(c, &q)).await
    }

    async fn remove_plan(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.call_write(move |c| api::remove_plan(c, &name)).await
    }

    async fn queue_session_disconnect(&self, session_id: i64) -> StoreResult<u64> {
        self.call_write(move |c| api::queue_session_disconnect(c, session_id))
            .await
    }

    async fn add_api_token(
        &self,
        token: &crate::store::NewApiToken,
    ) -> StoreResult<crate::store::ApiToken> {
        let token = token.clone();
        self.call(move |c| api::add_api_token(c, &token)).await
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<crate::store::ApiToken>> {
        self.call(api::list_api_tokens).await
    }

    async fn revoke_api_token(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.call(move |c| api::revoke_api_token(c, &name)).await
    }

    async fn claim_idempotency_key(
        &self,
        token_id: i64,
        key: &str,
        request_hash: &str,
        now: Timestamp,
    ) -> StoreResult<crate::store::IdempotencyClaim> {
        let (key, hash) = (key.to_owned(), request_hash.to_owned());
        self.call(move |c| api::claim_idempotency_key(c, token_id, &key, &hash, now))
            .await
    }

    async fn finish_idempotency_key(
        &self,
        token_id: i64,
        key: &str,
        answer: Option<(u16, &str)>,
    ) -> StoreResult<()> {
        let key = key.to_owned();
        let answer = answer.map(|(s, b)| (s, b.to_owned()));
        self.call(move |c| api::finish_idempotency_key(c, token_id, &key, answer))
            .await
    }

    async fn get_voucher_by_id(&self, id: i64) -> StoreResult<Voucher> {
        self.call(move |c| admin::get_voucher_by_id(c, id)).await
    }

    async fn get_session(&self, id: i64) -> StoreResult<Session> {
        self.call(move |c| admin::get_session(c, id)).await
    }

    async fn claim_coa_requests(
        &self,
        now: Timestamp,
        limit: u32,
        reclaim_before: Timestamp,
    ) -> StoreResult<Vec<super::CoaRequest>> {
        self.call(move |c| coa::claim(c, now, limit, reclaim_before))
            .await
    }

    async fn finish_coa_request(
        &self,
        request_id: Option<i64>,
        session_id: i64,
        kind: super::CoaKind,
        result: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let result = result.to_owned();
        self.call(move |c| coa::finish(c, request_id, session_id, kind, &result, now))
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
        let hook = hook.clone();
        self.call(move |c| events::add_webhook(c, &hook)).await
    }

    async fn list_webhooks(&self) -> StoreResult<Vec<crate::events::Webhook>> {
        self.call(events::list_webhooks).await
    }

    async fn remove_webhook(&self, which: &str) -> StoreResult<u64> {
        let which = which.to_owned();
        self.call(move |c| events::remove_webhook(c, &which)).await
    }

    async fn list_deliveries(
        &self,
        filter: &crate::events::DeliveryFilter,
    ) -> StoreResult<Vec<crate::events::Delivery>> {
        let filter = filter.clone();
        self.call(move |c| events::list_deliveries(c, &filter))
            .await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        per_webhook: u32,
        skip: &[i64],
    ) -> StoreResult<Vec<crate::events::DeliveryJob>> {
        let skip = skip.to_vec();
        self.call(move |c| events::claim(c, now, lease_until, limit, per_webhook, &skip))
            .await
    }

    async fn finish_delivery(
        &self,
        id: i64,
        outcome: &crate::events::DeliveryOutcome,
        now: Timestamp,
    ) -> StoreResult<()> {
        let outcome = outcome.clone();
        self.call(move |c| events::finish(c, id, &outcome, now))
            .await
    }

    async fn events_after(
        &self,
        tenant: Option<i64>,
        after: Option<crate::events::EventCursor>,
        limit: u32,
    ) -> StoreResult<Vec<crate::events::EventRecord>> {
        self.call(move |c| events::events_after(c, tenant, after, limit))
            .await
    }

    async fn prune_events(&self, before: Timestamp) -> StoreResult<u64> {
        self.call(move |c| events::prune_events(c, before)).await
    }

    async fn delivery_backlog(&self) -> StoreResult<i64> {
        self.call(events::delivery_backlog).await
    }

    async fn record_accounting(&self, records: &[AcctRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Group(Box::new(accounting::AccountingJob {
                records: records.to_vec(),
                reply: tx,
            })))
            .map_err(|_| StoreError::Invalid("the SQLite thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Invalid("the SQLite thread dropped a job".into()))?
    }

    async fn close_nas_sessions(
        &self,
        nas_id: i64,
        router: &str,
        keep_prefix: Option<&str>,
        cause: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let (keep_prefix, cause) = (keep_prefix.map(str::to_owned), cause.to_owned());
        let router = router.to_owned();
        self.call_write(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let n = accounting::close_live_sessions(
                &tx,
                nas_id,
                &router,
                keep_prefix.as_deref(),
                &cause,
                now,
            )?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn close_stale_sessions(
        &self,
        now: Timestamp,
        default_interim: u64,
        grace: u64,
        authorized_ttl: u64,
    ) -> StoreResult<u64> {
        self.call_write(move |c| {
            accounting::close_stale_sessions(c, now, default_interim, grace, authorized_ttl)
        })
        .await
    }

    async fn list_sessions(&self, open_only: bool) -> StoreResult<Vec<Session>> {
        self.call(move |c| admin::list_sessions(c, open_only)).await
    }

    async fn open_sessions_by_nas(&self) -> StoreResult<Vec<(String, i64)>> {
        self.call(admin::open_sessions_by_nas).await
    }

    async fn auth_events(&self, filter: &AuthEventFilter) -> StoreResult<Vec<AuthEvent>> {
        let filter = filter.clone();
        self.call(move |c| admin::auth_events(c, &filter)).await
    }

    async fn prune_auth_events(&self, before: Timestamp) -> StoreResult<u64> {
        self.call(move |c| admin::prune_auth_events(c, before))
            .await
    }

    async fn log_repeated_rejects(
        &self,
        rows: &[crate::store::RepeatedRejects],
    ) -> StoreResult<()> {
        let rows = rows.to_vec();
        self.call(move |c| admin::log_repeated_rejects(c, &rows))
            .await
    }
}
