//! The storage the management API adds, on SQLite and PostgreSQL through
//! `store::open`: tokens, idempotency keys (taken, answered, reused,
//! abandoned, expired), plan removal and a Disconnect for one session.

#[macro_use]
mod common;

use std::sync::Arc;

use common::TestDb;
use rrnet_radius::model::NewPlan;
use rrnet_radius::store::{
    self, IdempotencyClaim, NewApiToken, Store, StoreError, IDEMPOTENCY_ABANDONED, IDEMPOTENCY_KEEP,
};

on_both_backends!(tokens_and_idempotency_keys, plans_in_use_and_sessions);

fn run(db: &TestDb, f: impl AsyncFnOnce(Arc<dyn Store>)) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = store::open(&db.url).await.unwrap();
        s.migrate().await.unwrap();
        f(s).await;
    });
}

fn token(name: &str, hash: &str) -> NewApiToken {
    NewApiToken {
        name: name.into(),
        tenant_id: None,
        read_only: false,
        token_hash: hash.into(),
    }
}

fn tokens_and_idempotency_keys(db: &TestDb) {
    run(db, async |s| {
        let t = s
            .add_api_token(&token("erp", &"a".repeat(64)))
            .await
            .unwrap();
        assert!(matches!(
            s.add_api_token(&token("erp", &"b".repeat(64))).await,
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(s.list_api_tokens().await.unwrap(), vec![t.clone()]);

        let t0 = 1_800_000_000;
        let claim = |key: &'static str, hash: &'static str, at: i64| {
            let s = s.clone();
            async move { s.claim_idempotency_key(t.id, key, hash, at).await.unwrap() }
        };
        assert_eq!(claim("k", "h1", t0).await, IdempotencyClaim::Claimed);
        assert_eq!(
            claim("k", "h1", t0 + 1).await,
            IdempotencyClaim::InProgress {
                request_hash: "h1".into()
            }
        );
        s.finish_idempotency_key(t.id, "k", Some((201, "{\"a\":1}")))
            .await
            .unwrap();
        let done = IdempotencyClaim::Done {
            request_hash: "h1".into(),
            status: 201,
            body: "{\"a\":1}".into(),
        };
        assert_eq!(claim("k", "h2", t0 + 2).await, done);
        // An answered key lives a day; an unanswered one two minutes.
        assert_eq!(claim("k", "h1", t0 + IDEMPOTENCY_KEEP - 1).await, done);
        assert_eq!(
            claim("k", "h1", t0 + IDEMPOTENCY_KEEP + 1).await,
            IdempotencyClaim::Claimed
        );
        let t1 = t0 + IDEMPOTENCY_KEEP + 1;
        assert_eq!(
            claim("k", "h1", t1 + IDEMPOTENCY_ABANDONED + 1).await,
            IdempotencyClaim::Claimed
        );
        // A given-up key may be taken again at once.
        assert_eq!(claim("g", "h", t0).await, IdempotencyClaim::Claimed);
        s.finish_idempotency_key(t.id, "g", None).await.unwrap();
        assert_eq!(claim("g", "h", t0).await, IdempotencyClaim::Claimed);

        s.revoke_api_token("erp").await.unwrap();
        assert!(s.list_api_tokens().await.unwrap().is_empty());
        assert!(matches!(
            s.revoke_api_token("erp").await,
            Err(StoreError::NotFound(_))
        ));
    });
}

fn plans_in_use_and_sessions(db: &TestDb) {
    run(db, async |s| {
        let plan = |name: &str| NewPlan {
            tenant_id: Some(1),
            sites: vec![],
            name: name.into(),
            time_quota: None,
            validity: None,
            expires_at: None,
            data_quota: None,
            rate_limit: None,
            after_data_rate_limit: None,
            shared_users: 1,
            mac_lock: false,
            idle_timeout: None,
            interim_interval: None,
            mikrotik_group: None,
            address_list: None,
            price: None,
        };
        let used = s.add_plan(&plan("used")).await.unwrap();
        s.add_plan(&plan("spare")).await.unwrap();
        s.add_vouchers(&[rrnet_radius::model::NewVoucher {
            code: "V1".into(),
            password: None,
            plan_id: used.id,
            site: None,
            batch: Some("b".into()),
        }])
        .await
        .unwrap();
        assert!(matches!(
            s.remove_plan("used").await,
            Err(StoreError::InUse(_))
        ));
        s.remove_plan("spare").await.unwrap();
        assert!(matches!(
            s.remove_plan("spare").await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(s.list_plans().await.unwrap().len(), 1);
        assert!(matches!(
            s.queue_session_disconnect(12345).await,
            Err(StoreError::NotFound(_))
        ));
        let page = s
            .voucher_page(&store::VoucherQuery {
                batch: Some("b".into()),
                used: Some(false),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        let none = s
            .voucher_page(&store::VoucherQuery {
                tenant_id: Some(2),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(none.is_empty());
    });
}
