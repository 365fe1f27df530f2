//! Events and webhooks end to end: the real server over UDP, the CLI as
//! another process, and HTTP receivers on loopback that check every
//! delivery's signature with their own HMAC-SHA256 (the `hmac` and `sha2`
//! crates, not the server's signing code).

#[macro_use]
mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::receiver::{fast, Behaviour, Receiver, WAIT};
use common::*;
use rrnet_radius::proto::{attr, Code, PacketBuilder};

const MAC1: &str = "AA:BB:CC:00:00:01";

/// `webhook add`: the signing secret is alone on the last line.
fn add_webhook(db: &TestDb, receiver: &Receiver, extra: &[&str]) -> String {
    let mut args = vec!["webhook", "add", "--url", &receiver.url];
    args.extend_from_slice(extra);
    let out = db.cli(&args);
    let secret = out.lines().last().unwrap().to_string();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 6 + 64 && !secret.contains(' '),
        "{out}"
    );
    receiver.set_secret(&secret);
    secret
}

/// SIGTERM; the server must exit cleanly, also with attempts in flight.
fn stop(server: Server) {
    let logs = server.logs.clone();
    let status = server.stop();
    assert!(
        status.success(),
        "{status:?}\n{}",
        logs.lock().unwrap().join("\n")
    );
}

fn plan(db: &TestDb, name: &str, flags: &[&str]) {
    let mut args = vec!["plan", "add", "--name", name];
    args.extend_from_slice(flags);
    db.cli(&args);
}

fn account(c: &mut Client, server: &Server, status: u32, code: &str, asid: &str, bytes: u64) {
    let req = c.accounting_request(
        status,
        code,
        asid,
        Some(MAC1),
        60,
        bytes / 2,
        bytes - bytes / 2,
        &[(attr::FRAMED_IP_ADDRESS, vec![10, 5, 0, 9])],
    );
    let auth: [u8; 16] = req[4..20].try_into().unwrap();
    let r = c
        .exchange(server.acct, &req, &auth)
        .expect("accounting answered");
    assert_eq!(r.code(), Code::AccountingResponse);
}

/// Every event in the database, through the events page with `limit` a page,
/// following the cursor until `want` events have come (PostgreSQL holds an
/// event back while an older transaction of any client is open) and a page
/// comes back empty.
fn all_events(db: &TestDb, tenant: Option<i64>, limit: u32, want: usize) -> Vec<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = rrnet_radius::store::open(&db.url).await.unwrap();
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let page = rrnet_radius::events::page(&*store, tenant, after.as_deref(), limit)
                .await
                .unwrap();
            let json = serde_json::to_value(&page).unwrap();
            assert!(json["next"].is_string());
            let n = page.events.len();
            assert!(n <= limit as usize);
            out.extend(page.events);
            if n == 0 {
                // An empty page keeps the cursor it was asked with.
                if let Some(a) = &after {
                    assert_eq!(&page.next, a);
                }
                if out.len() >= want || std::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            after = Some(page.next);
        }
        out
    })
}

fn types(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

fn deliveries(db: &TestDb, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["webhook", "deliveries", "--format", "json"];
    args.extend_from_slice(extra);
    parse_json(&db.cli(&args)).as_array().unwrap().clone()
}

// ---- cases ----

fn login_and_sessions_are_delivered_signed(db: &TestDb) {
    db.setup_basic();
    plan(db, "1h", &["--time", "1h", "--data", "1GiB"]);
    db.cli(&["voucher", "add", "FIRST1", "--plan", "1h"]);
    let receiver = Receiver::start(Behaviour::Ok);
    let secret = add_webhook(db, &receiver, &[]);
    let server = Server::start_with(db, fast());
    let mut c = Client::new();

    let r = c
        .login(server.auth, "FIRST1", Cred::Pap("FIRST1"), Some(MAC1))
        .expect("an answer");
    assert_eq!(r.code(), Code::AccessAccept);
    let activated = receiver.wait_for("voucher.activated", "code", "FIRST1");
    assert!(activated.signature_ok, "{activated:?}");
    assert_eq!(
        activated.body["id"].as_str(),
        Some(&*activated.event_id_header)
    );
    let data = &activated.body["data"];
    assert_eq!(data["plan"], "1h");
    assert_eq!(data["tenant"], "default");
    assert_eq!(data["state"], "active");
    assert!(data["first_used"].as_str().unwrap().ends_with('Z'));
    assert_eq!(data["time_left"], 3600);
    assert_eq!(data["data_left"], 1u64 << 30);

    account(&mut c, &server, 1, "FIRST1", "81000001", 0);
    account(&mut c, &server, 3, "FIRST1", "81000001", 1000);
    account(&mut c, &server, 2, "FIRST1", "81000001", 3000);
    let started = receiver.wait_for("session.started", "acct_session_id", "81000001");
    assert!(started.signature_ok);
    assert_eq!(started.body["data"]["voucher"], "FIRST1");
    assert_eq!(started.body["data"]["nas"], "hotspot1");
    assert_eq!(started.body["data"]["mac"], MAC1);
    assert_eq!(started.body["data"]["ip"], "10.5.0.9");
    let stopped = receiver.wait_for("session.stopped", "acct_session_id", "81000001");
    assert!(stopped.signature_ok);
    let s = &stopped.body["data"];
    assert_eq!(s["state"], "closed");
    assert_eq!(
        s["input_octets"].as_u64().unwrap() + s["output_octets"].as_u64().unwrap(),
        3000
    );
    assert!(s["stopped"].is_string());

    // The outbox holds exactly these, in order: the Interim made none.
    let events = all_events(db, None, 2, 3);
    assert_eq!(
        types(&events),
        ["voucher.activated", "session.started", "session.stopped"]
    );
    // Recorded once each receiver's answer is in.
    let all = wait_until("three deliveries recorded", WAIT, || {
        let d = deliveries(db, &[]);
        d.iter().all(|d| d["state"] == "delivered").then_some(d)
    });
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(
        server.metric_or_zero("rrnet_radius_webhook_deliveries_total{result=\"delivered\"}") >= 3.0
    );
    // Reboot detection closes the open session of the old boot: session.stopped.
    account(&mut c, &server, 1, "FIRST1", "81000002", 0);
    account(&mut c, &server, 1, "FIRST1", "82000001", 0);
    let rebooted = receiver.wait_for("session.stopped", "acct_session_id", "81000002");
    assert!(rebooted.signature_ok);
    assert_eq!(rebooted.body["data"]["terminate_cause"], "nas-reboot");
    // Accounting-On (RFC 2866 §5.1) closes the rest: session.stopped too.
    let mut b = PacketBuilder::new(Code::AccountingRequest, rand::random());
    b.add_u32(attr::ACCT_STATUS_TYPE, attr::acct_status::ACCOUNTING_ON)
        .unwrap();
    b.add_str(attr::NAS_IDENTIFIER, "MikroTik").unwrap();
    let on = b.finish_accounting_request(&c.secret);
    let auth: [u8; 16] = on[4..20].try_into().unwrap();
    let r = c.exchange(server.acct, &on, &auth).expect("answered");
    assert_eq!(r.code(), Code::AccountingResponse);
    let on = receiver.wait_for("session.stopped", "acct_session_id", "82000001");
    assert_eq!(on.body["data"]["terminate_cause"], "accounting-on");
    assert!(
        !server.log_text().contains(&secret),
        "the secret is never logged"
    );
    stop(server);
}

fn a_stale_session_is_stopped(db: &TestDb) {
    db.setup_basic();
    plan(db, "1h", &["--time", "1h", "--interim", "1s"]);
    db.cli(&["voucher", "add", "STALE1", "--plan", "1h"]);
    let receiver = Receiver::start(Behaviour::Ok);
    add_webhook(db, &receiver, &["--events", "session.stopped"]);
    let mut opts = fast();
    opts.server_toml = format!("stale_grace = \"1s\"\n{}", opts.server_toml);
    let server = Server::start_with(db, opts);
    let mut c = Client::new();
    let r = c
        .login(server.auth, "STALE1", Cred::Pap("STALE1"), Some(MAC1))
        .expect("an answer");
    assert_eq!(r.code(), Code::AccessAccept);
    account(&mut c, &server, 1, "STALE1", "85000001", 0);
    // No Interim-Update follows: housekeeping closes it as stale.
    let stopped = receiver.wait_for("session.stopped", "acct_session_id", "85000001");
    assert!(stopped.signature_ok);
    assert_eq!(stopped.body["data"]["terminate_cause"], "stale");
    stop(server);
}

fn quota_used_up_and_revoke_by_the_cli(db: &TestDb) {
    db.setup_basic();
    plan(db, "1k", &["--data", "1000"]);
    db.cli(&["voucher", "add", "DATA1", "--plan", "1k"]);
    db.cli(&["voucher", "add", "REV1", "--plan", "1k"]);
    let receiver = Receiver::start(Behaviour::Ok);
    add_webhook(
        db,
        &receiver,
        &["--events", "voucher.used_up,voucher.revoked"],
    );
    let server = Server::start_with(db, fast());
    let mut c = Client::new();
    let r = c
        .login(server.auth, "DATA1", Cred::Pap("DATA1"), Some(MAC1))
        .expect("an answer");
    assert_eq!(r.code(), Code::AccessAccept);
    account(&mut c, &server, 1, "DATA1", "83000001", 0);
    account(&mut c, &server, 3, "DATA1", "83000001", 400);
    account(&mut c, &server, 3, "DATA1", "83000001", 1500);
    account(&mut c, &server, 3, "DATA1", "83000001", 1600);
    let used = receiver.wait_for("voucher.used_up", "code", "DATA1");
    assert!(used.signature_ok);
    assert_eq!(used.body["data"]["data_left"], 0);
    assert_eq!(used.body["data"]["used_bytes"], 1500);

    db.cli(&["voucher", "revoke", "REV1"]);
    let revoked = receiver.wait_for("voucher.revoked", "code", "REV1");
    assert!(revoked.signature_ok);
    assert_eq!(revoked.body["data"]["state"], "revoked");
    // Revoking again changes nothing and makes no event.
    db.cli(&["voucher", "revoke", "REV1"]);

    // Only the types asked for, once each: the second Interim over the quota
    // did not use it up again.
    let mine = deliveries(db, &["--webhook", &receiver.url]);
    let mut got: Vec<String> = mine
        .iter()
        .map(|d| d["type"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["voucher.revoked", "voucher.used_up"]);
    let events = types(&all_events(db, None, 100, 4));
    assert_eq!(events.iter().filter(|t| *t == "voucher.used_up").count(), 1);
    assert_eq!(events.iter().filter(|t| *t == "voucher.revoked").count(), 1);
    stop(server);
}

fn failed_delivery_is_retried(db: &TestDb) {
    db.setup_basic();
    plan(db, "1h", &["--time", "1h"]);
    db.cli(&["voucher", "add", "RETRY1", "--plan", "1h"]);
    let receiver = Receiver::start(Behaviour::FailFirst(1));
    add_webhook(db, &receiver, &[]);
    let server = Server::start_with(db, fast());
    db.cli(&["voucher", "revoke", "RETRY1"]);
    let got = receiver.wait_for("voucher.revoked", "code", "RETRY1");
    assert!(got.signature_ok);
    let first = receiver.got.lock().unwrap()[0].clone();
    assert!(!first.accepted, "the first attempt was answered 500");
    // The same event both times: receivers de-duplicate by it.
    assert_eq!(first.event_id_header, got.event_id_header);
    let d = wait_until("the delivery recorded", WAIT, || {
        let d = deliveries(db, &[]);
        (d.len() == 1 && d[0]["state"] == "delivered").then(|| d[0].clone())
    });
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["last_status"], 200);
    let text = db.cli(&["webhook", "deliveries"]);
    let row = text.lines().nth(1).expect("one row under the header");
    assert!(
        row.contains("evt_") && row.contains("voucher.revoked") && row.contains("delivered"),
        "{text}"
    );
    assert!(
        server.metric_or_zero("rrnet_radius_webhook_deliveries_total{result=\"retry\"}") >= 1.0
    );
    assert!(deliveries(db, &["--failed"]).is_empty());
    stop(server);
}

fn a_delivery_is_given_up(db: &TestDb) {
    plan(db, "1h", &["--time", "1h"]);
    db.cli(&["voucher", "add", "GIVEUP1", "--plan", "1h"]);
    let receiver = Receiver::start(Behaviour::FailFirst(usize::MAX));
    add_webhook(db, &receiver, &[]);
    let mut opts = fast();
    opts.server_toml.push_str("give_up = \"1s\"\n");
    let server = Server::start_with(db, opts);
    db.cli(&["voucher", "revoke", "GIVEUP1"]);
    let d = wait_until("the delivery given up", WAIT, || {
        let d = deliveries(db, &["--failed"]);
        (d.len() == 1).then(|| d[0].clone())
    });
    assert_eq!(d["state"], "failed");
    assert_eq!(d["last_status"], 500);
    assert_eq!(d["last_error"], "HTTP 500");
    // Given up at the first attempt made a second or more after the event.
    assert!(d["attempts"].as_i64().unwrap() >= 1, "{d}");
    assert!(d["next_attempt"].is_null());
    assert_eq!(
        receiver.got.lock().unwrap().len() as i64,
        d["attempts"].as_i64().unwrap()
    );
    assert!(
        server.metric_or_zero("rrnet_radius_webhook_deliveries_total{result=\"failed\"}") >= 1.0
    );
    stop(server);
}

fn https_needs_a_trusted_certificate(db: &TestDb) {
    plan(db, "1h", &["--time", "1h"]);
    db.cli(&["voucher", "add", "TLS1", "--plan", "1h"]);
    // A plain HTTP receiver behind an https URL: the TLS handshake fails,
    // and the attempt is recorded as failed and retried, not sent in clear.
    let receiver = Receiver::start(Behaviour::Ok);
    let url = receiver.url.replace("http://", "https://");
    db.cli(&["webhook", "add", "--url", &url]);
    let server = Server::start_with(db, fast());
    db.cli(&["voucher", "revoke", "TLS1"]);
    let d = wait_until("a failed TLS attempt", WAIT, || {
        let d = deliveries(db, &[]);
        (d.len() == 1 && d[0]["attempts"].as_i64() >= Some(1)).then(|| d[0].clone())
    });
    assert_eq!(d["state"], "pending");
    assert!(d["last_status"].is_null());
    assert!(d["last_error"].as_str().unwrap().starts_with("TLS"), "{d}");
    assert!(
        receiver.got.lock().unwrap().is_empty(),
        "nothing went in clear"
    );
    stop(server);
}

fn a_hanging_receiver_does_not_hold_back_others(db: &TestDb) {
    db.setup_basic();
    plan(db, "1h", &["--time", "1h"]);
    let hanging = Receiver::start(Behaviour::Hang);
    let good = Receiver::start(Behaviour::Ok);
    add_webhook(db, &hanging, &[]);
    add_webhook(db, &good, &[]);
    let codes: Vec<String> = (0..8).map(|i| format!("HANG{i}")).collect();
    for code in &codes {
        db.cli(&["voucher", "add", code, "--plan", "1h"]);
    }
    let server = Server::start_with(db, fast());
    for code in &codes {
        db.cli(&["voucher", "revoke", code]);
    }
    for code in &codes {
        let r = good.wait_for("voucher.revoked", "code", code);
        assert!(r.signature_ok);
    }
    // The hanging receiver got connections but answered none: its
    // deliveries are still pending, and it never held more than its share.
    assert!(hanging.connections.load(Ordering::SeqCst) >= 1);
    let stuck = deliveries(db, &["--webhook", &hanging.url]);
    assert_eq!(stuck.len(), codes.len());
    assert!(stuck.iter().all(|d| d["state"] == "pending"), "{stuck:?}");
    stop(server);
}

fn an_endless_answer_is_cut_short(db: &TestDb) {
    plan(db, "1h", &["--time", "1h"]);
    db.cli(&["voucher", "add", "FLOOD1", "--plan", "1h"]);
    let flood = Receiver::start(Behaviour::Endless);
    add_webhook(db, &flood, &[]);
    let server = Server::start_with(db, fast());
    db.cli(&["voucher", "revoke", "FLOOD1"]);
    let got = flood.wait_for("voucher.revoked", "code", "FLOOD1");
    assert!(got.signature_ok);
    // The server read a bounded part of the answer and hung up: the
    // receiver's writes failed long before its own limit.
    let chunks = wait_until("the client to hang up", WAIT, || {
        let n = flood.ended_after.load(Ordering::SeqCst);
        (n > 0).then_some(n)
    });
    assert!(chunks < 1_000_000, "{chunks} chunks of 4 KiB were taken");
    let d = wait_until("the delivery recorded", WAIT, || {
        let d = deliveries(db, &[]);
        (d.len() == 1 && d[0]["state"] == "delivered").then(|| d[0].clone())
    });
    assert_eq!(d["attempts"], 1);
    stop(server);
}

fn a_tenant_webhook_hears_only_its_tenant(db: &TestDb) {
    db.cli(&["tenant", "add", "acme"]);
    plan(db, "home", &["--time", "1h"]);
    db.cli(&[
        "plan", "add", "--name", "acme1h", "--time", "1h", "--tenant", "acme",
    ]);
    db.cli(&["voucher", "add", "HOME1", "--plan", "home"]);
    db.cli(&[
        "voucher", "add", "ACME1", "--plan", "acme1h", "--tenant", "acme",
    ]);
    let acme = Receiver::start(Behaviour::Ok);
    let every = Receiver::start(Behaviour::Ok);
    add_webhook(db, &acme, &["--tenant", "acme"]);
    add_webhook(db, &every, &[]);
    let server = Server::start_with(db, fast());
    db.cli(&["voucher", "revoke", "HOME1"]);
    db.cli(&["voucher", "revoke", "ACME1", "--tenant", "acme"]);
    every.wait_for("voucher.revoked", "code", "HOME1");
    every.wait_for("voucher.revoked", "code", "ACME1");
    let got = acme.wait_for("voucher.revoked", "code", "ACME1");
    assert_eq!(got.body["data"]["tenant"], "acme");
    // The other tenant's event was never meant for it.
    let mine = deliveries(db, &["--webhook", &acme.url]);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert!(acme
        .got
        .lock()
        .unwrap()
        .iter()
        .all(|r| r.body["data"]["tenant"] == "acme"));
    // The page function filters by tenant the same way.
    let acme_id = 2;
    let acme_events = all_events(db, Some(acme_id), 10, 1);
    assert_eq!(acme_events.len(), 1);
    assert_eq!(acme_events[0]["data"]["code"], "ACME1");
    assert_eq!(all_events(db, None, 10, 2).len(), 2);
    stop(server);
}

fn the_events_page_continues_without_gaps(db: &TestDb) {
    plan(db, "1h", &["--time", "1h"]);
    for i in 0..7 {
        db.cli(&["voucher", "add", &format!("PAGE{i}"), "--plan", "1h"]);
        db.cli(&["voucher", "revoke", &format!("PAGE{i}")]);
    }
    for limit in [1, 3, 7, 100] {
        let events = all_events(db, None, limit, 7);
        let codes: Vec<&str> = events
            .iter()
            .map(|e| e["data"]["code"].as_str().unwrap())
            .collect();
        let want: Vec<String> = (0..7).map(|i| format!("PAGE{i}")).collect();
        assert_eq!(codes, want, "limit {limit}");
        let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(unique.len(), 7);
        for e in &events {
            assert_eq!(e["type"], "voucher.revoked");
            assert!(e["created"].as_str().unwrap().ends_with('Z'));
        }
    }
    // Events written after a page are on the next one.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = rrnet_radius::store::open(&db.url).await.unwrap();
        let page = rrnet_radius::events::page(&*store, None, None, 100)
            .await
            .unwrap();
        assert_eq!(page.events.len(), 7);
        db.cli(&["voucher", "add", "LATE1", "--plan", "1h"]);
        db.cli(&["voucher", "revoke", "LATE1"]);
        // (Polled: on PostgreSQL another client's older open transaction
        // holds the new event back until it ends.)
        let deadline = std::time::Instant::now() + WAIT;
        let next = loop {
            let p = rrnet_radius::events::page(&*store, None, Some(&page.next), 100)
                .await
                .unwrap();
            if !p.events.is_empty() || std::time::Instant::now() > deadline {
                break p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(next.events.len(), 1);
        assert_eq!(next.events[0]["data"]["code"], "LATE1");
        // A cursor the server never gave out is refused, not read as the start.
        let bad = rrnet_radius::events::page(&*store, None, Some("not-a-cursor"), 10).await;
        assert!(bad.is_err());
    });
}

fn webhook_commands_check_their_input(db: &TestDb) {
    for (args, says) in [
        (vec!["--url", "ftp://example.com/x"], "http"),
        (vec!["--url", "not a url"], "webhook URL"),
        (vec!["--url", "http://u:p@example.com/"], "password"),
        (
            vec!["--url", "http://example.com/", "--events", "voucher.sold"],
            "unknown event type",
        ),
        (
            vec!["--url", "http://example.com/", "--tenant", "nobody"],
            "nobody",
        ),
    ] {
        let mut full = vec!["webhook", "add"];
        full.extend(args.iter());
        let out = db.cli_output(&full);
        assert!(!out.status.success(), "{full:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{full:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let r = Receiver::start(Behaviour::Ok);
    let secret = add_webhook(db, &r, &["--events", "session.started"]);
    let list = parse_json(&db.cli(&["webhook", "list", "--format", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["events"], serde_json::json!(["session.started"]));
    assert!(!db.cli(&["webhook", "list"]).contains(&secret));
    assert!(!list.to_string().contains(&secret));
    let id = list[0]["id"].to_string();
    db.cli(&["webhook", "remove", &id]);
    assert!(!db.cli_output(&["webhook", "remove", &id]).status.success());
    add_webhook(db, &r, &[]);
    db.cli(&["webhook", "remove", &r.url]);
    assert_eq!(
        parse_json(&db.cli(&["webhook", "list", "--format", "json"])),
        serde_json::json!([])
    );
}

on_both_backends!(
    login_and_sessions_are_delivered_signed,
    quota_used_up_and_revoke_by_the_cli,
    a_stale_session_is_stopped,
    failed_delivery_is_retried,
    a_delivery_is_given_up,
    https_needs_a_trusted_certificate,
    a_hanging_receiver_does_not_hold_back_others,
    an_endless_answer_is_cut_short,
    a_tenant_webhook_hears_only_its_tenant,
    the_events_page_continues_without_gaps,
    webhook_commands_check_their_input,
);

/// Two servers on one PostgreSQL share the deliveries: each is sent by one of
/// them, once (a delivery sent by both would have two attempts recorded).
#[test]
fn two_servers_on_postgres_send_each_delivery_once() {
    let Some(db) = TestDb::postgres() else { return };
    plan(&db, "1h", &["--time", "1h"]);
    let codes: Vec<String> = (0..12).map(|i| format!("TWO{i}")).collect();
    for code in &codes {
        db.cli(&["voucher", "add", code, "--plan", "1h"]);
    }
    let receiver = Receiver::start(Behaviour::Ok);
    add_webhook(&db, &receiver, &[]);
    let a = Server::start_with(&db, fast());
    let b = Server::start_with(&db, fast());
    for code in &codes {
        db.cli(&["voucher", "revoke", code]);
    }
    let all = wait_until("every delivery made", WAIT, || {
        let d = deliveries(&db, &[]);
        (d.len() == codes.len() && d.iter().all(|d| d["state"] == "delivered")).then_some(d)
    });
    assert!(all.iter().all(|d| d["attempts"] == 1), "{all:?}");
    let got = receiver.accepted();
    let mut ids: Vec<&str> = got.iter().map(|r| r.event_id_header.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), codes.len());
    assert_eq!(got.len(), codes.len(), "no event was sent twice");
    stop(a);
    stop(b);
}

/// PostgreSQL takes event ids before commit: an event whose transaction is
/// still open when a later one commits must not be skipped by a reader that
/// has seen the later one. The page waits for it instead, then returns both.
#[test]
fn the_events_page_never_skips_an_event_that_commits_late() {
    let Some(db) = TestDb::postgres() else { return };
    plan(&db, "1h", &["--time", "1h"]);
    db.cli(&["voucher", "add", "LATER1", "--plan", "1h"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let store = rrnet_radius::store::open(&db.url).await.unwrap();
        let start = rrnet_radius::events::page(&*store, None, None, 100)
            .await
            .unwrap();
        assert!(start.events.is_empty());
        // A transaction takes the lower id and stays open...
        let mut slow = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
        sqlx::query(
            "INSERT INTO events (tenant_id, type, created_at, object) \
             VALUES (1, 'voucher.revoked', 0, '{\"code\":\"SLOW1\"}')",
        )
        .execute(&mut slow)
        .await
        .unwrap();
        // ...while a later event commits.
        db.cli(&["voucher", "revoke", "LATER1"]);
        let early = rrnet_radius::events::page(&*store, None, Some(&start.next), 100)
            .await
            .unwrap();
        assert!(
            early.events.is_empty(),
            "nothing past an open transaction: {:?}",
            early.events
        );
        assert_eq!(early.next, start.next);
        sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
        // Transactions of other clients of the server hold the page back
        // too, for as long as they run: poll until they have ended.
        let deadline = std::time::Instant::now() + WAIT;
        let both = loop {
            let p = rrnet_radius::events::page(&*store, None, Some(&early.next), 100)
                .await
                .unwrap();
            if p.events.len() >= 2 || std::time::Instant::now() > deadline {
                break p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let codes: Vec<&str> = both
            .events
            .iter()
            .map(|e| e["data"]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["SLOW1", "LATER1"]);
        let after = rrnet_radius::events::page(&*store, None, Some(&both.next), 100)
            .await
            .unwrap();
        assert!(after.events.is_empty());
    });
}
