//! A store for tests of the request path: it decides and stores nothing, but
//! records the size of each batch it is given and holds every call at a gate
//! until the test opens it, so a test can fill queues deterministically.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::model::{Nas, NewNas, NewPlan, NewVoucher, Plan, Secret, Session, Timestamp, Voucher};
use crate::policy::{AccessDecision, AccessFacts, AcctRecord, RejectReason};
use crate::store::{AuthEvent, AuthEventFilter, AuthorizeOptions, Store, StoreError, StoreResult};

pub struct GatedStore {
    open: watch::Sender<bool>,
    /// Sizes of the `authorize_batch` calls, in order.
    pub auth_batches: Mutex<Vec<usize>>,
    /// Sizes of the `record_accounting` calls, in order.
    pub acct_batches: Mutex<Vec<usize>>,
    /// Make every storage call fail.
    pub fail: AtomicBool,
}

impl GatedStore {
    /// A store whose gate is closed.
    pub fn closed() -> Self {
        GatedStore {
            open: watch::channel(false).0,
            auth_batches: Mutex::new(Vec::new()),
            acct_batches: Mutex::new(Vec::new()),
            fail: AtomicBool::new(false),
        }
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Wait (a few seconds at most) until `n` authorize calls have started.
    pub async fn auth_calls(&self, n: usize) {
        wait_for(|| self.auth_batches.lock().unwrap().len() >= n).await;
    }

    /// Wait (a few seconds at most) until `n` record_accounting calls have started.
    pub async fn acct_calls(&self, n: usize) {
        wait_for(|| self.acct_batches.lock().unwrap().len() >= n).await;
    }

    async fn pass(&self) -> StoreResult<()> {
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
        if self.fail.load(Ordering::SeqCst) {
            Err(StoreError::Invalid("the test broke storage".into()))
        } else {
            Ok(())
        }
    }
}

async fn wait_for(ready: impl Fn() -> bool) {
    for _ in 0..500 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store was never called");
}

/// A NAS at 127.0.0.1 with secret `secret`.
pub fn nas(secret: &str) -> Nas {
    Nas {
        id: 1,
        name: "hotspot1".into(),
        address: "127.0.0.1".parse().unwrap(),
        secret: Secret::new(secret),
        require_message_authenticator: true,
        coa_port: 3799,
        coa_address: None,
        site: None,
        identifier: None,
        tenant_id: crate::model::DEFAULT_TENANT,
        dynamic: None,
        created_at: 0,
        previous_secret: None,
        previous_secret_until: None,
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn authorize_batch(
        &self,
        requests: &[AccessFacts],
        _now: Timestamp,
        _opts: AuthorizeOptions,
    ) -> StoreResult<Vec<AccessDecision>> {
        self.auth_batches.lock().unwrap().push(requests.len());
        self.pass().await?;
        Ok(requests
            .iter()
            .map(|_| AccessDecision::Reject(RejectReason::UnknownVoucher))
            .collect())
    }

    async fn record_accounting(&self, records: &[AcctRecord]) -> StoreResult<()> {
        self.acct_batches.lock().unwrap().push(records.len());
        self.pass().await
    }

    async fn close_nas_sessions(
        &self,
        _nas_id: i64,
        _router: &str,
        _keep_prefix: Option<&str>,
        _cause: &str,
        _now: Timestamp,
    ) -> StoreResult<u64> {
        Ok(0)
    }

    async fn migrate(&self) -> StoreResult<()> {
        Ok(())
    }
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
    async fn add_nas(&self, _: &NewNas) -> StoreResult<Nas> {
        unimplemented!("not on the request path")
    }
    async fn list_nas(&self) -> StoreResult<Vec<Nas>> {
        unimplemented!("not on the request path")
    }
    async fn remove_nas(&self, _: &str) -> StoreResult<()> {
        unimplemented!("not on the request path")
    }
    async fn set_nas_secret(&self, _: &str, _: &Secret, _: Option<Timestamp>) -> StoreResult<()> {
        unimplemented!("not on the request path")
    }
    async fn nas_generation(&self) -> StoreResult<i64> {
        Ok(1)
    }
    async fn add_plan(&self, _: &NewPlan) -> StoreResult<Plan> {
        unimplemented!("not on the request path")
    }
    async fn list_plans(&self) -> StoreResult<Vec<Plan>> {
        unimplemented!("not on the request path")
    }
    async fn get_plan(&self, _: &str) -> StoreResult<Plan> {
        unimplemented!("not on the request path")
    }
    async fn add_vouchers(&self, _: &[NewVoucher]) -> StoreResult<Vec<Voucher>> {
        unimplemented!("not on the request path")
    }
    async fn add_tenant(&self, _: &str) -> StoreResult<crate::model::Tenant> {
        unimplemented!("not on the request path")
    }
    async fn list_tenants(&self) -> StoreResult<Vec<crate::model::Tenant>> {
        unimplemented!("not on the request path")
    }
    async fn get_voucher(&self, _: i64, _: &str) -> StoreResult<Voucher> {
        unimplemented!("not on the request path")
    }
    async fn list_vouchers(&self, _: Option<&str>, _: Option<&str>) -> StoreResult<Vec<Voucher>> {
        unimplemented!("not on the request path")
    }
    async fn revoke_voucher(&self, _: i64, _: &str) -> StoreResult<Voucher> {
        unimplemented!("not on the request path")
    }
    async fn close_stale_sessions(&self, _: Timestamp, _: u64, _: u64, _: u64) -> StoreResult<u64> {
        Ok(0)
    }
    async fn list_sessions(&self, _: bool) -> StoreResult<Vec<Session>> {
        unimplemented!("not on the request path")
    }
    async fn open_sessions_by_nas(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(Vec::new())
    }
    async fn auth_events(&self, _: &AuthEventFilter) -> StoreResult<Vec<AuthEvent>> {
        unimplemented!("not on the request path")
    }
    async fn prune_auth_events(&self, _: Timestamp) -> StoreResult<u64> {
        Ok(0)
    }
    async fn log_repeated_rejects(&self, _: &[crate::store::RepeatedRejects]) -> StoreResult<()> {
        unimplemented!("not on the request path")
    }
}
