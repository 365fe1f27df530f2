//! One storage test battery, run against SQLite (a fresh temporary file per test)
//! and PostgreSQL (a fresh schema per test in the database named by
//! `RRNET_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! When PostgreSQL cannot be reached its tests are skipped (recorded for the
//! summary of `./test.sh`, see `common::skip`), unless `RRNET_REQUIRE_POSTGRES=1`,
//! which makes them fail (CI sets it).
//!
//! Most cases drive `authorize` through `authorize_with_policy` with small stand-in
//! decision functions, so that they test what storage does (snapshot, activation
//! guard, MAC binding, session rows, auth events, row locking) and not the voucher
//! rules. The cases in the section "needs the real policy" go through
//! `Store::authorize`, i.e. `policy::decide`, and assume the rules of DESIGN §5.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rrnet_radius::model::{
    Nas, NewNas, NewPlan, NewVoucher, Plan, Secret, Session, SessionState, Timestamp, VoucherState,
    DEFAULT_TENANT,
};
use rrnet_radius::policy::{
    AccessDecision, AccessFacts, Activation, Credential, Grant, RejectReason, VoucherSnapshot,
};
use rrnet_radius::store::{
    self, AcctRecord, AcctStatus, AuthEventFilter, AuthorizeOptions, PgStore, SqliteStore, Store,
    StoreError, StoreResult,
};

// ---------------------------------------------------------------------------
// Backends and fixtures
// ---------------------------------------------------------------------------

/// A stand-in decision. Owned (`Clone + 'static`) because a backend may run the
/// decision on its own thread.
trait Decide:
    Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<F> Decide for F where
    F: Fn(&AccessFacts, Option<&VoucherSnapshot>, Timestamp) -> AccessDecision
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// What the battery needs beyond [`Store`]: a second instance on the same
/// database, and authorize with a stand-in decision.
#[async_trait]
trait Backend: Store + Sized {
    /// Only one instance may authorize on a database (SQLite: the one that
    /// decides from memory); a second is refused.
    const ONE_DECIDER: bool;
    async fn open_url(url: &str) -> StoreResult<Self>;
    async fn authorize_with<D: Decide>(
        &self,
        facts: &AccessFacts,
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: &D,
    ) -> StoreResult<AccessDecision>;
    async fn authorize_batch_with<D: Decide>(
        &self,
        requests: &[AccessFacts],
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: &D,
    ) -> StoreResult<Vec<AccessDecision>>;
}

#[async_trait]
impl Backend for SqliteStore {
    const ONE_DECIDER: bool = true;
    async fn open_url(url: &str) -> StoreResult<Self> {
        SqliteStore::open(url).await
    }
    async fn authorize_with<D: Decide>(
        &self,
        facts: &AccessFacts,
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: &D,
    ) -> StoreResult<AccessDecision> {
        self.authorize_with_policy(facts, now, opts, decide.clone())
            .await
    }
    async fn authorize_batch_with<D: Decide>(
        &self,
        requests: &[AccessFacts],
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: &D,
    ) -> StoreResult<Vec<AccessDecision>> {
        self.authorize_batch_with_policy(requests, now, opts, decide.clone())
            .await
    }
}

#[async_trait]
impl Backend for PgStore {
    const ONE_DECIDER: bool = false;
    async fn open_url(url: &str) -> StoreResult<Self> {
        PgStore::open(url).await
    }
    async fn authorize_with<D: Decide>(
        &self,
        facts: &AccessFacts,
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: &D,
    ) -> StoreResult<AccessDecision> {
        self.authorize_with_policy(facts, now, opts, decide.clone())
            .await
    }
    async fn authorize_batch_with<D: Decide>(
        &self,
        requests: &[AccessFacts],
        now: Timestamp,
        opts: AuthorizeOptions,
        decide: &D,
    ) -> StoreResult<Vec<AccessDecision>> {
        self.authorize_batch_with_policy(requests, now, opts, decide.clone())
            .await
    }
}

struct Fixture<S> {
    store: S,
    /// Opens further instances on the same database.
    url: String,
    _guard: Guard,
}

#[allow(dead_code)] // the fields are held for their Drop
enum Guard {
    Dir(tempfile::TempDir),
    Pg(PgSchema),
}

async fn sqlite_fixture() -> Option<Fixture<SqliteStore>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("battery.db").display());
    let store = SqliteStore::open(&url).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    Some(Fixture {
        store,
        url,
        _guard: Guard::Dir(dir),
    })
}

fn pg_base_url() -> String {
    std::env::var("RRNET_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The URL without its user and password, for messages.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_string(),
    }
}

/// A schema made for one test and dropped when the test ends (also on panic).
struct PgSchema {
    base_url: String,
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let base = self.base_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, where blocking on a future is not
        // allowed: use a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

async fn pg_fixture() -> Option<Fixture<PgStore>> {
    use sqlx::Connection;
    let base = pg_base_url();
    let shown = redacted(&base);
    let admin =
        tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&base)).await;
    let mut admin = match admin {
        Ok(Ok(conn)) => conn,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "connect timed out".to_string(),
            };
            common::skip(
                common::Lacks::Postgres,
                &format!(
                    "PostgreSQL not reachable at {shown} ({why}); start it or set RRNET_TEST_POSTGRES_URL"
                ),
            );
            return None;
        }
    };
    let name = format!("t_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(&mut admin)
        .await
        .expect("create schema");
    let guard = PgSchema {
        base_url: base.clone(),
        name: name.clone(),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    // libpq's `options` startup parameter, URL-encoded "-c search_path=NAME".
    let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
    let store = PgStore::open(&url).await.expect("open postgres");
    store.migrate().await.expect("migrate postgres");
    Some(Fixture {
        store,
        url,
        _guard: Guard::Pg(guard),
    })
}

/// Instantiates every case of [`cases`] for one backend.
macro_rules! battery {
    ($backend:ident, $fixture:ident; $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(fx) = super::$fixture().await else { return };
                    super::cases::$case(&fx).await;
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($backend:ident, $fixture:ident) => {
        battery!($backend, $fixture;
            migrate_twice,
            nas_crud_and_generation,
            nas_shared_address_needs_identifiers,
            plan_crud,
            voucher_crud,
            accounting_counters,
            accounting_64bit_counters,
            accounting_links_voucher,
            accounting_batch_group_commit,
            accounting_batch_all_or_nothing,
            accounting_on_off_closes_nas_sessions,
            close_nas_sessions_keep_prefix,
            routers_sharing_an_entry_keep_their_sessions,
            stale_sessions,
            auth_events_filters_and_pruning,
            repeated_rejects_share_a_row,
            authorize_snapshot_scope_and_active_macs,
            tenants_keep_their_vouchers_apart,
            authorize_accept_effects,
            authorize_keeps_open_session,
            accounting_adopts_synthetic_session,
            authorize_serialises_instances,
            needs_policy_accept_activates_once,
            needs_policy_rejects,
            needs_policy_concurrent_first_login,
            authorize_batch_sees_earlier_accepts,
            authorize_batch_serialises_instances,
            needs_policy_batch_equals_sequential,
            accounting_batch_equals_sequential,
            accounting_batch_on_in_the_middle,
            accounting_concurrent_new_sessions,
            accounting_batch_counters_near_2_63,
            coa_queue_revoke_claim_reclaim_finish,
            coa_queue_from_accounting_and_plan_changes,
        );
    };
}

all_cases!(sqlite, sqlite_fixture);
all_cases!(postgres, pg_fixture);

#[tokio::test]
async fn open_dispatches_on_scheme() {
    match store::open("mysql://user:pw@host/db").await {
        Err(StoreError::UnsupportedUrl(u)) => assert!(!u.contains("pw"), "{u}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("mysql accepted"),
    }
    assert!(matches!(
        store::open("rrnet.db").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    for (i, prefix) in ["sqlite://", "sqlite:"].into_iter().enumerate() {
        let path = dir.path().join(format!("open{i}.db"));
        let s = store::open(&format!("{prefix}{}", path.display()))
            .await
            .expect("open");
        s.migrate().await.unwrap();
        s.ping().await.unwrap();
        assert!(path.exists(), "{prefix} did not create the file");
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn new_nas(name: &str, address: &str, site: Option<&str>) -> NewNas {
    NewNas {
        name: name.into(),
        address: address.parse().unwrap(),
        secret: Secret::new(format!("secret-{name}")),
        require_message_authenticator: true,
        coa_port: 3799,
        coa_address: None,
        site: site.map(Into::into),
        identifier: None,
        tenant_id: DEFAULT_TENANT,
        dynamic: None,
    }
}

fn identified_nas(name: &str, address: &str, identifier: Option<&str>) -> NewNas {
    NewNas {
        identifier: identifier.map(Into::into),
        ..new_nas(name, address, None)
    }
}

async fn setup<S: Backend>(s: &S) -> (Nas, Plan) {
    let nas = s.add_nas(&new_nas("r1", "192.0.2.1", None)).await.unwrap();
    let plan = s
        .add_plan(&NewPlan {
            name: "1h".into(),
            time_quota: Some(3600),
            shared_users: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    (nas, plan)
}

fn voucher(code: &str, plan: &Plan) -> NewVoucher {
    NewVoucher {
        code: code.into(),
        password: None,
        plan_id: plan.id,
        site: None,
        batch: None,
    }
}

fn facts(nas: &Nas, user: &str, mac: Option<&str>, asid: Option<&str>) -> AccessFacts {
    AccessFacts {
        nas_id: nas.id,
        router: String::new(),
        nas_name: nas.name.clone(),
        nas_site: nas.site.clone(),
        tenant_id: nas.tenant_id,
        username: user.into(),
        credential: Credential::Pap(user.as_bytes().to_vec()),
        mac: mac.map(Into::into),
        acct_session_id: asid.map(Into::into),
        framed_ip: Some("10.5.50.2".into()),
    }
}

#[allow(clippy::too_many_arguments)]
fn acct(
    nas: &Nas,
    status: AcctStatus,
    asid: &str,
    user: &str,
    at: Timestamp,
    time: u64,
    input: u64,
    output: u64,
) -> AcctRecord {
    AcctRecord {
        nas_id: nas.id,
        router: String::new(),
        tenant_id: nas.tenant_id,
        status,
        acct_session_id: asid.into(),
        username: user.into(),
        mac: Some("AA:BB:CC:00:00:01".into()),
        framed_ip: Some("10.5.50.2".into()),
        session_time: time,
        input_octets: input,
        output_octets: output,
        terminate_cause: (status == AcctStatus::Stop).then(|| "User-Request".into()),
        class_voucher_id: None,
        received_at: at,
        event_at: at,
    }
}

fn nas_event(nas: &Nas, status: AcctStatus, at: Timestamp) -> AcctRecord {
    AcctRecord {
        acct_session_id: String::new(),
        username: String::new(),
        mac: None,
        framed_ip: None,
        ..acct(nas, status, "", "", at, 0, 0, 0)
    }
}

async fn session<S: Backend>(s: &S, asid: &str) -> Session {
    let all = s.list_sessions(false).await.unwrap();
    all.into_iter()
        .find(|x| x.acct_session_id == asid)
        .unwrap_or_else(|| panic!("no session {asid}"))
}

/// Stand-in decision: accept any voucher it is given, activating it on first
/// login and binding the MAC when the plan locks one.
fn accept_any(f: &AccessFacts, snap: Option<&VoucherSnapshot>, now: Timestamp) -> AccessDecision {
    let Some(snap) = snap else {
        return AccessDecision::Reject(RejectReason::UnknownVoucher);
    };
    AccessDecision::Accept(Grant {
        voucher_id: snap.voucher.id,
        reply: vec![],
        activation: snap.voucher.first_login_at.is_none().then(|| Activation {
            first_login_at: now,
            valid_until: snap.plan.validity.map(|v| now + v as i64),
        }),
        bind_mac: if snap.plan.mac_lock && snap.voucher.bound_mac.is_none() {
            f.mac.clone()
        } else {
            None
        },
        interim_interval: snap.plan.interim_interval,
    })
}

/// Stand-in decision with only the shared-users rule, to test row locking.
fn accept_within_shared_users(
    f: &AccessFacts,
    snap: Option<&VoucherSnapshot>,
    now: Timestamp,
) -> AccessDecision {
    if let Some(s) = snap {
        let others = s
            .active_macs
            .iter()
            .filter(|m| Some(*m) != f.mac.as_ref())
            .count();
        if others >= s.plan.shared_users as usize {
            return AccessDecision::Reject(RejectReason::SharedUsersLimit);
        }
    }
    accept_any(f, snap, now)
}

/// The auth log once it holds `n` events (or after 2 s). An instance may answer
/// before its batch's effects are committed (ARCHITECTURE.md, "Durability"),
/// so another connection sees them shortly after the replies.
async fn settled_events<S: Backend>(s: &S, n: usize) -> Vec<store::AuthEvent> {
    let mut events = Vec::new();
    for _ in 0..200 {
        events = s
            .auth_events(&AuthEventFilter {
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap();
        if events.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    events
}

fn mac(i: usize) -> String {
    format!("02:00:00:00:{:02X}:{:02X}", i / 256, i % 256)
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

mod cases {
    use super::*;

    /// Revoke queues a Disconnect for each open session, in the revoke's
    /// transaction; a claim takes it once; a claim left unfinished (a server
    /// that stopped mid-exchange) is taken again after `reclaim_before`; a
    /// finished one never is, and its outcome is on the session.
    pub async fn coa_queue_revoke_claim_reclaim_finish<S: Backend>(fx: &Fixture<S>) {
        use rrnet_radius::store::CoaKind;
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        s.add_vouchers(&[voucher("RQ1", &plan), voucher("RQ2", &plan)])
            .await
            .unwrap();
        let t = 1_700_000_000;
        s.record_accounting(&[
            acct(&nas, AcctStatus::Start, "a1", "RQ1", t, 0, 0, 0),
            acct(&nas, AcctStatus::Start, "a2", "RQ1", t, 0, 0, 0),
            acct(&nas, AcctStatus::Start, "b1", "RQ2", t, 0, 0, 0),
        ])
        .await
        .unwrap();
        s.record_accounting(&[acct(&nas, AcctStatus::Stop, "a2", "RQ1", t + 5, 5, 0, 0)])
            .await
            .unwrap();
        assert!(s
            .claim_coa_requests(t, 10, t - 30)
            .await
            .unwrap()
            .is_empty());

        // --no-disconnect queues nothing.
        s.revoke_voucher_with(DEFAULT_TENANT, "RQ2", false)
            .await
            .unwrap();
        assert!(s
            .claim_coa_requests(t, 10, t - 30)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(session(s, "b1").await.disconnect_requested_at, None);

        s.revoke_voucher(DEFAULT_TENANT, "RQ1").await.unwrap();
        let first = s.claim_coa_requests(t + 10, 10, t - 20).await.unwrap();
        assert_eq!(first.len(), 1, "the open session only, not the stopped one");
        let r = &first[0];
        assert_eq!(r.kind, CoaKind::Disconnect);
        assert_eq!(r.reason, "revoked");
        assert_eq!(r.session.acct_session_id, "a1");
        assert_eq!(r.session.username, "RQ1");
        assert_eq!(r.session.framed_ip.as_deref(), Some("10.5.50.2"));
        assert!(session(s, "a1").await.disconnect_requested_at.is_some());
        // Claimed: not taken again while the claim is fresh...
        assert!(s
            .claim_coa_requests(t + 11, 10, t - 19)
            .await
            .unwrap()
            .is_empty());
        // ...but taken again once it is older than the reclaim limit.
        let again = s.claim_coa_requests(t + 50, 10, t + 20).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, r.id);
        // A second revoke while it is in flight queues nothing more.
        s.revoke_voucher(DEFAULT_TENANT, "RQ1").await.unwrap();
        s.finish_coa_request(
            Some(r.id),
            r.session.id,
            CoaKind::Disconnect,
            "disconnect ack",
            t + 51,
        )
        .await
        .unwrap();
        assert!(s
            .claim_coa_requests(t + 100, 10, t + 90)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            session(s, "a1").await.coa_result.as_deref(),
            Some("disconnect ack")
        );
        // Acknowledged: a later revoke does not send it again.
        s.revoke_voucher(DEFAULT_TENANT, "RQ1").await.unwrap();
        assert!(s
            .claim_coa_requests(t + 101, 10, t + 90)
            .await
            .unwrap()
            .is_empty());
    }

    /// Accounting that uses a quota up queues a Disconnect (or, on a fair-use
    /// plan, a CoA) in its own transaction; a plan change or a move to another
    /// plan queues a CoA for each change.
    pub async fn coa_queue_from_accounting_and_plan_changes<S: Backend>(fx: &Fixture<S>) {
        use rrnet_radius::store::CoaKind;
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        let fair = s
            .add_plan(&NewPlan {
                name: "fair".into(),
                data_quota: Some(1000),
                after_data_rate_limit: Some("256k/256k".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        s.add_vouchers(&[voucher("Q1", &plan), voucher("F1", &fair)])
            .await
            .unwrap();
        let t = 1_700_000_000;
        s.record_accounting(&[
            acct(&nas, AcctStatus::Start, "q1", "Q1", t, 0, 0, 0),
            acct(&nas, AcctStatus::Start, "f1", "F1", t, 0, 0, 0),
        ])
        .await
        .unwrap();
        // Within the quotas: nothing.
        s.record_accounting(&[
            acct(
                &nas,
                AcctStatus::InterimUpdate,
                "q1",
                "Q1",
                t + 60,
                3599,
                0,
                0,
            ),
            acct(
                &nas,
                AcctStatus::InterimUpdate,
                "f1",
                "F1",
                t + 60,
                60,
                400,
                599,
            ),
        ])
        .await
        .unwrap();
        assert!(s
            .claim_coa_requests(t, 10, t - 30)
            .await
            .unwrap()
            .is_empty());
        // One second and one byte more: both used up.
        s.record_accounting(&[
            acct(
                &nas,
                AcctStatus::InterimUpdate,
                "q1",
                "Q1",
                t + 120,
                3600,
                0,
                0,
            ),
            acct(
                &nas,
                AcctStatus::InterimUpdate,
                "f1",
                "F1",
                t + 120,
                120,
                400,
                600,
            ),
        ])
        .await
        .unwrap();
        let mut got: Vec<(String, CoaKind, String)> = s
            .claim_coa_requests(t + 121, 10, t)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.session.acct_session_id, r.kind, r.reason))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                ("f1".into(), CoaKind::Coa, "fair_use".into()),
                ("q1".into(), CoaKind::Disconnect, "quota_used".into()),
            ]
        );

        // A plan change: a CoA for each open session of the plan's vouchers,
        // and again for the next change once the first was sent.
        let mut changed = s.get_plan("fair").await.unwrap();
        changed.after_data_rate_limit = Some("128k/128k".into());
        assert_eq!(s.update_plan(&changed).await.unwrap(), 1);
        assert_eq!(s.get_plan("fair").await.unwrap(), changed);
        assert_eq!(s.update_plan(&changed).await.unwrap(), 0, "one is waiting");
        let c = s.claim_coa_requests(t + 130, 10, t).await.unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].reason, "plan_changed");
        s.finish_coa_request(
            Some(c[0].id),
            c[0].session.id,
            CoaKind::Coa,
            "coa ack",
            t + 131,
        )
        .await
        .unwrap();
        assert_eq!(s.update_plan(&changed).await.unwrap(), 1);
        // A move to another plan.
        assert_eq!(
            s.set_voucher_plan(DEFAULT_TENANT, "F1", "1h")
                .await
                .unwrap(),
            0,
            "one waiting"
        );
        let v = s.get_voucher(DEFAULT_TENANT, "F1").await.unwrap();
        assert_eq!(v.plan_name, "1h");
        assert_eq!(s.get_voucher_by_id(v.id).await.unwrap(), v);
        match s.set_voucher_plan(DEFAULT_TENANT, "F1", "nope").await {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "plan nope"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        // NAS CoA settings.
        let g = s.nas_generation().await.unwrap();
        let n = s
            .set_nas_coa(
                "r1",
                Some(1700),
                Some(Some("198.51.100.9".parse().unwrap())),
            )
            .await
            .unwrap();
        assert_eq!(n.coa_port, 1700);
        assert_eq!(n.coa_address, Some("198.51.100.9".parse().unwrap()));
        assert_ne!(
            s.nas_generation().await.unwrap(),
            g,
            "the server reloads it"
        );
        let n = s.set_nas_coa("r1", None, Some(None)).await.unwrap();
        assert_eq!((n.coa_port, n.coa_address), (1700, None));
    }

    /// Several entries may share an address only when each has its own
    /// identifier (routers behind one NAT address); otherwise `nas add` explains.
    pub async fn nas_shared_address_needs_identifiers<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let invalid = |r: StoreResult<Nas>| match r {
            Err(StoreError::Invalid(why)) => why,
            other => panic!("expected Invalid, got {other:?}"),
        };
        s.add_nas(&identified_nas("nat-a", "198.51.100.7", Some("router-a")))
            .await
            .unwrap();
        let g = s.nas_generation().await.unwrap();
        // Without an identifier, the second entry could not be told apart.
        let why = invalid(
            s.add_nas(&identified_nas("nat-x", "198.51.100.7", None))
                .await,
        );
        assert!(why.contains("already belongs to NAS nat-a"), "{why}");
        assert!(why.contains("--identifier"), "{why}");
        // The same identifier twice is refused too.
        let why = invalid(
            s.add_nas(&identified_nas("nat-y", "198.51.100.7", Some("router-a")))
                .await,
        );
        assert!(why.contains("nat-a") && why.contains("router-a"), "{why}");
        assert_eq!(s.nas_generation().await.unwrap(), g);
        // A distinct identifier shares the address.
        let b = s
            .add_nas(&identified_nas("nat-b", "198.51.100.7", Some("router-b")))
            .await
            .unwrap();
        assert_eq!(b.identifier.as_deref(), Some("router-b"));
        // An entry without identifier keeps its address to itself, whatever
        // the newcomer has.
        s.add_nas(&identified_nas("plain", "198.51.100.8", None))
            .await
            .unwrap();
        let why = invalid(
            s.add_nas(&identified_nas("plain-2", "198.51.100.8", Some("r")))
                .await,
        );
        assert!(
            why.contains("plain") && why.contains("no identifier"),
            "{why}"
        );
        assert!(why.contains("nas set plain --identifier"), "{why}");
        // Giving the entry an identifier lets a second router join it.
        let g = s.nas_generation().await.unwrap();
        let plain = s.set_nas_identifier("plain", Some("p-1")).await.unwrap();
        assert_eq!(plain.identifier.as_deref(), Some("p-1"));
        assert_ne!(s.nas_generation().await.unwrap(), g, "servers reload");
        s.add_nas(&identified_nas("plain-2", "198.51.100.8", Some("r")))
            .await
            .unwrap();
        // ... and then neither may lose it, nor take the other's.
        let why = invalid(s.set_nas_identifier("plain", None).await);
        assert!(why.contains("plain-2"), "{why}");
        let why = invalid(s.set_nas_identifier("plain-2", Some("p-1")).await);
        assert!(why.contains("p-1"), "{why}");
        assert!(matches!(
            s.set_nas_identifier("nope", Some("x")).await,
            Err(StoreError::NotFound(_))
        ));
        // Networks follow the same rule.
        s.add_nas(&identified_nas("vpn-a", "10.8.0.0/24", Some("a")))
            .await
            .unwrap();
        s.add_nas(&identified_nas("vpn-b", "10.8.0.5/24", Some("b")))
            .await
            .unwrap();
        let list = s.list_nas().await.unwrap();
        let ids: Vec<_> = list
            .iter()
            .map(|n| (n.name.as_str(), n.identifier.as_deref()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("nat-a", Some("router-a")),
                ("nat-b", Some("router-b")),
                ("plain", Some("p-1")),
                ("plain-2", Some("r")),
                ("vpn-a", Some("a")),
                ("vpn-b", Some("b")),
            ]
        );
    }

    pub async fn migrate_twice<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        s.migrate().await.expect("second migrate is a no-op");
        s.migrate().await.expect("third migrate is a no-op");
        s.ping().await.unwrap();
        assert_eq!(s.nas_generation().await.unwrap(), 0);
        assert!(s.list_nas().await.unwrap().is_empty());
    }

    pub async fn nas_crud_and_generation<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let g0 = s.nas_generation().await.unwrap();
        let a = s
            .add_nas(&new_nas("tower-b", "10.1.2.3/8", Some("site-1")))
            .await
            .unwrap();
        let g1 = s.nas_generation().await.unwrap();
        assert_ne!(g0, g1);
        let mut v6 = new_nas("tower-a", "2001:db8::1", None);
        v6.require_message_authenticator = false;
        v6.coa_port = 1700;
        s.add_nas(&v6).await.unwrap();
        let g2 = s.nas_generation().await.unwrap();
        assert_ne!(g1, g2);

        let list = s.list_nas().await.unwrap();
        assert_eq!(
            list.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["tower-a", "tower-b"]
        );
        let b = &list[1];
        assert_eq!(b.id, a.id);
        assert_eq!(b.address.to_string(), "10.0.0.0/8");
        assert_eq!(b.secret.expose_str(), "secret-tower-b");
        assert_eq!(b.site.as_deref(), Some("site-1"));
        assert!(b.require_message_authenticator);
        assert_eq!(b.coa_port, 3799);
        assert_eq!(b.created_at, a.created_at);
        let a6 = &list[0];
        assert_eq!(a6.address.to_string(), "2001:db8::1");
        assert!(!a6.require_message_authenticator);
        assert_eq!(a6.coa_port, 1700);

        match s.add_nas(&new_nas("tower-a", "192.0.2.9", None)).await {
            Err(StoreError::Duplicate(what)) => assert_eq!(what, "NAS tower-a"),
            other => panic!("expected Duplicate, got {other:?}"),
        }
        assert_eq!(
            s.nas_generation().await.unwrap(),
            g2,
            "a failed add does not bump the generation"
        );
        // A second entry for an address already taken: one router would go unanswered.
        match s.add_nas(&new_nas("tower-c", "2001:db8::1", None)).await {
            Err(StoreError::Invalid(why)) => {
                assert!(why.contains("already belongs to NAS tower-a"), "{why}")
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        // The same network written another way is the same address.
        match s.add_nas(&new_nas("tower-d", "10.9.9.9/8", None)).await {
            Err(StoreError::Invalid(why)) => {
                assert!(why.contains("already belongs to NAS tower-b"), "{why}")
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert_eq!(s.nas_generation().await.unwrap(), g2);

        s.remove_nas("tower-a").await.unwrap();
        let g3 = s.nas_generation().await.unwrap();
        assert_ne!(g2, g3);
        match s.remove_nas("tower-a").await {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "NAS tower-a"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert_eq!(s.nas_generation().await.unwrap(), g3);
        assert_eq!(s.list_nas().await.unwrap().len(), 1);
    }

    pub async fn plan_crud<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let full = NewPlan {
            name: "1d-2g".into(),
            time_quota: Some(86_400),
            validity: Some(7 * 86_400),
            expires_at: Some(1_900_000_000),
            data_quota: Some(2 << 30),
            rate_limit: Some("2M/2M".into()),
            after_data_rate_limit: Some("256k/256k".into()),
            shared_users: 3,
            mac_lock: true,
            idle_timeout: Some(300),
            interim_interval: Some(60),
            mikrotik_group: Some("vip".into()),
            address_list: Some("paid".into()),
            price: Some("5.00 USD".into()),
            tenant_id: None,
            sites: vec!["north".into(), "south".into()],
        };
        let p = s.add_plan(&full).await.unwrap();
        assert_eq!(p.sites, vec!["north".to_string(), "south".to_string()]);
        assert_eq!(p.tenant_id, DEFAULT_TENANT);
        assert_eq!(s.get_plan("1d-2g").await.unwrap(), p);
        assert_eq!(p.data_quota, Some(2 << 30));
        assert_eq!(p.shared_users, 3);
        assert!(p.mac_lock);

        let bare = s
            .add_plan(&NewPlan {
                name: "bare".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(bare.shared_users, 1, "0 means the default of one device");
        assert_eq!(s.get_plan("bare").await.unwrap(), bare);
        assert_eq!(s.list_plans().await.unwrap(), vec![p.clone(), bare]);

        match s.add_plan(&full).await {
            Err(StoreError::Duplicate(what)) => assert_eq!(what, "plan 1d-2g"),
            other => panic!("expected Duplicate, got {other:?}"),
        }
        match s.get_plan("nope").await {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "plan nope"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        let huge = NewPlan {
            name: "huge".into(),
            data_quota: Some(u64::MAX),
            ..Default::default()
        };
        assert!(matches!(
            s.add_plan(&huge).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn voucher_crud<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (_, plan) = setup(s).await;
        let other = s
            .add_plan(&NewPlan {
                name: "other".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let batch = vec![
            NewVoucher {
                batch: Some("b1".into()),
                ..voucher("AAAA1111", &plan)
            },
            NewVoucher {
                password: Some("pw".into()),
                site: Some("s1".into()),
                batch: Some("b1".into()),
                ..voucher("BBBB2222", &plan)
            },
            NewVoucher {
                batch: Some("b2".into()),
                ..voucher("CCCC3333", &other)
            },
        ];
        let made = s.add_vouchers(&batch).await.unwrap();
        assert_eq!(made.len(), 3);
        assert_eq!(
            made[0].password, "AAAA1111",
            "password defaults to the code"
        );
        assert_eq!(made[1].password, "pw");
        assert_eq!(made[0].plan_name, "1h");
        assert_eq!(made[2].plan_name, "other");
        for v in &made {
            assert_eq!(&s.get_voucher(DEFAULT_TENANT, &v.code).await.unwrap(), v);
            assert_eq!(v.state, VoucherState::Active);
        }

        let codes = |vs: Vec<rrnet_radius::model::Voucher>| {
            vs.into_iter().map(|v| v.code).collect::<Vec<_>>()
        };
        assert_eq!(
            codes(s.list_vouchers(None, None).await.unwrap()),
            ["AAAA1111", "BBBB2222", "CCCC3333"]
        );
        assert_eq!(
            codes(s.list_vouchers(Some("1h"), None).await.unwrap()),
            ["AAAA1111", "BBBB2222"]
        );
        assert_eq!(
            codes(s.list_vouchers(None, Some("b2")).await.unwrap()),
            ["CCCC3333"]
        );
        assert_eq!(
            codes(s.list_vouchers(Some("other"), Some("b1")).await.unwrap()),
            Vec::<String>::new()
        );
        assert!(matches!(
            s.list_vouchers(Some("nope"), None).await,
            Err(StoreError::NotFound(_))
        ));

        // All or nothing: a duplicate in the middle leaves no trace of the others.
        let dup = vec![
            voucher("NEW1", &plan),
            voucher("BBBB2222", &plan),
            voucher("NEW2", &plan),
        ];
        match s.add_vouchers(&dup).await {
            Err(StoreError::Duplicate(what)) => assert_eq!(what, "voucher BBBB2222"),
            other => panic!("expected Duplicate, got {other:?}"),
        }
        let twice = vec![voucher("SAME", &plan), voucher("SAME", &plan)];
        assert!(matches!(
            s.add_vouchers(&twice).await,
            Err(StoreError::Duplicate(_))
        ));
        let bad_plan = vec![
            voucher("NEW3", &plan),
            NewVoucher {
                plan_id: 999_999,
                ..voucher("NEW4", &plan)
            },
        ];
        assert!(matches!(
            s.add_vouchers(&bad_plan).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(s.list_vouchers(None, None).await.unwrap().len(), 3);
        for code in ["NEW1", "NEW2", "SAME", "NEW3"] {
            assert!(
                matches!(
                    s.get_voucher(DEFAULT_TENANT, code).await,
                    Err(StoreError::NotFound(_))
                ),
                "{code}"
            );
        }

        let revoked = s.revoke_voucher(DEFAULT_TENANT, "AAAA1111").await.unwrap();
        assert_eq!(revoked.state, VoucherState::Revoked);
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "AAAA1111")
                .await
                .unwrap()
                .state,
            VoucherState::Revoked
        );
        match s.revoke_voucher(DEFAULT_TENANT, "ZZZZ").await {
            Err(StoreError::NotFound(what)) => assert_eq!(what, "voucher ZZZZ"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    pub async fn accounting_counters<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        let v = s
            .add_vouchers(&[voucher("V1", &plan)])
            .await
            .unwrap()
            .remove(0);
        let t0 = 1_700_000_000;

        s.record_accounting(&[acct(&nas, AcctStatus::Start, "s1", "V1", t0, 0, 0, 0)])
            .await
            .unwrap();
        let row = session(s, "s1").await;
        assert_eq!(row.state, SessionState::Open);
        assert_eq!(row.started_at, Some(t0));
        assert_eq!(row.voucher_id, Some(v.id));
        assert_eq!(row.nas_name, "r1");
        assert_eq!(row.mac.as_deref(), Some("AA:BB:CC:00:00:01"));

        let interim = acct(
            &nas,
            AcctStatus::InterimUpdate,
            "s1",
            "V1",
            t0 + 300,
            300,
            1_000,
            2_000,
        );
        s.record_accounting(std::slice::from_ref(&interim))
            .await
            .unwrap();
        let used = s.get_voucher(DEFAULT_TENANT, "V1").await.unwrap();
        assert_eq!((used.used_seconds, used.used_bytes), (300, 3_000));

        // A retransmission (with a later arrival time: Acct-Delay-Time) adds nothing.
        s.record_accounting(&[AcctRecord {
            received_at: t0 + 302,
            event_at: t0 + 302,
            ..interim
        }])
        .await
        .unwrap();
        let used = s.get_voucher(DEFAULT_TENANT, "V1").await.unwrap();
        assert_eq!((used.used_seconds, used.used_bytes), (300, 3_000));

        // A reordered, older interim never moves counters backwards.
        s.record_accounting(&[acct(
            &nas,
            AcctStatus::InterimUpdate,
            "s1",
            "V1",
            t0 + 303,
            200,
            500,
            100,
        )])
        .await
        .unwrap();
        let row = session(s, "s1").await;
        assert_eq!(
            (row.session_time, row.input_octets, row.output_octets),
            (300, 1_000, 2_000)
        );
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "V1")
                .await
                .unwrap()
                .used_bytes,
            3_000
        );

        // Counters move independently: only the ones that grew add to usage.
        s.record_accounting(&[acct(
            &nas,
            AcctStatus::InterimUpdate,
            "s1",
            "V1",
            t0 + 600,
            600,
            900,
            2_500,
        )])
        .await
        .unwrap();
        let row = session(s, "s1").await;
        assert_eq!(
            (row.session_time, row.input_octets, row.output_octets),
            (600, 1_000, 2_500)
        );
        assert_eq!(row.updated_at, t0 + 600);
        let used = s.get_voucher(DEFAULT_TENANT, "V1").await.unwrap();
        assert_eq!((used.used_seconds, used.used_bytes), (600, 3_500));

        let stop = acct(
            &nas,
            AcctStatus::Stop,
            "s1",
            "V1",
            t0 + 700,
            700,
            1_500,
            3_000,
        );
        s.record_accounting(std::slice::from_ref(&stop))
            .await
            .unwrap();
        let row = session(s, "s1").await;
        assert_eq!(row.state, SessionState::Closed);
        assert_eq!(row.stopped_at, Some(t0 + 700));
        assert_eq!(row.started_at, Some(t0));
        assert_eq!(row.terminate_cause.as_deref(), Some("User-Request"));
        let used = s.get_voucher(DEFAULT_TENANT, "V1").await.unwrap();
        assert_eq!((used.used_seconds, used.used_bytes), (700, 4_500));

        // Retransmitted Stop and a late Interim change nothing and do not reopen.
        s.record_accounting(&[AcctRecord {
            received_at: t0 + 705,
            event_at: t0 + 705,
            ..stop
        }])
        .await
        .unwrap();
        s.record_accounting(&[acct(
            &nas,
            AcctStatus::InterimUpdate,
            "s1",
            "V1",
            t0 + 706,
            650,
            1_400,
            2_900,
        )])
        .await
        .unwrap();
        let row = session(s, "s1").await;
        assert_eq!(row.state, SessionState::Closed);
        assert_eq!(row.stopped_at, Some(t0 + 700));
        let used = s.get_voucher(DEFAULT_TENANT, "V1").await.unwrap();
        assert_eq!((used.used_seconds, used.used_bytes), (700, 4_500));
        assert_eq!(s.list_sessions(false).await.unwrap().len(), 1);
        assert!(s.list_sessions(true).await.unwrap().is_empty());
    }

    pub async fn accounting_64bit_counters<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        s.add_vouchers(&[voucher("BIG", &plan)]).await.unwrap();
        let t0 = 1_700_000_000;
        let five_gib = 5u64 << 30;
        let big_out = (3u64 << 32) + 17; // three gigawords and some
        s.record_accounting(&[
            acct(&nas, AcctStatus::Start, "b1", "BIG", t0, 0, 0, 0),
            acct(
                &nas,
                AcctStatus::InterimUpdate,
                "b1",
                "BIG",
                t0 + 60,
                60,
                five_gib,
                big_out,
            ),
        ])
        .await
        .unwrap();
        let row = session(s, "b1").await;
        assert_eq!((row.input_octets, row.output_octets), (five_gib, big_out));
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "BIG")
                .await
                .unwrap()
                .used_bytes,
            five_gib + big_out
        );
        s.record_accounting(&[acct(
            &nas,
            AcctStatus::Stop,
            "b1",
            "BIG",
            t0 + 90,
            90,
            five_gib + 1,
            big_out + 1,
        )])
        .await
        .unwrap();
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "BIG")
                .await
                .unwrap()
                .used_bytes,
            five_gib + big_out + 2
        );
    }

    pub async fn accounting_links_voucher<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        let vs = s
            .add_vouchers(&[voucher("CLASSED", &plan), voucher("NAMED", &plan)])
            .await
            .unwrap();
        let t0 = 1_700_000_000;

        // An interim for a session never seen (lost Start) creates it as open.
        s.record_accounting(&[acct(
            &nas,
            AcctStatus::InterimUpdate,
            "lost",
            "NAMED",
            t0,
            120,
            10,
            20,
        )])
        .await
        .unwrap();
        let row = session(s, "lost").await;
        assert_eq!(row.state, SessionState::Open);
        assert_eq!(row.started_at, Some(t0 - 120));
        assert_eq!(row.voucher_id, Some(vs[1].id));
        let used = s.get_voucher(DEFAULT_TENANT, "NAMED").await.unwrap();
        assert_eq!((used.used_seconds, used.used_bytes), (120, 30));

        // Class wins over the User-Name; a Class naming no voucher falls back to it.
        let mut classed = acct(&nas, AcctStatus::Start, "c1", "someone-else", t0, 0, 0, 0);
        classed.class_voucher_id = Some(vs[0].id);
        let mut stale_class = acct(&nas, AcctStatus::Start, "c2", "NAMED", t0, 0, 0, 0);
        stale_class.class_voucher_id = Some(987_654);
        let unknown = acct(&nas, AcctStatus::Stop, "c3", "not-a-voucher", t0, 30, 1, 1);
        s.record_accounting(&[classed, stale_class, unknown])
            .await
            .unwrap();
        assert_eq!(session(s, "c1").await.voucher_id, Some(vs[0].id));
        assert_eq!(session(s, "c2").await.voucher_id, Some(vs[1].id));
        let c3 = session(s, "c3").await;
        assert_eq!(c3.voucher_id, None);
        assert_eq!(c3.state, SessionState::Closed);
        assert_eq!(c3.session_time, 30);
    }

    pub async fn accounting_batch_group_commit<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        let n = 40;
        let vouchers: Vec<_> = (0..n)
            .map(|i| voucher(&format!("G{i:03}"), &plan))
            .collect();
        s.add_vouchers(&vouchers).await.unwrap();
        let t0 = 1_700_000_000;
        // Start, two interims (one retransmitted) and a Stop for every session,
        // interleaved across sessions, all in one call.
        let mut batch = Vec::new();
        for step in 0..5u64 {
            for i in 0..n {
                let (asid, user) = (format!("g{i}"), format!("G{i:03}"));
                let rec = match step {
                    0 => acct(&nas, AcctStatus::Start, &asid, &user, t0, 0, 0, 0),
                    1 | 2 => acct(
                        &nas,
                        AcctStatus::InterimUpdate,
                        &asid,
                        &user,
                        t0 + 60,
                        60,
                        100,
                        200,
                    ),
                    3 => acct(
                        &nas,
                        AcctStatus::InterimUpdate,
                        &asid,
                        &user,
                        t0 + 120,
                        120,
                        300 + i as u64,
                        400,
                    ),
                    _ => acct(
                        &nas,
                        AcctStatus::Stop,
                        &asid,
                        &user,
                        t0 + 150,
                        150,
                        350 + i as u64,
                        450,
                    ),
                };
                batch.push(rec);
            }
        }
        assert_eq!(batch.len(), 200);
        s.record_accounting(&batch).await.unwrap();
        let sessions = s.list_sessions(false).await.unwrap();
        assert_eq!(sessions.len(), n);
        assert!(sessions
            .iter()
            .all(|x| x.state == SessionState::Closed && x.session_time == 150));
        for i in 0..n {
            let v = s
                .get_voucher(DEFAULT_TENANT, &format!("G{i:03}"))
                .await
                .unwrap();
            assert_eq!(
                (v.used_seconds, v.used_bytes),
                (150, 350 + i as u64 + 450),
                "G{i:03}"
            );
        }
        // The same batch again is a retransmission of everything: nothing moves.
        s.record_accounting(&batch).await.unwrap();
        let v = s.get_voucher(DEFAULT_TENANT, "G007").await.unwrap();
        assert_eq!((v.used_seconds, v.used_bytes), (150, 807));
        s.record_accounting(&[]).await.unwrap();
    }

    pub async fn accounting_batch_all_or_nothing<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        s.add_vouchers(&[voucher("ATOM", &plan)]).await.unwrap();
        let t0 = 1_700_000_000;
        let good = acct(
            &nas,
            AcctStatus::InterimUpdate,
            "a1",
            "ATOM",
            t0,
            60,
            100,
            100,
        );
        // A record for a NAS that does not exist violates the sessions foreign key.
        let bad = AcctRecord {
            nas_id: 999_999,
            ..acct(&nas, AcctStatus::Start, "a2", "ATOM", t0, 0, 0, 0)
        };
        assert!(s.record_accounting(&[good.clone(), bad]).await.is_err());
        assert!(s.list_sessions(false).await.unwrap().is_empty());
        let v = s.get_voucher(DEFAULT_TENANT, "ATOM").await.unwrap();
        assert_eq!((v.used_seconds, v.used_bytes), (0, 0));
        s.record_accounting(&[good]).await.unwrap();
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "ATOM")
                .await
                .unwrap()
                .used_seconds,
            60
        );
    }

    pub async fn accounting_on_off_closes_nas_sessions<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (r1, plan) = setup(s).await;
        let r2 = s.add_nas(&new_nas("r2", "192.0.2.2", None)).await.unwrap();
        s.add_vouchers(&[
            voucher("ON1", &plan),
            voucher("ON2", &plan),
            voucher("ON3", &plan),
        ])
        .await
        .unwrap();
        let t0 = 1_700_000_000;
        s.record_accounting(&[
            acct(&r1, AcctStatus::Start, "x1", "ON1", t0, 0, 0, 0),
            acct(&r2, AcctStatus::Start, "x2", "ON2", t0, 0, 0, 0),
        ])
        .await
        .unwrap();
        s.authorize_with(
            &facts(&r1, "ON3", Some("AA:00:00:00:00:03"), Some("x3")),
            t0,
            AuthorizeOptions::default(),
            &accept_any,
        )
        .await
        .unwrap();
        assert_eq!(session(s, "x3").await.state, SessionState::Authorized);
        let by_nas = s.open_sessions_by_nas().await.unwrap();
        assert_eq!(by_nas, vec![("r1".to_string(), 1), ("r2".to_string(), 1)]);

        s.record_accounting(&[nas_event(&r1, AcctStatus::AccountingOn, t0 + 10)])
            .await
            .unwrap();
        for asid in ["x1", "x3"] {
            let row = session(s, asid).await;
            assert_eq!(row.state, SessionState::Closed, "{asid}");
            assert_eq!(row.terminate_cause.as_deref(), Some("accounting-on"));
            assert_eq!(row.stopped_at, Some(t0 + 10));
        }
        assert_eq!(session(s, "x2").await.state, SessionState::Open);
        assert_eq!(
            s.open_sessions_by_nas().await.unwrap(),
            vec![("r1".to_string(), 0), ("r2".to_string(), 1)]
        );

        s.record_accounting(&[nas_event(&r2, AcctStatus::AccountingOff, t0 + 20)])
            .await
            .unwrap();
        let row = session(s, "x2").await;
        assert_eq!(row.state, SessionState::Closed);
        assert_eq!(row.terminate_cause.as_deref(), Some("accounting-off"));
        assert_eq!(s.list_sessions(true).await.unwrap().len(), 0);
    }

    /// Several routers behind one NAS entry (one NAT address, or a network)
    /// that happen to use the same Acct-Session-Id keep a session each; a Stop,
    /// a reboot or an Accounting-On of one never closes another's. A row stored
    /// before routers were told apart is continued by the router that reports it.
    pub async fn routers_sharing_an_entry_keep_their_sessions<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (r1, plan) = setup(s).await;
        s.add_vouchers(&[voucher("A", &plan), voucher("B", &plan)])
            .await
            .unwrap();
        let t0 = 1_700_000_000;
        let on = |router: &str, status, asid: &str, user: &str, at, time| AcctRecord {
            router: router.into(),
            ..acct(&r1, status, asid, user, at, time, 0, 0)
        };
        let row_of = |user: &'static str, asid: &'static str| async move {
            let all = s.list_sessions(false).await.unwrap();
            let mine: Vec<Session> = all
                .into_iter()
                .filter(|x| x.acct_session_id == asid && x.username == user)
                .collect();
            assert_eq!(mine.len(), 1, "{user}/{asid}: {mine:?}");
            mine.into_iter().next().unwrap()
        };
        let used = |code: &'static str| async move {
            s.get_voucher(DEFAULT_TENANT, code)
                .await
                .unwrap()
                .used_seconds
        };

        // Stored without a router, as before routers were told apart ...
        s.record_accounting(&[acct(&r1, AcctStatus::Start, "81a00001", "A", t0, 0, 0, 0)])
            .await
            .unwrap();
        // ... and continued by router hs-a: the same row, counted once.
        s.record_accounting(&[on(
            "hs-a",
            AcctStatus::InterimUpdate,
            "81a00001",
            "A",
            t0 + 60,
            60,
        )])
        .await
        .unwrap();
        assert_eq!(used("A").await, 60);
        // Router hs-b, same entry, same Acct-Session-Id: a session of its own.
        s.record_accounting(&[on("hs-b", AcctStatus::Start, "81a00001", "B", t0 + 61, 0)])
            .await
            .unwrap();
        let all = s.list_sessions(false).await.unwrap();
        assert_eq!(
            all.iter()
                .filter(|x| x.acct_session_id == "81a00001")
                .count(),
            2
        );
        // hs-a's Interim still lands on hs-a's row.
        s.record_accounting(&[on(
            "hs-a",
            AcctStatus::InterimUpdate,
            "81a00001",
            "A",
            t0 + 120,
            120,
        )])
        .await
        .unwrap();
        assert_eq!(used("A").await, 120);
        assert_eq!(used("B").await, 0);
        // hs-b's Stop closes hs-b's row only.
        s.record_accounting(&[on("hs-b", AcctStatus::Stop, "81a00001", "B", t0 + 130, 69)])
            .await
            .unwrap();
        assert_eq!(row_of("B", "81a00001").await.state, SessionState::Closed);
        assert_eq!(row_of("A", "81a00001").await.state, SessionState::Open);
        assert_eq!(used("B").await, 69);
        assert_eq!(used("A").await, 120);

        // hs-b reboots (a new counter): only hs-b's open sessions close.
        s.record_accounting(&[on("hs-b", AcctStatus::Start, "81a00002", "B", t0 + 140, 0)])
            .await
            .unwrap();
        let n = s
            .close_nas_sessions(r1.id, "hs-b", Some("82"), "nas-reboot", t0 + 150)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(row_of("B", "81a00002").await.state, SessionState::Closed);
        assert_eq!(row_of("A", "81a00001").await.state, SessionState::Open);

        // Accounting-On from hs-b closes nothing of hs-a's; from hs-a it does.
        let nas_on = |router: &str, at| AcctRecord {
            router: router.into(),
            ..nas_event(&r1, AcctStatus::AccountingOn, at)
        };
        s.record_accounting(&[nas_on("hs-b", t0 + 160)])
            .await
            .unwrap();
        assert_eq!(row_of("A", "81a00001").await.state, SessionState::Open);
        s.record_accounting(&[nas_on("hs-a", t0 + 170)])
            .await
            .unwrap();
        let a = row_of("A", "81a00001").await;
        assert_eq!(a.state, SessionState::Closed);
        assert_eq!(a.terminate_cause.as_deref(), Some("accounting-on"));
    }

    pub async fn close_nas_sessions_keep_prefix<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (r1, plan) = setup(s).await;
        let r2 = s.add_nas(&new_nas("r2", "192.0.2.2", None)).await.unwrap();
        s.add_vouchers(&[voucher("K", &plan)]).await.unwrap();
        let t0 = 1_700_000_000;
        let mut recs: Vec<_> = ["81a00001", "81a00002", "81b00001", "81b00002"]
            .iter()
            .map(|id| acct(&r1, AcctStatus::Start, id, "K", t0, 0, 0, 0))
            .collect();
        recs.push(acct(&r2, AcctStatus::Start, "81a00009", "K", t0, 0, 0, 0));
        recs.push(acct(
            &r1,
            AcctStatus::Stop,
            "81b00002",
            "K",
            t0 + 5,
            5,
            0,
            0,
        ));
        s.record_accounting(&recs).await.unwrap();

        let n = s
            .close_nas_sessions(r1.id, "", Some("81b"), "nas-reboot", t0 + 100)
            .await
            .unwrap();
        assert_eq!(n, 2);
        for id in ["81a00001", "81a00002"] {
            let row = session(s, id).await;
            assert_eq!(row.state, SessionState::Closed);
            assert_eq!(row.terminate_cause.as_deref(), Some("nas-reboot"));
            assert_eq!(row.stopped_at, Some(t0 + 100));
        }
        assert_eq!(session(s, "81b00001").await.state, SessionState::Open);
        assert_eq!(
            session(s, "81b00002").await.terminate_cause.as_deref(),
            Some("User-Request")
        );
        assert_eq!(
            session(s, "81a00009").await.state,
            SessionState::Open,
            "other NAS untouched"
        );

        // The prefix is matched literally, not as a LIKE pattern.
        assert_eq!(
            s.close_nas_sessions(r1.id, "", Some("8_"), "nas-reboot", t0 + 200)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.close_nas_sessions(r2.id, "", None, "admin", t0 + 200)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            s.close_nas_sessions(r2.id, "", None, "admin", t0 + 201)
                .await
                .unwrap(),
            0
        );
    }

    pub async fn stale_sessions<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, _) = setup(s).await;
        let plan = s
            .add_plan(&NewPlan {
                name: "interim".into(),
                interim_interval: Some(100),
                shared_users: 5,
                ..Default::default()
            })
            .await
            .unwrap();
        s.add_vouchers(&[voucher("ST", &plan)]).await.unwrap();
        let t0 = 1_700_000_000;
        let opts = AuthorizeOptions { authorized_ttl: 60 };
        // "granted": authorized with interim 100, then started; judged on 2×100 + grace.
        s.authorize_with(
            &facts(&nas, "ST", Some("AA:00:00:00:00:01"), Some("granted")),
            t0,
            opts,
            &accept_any,
        )
        .await
        .unwrap();
        // "plain": no interim granted (unknown to the server); judged on the default.
        s.record_accounting(&[
            acct(&nas, AcctStatus::Start, "granted", "ST", t0, 0, 0, 0),
            acct(&nas, AcctStatus::Start, "plain", "ST", t0, 0, 0, 0),
        ])
        .await
        .unwrap();
        assert_eq!(session(s, "granted").await.interim_interval, Some(100));
        // "waiting": accepted, never started.
        s.authorize_with(
            &facts(&nas, "ST", Some("AA:00:00:00:00:02"), Some("waiting")),
            t0 + 10,
            opts,
            &accept_any,
        )
        .await
        .unwrap();

        let (default_interim, grace) = (300, 30);
        assert_eq!(
            s.close_stale_sessions(t0 + 69, default_interim, grace, 60)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            s.close_stale_sessions(t0 + 70, default_interim, grace, 60)
                .await
                .unwrap(),
            1
        );
        let waiting = session(s, "waiting").await;
        assert_eq!(waiting.state, SessionState::Closed);
        assert_eq!(waiting.terminate_cause.as_deref(), Some("not-started"));

        assert_eq!(
            s.close_stale_sessions(t0 + 230, default_interim, grace, 60)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            s.close_stale_sessions(t0 + 231, default_interim, grace, 60)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            session(s, "granted").await.terminate_cause.as_deref(),
            Some("stale")
        );
        assert_eq!(session(s, "plain").await.state, SessionState::Open);
        assert_eq!(
            s.close_stale_sessions(t0 + 631, default_interim, grace, 60)
                .await
                .unwrap(),
            1
        );
        assert_eq!(session(s, "plain").await.state, SessionState::Closed);

        // Accounting proves a stale guess wrong: the session reopens and counts.
        s.record_accounting(&[acct(
            &nas,
            AcctStatus::InterimUpdate,
            "granted",
            "ST",
            t0 + 700,
            700,
            1,
            1,
        )])
        .await
        .unwrap();
        let row = session(s, "granted").await;
        assert_eq!(row.state, SessionState::Open);
        assert_eq!((row.stopped_at, row.terminate_cause), (None, None));
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "ST")
                .await
                .unwrap()
                .used_seconds,
            700
        );
    }

    pub async fn auth_events_filters_and_pruning<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (r1, _) = setup(s).await;
        let r2 = s.add_nas(&new_nas("r2", "192.0.2.2", None)).await.unwrap();
        let t0 = 1_700_000_000;
        let opts = AuthorizeOptions::default();
        // Unknown codes: rejected by any policy, through the real `Store::authorize`.
        for i in 0..120 {
            let nas = if i % 2 == 0 { &r1 } else { &r2 };
            let user = if i % 3 == 0 { "ALICE" } else { "BOB" };
            // A device each: identical rejects would share a row (see below).
            let mac = format!("AA:BB:CC:DD:{i:02X}:FF");
            let d = s
                .authorize(&facts(nas, user, Some(&mac), None), t0 + i, opts)
                .await
                .unwrap();
            assert_eq!(d, AccessDecision::Reject(RejectReason::UnknownVoucher));
        }
        assert!(
            s.list_sessions(false).await.unwrap().is_empty(),
            "a reject writes no session"
        );

        let all = s.auth_events(&AuthEventFilter::default()).await.unwrap();
        assert_eq!(all.len(), 100, "default limit");
        assert_eq!(all[0].at, t0 + 119, "newest first");
        assert!(all.windows(2).all(|w| w[0].at >= w[1].at));
        let e = &all[0];
        assert_eq!(
            (e.result.as_str(), e.reason.as_deref()),
            ("reject", Some("unknown_voucher"))
        );
        assert_eq!((e.nas_id, e.nas_name.as_str()), (r2.id, "r2"));
        assert_eq!(e.mac.as_deref(), Some("AA:BB:CC:DD:77:FF"));
        assert_eq!((e.repeats, e.last_at), (1, None));

        let alice = s
            .auth_events(&AuthEventFilter {
                username: Some("ALICE".into()),
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(alice.len(), 40);
        assert!(alice.iter().all(|e| e.username == "ALICE"));
        let r1_alice = s
            .auth_events(&AuthEventFilter {
                username: Some("ALICE".into()),
                nas_name: Some("r1".into()),
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(r1_alice.len(), 20);
        let since = s
            .auth_events(&AuthEventFilter {
                since: Some(t0 + 110),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(since.len(), 10);
        let limited = s
            .auth_events(&AuthEventFilter {
                limit: Some(3),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            limited.iter().map(|e| e.at).collect::<Vec<_>>(),
            [t0 + 119, t0 + 118, t0 + 117]
        );

        assert_eq!(s.prune_auth_events(t0 + 20).await.unwrap(), 20);
        assert_eq!(s.prune_auth_events(t0 + 20).await.unwrap(), 0);
        let rest = s
            .auth_events(&AuthEventFilter {
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rest.len(), 100);
        assert!(rest.iter().all(|e| e.at >= t0 + 20));
    }

    /// A reject identical to the user's last one within a minute (same NAS,
    /// device, reason) adds to its row; anything else gets a row of its own.
    pub async fn repeated_rejects_share_a_row<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (r1, _) = setup(s).await;
        let t0 = 1_700_000_000;
        let opts = AuthorizeOptions::default();
        let reject = |at: i64, mac: &'static str| {
            let f = facts(&r1, "NOPE", Some(mac), None);
            async move {
                let d = s.authorize(&f, at, opts).await.unwrap();
                assert_eq!(d, AccessDecision::Reject(RejectReason::UnknownVoucher));
            }
        };
        for i in 0..10 {
            reject(t0 + i, "AA:00:00:00:00:01").await;
        }
        // Another device: a row of its own, and it breaks the run.
        reject(t0 + 10, "AA:00:00:00:00:02").await;
        reject(t0 + 11, "AA:00:00:00:00:01").await;
        reject(t0 + 12, "AA:00:00:00:00:01").await;
        // More than a minute later: a new row.
        reject(t0 + 80, "AA:00:00:00:00:01").await;
        let mut rows = s
            .auth_events(&AuthEventFilter {
                username: Some("NOPE".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        rows.reverse();
        let got: Vec<_> = rows
            .iter()
            .map(|e| (e.at, e.mac.clone().unwrap(), e.repeats, e.last_at))
            .collect();
        assert_eq!(
            got,
            [
                (t0, "AA:00:00:00:00:01".to_string(), 10, Some(t0 + 9)),
                (t0 + 10, "AA:00:00:00:00:02".to_string(), 1, None),
                (t0 + 11, "AA:00:00:00:00:01".to_string(), 2, Some(t0 + 12)),
                (t0 + 80, "AA:00:00:00:00:01".to_string(), 1, None),
            ]
        );
    }

    /// A voucher code is unique per tenant; a NAS sees only its tenant's
    /// vouchers, for authorization and for accounting.
    pub async fn tenants_keep_their_vouchers_apart<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas_a, plan_a) = setup(s).await;
        let isp = s.add_tenant("isp-b").await.unwrap();
        assert_ne!(isp.id, DEFAULT_TENANT);
        match s.add_tenant("isp-b").await {
            Err(StoreError::Duplicate(what)) => assert_eq!(what, "tenant isp-b"),
            other => panic!("expected Duplicate, got {other:?}"),
        }
        assert!(matches!(
            s.add_tenant("bad name").await,
            Err(StoreError::Invalid(_))
        ));
        let names: Vec<_> = s
            .list_tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, vec!["default", "isp-b"]);
        assert_eq!(s.get_tenant("isp-b").await.unwrap().id, isp.id);
        let nas_b = s
            .add_nas(&NewNas {
                tenant_id: isp.id,
                ..new_nas("r-b", "192.0.2.20", None)
            })
            .await
            .unwrap();
        assert_eq!(nas_b.tenant_id, isp.id);
        let plan_b = s
            .add_plan(&NewPlan {
                name: "b-1h".into(),
                time_quota: Some(3600),
                tenant_id: Some(isp.id),
                ..Default::default()
            })
            .await
            .unwrap();
        // The same code in both tenants: two vouchers.
        let va = s.add_vouchers(&[voucher("SAME", &plan_a)]).await.unwrap();
        let vb = s.add_vouchers(&[voucher("SAME", &plan_b)]).await.unwrap();
        let only_a = s.add_vouchers(&[voucher("ONLY-A", &plan_a)]).await.unwrap();
        assert_eq!((va[0].tenant_id, vb[0].tenant_id), (DEFAULT_TENANT, isp.id));
        assert!(matches!(
            s.add_vouchers(&[voucher("SAME", &plan_b)]).await,
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(s.get_voucher(isp.id, "SAME").await.unwrap().id, vb[0].id);
        assert!(matches!(
            s.get_voucher(isp.id, "ONLY-A").await,
            Err(StoreError::NotFound(_))
        ));

        let t0 = 1_700_000_000;
        let opts = AuthorizeOptions { authorized_ttl: 60 };
        let seen: Arc<Mutex<Option<VoucherSnapshot>>> = Arc::default();
        let capture = {
            let seen = seen.clone();
            move |_: &AccessFacts, snap: Option<&VoucherSnapshot>, _: Timestamp| {
                *seen.lock().unwrap() = snap.cloned();
                AccessDecision::Reject(RejectReason::WrongPassword)
            }
        };
        for (nas, code, expect) in [
            (&nas_a, "SAME", Some(va[0].id)),
            (&nas_b, "SAME", Some(vb[0].id)),
            (&nas_b, "ONLY-A", None),
            (&nas_a, "ONLY-A", Some(only_a[0].id)),
        ] {
            s.authorize_with(&facts(nas, code, None, None), t0, opts, &capture)
                .await
                .unwrap();
            let got = seen.lock().unwrap().take().map(|v| v.voucher.id);
            assert_eq!(got, expect, "{code} at {}", nas.name);
        }

        // Accounting from tenant B's router for "ONLY-A" (no Class) and for
        // "SAME" with tenant A's voucher id as Class: neither touches tenant A.
        let mut forged = acct(&nas_b, AcctStatus::Stop, "b-2", "SAME", t0, 60, 0, 0);
        forged.class_voucher_id = Some(va[0].id);
        s.record_accounting(&[
            acct(&nas_b, AcctStatus::Stop, "b-1", "ONLY-A", t0, 100, 0, 0),
            forged,
        ])
        .await
        .unwrap();
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "ONLY-A")
                .await
                .unwrap()
                .used_seconds,
            0
        );
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "SAME")
                .await
                .unwrap()
                .used_seconds,
            0
        );
        assert_eq!(
            s.get_voucher(isp.id, "SAME").await.unwrap().used_seconds,
            60
        );
        assert_eq!(session(s, "b-1").await.voucher_id, None);
        assert_eq!(session(s, "b-2").await.voucher_id, Some(vb[0].id));

        // Revoking in one tenant leaves the other's voucher alone.
        s.revoke_voucher(isp.id, "SAME").await.unwrap();
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "SAME").await.unwrap().state,
            VoucherState::Active
        );
        // A voucher moves only to a plan of its own tenant.
        assert!(matches!(
            s.set_voucher_plan(isp.id, "SAME", &plan_a.name).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn authorize_snapshot_scope_and_active_macs<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (_, plan) = setup(s).await;
        let plain = s
            .add_nas(&new_nas("plain", "192.0.2.10", None))
            .await
            .unwrap();
        let site_a = s
            .add_nas(&new_nas("site-a", "192.0.2.11", Some("A")))
            .await
            .unwrap();
        s.add_vouchers(&[
            voucher("ANY", &plan),
            NewVoucher {
                site: Some("A".into()),
                ..voucher("ONLY-A", &plan)
            },
            NewVoucher {
                site: Some("B".into()),
                ..voucher("ONLY-B", &plan)
            },
        ])
        .await
        .unwrap();
        let seen: Arc<Mutex<Option<VoucherSnapshot>>> = Arc::default();
        let capture = {
            let seen = seen.clone();
            move |_: &AccessFacts, snap: Option<&VoucherSnapshot>, _: Timestamp| {
                *seen.lock().unwrap() = snap.cloned();
                AccessDecision::Reject(RejectReason::WrongPassword)
            }
        };
        let t0 = 1_700_000_000;
        let opts = AuthorizeOptions { authorized_ttl: 60 };
        for (nas, code, visible) in [
            (&site_a, "ANY", true),
            (&site_a, "ONLY-A", true),
            (&site_a, "ONLY-B", false),
            (&plain, "ONLY-B", true),
            (&plain, "NOPE", false),
        ] {
            let d = s
                .authorize_with(&facts(nas, code, None, None), t0, opts, &capture)
                .await
                .unwrap();
            assert_eq!(d, AccessDecision::Reject(RejectReason::WrongPassword));
            let snap = seen.lock().unwrap().take();
            assert_eq!(snap.is_some(), visible, "{code} at {}", nas.name);
            if let Some(snap) = snap {
                assert_eq!(snap.voucher.code, code);
                assert_eq!(snap.plan, plan);
                assert!(snap.active_macs.is_empty());
            }
        }
        let events = s.auth_events(&AuthEventFilter::default()).await.unwrap();
        assert_eq!(events.len(), 5);
        assert!(events
            .iter()
            .all(|e| e.reason.as_deref() == Some("wrong_password")));

        // Live devices: open sessions, and authorized ones younger than the TTL.
        let macs = [
            "AA:00:00:00:00:01",
            "AA:00:00:00:00:02",
            "AA:00:00:00:00:03",
            "AA:00:00:00:00:04",
        ];
        s.authorize_with(
            &facts(&plain, "ANY", Some(macs[0]), Some("old-auth")),
            t0 - 61,
            opts,
            &accept_any,
        )
        .await
        .unwrap();
        s.authorize_with(
            &facts(&plain, "ANY", Some(macs[1]), Some("new-auth")),
            t0 - 59,
            opts,
            &accept_any,
        )
        .await
        .unwrap();
        let mut open = acct(&plain, AcctStatus::Start, "open", "ANY", t0 - 500, 0, 0, 0);
        open.mac = Some(macs[2].into());
        let mut open_same_mac = acct(&plain, AcctStatus::Start, "open2", "ANY", t0 - 400, 0, 0, 0);
        open_same_mac.mac = Some(macs[2].into());
        let mut no_mac = acct(&plain, AcctStatus::Start, "nomac", "ANY", t0 - 400, 0, 0, 0);
        no_mac.mac = None;
        let mut closed = acct(&plain, AcctStatus::Stop, "closed", "ANY", t0 - 300, 5, 0, 0);
        closed.mac = Some(macs[3].into());
        let mut other_voucher = acct(
            &plain,
            AcctStatus::Start,
            "other",
            "ONLY-B",
            t0 - 300,
            0,
            0,
            0,
        );
        other_voucher.mac = Some("BB:00:00:00:00:09".into());
        s.record_accounting(&[open, open_same_mac, no_mac, closed, other_voucher])
            .await
            .unwrap();

        s.authorize_with(
            &facts(&plain, "ANY", Some(macs[0]), None),
            t0,
            opts,
            &capture,
        )
        .await
        .unwrap();
        let mut live = seen.lock().unwrap().take().unwrap().active_macs;
        live.sort();
        assert_eq!(live, [macs[1], macs[2]]);
    }

    pub async fn authorize_accept_effects<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let nas = s.add_nas(&new_nas("r1", "192.0.2.1", None)).await.unwrap();
        let plan = s
            .add_plan(&NewPlan {
                name: "locked".into(),
                validity: Some(86_400),
                mac_lock: true,
                interim_interval: Some(300),
                shared_users: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let v = s
            .add_vouchers(&[voucher("LOCK", &plan)])
            .await
            .unwrap()
            .remove(0);
        let t0 = 1_700_000_000;
        let opts = AuthorizeOptions::default();
        let first = facts(&nas, "LOCK", Some("AA:00:00:00:00:01"), Some("81a00001"));
        let d = s
            .authorize_with(&first, t0, opts, &accept_any)
            .await
            .unwrap();
        assert!(matches!(d, AccessDecision::Accept(_)));
        let after = s.get_voucher(DEFAULT_TENANT, "LOCK").await.unwrap();
        assert_eq!(after.first_login_at, Some(t0));
        assert_eq!(after.valid_until, Some(t0 + 86_400));
        assert_eq!(after.bound_mac.as_deref(), Some("AA:00:00:00:00:01"));
        let row = session(s, "81a00001").await;
        assert_eq!(row.state, SessionState::Authorized);
        assert_eq!((row.authorized_at, row.updated_at), (Some(t0), t0));
        assert_eq!(row.voucher_id, Some(v.id));
        assert_eq!(row.interim_interval, Some(300));
        assert_eq!(row.username, "LOCK");
        assert_eq!(row.mac.as_deref(), Some("AA:00:00:00:00:01"));
        assert_eq!(row.framed_ip.as_deref(), Some("10.5.50.2"));
        assert_eq!(row.started_at, None);

        // A grant that (wrongly) activates and binds again changes nothing: the
        // UPDATEs are guarded by first_login_at / bound_mac IS NULL.
        let always_activate = |f: &AccessFacts, snap: Option<&VoucherSnapshot>, now: Timestamp| {
            let snap = snap.unwrap();
            AccessDecision::Accept(Grant {
                voucher_id: snap.voucher.id,
                reply: vec![],
                activation: Some(Activation {
                    first_login_at: now,
                    valid_until: Some(now + 1),
                }),
                bind_mac: f.mac.clone(),
                interim_interval: None,
            })
        };
        let second = facts(&nas, "LOCK", Some("AA:00:00:00:00:02"), None);
        s.authorize_with(&second, t0 + 100, opts, &always_activate)
            .await
            .unwrap();
        let again = s.get_voucher(DEFAULT_TENANT, "LOCK").await.unwrap();
        assert_eq!(
            (again.first_login_at, again.valid_until),
            (Some(t0), Some(t0 + 86_400))
        );
        assert_eq!(again.bound_mac.as_deref(), Some("AA:00:00:00:00:01"));

        // No Acct-Session-Id in the request: a synthetic one.
        let sessions = s.list_sessions(false).await.unwrap();
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            sessions[0].acct_session_id.split('-').next(),
            Some("auth"),
            "newest first"
        );
        assert!(sessions[0]
            .acct_session_id
            .starts_with(&format!("auth-{}-", t0 + 100)));
        assert_eq!(sessions[0].state, SessionState::Authorized);

        // Re-authorizing the same session id refreshes the row, it does not add one.
        s.authorize_with(&first, t0 + 200, opts, &accept_any)
            .await
            .unwrap();
        assert_eq!(s.list_sessions(false).await.unwrap().len(), 2);
        assert_eq!(session(s, "81a00001").await.authorized_at, Some(t0 + 200));

        let events = s.auth_events(&AuthEventFilter::default()).await.unwrap();
        assert_eq!(events.len(), 3);
        assert!(events
            .iter()
            .all(|e| e.result == "accept" && e.reason.is_none()));
    }

    pub async fn authorize_keeps_open_session<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        let v = s
            .add_vouchers(&[voucher("KEEP", &plan)])
            .await
            .unwrap()
            .remove(0);
        let t0 = 1_700_000_000;
        s.record_accounting(&[acct(
            &nas,
            AcctStatus::InterimUpdate,
            "k1",
            "other-name",
            t0,
            100,
            10,
            10,
        )])
        .await
        .unwrap();
        let f = facts(&nas, "KEEP", Some("AA:00:00:00:00:07"), Some("k1"));
        s.authorize_with(&f, t0 + 5, AuthorizeOptions::default(), &accept_any)
            .await
            .unwrap();
        let row = session(s, "k1").await;
        assert_eq!(row.state, SessionState::Open);
        assert_eq!(
            (row.session_time, row.input_octets, row.output_octets),
            (100, 10, 10)
        );
        assert_eq!(row.started_at, Some(t0 - 100));
        assert_eq!(row.voucher_id, Some(v.id));
        assert_eq!(row.mac.as_deref(), Some("AA:00:00:00:00:07"));
    }

    pub async fn accounting_adopts_synthetic_session<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        let v = s
            .add_vouchers(&[voucher("ADOPT", &plan)])
            .await
            .unwrap()
            .remove(0);
        let t0 = 1_700_000_000;
        let m = "AA:BB:CC:00:00:01"; // the MAC `acct` reports
        s.authorize_with(
            &facts(&nas, "ADOPT", Some(m), None),
            t0,
            AuthorizeOptions::default(),
            &accept_any,
        )
        .await
        .unwrap();
        let synthetic = s.list_sessions(false).await.unwrap().remove(0);
        assert!(synthetic.acct_session_id.starts_with("auth-"));

        let mut start = acct(
            &nas,
            AcctStatus::Start,
            "81a0000a",
            "ADOPT",
            t0 + 2,
            0,
            0,
            0,
        );
        start.class_voucher_id = Some(v.id);
        s.record_accounting(&[start]).await.unwrap();
        let all = s.list_sessions(false).await.unwrap();
        assert_eq!(all.len(), 1, "adopted, not duplicated");
        assert_eq!(all[0].id, synthetic.id);
        assert_eq!(all[0].acct_session_id, "81a0000a");
        assert_eq!(all[0].state, SessionState::Open);
        assert_eq!(all[0].authorized_at, Some(t0));
        assert_eq!(all[0].started_at, Some(t0 + 2));

        // Another device's accounting does not take over a synthetic row.
        s.authorize_with(
            &facts(&nas, "ADOPT", Some("AA:BB:CC:00:00:99"), None),
            t0 + 10,
            AuthorizeOptions::default(),
            &accept_any,
        )
        .await
        .unwrap();
        s.record_accounting(&[acct(
            &nas,
            AcctStatus::Start,
            "81a0000b",
            "ADOPT",
            t0 + 12,
            0,
            0,
            0,
        )])
        .await
        .unwrap();
        let all = s.list_sessions(false).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.iter()
                .filter(|x| x.acct_session_id.starts_with("auth-"))
                .count(),
            1
        );
    }

    /// Storage-level serialisation, independent of the voucher rules: 50 first
    /// logins from 50 MACs, spread over two store instances on one database, with
    /// a decision that enforces only the shared-users limit.
    pub async fn authorize_serialises_instances<S: Backend>(fx: &Fixture<S>) {
        concurrent_first_login(fx, |store, f, now| {
            Box::pin(async move {
                store
                    .authorize_with(
                        &f,
                        now,
                        AuthorizeOptions::default(),
                        &accept_within_shared_users,
                    )
                    .await
            })
        })
        .await;
    }

    type AuthorizeFn<S> = fn(
        Arc<S>,
        AccessFacts,
        Timestamp,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = StoreResult<AccessDecision>> + Send>,
    >;

    async fn concurrent_first_login<S: Backend>(fx: &Fixture<S>, authorize: AuthorizeFn<S>) {
        let (nas, plan) = setup(&fx.store).await;
        assert_eq!(plan.shared_users, 1);
        fx.store
            .add_vouchers(&[voucher("RACE", &plan)])
            .await
            .unwrap();
        let instances = [
            Arc::new(S::open_url(&fx.url).await.unwrap()),
            Arc::new(S::open_url(&fx.url).await.unwrap()),
        ];
        let t0 = 1_700_000_000;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = instances[i % 2].clone();
            let f = facts(&nas, "RACE", Some(&mac(i)), Some(&format!("race{i}")));
            // Distinct times: only the winner's activation may be stored.
            tasks.push(tokio::spawn(authorize(store, f, t0 + i as i64)));
        }
        let mut accepts = Vec::new();
        let mut refused = [0usize; 2];
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(AccessDecision::Accept(_)) => accepts.push(i),
                Ok(AccessDecision::Reject(r)) => assert_eq!(r, RejectReason::SharedUsersLimit),
                Err(e) if S::ONE_DECIDER => {
                    assert!(e.to_string().contains("one server per SQLite file"), "{e}");
                    refused[i % 2] += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        let decided = check_refused::<S>(refused, 50);
        let events = settled_events(&fx.store, decided).await;
        assert_eq!(accepts.len(), 1, "exactly one device gets in: {accepts:?}");
        let winner = accepts[0];
        let v = fx.store.get_voucher(DEFAULT_TENANT, "RACE").await.unwrap();
        assert_eq!(
            v.first_login_at,
            Some(t0 + winner as i64),
            "activated once, by the winner"
        );
        let sessions = fx.store.list_sessions(false).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].mac.as_deref(), Some(mac(winner).as_str()));
        assert_eq!(events.len(), decided);
        assert_eq!(events.iter().filter(|e| e.result == "accept").count(), 1);
    }

    /// With one decider per database, every request of the instance that did
    /// not get there first is refused; returns how many were decided.
    fn check_refused<S: Backend>(refused: [usize; 2], total: usize) -> usize {
        if S::ONE_DECIDER {
            assert!(
                refused.contains(&0) && refused.contains(&(total / 2)),
                "one instance decides, the other is refused: {refused:?}"
            );
        } else {
            assert_eq!(refused, [0, 0]);
        }
        total - refused.iter().sum::<usize>()
    }

    // -----------------------------------------------------------------------
    // Needs the real policy: these go through `Store::authorize`, hence
    // `policy::decide`, and assume the voucher rules of DESIGN §5. They fail
    // while `decide` is a stub that rejects everything.
    // -----------------------------------------------------------------------

    pub async fn needs_policy_accept_activates_once<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let nas = s.add_nas(&new_nas("r1", "192.0.2.1", None)).await.unwrap();
        let plan = s
            .add_plan(&NewPlan {
                name: "day".into(),
                time_quota: Some(3_600),
                validity: Some(86_400),
                shared_users: 1,
                interim_interval: Some(300),
                ..Default::default()
            })
            .await
            .unwrap();
        let v = s
            .add_vouchers(&[voucher("REAL1", &plan)])
            .await
            .unwrap()
            .remove(0);
        let t0 = 1_700_000_000;
        let opts = AuthorizeOptions::default();
        let f = facts(&nas, "REAL1", Some("AA:00:00:00:00:01"), Some("r-1"));
        match s.authorize(&f, t0, opts).await.unwrap() {
            AccessDecision::Accept(g) => {
                assert_eq!(g.voucher_id, v.id);
                assert!(g.activation.is_some());
            }
            other => panic!("expected Accept, got {other:?}"),
        }
        let after = s.get_voucher(DEFAULT_TENANT, "REAL1").await.unwrap();
        assert_eq!(
            (after.first_login_at, after.valid_until),
            (Some(t0), Some(t0 + 86_400))
        );
        assert_eq!(session(s, "r-1").await.state, SessionState::Authorized);

        // Same device again later: accepted, not re-activated.
        match s.authorize(&f, t0 + 30, opts).await.unwrap() {
            AccessDecision::Accept(g) => assert_eq!(g.activation, None),
            other => panic!("expected Accept, got {other:?}"),
        }
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "REAL1")
                .await
                .unwrap()
                .first_login_at,
            Some(t0)
        );

        // A second device while the first is live: shared-users limit.
        let other = facts(&nas, "REAL1", Some("AA:00:00:00:00:02"), Some("r-2"));
        assert_eq!(
            s.authorize(&other, t0 + 31, opts).await.unwrap(),
            AccessDecision::Reject(RejectReason::SharedUsersLimit)
        );
        let events = s.auth_events(&AuthEventFilter::default()).await.unwrap();
        assert_eq!(events[0].reason.as_deref(), Some("shared_users_limit"));
    }

    pub async fn needs_policy_rejects<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        s.add_vouchers(&[
            voucher("REV", &plan),
            NewVoucher {
                password: Some("secret".into()),
                ..voucher("PW", &plan)
            },
        ])
        .await
        .unwrap();
        let t0 = 1_700_000_000;
        let opts = AuthorizeOptions::default();
        s.revoke_voucher(DEFAULT_TENANT, "REV").await.unwrap();
        let revoked = s
            .authorize(
                &facts(&nas, "REV", Some("AA:00:00:00:00:01"), None),
                t0,
                opts,
            )
            .await
            .unwrap();
        assert_eq!(revoked, AccessDecision::Reject(RejectReason::Revoked));
        let wrong = s
            .authorize(
                &facts(&nas, "PW", Some("AA:00:00:00:00:01"), None),
                t0,
                opts,
            )
            .await
            .unwrap();
        assert_eq!(wrong, AccessDecision::Reject(RejectReason::WrongPassword));
        assert_eq!(
            s.get_voucher(DEFAULT_TENANT, "PW")
                .await
                .unwrap()
                .first_login_at,
            None,
            "a reject does not activate"
        );
        assert!(s.list_sessions(false).await.unwrap().is_empty());
    }

    /// DESIGN §5 concurrency: 50 simultaneous first logins of a single-device
    /// voucher from 50 MACs through two instances → one Accept, one activation.
    pub async fn needs_policy_concurrent_first_login<S: Backend>(fx: &Fixture<S>) {
        concurrent_first_login(fx, |store, f, now| {
            Box::pin(async move { store.authorize(&f, now, AuthorizeOptions::default()).await })
        })
        .await;
    }

    // -----------------------------------------------------------------------
    // Batches: `authorize_batch` and multi-record `record_accounting` calls give
    // what the same requests give one call at a time.
    // -----------------------------------------------------------------------

    /// Within one batch, each request sees the accepts before it: the live
    /// device, the activation and the MAC binding.
    pub async fn authorize_batch_sees_earlier_accepts<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        let locked = s
            .add_plan(&NewPlan {
                name: "locked".into(),
                mac_lock: true,
                validity: Some(600),
                shared_users: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        s.add_vouchers(&[voucher("ONE", &plan), voucher("LOCKED", &locked)])
            .await
            .unwrap();
        let t0 = 1_700_000_000;
        let seen: Arc<Mutex<Vec<Option<VoucherSnapshot>>>> = Arc::default();
        let record = {
            let seen = seen.clone();
            move |f: &AccessFacts, snap: Option<&VoucherSnapshot>, now: Timestamp| {
                seen.lock().unwrap().push(snap.cloned());
                accept_within_shared_users(f, snap, now)
            }
        };
        let requests = [
            facts(&nas, "ONE", Some(&mac(1)), Some("b1")),
            facts(&nas, "ONE", Some(&mac(2)), Some("b2")),
            facts(&nas, "ONE", Some(&mac(1)), Some("b3")),
            facts(&nas, "LOCKED", Some(&mac(3)), Some("b4")),
            facts(&nas, "LOCKED", Some(&mac(4)), Some("b5")),
            // The same session id twice: one row, refreshed by the later accept.
            facts(&nas, "LOCKED", None, Some("b4")),
            facts(&nas, "NOPE", Some(&mac(5)), Some("b6")),
        ];
        let d = s
            .authorize_batch_with(&requests, t0, AuthorizeOptions::default(), &record)
            .await
            .unwrap();
        assert_eq!(d.len(), requests.len());
        let accepted: Vec<bool> = d
            .iter()
            .map(|d| matches!(d, AccessDecision::Accept(_)))
            .collect();
        assert_eq!(accepted, [true, false, true, true, true, true, false]);
        assert_eq!(d[1], AccessDecision::Reject(RejectReason::SharedUsersLimit));
        let activation = |i: usize| match &d[i] {
            AccessDecision::Accept(g) => g.activation.clone(),
            other => panic!("{i}: {other:?}"),
        };
        assert!(activation(0).is_some(), "first login activates");
        assert_eq!(activation(2), None, "already active within the batch");
        assert!(activation(3).is_some());
        assert_eq!(activation(4), None);

        let seen = std::mem::take(&mut *seen.lock().unwrap());
        let snap = |i: usize| seen[i].clone().unwrap();
        assert!(snap(0).active_macs.is_empty());
        assert_eq!(snap(1).active_macs, [mac(1)]);
        assert_eq!(snap(1).voucher.first_login_at, Some(t0));
        assert_eq!(snap(4).voucher.bound_mac, Some(mac(3)));
        assert_eq!(snap(5).active_macs, [mac(3), mac(4)]);
        assert!(seen[6].is_none());

        let one = s.get_voucher(DEFAULT_TENANT, "ONE").await.unwrap();
        assert_eq!(one.first_login_at, Some(t0));
        let locked = s.get_voucher(DEFAULT_TENANT, "LOCKED").await.unwrap();
        assert_eq!(
            (locked.first_login_at, locked.valid_until),
            (Some(t0), Some(t0 + 600))
        );
        assert_eq!(locked.bound_mac, Some(mac(3)));
        let sessions = s.list_sessions(false).await.unwrap();
        let mut ids: Vec<&str> = sessions
            .iter()
            .map(|x| x.acct_session_id.as_str())
            .collect();
        ids.sort();
        assert_eq!(ids, ["b1", "b3", "b4", "b5"]);
        let b4 = session(s, "b4").await;
        assert_eq!(b4.mac, Some(mac(3)), "a later accept without MAC keeps it");
        assert_eq!(b4.username, "LOCKED");
        let events = s
            .auth_events(&AuthEventFilter {
                limit: Some(100),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(events.len(), requests.len());
        // Newest first: the batch's events are stored in request order.
        let users: Vec<&str> = events.iter().rev().map(|e| e.username.as_str()).collect();
        let asked: Vec<&str> = requests.iter().map(|f| f.username.as_str()).collect();
        assert_eq!(users, asked);
        assert_eq!(
            events.iter().filter(|e| e.result == "accept").count(),
            accepted.iter().filter(|a| **a).count()
        );
        assert!(s
            .authorize_batch_with(&[], t0, AuthorizeOptions::default(), &record)
            .await
            .unwrap()
            .is_empty());
    }

    /// The 50-device race, in batches: two instances, each deciding batches of
    /// requests that all name the same single-device voucher.
    pub async fn authorize_batch_serialises_instances<S: Backend>(fx: &Fixture<S>) {
        let (nas, plan) = setup(&fx.store).await;
        let race_id = fx
            .store
            .add_vouchers(&[voucher("RACE", &plan), voucher("OTHER", &plan)])
            .await
            .unwrap()[0]
            .id;
        let instances = [
            Arc::new(S::open_url(&fx.url).await.unwrap()),
            Arc::new(S::open_url(&fx.url).await.unwrap()),
        ];
        let t0 = 1_700_000_000;
        let mut tasks = Vec::new();
        for b in 0..10usize {
            let store = instances[b % 2].clone();
            // Each batch also names another voucher, in varying order, so that
            // batches lock several rows.
            let mut batch: Vec<AccessFacts> = (0..5)
                .map(|k| {
                    let i = b * 5 + k;
                    facts(&nas, "RACE", Some(&mac(i)), Some(&format!("race{i}")))
                })
                .collect();
            let other = facts(&nas, "OTHER", Some(&mac(100 + b)), Some(&format!("o{b}")));
            if b % 2 == 0 {
                batch.insert(0, other);
            } else {
                batch.push(other);
            }
            tasks.push(tokio::spawn(async move {
                store
                    .authorize_batch(&batch, t0 + b as i64, AuthorizeOptions::default())
                    .await
            }));
        }
        let mut race_accepts = 0;
        let mut other_accepts = 0;
        let mut refused = [0usize; 2];
        for (b, t) in tasks.into_iter().enumerate() {
            let decisions = match t.await.unwrap() {
                Ok(d) => d,
                Err(e) if S::ONE_DECIDER => {
                    assert!(e.to_string().contains("one server per SQLite file"), "{e}");
                    refused[b % 2] += 6;
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            for d in decisions {
                if let AccessDecision::Accept(g) = d {
                    if g.voucher_id == race_id {
                        race_accepts += 1;
                    } else {
                        other_accepts += 1;
                    }
                }
            }
        }
        assert_eq!(race_accepts, 1, "exactly one device gets in");
        assert_eq!(other_accepts, 1);
        let decided = check_refused::<S>(refused, 60);
        let events = settled_events(&fx.store, decided).await;
        assert_eq!(events.len(), decided);
        assert_eq!(events.iter().filter(|e| e.result == "accept").count(), 2);
        assert_eq!(fx.store.list_sessions(false).await.unwrap().len(), 2);
    }

    /// A mixed batch through the real policy gives the decisions, voucher states,
    /// session rows and auth log that the same requests give one at a time.
    pub async fn needs_policy_batch_equals_sequential<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let one = s
            .add_plan(&NewPlan {
                name: "one".into(),
                time_quota: Some(3_600),
                validity: Some(86_400),
                shared_users: 1,
                interim_interval: Some(300),
                ..Default::default()
            })
            .await
            .unwrap();
        let locked = s
            .add_plan(&NewPlan {
                name: "locked".into(),
                mac_lock: true,
                shared_users: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        let t0 = 1_700_000_000;
        let mut outcomes = Vec::new();
        for (prefix, batched) in [("S", false), ("B", true)] {
            let plain = s
                .add_nas(&new_nas(
                    &format!("{prefix}-plain"),
                    if batched { "192.0.2.1" } else { "192.0.2.2" },
                    None,
                ))
                .await
                .unwrap();
            let site_a = s
                .add_nas(&new_nas(
                    &format!("{prefix}-a"),
                    if batched { "192.0.2.3" } else { "192.0.2.4" },
                    Some("A"),
                ))
                .await
                .unwrap();
            let code = |c: &str| format!("{prefix}-{c}");
            s.add_vouchers(&[
                voucher(&code("ONE"), &one),
                voucher(&code("LOCK"), &locked),
                voucher(&code("REV"), &one),
                NewVoucher {
                    site: Some("B".into()),
                    ..voucher(&code("SITE-B"), &one)
                },
                NewVoucher {
                    site: Some("A".into()),
                    ..voucher(&code("SITE-A"), &one)
                },
                NewVoucher {
                    password: Some("pw".into()),
                    ..voucher(&code("PW"), &one)
                },
            ])
            .await
            .unwrap();
            s.revoke_voucher(DEFAULT_TENANT, &code("REV"))
                .await
                .unwrap();
            let m = |i: usize| Some(mac(i));
            let requests = [
                facts(&plain, &code("ONE"), m(1).as_deref(), Some("1")),
                facts(&plain, &code("ONE"), m(2).as_deref(), Some("2")),
                facts(&plain, &code("ONE"), m(1).as_deref(), Some("3")),
                facts(&plain, &code("NOPE"), m(1).as_deref(), Some("4")),
                facts(&plain, &code("REV"), m(1).as_deref(), Some("5")),
                facts(&site_a, &code("SITE-B"), m(1).as_deref(), Some("6")),
                facts(&site_a, &code("SITE-A"), m(6).as_deref(), Some("7")),
                facts(&plain, &code("LOCK"), m(3).as_deref(), Some("8")),
                facts(&plain, &code("LOCK"), m(4).as_deref(), Some("9")),
                facts(&plain, &code("PW"), m(1).as_deref(), Some("10")),
                facts(&plain, &code("ONE"), m(1).as_deref(), Some("1")),
                facts(&plain, &code("LOCK"), None, None),
            ];
            let opts = AuthorizeOptions::default();
            let decisions = if batched {
                s.authorize_batch(&requests, t0, opts).await.unwrap()
            } else {
                let mut out = Vec::new();
                for f in &requests {
                    out.push(s.authorize(f, t0, opts).await.unwrap());
                }
                out
            };
            // Voucher ids differ between the two runs; compare what they mean.
            let decisions: Vec<String> = decisions
                .iter()
                .map(|d| match d {
                    AccessDecision::Accept(g) => format!(
                        "accept activation={:?} bind={:?} reply={}",
                        g.activation,
                        g.bind_mac,
                        g.reply.len()
                    ),
                    AccessDecision::Reject(r) => format!("reject {r:?}"),
                })
                .collect();
            let mut vouchers = Vec::new();
            for c in ["ONE", "LOCK", "REV", "SITE-B", "SITE-A", "PW"] {
                let v = s.get_voucher(DEFAULT_TENANT, &code(c)).await.unwrap();
                vouchers.push((c, v.first_login_at, v.valid_until, v.bound_mac, v.state));
            }
            let mut sessions: Vec<_> = s
                .list_sessions(false)
                .await
                .unwrap()
                .into_iter()
                .filter(|x| x.nas_name.starts_with(prefix))
                .map(|x| {
                    let synthetic = x.acct_session_id.starts_with("auth-");
                    (
                        x.nas_name.split_once('-').unwrap().1.to_string(),
                        if synthetic {
                            "auth-…".to_string()
                        } else {
                            x.acct_session_id
                        },
                        x.username.split_once('-').unwrap().1.to_string(),
                        x.mac,
                        format!("{:?}", x.state),
                        x.authorized_at,
                        x.interim_interval,
                    )
                })
                .collect();
            sessions.sort();
            let events: Vec<_> = s
                .auth_events(&AuthEventFilter {
                    limit: Some(100),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.username.starts_with(prefix))
                .map(|e| {
                    (
                        e.username.split_once('-').unwrap().1.to_string(),
                        e.mac,
                        e.result,
                        e.reason,
                    )
                })
                .collect();
            outcomes.push((decisions, vouchers, sessions, events));
        }
        let (seq, batch) = (&outcomes[0], &outcomes[1]);
        assert_eq!(seq.0, batch.0, "decisions");
        assert_eq!(seq.1, batch.1, "vouchers");
        assert_eq!(seq.2, batch.2, "sessions");
        assert_eq!(seq.3, batch.3, "auth events");
        // And the expected story, so that both being wrong alike would show.
        let accepted: Vec<bool> = seq.0.iter().map(|d| d.starts_with("accept")).collect();
        assert_eq!(
            accepted,
            [true, false, true, false, false, false, true, true, false, false, true, false]
        );
        assert!(seq.0[1].contains("SharedUsersLimit"));
        assert!(seq.0[3].contains("UnknownVoucher"));
        assert!(seq.0[4].contains("Revoked"));
        assert!(seq.0[5].contains("UnknownVoucher"));
        assert!(seq.0[8].contains("MacLocked"));
        assert!(seq.0[9].contains("WrongPassword"));
        assert!(seq.0[11].contains("MissingMac"));
    }

    /// Records for two NASes with the same story: one record per call on one,
    /// everything in one call on the other.
    fn accounting_story(nas: &Nas, prefix: &str, class_id: i64) -> Vec<AcctRecord> {
        let t0 = 1_700_000_000;
        let v = |c: &str| format!("{prefix}-{c}");
        let big = (5u64 << 32) + 123; // five gigawords and some
        let mut classed = acct(nas, AcctStatus::Start, "c1", "renamed", t0, 0, 0, 0);
        classed.class_voucher_id = Some(class_id);
        let mut other_mac = acct(nas, AcctStatus::Start, "m2", &v("ADOPT"), t0 + 3, 0, 0, 0);
        other_mac.mac = Some("AA:BB:CC:00:00:99".into());
        vec![
            // A whole session: Start, Interim, retransmitted Interim, Stop.
            acct(nas, AcctStatus::Start, "s1", &v("A"), t0, 0, 0, 0),
            acct(
                nas,
                AcctStatus::InterimUpdate,
                "s1",
                &v("A"),
                t0 + 60,
                60,
                1_000,
                2_000,
            ),
            acct(
                nas,
                AcctStatus::InterimUpdate,
                "s1",
                &v("A"),
                t0 + 62,
                60,
                1_000,
                2_000,
            ),
            // Interleaved: a lost Start, then counters above 2^32.
            acct(
                nas,
                AcctStatus::InterimUpdate,
                "s2",
                &v("B"),
                t0 + 61,
                120,
                10,
                20,
            ),
            acct(
                nas,
                AcctStatus::InterimUpdate,
                "s2",
                &v("B"),
                t0 + 121,
                180,
                big,
                big + 7,
            ),
            acct(
                nas,
                AcctStatus::Stop,
                "s1",
                &v("A"),
                t0 + 90,
                90,
                1_500,
                2_500,
            ),
            // Late interim after the Stop: counted, not reopened.
            acct(
                nas,
                AcctStatus::InterimUpdate,
                "s1",
                &v("A"),
                t0 + 95,
                95,
                1_600,
                2_500,
            ),
            // An older, reordered interim moves nothing back.
            acct(
                nas,
                AcctStatus::InterimUpdate,
                "s2",
                &v("B"),
                t0 + 122,
                150,
                5,
                5,
            ),
            // Class wins over the User-Name; an unknown name links to nothing.
            classed,
            acct(nas, AcctStatus::Stop, "u1", "nobody", t0 + 5, 30, 1, 1),
            // Adopts the synthetic row of the same device; another device does not.
            acct(nas, AcctStatus::Start, "m1", &v("ADOPT"), t0 + 2, 0, 0, 0),
            other_mac,
            acct(
                nas,
                AcctStatus::InterimUpdate,
                "m1",
                &v("ADOPT"),
                t0 + 30,
                28,
                7,
                7,
            ),
            // No Acct-Session-Id: ignored.
            acct(
                nas,
                AcctStatus::InterimUpdate,
                "",
                &v("A"),
                t0 + 40,
                40,
                4,
                4,
            ),
            // Stop then Start of one id: the Stop is final.
            acct(nas, AcctStatus::Stop, "s3", &v("B"), t0 + 200, 10, 100, 100),
            acct(nas, AcctStatus::Start, "s3", &v("B"), t0 + 201, 0, 0, 0),
        ]
    }

    pub async fn accounting_batch_equals_sequential<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let plan = s
            .add_plan(&NewPlan {
                name: "p".into(),
                shared_users: 5,
                ..Default::default()
            })
            .await
            .unwrap();
        let t0 = 1_700_000_000;
        let mut outcomes = Vec::new();
        for (prefix, addr, batched) in [("S", "192.0.2.1", false), ("B", "192.0.2.2", true)] {
            let nas = s.add_nas(&new_nas(prefix, addr, None)).await.unwrap();
            let code = |c: &str| format!("{prefix}-{c}");
            let vs = s
                .add_vouchers(&[
                    voucher(&code("A"), &plan),
                    voucher(&code("B"), &plan),
                    voucher(&code("C"), &plan),
                    voucher(&code("ADOPT"), &plan),
                ])
                .await
                .unwrap();
            // A synthetic authorized row (accept without Acct-Session-Id).
            s.authorize_with(
                &facts(&nas, &code("ADOPT"), Some("AA:BB:CC:00:00:01"), None),
                t0,
                AuthorizeOptions::default(),
                &accept_any,
            )
            .await
            .unwrap();
            let story = accounting_story(&nas, prefix, vs[2].id);
            if batched {
                s.record_accounting(&story).await.unwrap();
                // The whole batch again is a retransmission: nothing moves.
                s.record_accounting(&story).await.unwrap();
            } else {
                for rec in &story {
                    s.record_accounting(std::slice::from_ref(rec))
                        .await
                        .unwrap();
                }
                for rec in &story {
                    s.record_accounting(std::slice::from_ref(rec))
                        .await
                        .unwrap();
                }
            }
            let code_of = |id: Option<i64>| {
                id.map(|id| {
                    let v = vs.iter().find(|v| v.id == id).unwrap();
                    v.code.split_once('-').unwrap().1.to_string()
                })
            };
            let mut sessions: Vec<_> = s
                .list_sessions(false)
                .await
                .unwrap()
                .into_iter()
                .filter(|x| x.nas_name == prefix)
                .map(|x| {
                    (
                        if x.acct_session_id.starts_with("auth-") {
                            "auth-…".to_string()
                        } else {
                            x.acct_session_id.clone()
                        },
                        code_of(x.voucher_id),
                        x.mac.clone(),
                        format!("{:?}", x.state),
                        (x.authorized_at, x.started_at, x.updated_at, x.stopped_at),
                        (x.session_time, x.input_octets, x.output_octets),
                        x.terminate_cause.clone(),
                    )
                })
                .collect();
            sessions.sort();
            let mut usage = Vec::new();
            for c in ["A", "B", "C", "ADOPT"] {
                let v = s.get_voucher(DEFAULT_TENANT, &code(c)).await.unwrap();
                usage.push((c, v.used_seconds, v.used_bytes));
            }
            outcomes.push((sessions, usage));
        }
        assert_eq!(outcomes[0].0, outcomes[1].0, "sessions");
        assert_eq!(outcomes[0].1, outcomes[1].1, "usage");
        let big = (5u64 << 32) + 123;
        assert_eq!(
            outcomes[1].1,
            [
                ("A", 95, 1_600 + 2_500),
                ("B", 190, 2 * big + 7 + 200),
                ("C", 0, 0),
                ("ADOPT", 28, 14)
            ]
        );
        let sessions = &outcomes[1].0;
        assert_eq!(sessions.len(), 7, "{sessions:#?}");
        let s1 = sessions.iter().find(|x| x.0 == "s1").unwrap();
        assert_eq!(s1.3, "Closed");
        assert_eq!(s1.4 .3, Some(t0 + 90));
        let m1 = sessions.iter().find(|x| x.0 == "m1").unwrap();
        assert_eq!(m1.4 .0, Some(t0), "adopted the synthetic row");
        assert!(!sessions.iter().any(|x| x.0 == "auth-…"));
    }

    /// Accounting-On in the middle of a batch closes what came before it and
    /// nothing after it; a second NAS is untouched.
    pub async fn accounting_batch_on_in_the_middle<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (r1, plan) = setup(s).await;
        let r2 = s.add_nas(&new_nas("r2", "192.0.2.2", None)).await.unwrap();
        s.add_vouchers(&[voucher("M1", &plan), voucher("M2", &plan)])
            .await
            .unwrap();
        let t0 = 1_700_000_000;
        s.record_accounting(&[
            acct(&r1, AcctStatus::Start, "before", "M1", t0, 0, 0, 0),
            acct(&r2, AcctStatus::Start, "other", "M2", t0, 0, 0, 0),
            acct(
                &r1,
                AcctStatus::InterimUpdate,
                "before",
                "M1",
                t0 + 5,
                5,
                50,
                50,
            ),
            nas_event(&r1, AcctStatus::AccountingOn, t0 + 10),
            // A late interim of the closed session: counted, stays closed.
            acct(
                &r1,
                AcctStatus::InterimUpdate,
                "before",
                "M1",
                t0 + 11,
                8,
                80,
                80,
            ),
            acct(&r1, AcctStatus::Start, "after", "M1", t0 + 12, 0, 0, 0),
            acct(
                &r2,
                AcctStatus::InterimUpdate,
                "other",
                "M2",
                t0 + 13,
                13,
                1,
                1,
            ),
        ])
        .await
        .unwrap();
        let before = session(s, "before").await;
        assert_eq!(before.state, SessionState::Closed);
        assert_eq!(before.terminate_cause.as_deref(), Some("accounting-on"));
        assert_eq!(before.stopped_at, Some(t0 + 10));
        assert_eq!(before.session_time, 8);
        assert_eq!(session(s, "after").await.state, SessionState::Open);
        assert_eq!(session(s, "other").await.state, SessionState::Open);
        let m1 = s.get_voucher(DEFAULT_TENANT, "M1").await.unwrap();
        assert_eq!((m1.used_seconds, m1.used_bytes), (8, 160));
        let m2 = s.get_voucher(DEFAULT_TENANT, "M2").await.unwrap();
        assert_eq!((m2.used_seconds, m2.used_bytes), (13, 2));
    }

    /// Two instances store batches that create the same new sessions at once:
    /// each session is created once and its usage counted once.
    pub async fn accounting_concurrent_new_sessions<S: Backend>(fx: &Fixture<S>) {
        let (nas, plan) = setup(&fx.store).await;
        let codes: Vec<String> = (0..10).map(|i| format!("N{i}")).collect();
        let vs: Vec<_> = codes.iter().map(|c| voucher(c, &plan)).collect();
        fx.store.add_vouchers(&vs).await.unwrap();
        let instances = [
            Arc::new(S::open_url(&fx.url).await.unwrap()),
            Arc::new(S::open_url(&fx.url).await.unwrap()),
        ];
        let t0 = 1_700_000_000;
        let mut tasks = Vec::new();
        for k in 0..8u64 {
            let store = instances[k as usize % 2].clone();
            // Every batch reports the same interim (a retransmission) for all ten
            // sessions, in rotated order.
            let mut batch: Vec<AcctRecord> = codes
                .iter()
                .map(|c| {
                    acct(
                        &nas,
                        AcctStatus::InterimUpdate,
                        &format!("n-{c}"),
                        c,
                        t0 + k as i64,
                        60,
                        1_000,
                        1_000,
                    )
                })
                .collect();
            batch.rotate_left(k as usize);
            tasks.push(tokio::spawn(async move {
                store.record_accounting(&batch).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(fx.store.list_sessions(false).await.unwrap().len(), 10);
        for c in &codes {
            let v = fx.store.get_voucher(DEFAULT_TENANT, c).await.unwrap();
            assert_eq!((v.used_seconds, v.used_bytes), (60, 2_000), "{c}");
        }
    }

    /// Batched rows (typed arrays on PostgreSQL, bound parameters on SQLite) keep
    /// the largest stored counter (a NAS report above 2^63 is clamped to
    /// i64::MAX) and NULLs on both backends.
    pub async fn accounting_batch_counters_near_2_63<S: Backend>(fx: &Fixture<S>) {
        let s = &fx.store;
        let (nas, plan) = setup(s).await;
        s.add_vouchers(&[voucher("HUGE", &plan)]).await.unwrap();
        let t0 = 1_700_000_000;
        let max = i64::MAX as u64;
        let mut start = acct(&nas, AcctStatus::Start, "h1", "HUGE", t0, 0, 0, 0);
        start.mac = None;
        start.framed_ip = None;
        s.record_accounting(&[
            start,
            acct(
                &nas,
                AcctStatus::InterimUpdate,
                "h1",
                "HUGE",
                t0 + 1,
                1,
                max - 1,
                0,
            ),
            acct(
                &nas,
                AcctStatus::InterimUpdate,
                "h1",
                "HUGE",
                t0 + 2,
                2,
                u64::MAX,
                0,
            ),
        ])
        .await
        .unwrap();
        let row = session(s, "h1").await;
        assert_eq!((row.input_octets, row.output_octets), (max, 0));
        assert_eq!(row.mac.as_deref(), Some("AA:BB:CC:00:00:01"));
        assert_eq!(row.terminate_cause, None);
        assert_eq!(row.stopped_at, None);
        let v = s.get_voucher(DEFAULT_TENANT, "HUGE").await.unwrap();
        assert_eq!((v.used_seconds, v.used_bytes), (2, max));
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL only: how authorization resolves a race between instances
// ---------------------------------------------------------------------------

mod postgres_race {
    use std::sync::Condvar;

    use super::*;

    /// A decision that holds its first `parties` callers until all of them are
    /// in it (or 5 s passed), so that they all decide on what they read before
    /// any of them writes; later callers go straight through.
    #[derive(Clone)]
    struct Rendezvous {
        parties: usize,
        state: Arc<(Mutex<(usize, bool)>, Condvar)>,
    }

    impl Rendezvous {
        fn new(parties: usize) -> Self {
            Rendezvous {
                parties,
                state: Arc::new((Mutex::new((0, false)), Condvar::new())),
            }
        }

        fn arrive(&self) {
            let (lock, cvar) = &*self.state;
            let mut g = lock.lock().unwrap();
            g.0 += 1;
            let n = g.0;
            if n > self.parties {
                return;
            }
            if n == self.parties {
                g.1 = true;
                cvar.notify_all();
                return;
            }
            let (mut g, timeout) = cvar
                .wait_timeout_while(g, Duration::from_secs(5), |g| !g.1)
                .unwrap();
            if timeout.timed_out() {
                // Never met: make that visible to `seen`.
                g.0 += 1000;
            }
        }

        /// (how many calls, whether the first `parties` met in the decision)
        fn seen(&self) -> (usize, bool) {
            let g = self.state.0.lock().unwrap();
            (g.0, g.1 && g.0 < 1000)
        }
    }

    /// Two instances read a single-device voucher at the same moment and both
    /// decide to accept a different MAC. Only one write may commit; the other
    /// finds the voucher row changed since its read, fails as a serialization
    /// failure, and its batch is decided again, under row locks, against the
    /// winner's session: one Accept, one activation, the loser rejected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_accepts_on_two_instances_one_wins() {
        let Some(fx) = super::pg_fixture().await else {
            return;
        };
        let (nas, plan) = setup(&fx.store).await;
        fx.store
            .add_vouchers(&[voucher("DUEL", &plan)])
            .await
            .unwrap();
        let meet = Rendezvous::new(2);
        let t0 = 1_700_000_000;
        // Each instance on a thread and a runtime of its own: the decision
        // blocks its thread until the other instance has decided too.
        let mut threads = Vec::new();
        for i in 0..2 {
            let meet = meet.clone();
            let url = fx.url.clone();
            let f = facts(&nas, "DUEL", Some(&mac(i)), Some(&format!("duel{i}")));
            threads.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let store = PgStore::open(&url).await.unwrap();
                    let decide = move |f: &AccessFacts, s: Option<&VoucherSnapshot>, now| {
                        meet.arrive();
                        accept_within_shared_users(f, s, now)
                    };
                    store
                        .authorize_with_policy(
                            &f,
                            t0 + i as i64,
                            AuthorizeOptions::default(),
                            decide,
                        )
                        .await
                })
            }));
        }
        let mut accepts = Vec::new();
        for (i, t) in threads.into_iter().enumerate() {
            match t.join().unwrap().expect("no error reaches the caller") {
                AccessDecision::Accept(_) => accepts.push(i),
                AccessDecision::Reject(r) => assert_eq!(r, RejectReason::SharedUsersLimit),
            }
        }
        let (calls, met) = meet.seen();
        assert!(met, "both instances decided before either wrote");
        assert_eq!(calls, 3, "the loser was decided again, once");
        assert_eq!(accepts.len(), 1, "exactly one device gets in: {accepts:?}");
        let winner = accepts[0];
        let v = fx.store.get_voucher(DEFAULT_TENANT, "DUEL").await.unwrap();
        assert_eq!(v.first_login_at, Some(t0 + winner as i64), "activated once");
        let sessions = fx.store.list_sessions(false).await.unwrap();
        assert_eq!(sessions.len(), 1, "the loser's session row was not kept");
        assert_eq!(sessions[0].mac.as_deref(), Some(mac(winner).as_str()));
        let events = fx
            .store
            .auth_events(&AuthEventFilter::default())
            .await
            .unwrap();
        assert_eq!(
            events.len(),
            2,
            "one auth event each, none from the undone write"
        );
    }

    /// Accounting adds usage to a voucher between an authorization's read and
    /// its write: the accept is decided again on the new row, and both the
    /// usage and the activation are kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn accounting_between_read_and_write_is_kept() {
        let Some(fx) = super::pg_fixture().await else {
            return;
        };
        let (nas, plan) = setup(&fx.store).await;
        fx.store
            .add_vouchers(&[voucher("MID", &plan)])
            .await
            .unwrap();
        let t0 = 1_700_000_000;
        // A session of this voucher that accounting will update.
        fx.store
            .record_accounting(&[acct(&nas, AcctStatus::Start, "m1", "MID", t0, 0, 0, 0)])
            .await
            .unwrap();
        let calls = Arc::new(Mutex::new(0usize));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let done_rx = Arc::new(Mutex::new(done_rx));
        let decide = {
            let calls = calls.clone();
            let tx = tx.clone();
            move |f: &AccessFacts, s: Option<&VoucherSnapshot>, now| {
                let first = {
                    let mut c = calls.lock().unwrap();
                    *c += 1;
                    *c == 1
                };
                if first {
                    // Let accounting run now, and wait until it committed.
                    tx.send(()).unwrap();
                    let _ = done_rx.lock().unwrap().recv_timeout(Duration::from_secs(5));
                }
                accept_any(f, s, now)
            }
        };
        // The decision blocks its thread while accounting runs: the
        // authorization gets a thread and a runtime of its own.
        let f = facts(&nas, "MID", Some("AA:BB:CC:00:00:09"), Some("m2"));
        let url = fx.url.clone();
        let auth = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let store = PgStore::open(&url).await.unwrap();
                store
                    .authorize_with_policy(&f, t0 + 5, AuthorizeOptions::default(), decide)
                    .await
            })
        });
        let s = PgStore::open(&fx.url).await.unwrap();
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(5)))
            .await
            .unwrap()
            .expect("authorization reached its decision");
        s.record_accounting(&[acct(
            &nas,
            AcctStatus::InterimUpdate,
            "m1",
            "MID",
            t0 + 4,
            4,
            1000,
            0,
        )])
        .await
        .unwrap();
        done_tx.send(()).unwrap();
        match auth.join().unwrap().unwrap() {
            AccessDecision::Accept(_) => {}
            other => panic!("expected Accept, got {other:?}"),
        }
        assert_eq!(
            *calls.lock().unwrap(),
            2,
            "decided again after the conflict"
        );
        let v = fx.store.get_voucher(DEFAULT_TENANT, "MID").await.unwrap();
        assert_eq!(v.used_bytes, 1000, "accounting's usage kept");
        assert_eq!(v.first_login_at, Some(t0 + 5), "activation kept");
    }
}
