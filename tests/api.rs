//! The management API over real HTTP against the real binary, on SQLite and
//! PostgreSQL: an ERP's day (its webhook registered, a plan, a batch sent
//! twice with one Idempotency-Key, a login through UDP and its signed
//! `voucher.activated` delivery, usage read back, a revoke that disconnects
//! the router and is delivered signed, the same events polled with a cursor),
//! read-only and tenant tokens, token revocation, and errors as problem
//! documents.

#[macro_use]
mod common;
mod api_support;

use std::time::{Duration, Instant};

use api_support::*;
use common::receiver::{fast, Behaviour, Receiver, WAIT};
use common::*;
use rrnet_radius::proto::Code;
use serde_json::{json, Value};

const MAC: &str = "AA:BB:CC:DD:EE:01";
const GIB: u64 = 1 << 30;

on_both_backends!(
    erp_day,
    read_only_token_is_refused_on_writes,
    another_tenants_token_sees_nothing,
    revoked_token_stops_working_within_two_seconds,
    tokens_are_checked_without_storage,
    concurrent_retries_make_one_batch,
);

/// Every event after `after`, through the events page, following its
/// cursor until a page comes back empty.
fn events_after(api: &Api, after: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = after.to_string();
    loop {
        let page = api.ok(&format!("/api/v1/events?after={after}&limit=2"));
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2, "{page}");
        let next = page["next"].as_str().unwrap().to_string();
        if events.is_empty() {
            assert_eq!(next, after, "an empty page keeps the cursor");
            return out;
        }
        out.extend(events.iter().cloned());
        after = next;
    }
}

/// The number in an event id (`evt_N`).
fn event_number(id: &str) -> i64 {
    id.strip_prefix("evt_").unwrap().parse().unwrap()
}

/// An ERP runs its voucher business through the API and webhooks alone.
fn erp_day(db: &TestDb) {
    let token = add_token(db, "erp", &[]);
    let (server, http) = start_with(db, fast());
    let api = Api { addr: http, token };
    let router = NasStandIn::start(SECRET);

    // First: where the events go. The secret is in the 201 answer only.
    let receiver = Receiver::start(Behaviour::Ok);
    let r = api.post("/api/v1/webhooks", json!({"url": receiver.url}));
    assert_eq!(r.status, 201, "{r:?}");
    let hook = r.json();
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_") && secret.len() == 70, "{hook}");
    assert_eq!(hook["url"], receiver.url.as_str());
    assert_eq!(
        hook["tenant"],
        json!(null),
        "an operator token: every tenant"
    );
    receiver.set_secret(&secret);
    let listed = api.get("/api/v1/webhooks");
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed.json()["items"][0]["id"], hook["id"]);
    assert!(
        !listed.body.contains(&secret[6..]),
        "never listed: {listed:?}"
    );
    // And where polling starts: nothing has happened yet.
    let start_page = api.ok("/api/v1/events");
    assert_eq!(start_page["events"], json!([]));
    let cursor = start_page["next"].as_str().unwrap().to_string();

    // Morning: the router and what is sold.
    let r = api.post(
        "/api/v1/nas",
        json!({"name": "hotspot1", "address": "127.0.0.1", "secret": SECRET,
               "coa_port": router.port}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert!(!r.body.contains(SECRET), "the secret is never shown: {r:?}");
    assert_eq!(r.json()["coa_port"], router.port);
    let r = api.post(
        "/api/v1/plans",
        json!({"name": "1h", "time": "1h", "data": "1GiB", "rate_limit": "2M/2M"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["time_quota_seconds"], 3600);
    assert_eq!(r.json()["data_quota_bytes"], GIB);

    // A batch, sent twice with one Idempotency-Key (a retry after a lost
    // answer): one batch, the same answer.
    let batch = json!({"plan": "1h", "count": 5, "batch": "day1", "length": 8, "prefix": "D"});
    let key = [("Idempotency-Key", "erp-batch-day1")];
    let first = api.send_with("POST", "/api/v1/voucher-batches", &key, Some(&batch));
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.header("idempotency-replayed"), None);
    let again = api.send_with("POST", "/api/v1/voucher-batches", &key, Some(&batch));
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(again.json(), first.json());
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(api.items("/api/v1/vouchers?batch=day1").len(), 5);
    // The same key for another request is refused; the same batch name
    // without a key is a duplicate.
    let other = json!({"plan": "1h", "count": 2, "batch": "day2"});
    let r = api.send_with("POST", "/api/v1/voucher-batches", &key, Some(&other));
    assert_eq!(
        (r.status, r.problem().as_str()),
        (422, "idempotency-key-reused")
    );
    let r = api.post("/api/v1/voucher-batches", batch.clone());
    assert_eq!((r.status, r.problem().as_str()), (409, "duplicate"));
    assert_eq!(api.items("/api/v1/vouchers?batch=day1").len(), 5);
    assert!(api.items("/api/v1/vouchers?batch=day2").is_empty());
    let codes: Vec<String> = first.json()["vouchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["code"].as_str().unwrap().to_string())
        .collect();
    assert!(codes.iter().all(|c| c.starts_with('D') && c.len() == 9));
    let code = codes[0].clone();

    // Noon: a customer logs in through the router (UDP) and uses it. The NAS
    // entry reaches the running server within its reload interval.
    let mut c = Client::new();
    wait_until("the voucher is accepted", Duration::from_secs(10), || {
        c.login(server.auth, &code, Cred::Pap(&code), Some(MAC))
            .filter(|r| r.code() == Code::AccessAccept)
    });
    // The ERP hears of it: signed, naming the voucher.
    let activated = receiver.wait_for("voucher.activated", "code", &code);
    assert!(activated.signature_ok, "{activated:?}");
    assert_eq!(activated.body["id"], activated.event_id_header.as_str());
    assert_eq!(activated.body["data"]["plan"], "1h");
    assert_eq!(activated.body["data"]["state"], "active");
    let asid = "81a00001";
    assert!(c
        .account(server.acct, 1, &code, asid, Some(MAC), 0, 0, 0)
        .is_some());
    assert!(c
        .account(
            server.acct,
            3,
            &code,
            asid,
            Some(MAC),
            60,
            1_000_000,
            4_000_000
        )
        .is_some());

    // Usage through the API: the same figures as `voucher show`.
    let v = api.ok(&format!("/api/v1/vouchers/{code}"));
    assert_eq!(v["used_bytes"], 5_000_000);
    assert_eq!(v["used_seconds"], 60);
    assert_eq!(v["time_left_seconds"], 3540);
    assert_eq!(v["data_left_bytes"], GIB - 5_000_000);
    assert!(v["first_login_at"].is_string());
    assert_eq!(v, db.voucher_json(&code));
    assert_eq!(api.items("/api/v1/vouchers?batch=day1&used=true").len(), 1);
    assert_eq!(api.items("/api/v1/vouchers?batch=day1&used=false").len(), 4);
    let open = api.items(&format!("/api/v1/sessions?state=open&voucher={code}"));
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["acct_session_id"], asid);
    assert_eq!(open[0]["output_octets"], 4_000_000);
    let id = open[0]["id"].as_i64().unwrap();
    assert_eq!(api.ok(&format!("/api/v1/sessions/{id}")), open[0]);
    assert!(api.items("/api/v1/sessions?state=closed").is_empty());
    let log = api.items(&format!("/api/v1/auth-log?user={code}"));
    assert_eq!(log.last().unwrap()["result"], "accept", "{log:?}");

    // Pages: 2 + 2 + 1, every voucher once.
    let mut seen = Vec::new();
    let mut path = "/api/v1/vouchers?batch=day1&limit=2".to_string();
    loop {
        let page = api.ok(&path);
        for v in page["items"].as_array().unwrap() {
            seen.push(v["code"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/vouchers?batch=day1&limit=2&after={next}"),
            None => break,
        }
    }
    seen.sort();
    let mut all = codes.clone();
    all.sort();
    assert_eq!(seen, all);

    // A faster plan: the open session gets the new rate by CoA-Request.
    let r = api.patch("/api/v1/plans/1h", json!({"rate_limit": "4M/4M"}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["rate_limit"], "4M/4M");
    assert_eq!(r.json()["coa_queued"], 1);
    wait_until(
        "a CoA-Request at the router",
        Duration::from_secs(5),
        || {
            router
                .seen()
                .iter()
                .find(|s| s.code == Code::CoaRequest)
                .map(|s| assert_eq!(s.user.as_deref(), Some(code.as_str())))
        },
    );

    // Afternoon: the ERP ends the session, then revokes the voucher: each
    // sends a Disconnect-Request to the router.
    let r = api.post(&format!("/api/v1/sessions/{id}/disconnect"), json!({}));
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json()["queued"], 1);
    let disconnects = |n: usize| {
        wait_until(
            &format!("{n} Disconnect-Request(s) at the router"),
            Duration::from_secs(5),
            || {
                let s: Vec<Seen> = router
                    .seen()
                    .into_iter()
                    .filter(|s| s.code == Code::DisconnectRequest)
                    .collect();
                (s.len() >= n).then_some(s)
            },
        )
    };
    let d = disconnects(1);
    assert_eq!(d[0].user.as_deref(), Some(code.as_str()));
    assert_eq!(d[0].acct_session_id.as_deref(), Some(asid));
    let r = api.post(&format!("/api/v1/vouchers/{code}/revoke"), json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["state"], "revoked");
    disconnects(2);
    let revoked = receiver.wait_for("voucher.revoked", "code", &code);
    assert!(revoked.signature_ok, "{revoked:?}");
    assert_eq!(revoked.body["data"]["state"], "revoked");
    assert!(
        event_number(&revoked.event_id_header) > event_number(&activated.event_id_header),
        "{revoked:?}"
    );
    let r = c
        .login(server.auth, &code, Cred::Pap(&code), Some(MAC))
        .unwrap();
    assert_eq!(r.code(), Code::AccessReject);
    assert_eq!(
        api.items("/api/v1/vouchers?batch=day1&state=revoked").len(),
        1
    );

    // A second customer; sessions page newest first.
    let second = codes[1].clone();
    let r = c
        .login(
            server.auth,
            &second,
            Cred::Pap(&second),
            Some("AA:BB:CC:DD:EE:02"),
        )
        .unwrap();
    assert_eq!(r.code(), Code::AccessAccept);
    assert!(c
        .account(
            server.acct,
            1,
            &second,
            "81a00002",
            Some("AA:BB:CC:DD:EE:02"),
            0,
            0,
            0
        )
        .is_some());
    let first_page = api.ok("/api/v1/sessions?limit=1");
    assert_eq!(first_page["items"][0]["acct_session_id"], "81a00002");
    let next = first_page["next"].as_str().expect("a second page");
    let second_page = api.ok(&format!("/api/v1/sessions?limit=1&after={next}"));
    assert_eq!(second_page["items"][0]["acct_session_id"], asid);
    assert_eq!(second_page["next"], json!(null));
    assert_eq!(
        api.items("/api/v1/sessions?nas=hotspot1&state=open").len(),
        2
    );
    assert!(api.items("/api/v1/sessions?nas=elsewhere").is_empty());

    // Polling from the start with the cursor gives the events the webhook
    // was sent: the same ids, the same objects, in order.
    let (polled, received) = wait_until("the events delivered and polled", WAIT, || {
        let polled = events_after(&api, &cursor);
        let mut received = receiver.accepted();
        received.sort_by_key(|r| event_number(&r.event_id_header));
        received.dedup_by(|a, b| a.event_id_header == b.event_id_header);
        let ids: Vec<&str> = polled.iter().map(|e| e["id"].as_str().unwrap()).collect();
        let got: Vec<&str> = received
            .iter()
            .map(|r| r.event_id_header.as_str())
            .collect();
        (polled.len() == 5 && ids == got).then(|| (polled.clone(), received.clone()))
    });
    let summary: Vec<(&str, &str)> = polled
        .iter()
        .map(|e| {
            let data = &e["data"];
            let about = data["code"].as_str().or(data["acct_session_id"].as_str());
            (e["type"].as_str().unwrap(), about.unwrap())
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("voucher.activated", code.as_str()),
            ("session.started", asid),
            ("voucher.revoked", code.as_str()),
            ("voucher.activated", second.as_str()),
            ("session.started", "81a00002"),
        ]
    );
    for (e, r) in polled.iter().zip(&received) {
        assert!(r.signature_ok, "{r:?}");
        assert_eq!(*e, r.body, "the polled event is the delivered one");
    }
    let ids: Vec<i64> = polled
        .iter()
        .map(|e| event_number(e["id"].as_str().unwrap()))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // From the last cursor there is nothing new.
    let last = api.ok(&format!("/api/v1/events?after={cursor}&limit=1000"));
    let next = last["next"].as_str().unwrap();
    assert_eq!(
        api.ok(&format!("/api/v1/events?after={next}"))["events"],
        json!([])
    );

    // Evening: the batch printed (revoked vouchers are not), a plan change
    // and a plan that vouchers use cannot be deleted.
    let csv = api.get("/api/v1/voucher-batches/day1?format=csv");
    assert_eq!(csv.status, 200, "{csv:?}");
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(csv.body.lines().count(), 1 + 4, "{}", csv.body);
    assert!(!csv.body.contains(&code));
    let html = api.get("/api/v1/voucher-batches/day1?format=html");
    assert_eq!(html.status, 200);
    assert!(html
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(html.header("content-security-policy").is_some());
    assert!(codes[1..].iter().all(|c| html.body.contains(c.as_str())));
    let batch_json = api.ok("/api/v1/voucher-batches/day1");
    assert_eq!(batch_json["count"], 5);
    let r = api.patch("/api/v1/plans/1h", json!({"data": null, "shared_users": 2}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["data_quota_bytes"], json!(null));
    assert_eq!(r.json()["shared_users"], 2);
    assert_eq!(r.json()["rate_limit"], "4M/4M");
    let r = api.delete("/api/v1/plans/1h");
    assert_eq!((r.status, r.problem().as_str()), (409, "in-use"));
    assert_eq!(
        api.post("/api/v1/plans", json!({"name": "spare"})).status,
        201
    );
    assert_eq!(api.delete("/api/v1/plans/spare").status, 204);
    assert_eq!(api.get("/api/v1/plans/spare").status, 404);
    // The router's secret rotated with a grace period, then removed.
    let r = api.patch(
        "/api/v1/nas/hotspot1",
        json!({"secret": "new-secret-0123", "keep_old": "1h"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json()["previous_secret_until"].is_string());
    assert!(!r.body.contains("new-secret-0123"));

    // Requests are counted by route template, not by path.
    assert!(
        server.metric_or_zero(
            r#"rrnet_radius_api_requests_total{method="GET",route="/api/v1/vouchers/{code}",status="200"}"#
        ) >= 1.0
    );
    assert_eq!(
        server.metric_or_zero(
            r#"rrnet_radius_api_requests_total{method="POST",route="/api/v1/voucher-batches",status="201"}"#
        ),
        2.0
    );
    assert!(!server.log_text().contains(SECRET));
    assert!(!server.log_text().contains("new-secret-0123"));
    assert!(server.stop().success());
}

fn read_only_token_is_refused_on_writes(db: &TestDb) {
    let op = add_token(db, "op", &[]);
    let ro = add_token(db, "viewer", &["--read-only"]);
    let (_server, http) = start(db);
    let op = Api {
        addr: http,
        token: op,
    };
    let ro = Api {
        addr: http,
        token: ro,
    };
    assert_eq!(
        op.post("/api/v1/plans", json!({"name": "basic"})).status,
        201
    );
    assert_eq!(
        op.post("/api/v1/vouchers", json!({"code": "V1", "plan": "basic"}))
            .status,
        201
    );
    assert_eq!(ro.items("/api/v1/plans").len(), 1);
    assert_eq!(ro.ok("/api/v1/vouchers/V1")["state"], "active");
    for (method, path, body) in [
        ("POST", "/api/v1/plans", Some(json!({"name": "more"}))),
        ("PATCH", "/api/v1/plans/basic", Some(json!({"time": "2h"}))),
        ("DELETE", "/api/v1/plans/basic", None),
        ("POST", "/api/v1/vouchers/V1/revoke", Some(json!({}))),
        (
            "POST",
            "/api/v1/voucher-batches",
            Some(json!({"plan": "basic", "count": 1, "batch": "b"})),
        ),
        (
            "POST",
            "/api/v1/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/hook"})),
        ),
    ] {
        let r = ro.send(method, path, body.as_ref());
        assert_eq!(
            (r.status, r.problem().as_str()),
            (403, "read-only"),
            "{method} {path}"
        );
    }
    assert_eq!(ro.ok("/api/v1/vouchers/V1")["state"], "active");
    assert_eq!(ro.items("/api/v1/plans").len(), 1);
    assert!(ro.items("/api/v1/vouchers?batch=b").is_empty());
    let listed = db.cli(&["token", "list", "--format", "json"]);
    let listed = parse_json(&listed);
    assert_eq!(listed[1]["name"], "viewer");
    assert_eq!(listed[1]["read_only"], true);
    assert!(
        !listed.to_string().contains(&ro.token[6..]),
        "no token in the listing"
    );
}

fn another_tenants_token_sees_nothing(db: &TestDb) {
    db.cli(&["tenant", "add", "acme"]);
    let op = add_token(db, "op", &[]);
    let acme = add_token(db, "acme-erp", &["--tenant", "acme"]);
    let (server, http) = start(db);
    let op = Api {
        addr: http,
        token: op,
    };
    let acme = Api {
        addr: http,
        token: acme,
    };
    assert_eq!(
        op.post(
            "/api/v1/nas",
            json!({"name": "hotspot1", "address": "127.0.0.1", "secret": SECRET})
        )
        .status,
        201
    );
    assert_eq!(
        op.post("/api/v1/plans", json!({"name": "basic", "time": 3600}))
            .status,
        201
    );
    assert_eq!(
        op.post("/api/v1/vouchers", json!({"code": "OPV1", "plan": "basic"}))
            .status,
        201
    );
    // A login in the default tenant, for the session list and the auth log.
    let mut c = Client::new();
    wait_until("the voucher is accepted", Duration::from_secs(10), || {
        c.login(server.auth, "OPV1", Cred::Pap("OPV1"), Some(MAC))
            .filter(|r| r.code() == Code::AccessAccept)
    });
    assert!(c
        .account(server.acct, 1, "OPV1", "s1", Some(MAC), 0, 0, 0)
        .is_some());
    assert_eq!(op.items("/api/v1/sessions").len(), 1);
    assert_eq!(op.items("/api/v1/auth-log").len(), 1);
    // The operator's webhook for every tenant, and the login's events
    // (voucher.activated, session.started) on the operator's events page.
    let r = op.post("/api/v1/webhooks", json!({"url": "http://127.0.0.1:9/all"}));
    assert_eq!(r.status, 201, "{r:?}");
    let every = r.json()["id"].as_i64().unwrap();
    wait_until("the login's events", WAIT, || {
        let page = op.ok("/api/v1/events");
        (page["events"].as_array().unwrap().len() == 2).then_some(())
    });

    for path in [
        "/api/v1/plans",
        "/api/v1/vouchers",
        "/api/v1/nas",
        "/api/v1/sessions",
        "/api/v1/auth-log",
        "/api/v1/webhooks",
    ] {
        assert!(
            acme.items(path).is_empty(),
            "{path} shows nothing of another tenant"
        );
    }
    let page = acme.ok("/api/v1/events");
    assert_eq!(page["events"], json!([]), "no other tenant's events");
    let session = op.items("/api/v1/sessions")[0]["id"].as_i64().unwrap();
    for path in [
        "/api/v1/plans/basic".to_string(),
        "/api/v1/vouchers/OPV1".to_string(),
        "/api/v1/nas/hotspot1".to_string(),
        format!("/api/v1/sessions/{session}"),
        "/api/v1/vouchers?plan=basic".to_string(),
    ] {
        let r = acme.get(&path);
        assert_eq!(
            (r.status, r.problem().as_str()),
            (404, "not-found"),
            "{path}"
        );
    }
    for (method, path, body) in [
        ("DELETE", "/api/v1/plans/basic", None),
        ("PATCH", "/api/v1/plans/basic", Some(json!({"time": "2h"}))),
        ("POST", "/api/v1/vouchers/OPV1/revoke", Some(json!({}))),
        ("DELETE", "/api/v1/nas/hotspot1", None),
        (
            "POST",
            &format!("/api/v1/sessions/{session}/disconnect"),
            Some(json!({})),
        ),
        (
            "POST",
            "/api/v1/vouchers",
            Some(json!({"code": "X1", "plan": "basic"})),
        ),
        ("DELETE", &format!("/api/v1/webhooks/{every}"), None),
    ] {
        let r = acme.send(method, path, body.as_ref());
        assert_eq!(r.status, 404, "{method} {path}: {r:?}");
    }
    let r = acme.get("/api/v1/plans?tenant=default");
    assert_eq!((r.status, r.problem().as_str()), (403, "other-tenant"));
    // Nothing of the default tenant changed.
    assert_eq!(op.ok("/api/v1/plans/basic")["time_quota_seconds"], 3600);
    assert_eq!(op.ok("/api/v1/vouchers/OPV1")["state"], "active");
    assert_eq!(op.items("/api/v1/nas").len(), 1);

    // Its own things: in its tenant, seen by the operator with ?tenant=.
    assert_eq!(
        acme.post("/api/v1/plans", json!({"name": "acme-1h"}))
            .status,
        201
    );
    let r = acme.post(
        "/api/v1/vouchers",
        json!({"code": "OPV1", "plan": "acme-1h"}),
    );
    assert_eq!(r.status, 201, "codes are per tenant: {r:?}");
    assert_eq!(acme.items("/api/v1/plans").len(), 1);
    assert_eq!(op.items("/api/v1/plans?tenant=acme").len(), 1);
    assert_eq!(op.items("/api/v1/plans").len(), 2);
    assert_eq!(
        op.ok("/api/v1/vouchers/OPV1?tenant=acme")["plan"],
        "acme-1h"
    );
    assert_eq!(op.ok("/api/v1/vouchers/OPV1")["plan"], "basic");

    // Its own events and webhooks: only its own, also after its own revoke.
    let r = acme.post(
        "/api/v1/webhooks",
        json!({"url": "http://127.0.0.1:9/acme"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["tenant"], "acme");
    let own = r.json()["id"].as_i64().unwrap();
    let listed = acme.items("/api/v1/webhooks");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], own);
    assert_eq!(op.items("/api/v1/webhooks").len(), 2);
    assert_eq!(op.items("/api/v1/webhooks?tenant=acme").len(), 1);
    let r = acme.post("/api/v1/vouchers/OPV1/revoke", json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    let mine = wait_until("acme's revoke on its page", WAIT, || {
        let events = acme.ok("/api/v1/events")["events"].clone();
        (!events.as_array().unwrap().is_empty()).then_some(events)
    });
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["type"], "voucher.revoked");
    assert_eq!(mine[0]["data"]["tenant"], "acme");
    assert_eq!(
        op.ok("/api/v1/events?tenant=acme")["events"],
        mine,
        "the operator sees it in ?tenant=acme"
    );
    assert_eq!(
        op.ok("/api/v1/events")["events"].as_array().unwrap().len(),
        3
    );
    assert_eq!(acme.delete(&format!("/api/v1/webhooks/{own}")).status, 204);
    assert!(acme.items("/api/v1/webhooks").is_empty());
    assert_eq!(op.items("/api/v1/webhooks").len(), 1);
}

/// `/api/v1/webhooks` refuses bad input with the field at fault, and the
/// deletion of what is not there.
#[test]
fn webhook_requests_are_checked() {
    let db = TestDb::sqlite();
    let token = add_token(&db, "erp", &[]);
    let (_server, http) = start(&db);
    let api = Api { addr: http, token };
    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": "http://u:p@example.com/"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({}), "url"),
        (
            json!({"url": "http://example.com/", "events": ["voucher.sold"]}),
            "events",
        ),
        (
            json!({"url": "http://example.com/", "events": []}),
            "events",
        ),
        (json!({"url": "http://example.com/", "events": 7}), "events"),
        (
            json!({"url": "http://example.com/", "secret": "mine"}),
            "secret",
        ),
    ] {
        let r = api.post("/api/v1/webhooks", body.clone());
        assert_eq!(
            (r.status, r.problem().as_str()),
            (400, "invalid-field"),
            "{body}"
        );
        assert_eq!(r.json()["field"], field, "{body}: {r:?}");
    }
    let r = api.post(
        "/api/v1/webhooks",
        json!({"url": "http://example.com/", "events": "session.started,session.stopped"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.json()["events"],
        json!(["session.started", "session.stopped"])
    );
    let id = r.json()["id"].as_i64().unwrap();
    // The same webhook as `webhook list` shows: one store, one function.
    let cli = parse_json(&db.cli(&["webhook", "list", "--format", "json"]));
    assert_eq!(cli[0]["id"], id);
    assert_eq!(
        cli[0]["events"],
        json!(["session.started", "session.stopped"])
    );
    // A bound on how far one token can multiply deliveries.
    for i in 1..20 {
        let r = api.post(
            "/api/v1/webhooks",
            json!({"url": format!("http://example.com/{i}")}),
        );
        assert_eq!(r.status, 201, "{i}: {r:?}");
    }
    let r = api.post("/api/v1/webhooks", json!({"url": "http://example.com/21"}));
    assert_eq!((r.status, r.problem().as_str()), (422, "rule-violation"));
    assert!(r.json()["detail"].as_str().unwrap().contains("at most 20"));
    for hook in api
        .items("/api/v1/webhooks")
        .iter()
        .filter(|h| h["id"] != id)
    {
        assert_eq!(
            api.delete(&format!("/api/v1/webhooks/{}", hook["id"]))
                .status,
            204
        );
    }
    let r = api.delete("/api/v1/webhooks/abc");
    assert_eq!(r.json()["field"], "id", "{r:?}");
    assert_eq!(api.delete(&format!("/api/v1/webhooks/{id}")).status, 204);
    let r = api.delete(&format!("/api/v1/webhooks/{id}"));
    assert_eq!((r.status, r.problem().as_str()), (404, "not-found"));
    assert_eq!(
        parse_json(&db.cli(&["webhook", "list", "--format", "json"])),
        json!([])
    );
}

fn revoked_token_stops_working_within_two_seconds(db: &TestDb) {
    let token = add_token(db, "erp", &[]);
    let (server, http) = start(db);
    let api = Api { addr: http, token };
    assert_eq!(api.get("/api/v1/plans").status, 200);
    // A token made while the server runs is accepted within 2 s too.
    let later = Api {
        addr: http,
        token: add_token(db, "later", &[]),
    };
    wait_until("the new token works", Duration::from_secs(2), || {
        (later.get("/api/v1/plans").status == 200).then_some(())
    });
    assert!(db.cli(&["token", "revoke", "erp"]).contains("revoked"));
    let revoked = Instant::now();
    wait_until(
        "the revoked token is refused",
        Duration::from_secs(2),
        || (api.get("/api/v1/plans").status == 401).then_some(()),
    );
    assert!(revoked.elapsed() < Duration::from_secs(2));
    assert_eq!(later.get("/api/v1/plans").status, 200);
    let out = db.cli_output(&["token", "revoke", "erp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    drop(server);
}

/// Eight copies of one batch request with one Idempotency-Key at once (an
/// impatient ERP): one batch; every 2xx is the same answer, the others 409.
fn concurrent_retries_make_one_batch(db: &TestDb) {
    let token = add_token(db, "erp", &[]);
    let (_server, http) = start(db);
    let api = Api { addr: http, token };
    assert_eq!(api.post("/api/v1/plans", json!({"name": "1h"})).status, 201);
    let batch = json!({"plan": "1h", "count": 200, "batch": "rush"});
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (api, batch) = (api.clone(), batch.clone());
                s.spawn(move || {
                    api.send_with(
                        "POST",
                        "/api/v1/voucher-batches",
                        &[("Idempotency-Key", "rush-1")],
                        Some(&batch),
                    )
                })
            })
            .collect();
        tasks.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let created: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    assert!(!created.is_empty(), "{answers:?}");
    assert!(created.iter().all(|a| a.json() == created[0].json()));
    for a in answers.iter().filter(|a| a.status != 201) {
        assert_eq!(
            (a.status, a.problem().as_str()),
            (409, "idempotency-in-progress")
        );
    }
    let made = api.ok("/api/v1/voucher-batches/rush");
    assert_eq!(made["count"], 200);
    // After the first answer, a retry is a replay.
    let again = api.send_with(
        "POST",
        "/api/v1/voucher-batches",
        &[("Idempotency-Key", "rush-1")],
        Some(&batch),
    );
    assert_eq!(again.status, 201);
    assert_eq!(again.json(), created[0].json());
}

/// Run one SQL statement on the test database behind the server's back.
fn sql(db: &TestDb, statement: &str) {
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        let c = rusqlite::Connection::open(path).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.execute_batch(statement).unwrap();
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(statement).execute(&mut c).await.unwrap();
    });
}

/// Tokens are checked against the set held in memory: with the token table
/// gone from storage, an unknown token is still 401 and a known one still
/// works (the failed refresh is logged and the last set kept).
fn tokens_are_checked_without_storage(db: &TestDb) {
    let token = add_token(db, "erp", &[]);
    let (server, http) = start(db);
    let api = Api { addr: http, token };
    assert_eq!(api.get("/api/v1/plans").status, 200);
    sql(db, "ALTER TABLE api_tokens RENAME TO api_tokens_gone");
    wait_until("a failed token refresh", Duration::from_secs(5), || {
        server
            .log_text()
            .contains("cannot read the API tokens")
            .then_some(())
    });
    let stranger = Api {
        addr: http,
        token: format!("rrnet_{}", "ab".repeat(32)),
    };
    for _ in 0..50 {
        let r = stranger.get("/api/v1/plans");
        assert_eq!((r.status, r.problem().as_str()), (401, "unauthorized"));
    }
    assert_eq!(api.get("/api/v1/plans").status, 200);
    assert!(!server.log_text().contains(&api.token));
}

/// Missing, wrong and malformed credentials: 401 problem documents with a
/// challenge; the shim's paths stay closed without its secret.
#[test]
fn tokens_are_required() {
    let db = TestDb::sqlite();
    let token = add_token(&db, "erp", &[]);
    let (_server, http) = start(&db);
    for auth in [
        None,
        Some("Bearer rrnet_0000000000000000000000000000000000000000000000000000000000000000"),
        Some("Basic ZXJwOnNlY3JldA=="),
        Some("Bearer"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = request(http, "GET", "/api/v1/plans", &headers, None);
        assert_eq!(
            (r.status, r.problem().as_str()),
            (401, "unauthorized"),
            "{auth:?}"
        );
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    let bearer = format!("bearer {token}");
    let r = request(
        http,
        "GET",
        "/api/v1/plans",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(r.status, 200, "the scheme is case-insensitive: {r:?}");
    // The shim is not served without RRNET_RADIUS_REST_SECRET.
    let r = request(
        http,
        "POST",
        "/api/v1/radius/auth",
        &[("Authorization", &bearer)],
        Some(b"{}"),
    );
    assert_eq!(r.status, 404);
}

/// Hostile and wrong input: every refusal is a problem document naming its
/// cause, never a crash.
#[test]
fn bad_requests_are_problem_documents() {
    let db = TestDb::sqlite();
    let token = add_token(&db, "erp", &[]);
    let (server, http) = start(&db);
    let api = Api {
        addr: http,
        token: token.clone(),
    };
    let auth = format!("Bearer {token}");

    // Larger than the body limit.
    let big = vec![b' '; 64 * 1024];
    let r = request(
        http,
        "POST",
        "/api/v1/plans",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(&big),
    );
    assert_eq!((r.status, r.problem().as_str()), (413, "body-too-large"));
    let r = request(
        http,
        "POST",
        "/api/v1/plans",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        Some(b"name=x"),
    );
    assert_eq!(
        (r.status, r.problem().as_str()),
        (415, "unsupported-media-type")
    );
    let r = request(
        http,
        "POST",
        "/api/v1/plans",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(b"{\"name\":"),
    );
    assert_eq!((r.status, r.problem().as_str()), (400, "invalid-body"));
    let r = api.post("/api/v1/plans", json!(["name"]));
    assert_eq!((r.status, r.problem().as_str()), (400, "invalid-body"));
    // Nesting deep enough to exhaust a recursive parser's stack.
    let deep = format!("{}{}", "[".repeat(8000), "]".repeat(8000));
    let r = request(
        http,
        "POST",
        "/api/v1/plans",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(deep.as_bytes()),
    );
    assert_eq!((r.status, r.problem().as_str()), (400, "invalid-body"));
    // Invalid UTF-8 and a NUL in a name.
    let r = request(
        http,
        "POST",
        "/api/v1/plans",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(b"{\"name\":\"\xff\xfe\"}"),
    );
    assert_eq!((r.status, r.problem().as_str()), (400, "invalid-body"));

    // The field at fault.
    for (body, field) in [
        (json!({"name": "x", "colour": "red"}), "colour"),
        (json!({"name": "x", "time": "1x"}), "time"),
        (json!({"name": "x", "data": "lots"}), "data"),
        (json!({"name": "x", "shared_users": 0}), "shared_users"),
        (json!({"name": "x", "mac_lock": "yes"}), "mac_lock"),
        (json!({"name": "x", "rate_limit": "2M;rm"}), "rate_limit"),
        (json!({"time": "1h"}), "name"),
        (
            json!({"name": "x", "after_data_rate_limit": "1M/1M"}),
            "after_data_rate_limit",
        ),
    ] {
        let r = api.post("/api/v1/plans", body.clone());
        assert_eq!(
            (r.status, r.problem().as_str()),
            (400, "invalid-field"),
            "{body}"
        );
        assert_eq!(r.json()["field"], field, "{body}: {r:?}");
    }
    assert_eq!(
        api.post("/api/v1/plans", json!({"name": "1h", "time": 3600}))
            .status,
        201
    );
    let r = api.post("/api/v1/plans", json!({"name": "1h"}));
    assert_eq!((r.status, r.problem().as_str()), (409, "duplicate"));
    for (body, field) in [
        (json!({"plan": "1h", "count": 0, "batch": "b"}), "count"),
        (
            json!({"plan": "1h", "count": 100001, "batch": "b"}),
            "count",
        ),
        (
            json!({"plan": "1h", "count": 1, "batch": "b", "length": 3}),
            "length",
        ),
        (json!({"plan": "1h", "count": 1}), "batch"),
        (
            json!({"plan": "1h", "count": 1, "batch": "b", "prefix": "a b"}),
            "prefix",
        ),
    ] {
        let r = api.post("/api/v1/voucher-batches", body.clone());
        assert_eq!(
            (r.status, r.problem().as_str()),
            (400, "invalid-field"),
            "{body}"
        );
        assert_eq!(r.json()["field"], field, "{body}");
    }
    let r = api.post(
        "/api/v1/nas",
        json!({"name": "n", "address": "10.0.0.1", "secret": "short"}),
    );
    assert_eq!(r.json()["field"], "secret", "{r:?}");
    let r = api.post(
        "/api/v1/nas",
        json!({"name": "n", "address": "not an address", "secret": "long-enough-secret"}),
    );
    assert_eq!(r.json()["field"], "address", "{r:?}");
    let r = api.get("/api/v1/vouchers?limit=0");
    assert_eq!(r.json()["field"], "limit");
    let r = api.get("/api/v1/vouchers?colour=red");
    assert_eq!(r.json()["field"], "colour");
    let r = api.get("/api/v1/sessions/abc");
    assert_eq!(r.json()["field"], "id");
    let r = api.send_with(
        "POST",
        "/api/v1/plans",
        &[("Idempotency-Key", "has space")],
        Some(&json!({"name": "k"})),
    );
    assert_eq!(
        (r.status, r.problem().as_str()),
        (400, "invalid-idempotency-key")
    );

    // Unknown things.
    let r = api.get("/api/v1/nope");
    assert_eq!((r.status, r.problem().as_str()), (404, "not-found"));
    let r = api.get("/api/v1/vouchers/NOPE");
    assert_eq!((r.status, r.problem().as_str()), (404, "not-found"));
    let r = api.get("/api/v1/plans?tenant=nobody");
    assert_eq!((r.status, r.problem().as_str()), (404, "not-found"));
    let r = api.get("/api/v1/plans/no%2Fsuch");
    assert_eq!(r.status, 404);
    assert!(
        server.metric_or_zero(
            r#"rrnet_radius_api_requests_total{method="GET",route="other",status="404"}"#
        ) >= 1.0
    );
    assert!(
        server.metric_or_zero(
            r#"rrnet_radius_api_requests_total{method="GET",route="/api/v1/plans/{name}",status="404"}"#
        ) >= 1.0
    );
}

/// `token add|list|revoke`: the token once, on its own last line; names
/// unique; an unknown tenant refused; nothing secret in the listing.
#[test]
fn token_commands() {
    let db = TestDb::sqlite();
    db.cli(&["tenant", "add", "acme"]);
    let token = add_token(&db, "erp", &["--tenant", "acme", "--read-only"]);
    let out = db.cli_output(&["token", "add", "--name", "erp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = db.cli_output(&["token", "add", "--name", "x", "--tenant", "nobody"]);
    assert!(!out.status.success());
    let out = db.cli_output(&["token", "add", "--name", "bad name"]);
    assert!(!out.status.success());
    let list = db.cli(&["token", "list"]);
    assert!(list.contains("erp") && list.contains("acme") && list.contains("read-only"));
    assert!(!list.contains(&token[6..]));
    let json = parse_json(&db.cli(&["token", "list", "--format", "json"]));
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["tenant"], "acme");
    db.cli(&["token", "revoke", "erp"]);
    assert_eq!(
        parse_json(&db.cli(&["token", "list", "--format", "json"])),
        json!([])
    );
    // Only the hash is stored.
    let path = db.url.strip_prefix("sqlite://").unwrap();
    let bytes = std::fs::read(path).unwrap();
    let wal = std::fs::read(format!("{path}-wal")).unwrap_or_default();
    for b in [bytes, wal] {
        assert!(!String::from_utf8_lossy(&b).contains(&token[6..]));
    }
}

/// Without a token and without the shim's secret nothing listens on HTTP.
#[test]
fn no_listener_without_a_token_or_the_shim_secret() {
    let db = TestDb::sqlite();
    let server = Server::start(&db);
    assert!(server.http.is_none());
}

/// A RadSec router's entry through the API, as `nas add --radsec-cn`: known by
/// its certificate, no address, secret or identifier; the CLI lists it alike.
#[test]
fn radsec_nas_through_the_api() {
    let db = TestDb::sqlite();
    let token = add_token(&db, "erp", &[]);
    let (_server, http) = start(&db);
    let api = Api { addr: http, token };
    let made = api.post(
        "/api/v1/nas",
        json!({"name": "cafe-9", "radsec_cn": "cafe-9.example.net"}),
    );
    assert_eq!(made.status, 201, "{made:?}");
    assert_eq!(made.json()["address"], "radsec:cn=cafe-9.example.net");
    let fp = "ab".repeat(32);
    let made = api.post(
        "/api/v1/nas",
        json!({"name": "cafe-10", "radsec_fingerprint": fp}),
    );
    assert_eq!(made.status, 201, "{made:?}");
    assert_eq!(made.json()["address"], format!("radsec:sha256={fp}"));
    let listed = db.cli(&["nas", "list", "--format", "json"]);
    assert!(listed.contains("radsec:cn=cafe-9.example.net"), "{listed}");
    for (body, field) in [
        (
            json!({"name": "x1", "radsec_cn": "x1", "secret": "long-enough-secret"}),
            "secret",
        ),
        (
            json!({"name": "x2", "radsec_cn": "x2", "address": "127.0.0.9"}),
            "address",
        ),
        (
            json!({"name": "x3", "radsec_cn": "x3", "identifier": "x3"}),
            "identifier",
        ),
        (
            json!({"name": "x4", "radsec_cn": "x4", "radsec_fingerprint": fp}),
            "radsec_fingerprint",
        ),
        (
            json!({"name": "x5", "radsec_fingerprint": "abc"}),
            "radsec_fingerprint",
        ),
        (json!({"name": "x6", "radsec_cn": "has space"}), "radsec_cn"),
        (
            json!({"name": "x7", "address": "radsec:cn=x7", "secret": "long-enough-secret"}),
            "address",
        ),
        (json!({"name": "x8"}), "address"),
    ] {
        let a = api.post("/api/v1/nas", body.clone());
        assert_eq!(a.status, 400, "{body}: {a:?}");
        assert_eq!(a.json()["field"], field, "{body}: {a:?}");
    }
}
