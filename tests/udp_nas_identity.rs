//! Routers behind one address (carrier-grade NAT, several routers of one site):
//! NAS entries that share 127.0.0.1 and are told apart by NAS-Identifier, over
//! UDP with the real binary, on SQLite and PostgreSQL. Also the collisions
//! such routers used to cause, as regressions: one router's Start closing the
//! other's sessions as a reboot, and equal Acct-Session-Ids sharing one row —
//! with an entry per router, and with one entry that several routers share.
//! And tenants and sites on top: vouchers that never cross operators, and
//! plans valid at some sites only.
#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use rrnet_radius::proto::{attr, Code};

const WAIT: Duration = Duration::from_secs(10);
const SILENCE: Duration = Duration::from_millis(200);
const NORTH_SECRET: &str = "north-router-secret";
const SOUTH_SECRET: &str = "south-router-secret";

on_both_backends!(
    shared_address_needs_identifiers_at_nas_add,
    routers_behind_one_address_are_told_apart,
    nas_identifier_must_pass_that_entrys_secret,
    unknown_identifier_is_a_counted_drop,
    equal_session_ids_on_two_routers_are_two_sessions,
    one_routers_reboot_keeps_the_others_sessions,
    routers_sharing_one_entry_keep_their_sessions,
    stop_times_honour_acct_delay_time,
    tenants_vouchers_never_cross,
    site_restricted_plan,
    host_name_nas_follows_its_address,
    any_source_nas_is_picked_by_identifier,
);

fn drops(nas: &str, reason: &str) -> String {
    format!("rrnet_radius_drops_total{{nas=\"{nas}\",reason=\"{reason}\"}}")
}

fn accepts(nas: &str) -> String {
    format!(
        "rrnet_radius_requests_total{{nas=\"{nas}\",result=\"accept\",type=\"access_request\"}}"
    )
}

/// Two routers behind 127.0.0.1: `north` and `south`, each with its identity
/// and secret; a one-hour plan with vouchers V1..V4.
fn two_routers(db: &TestDb) {
    for (name, identity, secret) in [
        ("north", "north-gw", NORTH_SECRET),
        ("south", "south-gw", SOUTH_SECRET),
    ] {
        db.cli(&[
            "nas",
            "add",
            "--name",
            name,
            "--address",
            "127.0.0.1",
            "--identifier",
            identity,
            "--secret",
            secret,
        ]);
    }
    db.cli(&[
        "plan",
        "add",
        "--name",
        "1h",
        "--time",
        "1h",
        "--shared-users",
        "2",
    ]);
    for code in ["V1", "V2", "V3", "V4"] {
        db.cli(&["voucher", "add", code, "--plan", "1h"]);
    }
}

fn router(identity: Option<&str>, secret: &str) -> Client {
    let mut c = Client::with_secret(secret);
    c.identity = identity.map(Into::into);
    c
}

fn north() -> Client {
    router(Some("north-gw"), NORTH_SECRET)
}

fn south() -> Client {
    router(Some("south-gw"), SOUTH_SECRET)
}

fn expect_dropped(server: &Server, client: &Client, request: &[u8], nas: &str, reason: &str) {
    let sample = drops(nas, reason);
    let before = server.metric_or_zero(&sample);
    client.sock.send_to(request, server.auth).unwrap();
    server.wait_metric(&sample, before + 1.0, WAIT);
    assert!(
        !client.anything_within(SILENCE),
        "a request dropped for {reason} was answered"
    );
}

/// Every session with this Acct-Session-Id, by NAS name.
fn sessions_of(db: &TestDb, acct_session_id: &str) -> Vec<(String, serde_json::Value)> {
    let mut v: Vec<_> = db
        .sessions_json()
        .into_iter()
        .filter(|s| s["acct_session_id"] == acct_session_id)
        .map(|s| (s["nas_name"].as_str().unwrap().to_owned(), s))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn shared_address_needs_identifiers_at_nas_add(db: &TestDb) {
    db.setup_basic();
    // 127.0.0.1 is taken by `hotspot1`, which has no identifier.
    let out = db.cli_output(&[
        "nas",
        "add",
        "--name",
        "second",
        "--address",
        "127.0.0.1",
        "--identifier",
        "second-gw",
        "--secret",
        SOUTH_SECRET,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hotspot1") && err.contains("no identifier"),
        "{err}"
    );
    // Between identified entries, an entry without identifier is explained away.
    // Given an identifier, hotspot1 can share its address.
    let out = db.cli(&["nas", "set", "hotspot1", "--identifier", "hs1-gw"]);
    assert!(out.contains("hs1-gw"), "{out}");
    db.cli(&[
        "nas",
        "add",
        "--name",
        "second",
        "--address",
        "127.0.0.1",
        "--identifier",
        "second-gw",
        "--secret",
        SOUTH_SECRET,
    ]);
    db.cli(&["nas", "remove", "hotspot1"]);
    db.cli(&["nas", "remove", "second"]);
    two_routers(db);
    let out = db.cli_output(&[
        "nas",
        "add",
        "--name",
        "third",
        "--address",
        "127.0.0.1",
        "--secret",
        SOUTH_SECRET,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--identifier"), "{err}");
    let list = parse_json(&db.cli(&["nas", "list", "--format", "json"]));
    let ids: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].clone(), n["identifier"].clone()))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("north".into(), "north-gw".into()),
            ("south".into(), "south-gw".into())
        ]
    );
}

fn routers_behind_one_address_are_told_apart(db: &TestDb) {
    two_routers(db);
    let server = Server::start(db);
    let (mut n, mut s) = (north(), south());
    // PAP from one, CHAP (with and without CHAP-Challenge) from the other:
    // each un-hidden or checked with its own secret.
    let r = n
        .login(
            server.auth,
            "V1",
            Cred::Pap("V1"),
            Some("02:00:00:00:00:01"),
        )
        .expect("north is answered");
    assert_eq!(r.code(), Code::AccessAccept);
    let r = s
        .login(
            server.auth,
            "V2",
            Cred::Chap("V2"),
            Some("02:00:00:00:00:02"),
        )
        .expect("south is answered");
    assert_eq!(r.code(), Code::AccessAccept);
    let r = s
        .login(
            server.auth,
            "V3",
            Cred::ChapNoChallenge("V3"),
            Some("02:00:00:00:00:03"),
        )
        .expect("south is answered");
    assert_eq!(r.code(), Code::AccessAccept);
    let r = n
        .login(
            server.auth,
            "V4",
            Cred::Pap("wrong"),
            Some("02:00:00:00:00:04"),
        )
        .expect("north is answered");
    assert_eq!(r.code(), Code::AccessReject);
    server.wait_metric(&accepts("north"), 1.0, WAIT);
    server.wait_metric(&accepts("south"), 2.0, WAIT);
    // Status-Server too is answered with the entry's own secret.
    let (req, auth) = s.status_server(true);
    let r = s
        .exchange(server.auth, &req, &auth)
        .expect("status answered");
    assert_eq!(r.code(), Code::AccessAccept);
    // Accounting: each router's records land on its own entry.
    let r = n.account(
        server.acct,
        attr::acct_status::START,
        "V1",
        "n-1",
        None,
        0,
        0,
        0,
    );
    assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    let r = s.account(
        server.acct,
        attr::acct_status::START,
        "V2",
        "s-1",
        None,
        0,
        0,
        0,
    );
    assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    assert_eq!(sessions_of(db, "n-1")[0].0, "north");
    assert_eq!(sessions_of(db, "s-1")[0].0, "south");
    assert!(server.stop().success());
}

fn nas_identifier_must_pass_that_entrys_secret(db: &TestDb) {
    two_routers(db);
    let server = Server::start(db);
    // Claims to be north but signs with south's secret.
    let mut impostor = router(Some("north-gw"), SOUTH_SECRET);
    let (req, _) = impostor.access_request("V1", Cred::Pap("V1"), None, true);
    expect_dropped(
        &server,
        &impostor,
        &req,
        "north",
        "bad_message_authenticator",
    );
    let req =
        impostor.accounting_request(attr::acct_status::START, "V1", "imp-1", None, 0, 0, 0, &[]);
    let sample = drops("north", "bad_authenticator");
    let before = server.metric_or_zero(&sample);
    impostor.sock.send_to(&req, server.acct).unwrap();
    server.wait_metric(&sample, before + 1.0, WAIT);
    assert!(!impostor.anything_within(SILENCE));
    assert!(sessions_of(db, "imp-1").is_empty());
    assert_eq!(server.metric_or_zero(&accepts("north")), 0.0);
    assert!(server.stop().success());
}

fn unknown_identifier_is_a_counted_drop(db: &TestDb) {
    two_routers(db);
    let server = Server::start(db);
    for identity in [Some("east-gw"), Some("North-gw"), None] {
        let mut c = router(identity, NORTH_SECRET);
        let (req, _) = c.access_request("V1", Cred::Pap("V1"), None, true);
        expect_dropped(&server, &c, &req, "unknown", "unknown_nas_identifier");
    }
    // The routers themselves are still served.
    let r = north().login(server.auth, "V1", Cred::Pap("V1"), None);
    assert_eq!(r.expect("answered").code(), Code::AccessAccept);
    assert!(server.stop().success());
}

fn equal_session_ids_on_two_routers_are_two_sessions(db: &TestDb) {
    two_routers(db);
    let server = Server::start(db);
    let (mut n, mut s) = (north(), south());
    let mac_n = "02:00:00:00:0A:01";
    let mac_s = "02:00:00:00:0B:01";
    for (c, user, mac) in [(&mut n, "V1", mac_n), (&mut s, "V2", mac_s)] {
        let r = c.account(
            server.acct,
            attr::acct_status::START,
            user,
            "81a00001",
            Some(mac),
            0,
            0,
            0,
        );
        assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    }
    let r = n.account(
        server.acct,
        attr::acct_status::STOP,
        "V1",
        "81a00001",
        Some(mac_n),
        60,
        1000,
        2000,
    );
    assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    let both = sessions_of(db, "81a00001");
    assert_eq!(both.len(), 2, "{both:?}");
    let (north_row, south_row) = (&both[0], &both[1]);
    assert_eq!(north_row.0, "north");
    assert_eq!(north_row.1["state"], "closed");
    assert_eq!(north_row.1["mac"], mac_n);
    assert_eq!(north_row.1["username"], "V1");
    assert_eq!(north_row.1["session_time"], 60);
    assert_eq!(south_row.0, "south");
    assert_eq!(south_row.1["state"], "open", "{south_row:?}");
    assert_eq!(south_row.1["mac"], mac_s);
    assert_eq!(south_row.1["username"], "V2");
    assert_eq!(south_row.1["session_time"], 0);
    assert_eq!(db.voucher_json("V2")["used_seconds"], 0);
    assert_eq!(db.voucher_json("V1")["used_seconds"], 60);
    assert!(server.stop().success());
}

fn one_routers_reboot_keeps_the_others_sessions(db: &TestDb) {
    two_routers(db);
    let server = Server::start(db);
    let (mut n, mut s) = (north(), south());
    // Both routers are in their boot 0x81.
    let r = n.account(
        server.acct,
        attr::acct_status::START,
        "V1",
        "81a00001",
        None,
        0,
        0,
        0,
    );
    assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    let r = s.account(
        server.acct,
        attr::acct_status::START,
        "V2",
        "81b00001",
        None,
        0,
        0,
        0,
    );
    assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    // South reboots: its new Acct-Session-Ids count 0x82.
    let r = s.account(
        server.acct,
        attr::acct_status::START,
        "V3",
        "82b00001",
        None,
        0,
        0,
        0,
    );
    assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    let south_old = db.session_json("81b00001").expect("stored");
    assert_eq!(south_old["state"], "closed");
    assert_eq!(south_old["terminate_cause"], "nas-reboot");
    let north_row = db.session_json("81a00001").expect("stored");
    assert_eq!(
        north_row["state"], "open",
        "another router's reboot must not close north's session: {north_row}"
    );
    assert_eq!(db.session_json("82b00001").unwrap()["state"], "open");
    assert!(server.stop().success());
}

/// One entry, several routers: behind one NAT address without identifiers
/// (told apart by NAS-Identifier), and on a network (told apart by address,
/// all keeping RouterOS's default identity). Equal Acct-Session-Ids are a
/// session each; one router's reboot or Stop never closes another's session.
fn routers_sharing_one_entry_keep_their_sessions(db: &TestDb) {
    const SECRET: &str = "shared-entry-secret";
    db.cli(&[
        "nas",
        "add",
        "--name",
        "nat",
        "--address",
        "127.0.0.1",
        "--secret",
        SECRET,
    ]);
    db.cli(&[
        "nas",
        "add",
        "--name",
        "lan",
        "--address",
        "127.0.1.0/24",
        "--secret",
        SECRET,
    ]);
    db.cli(&["plan", "add", "--name", "1h", "--time", "1h"]);
    for code in ["W1", "W2", "W3", "W4", "W5"] {
        db.cli(&["voucher", "add", code, "--plan", "1h"]);
    }
    let server = Server::start(db);
    let mut gw_a = router(Some("gw-a"), SECRET);
    let mut gw_b = router(Some("gw-b"), SECRET);
    let mut lan_2 = Client::bind("127.0.1.2:0", SECRET);
    lan_2.identity = Some("MikroTik".into());
    let mut lan_3 = Client::bind("127.0.1.3:0", SECRET);
    lan_3.identity = Some("MikroTik".into());

    let start = |c: &mut Client, user: &str, asid: &str| {
        let r = c.account(
            server.acct,
            attr::acct_status::START,
            user,
            asid,
            None,
            0,
            0,
            0,
        );
        assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    };
    start(&mut gw_a, "W1", "81a00001");
    start(&mut gw_b, "W2", "81a00001");
    start(&mut lan_2, "W3", "81a00001");
    start(&mut lan_3, "W4", "81a00001");
    let rows = db.sessions_json();
    let by_user = |user: &str| {
        rows.iter()
            .find(|s| s["username"] == user)
            .unwrap_or_else(|| panic!("no session of {user}: {rows:?}"))
            .clone()
    };
    assert_eq!(by_user("W1")["nas_name"], "nat");
    assert_eq!(by_user("W1")["router"], "gw-a");
    assert_eq!(by_user("W2")["router"], "gw-b");
    assert_eq!(by_user("W3")["nas_name"], "lan");
    assert_eq!(by_user("W3")["router"], "MikroTik@127.0.1.2");
    assert_eq!(by_user("W4")["router"], "MikroTik@127.0.1.3");
    assert_eq!(sessions_of(db, "81a00001").len(), 4);

    // gw-b and 127.0.1.3 reboot (a new counter in their Acct-Session-Ids).
    start(&mut gw_b, "W5", "82a00001");
    start(&mut lan_3, "W5", "82b00001");
    let rows = db.sessions_json();
    let state = |user: &str| {
        rows.iter()
            .filter(|s| s["username"] == user && s["acct_session_id"] == "81a00001")
            .map(|s| s["state"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(state("W1"), ["open"], "gw-b's reboot closed gw-a's session");
    assert_eq!(state("W2"), ["closed"]);
    assert_eq!(
        state("W3"),
        ["open"],
        "127.0.1.3's reboot closed 127.0.1.2's session"
    );
    assert_eq!(state("W4"), ["closed"]);

    // A Stop from gw-a ends gw-a's session only, with its own counters.
    let r = gw_a.account(
        server.acct,
        attr::acct_status::STOP,
        "W1",
        "81a00001",
        None,
        30,
        0,
        0,
    );
    assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    assert_eq!(db.voucher_json("W1")["used_seconds"], 30);
    assert_eq!(db.voucher_json("W3")["used_seconds"], 0);
    let lan_row = db
        .sessions_json()
        .into_iter()
        .find(|s| s["username"] == "W3")
        .unwrap();
    assert_eq!(lan_row["state"], "open");
    assert!(server.stop().success());
}

fn stop_times_honour_acct_delay_time(db: &TestDb) {
    two_routers(db);
    let server = Server::start(db);
    let mut n = north();
    let delayed = |c: &mut Client, status, sid: &str, time, delay: u32| {
        let req = c.accounting_request(
            status,
            "V1",
            sid,
            None,
            time,
            0,
            0,
            &[(attr::ACCT_DELAY_TIME, delay.to_be_bytes().to_vec())],
        );
        let r = c.send_accounting(server.acct, &req, Duration::from_secs(2));
        assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    };
    let before = rrnet_radius::server::unix_now();
    // A Start queued 30 s on the router, then a Stop queued 90 s.
    delayed(&mut n, attr::acct_status::START, "d-1", 0, 30);
    delayed(&mut n, attr::acct_status::STOP, "d-1", 100, 90);
    let after = rrnet_radius::server::unix_now();
    let row = db.session_json("d-1").expect("stored");
    let started = row["started_at"].as_i64().unwrap();
    let stopped = row["stopped_at"].as_i64().unwrap();
    assert!(
        (before - 30..=after - 30).contains(&started),
        "started_at {started} is 30 s before arrival ({before}..{after}): {row}"
    );
    assert!(
        (before - 90..=after - 90).contains(&stopped),
        "stopped_at {stopped} is 90 s before arrival ({before}..{after}): {row}"
    );
    assert_eq!(row["state"], "closed");
    // A retransmission with a larger Acct-Delay-Time does not count twice.
    delayed(&mut n, attr::acct_status::STOP, "d-1", 100, 93);
    assert_eq!(db.voucher_json("V1")["used_seconds"], 100);
    assert!(server.stop().success());
}

// ---- tenants and sites ----

/// Two operators on one deployment: each one's voucher logs in only on its
/// own routers, and another's is "Unknown voucher code", even for a code both
/// sold. Both routers sit behind 127.0.0.1, told apart by NAS-Identifier.
fn tenants_vouchers_never_cross(db: &TestDb) {
    db.cli(&["tenant", "add", "isp-b"]);
    let tenants = parse_json(&db.cli(&["tenant", "list", "--format", "json"]));
    let names: Vec<_> = tenants
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["default", "isp-b"]);
    // Tenant `default` needs no flag.
    db.cli(&[
        "nas",
        "add",
        "--name",
        "north",
        "--address",
        "127.0.0.1",
        "--identifier",
        "north-gw",
        "--secret",
        NORTH_SECRET,
    ]);
    db.cli(&[
        "nas",
        "add",
        "--tenant",
        "isp-b",
        "--name",
        "south",
        "--address",
        "127.0.0.1",
        "--identifier",
        "south-gw",
        "--secret",
        SOUTH_SECRET,
    ]);
    db.cli(&["plan", "add", "--name", "a-1h", "--time", "1h"]);
    db.cli(&[
        "plan", "add", "--tenant", "isp-b", "--name", "b-1h", "--time", "1h",
    ]);
    db.cli(&["voucher", "add", "ONLYA", "--plan", "a-1h"]);
    db.cli(&[
        "voucher",
        "add",
        "SAME",
        "--plan",
        "a-1h",
        "--password",
        "pw-of-a",
    ]);
    db.cli(&[
        "voucher",
        "add",
        "--tenant",
        "isp-b",
        "SAME",
        "--plan",
        "b-1h",
        "--password",
        "pw-of-b",
    ]);
    // A plan of another tenant is refused for --tenant's vouchers.
    let out = db.cli_output(&[
        "voucher", "add", "--tenant", "isp-b", "X1", "--plan", "a-1h",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another tenant"));
    // Listings are scoped by --tenant.
    let b_vouchers =
        parse_json(&db.cli(&["voucher", "list", "--tenant", "isp-b", "--format", "json"]));
    assert_eq!(b_vouchers.as_array().unwrap().len(), 1, "{b_vouchers}");

    let server = Server::start(db);
    let (mut n, mut s) = (north(), south());
    let login = |c: &mut Client, user: &str, pw: &str| {
        c.login(server.auth, user, Cred::Pap(pw), Some("02:00:00:00:0C:01"))
            .expect("answered")
    };
    // Tenant A's own voucher at its router; at tenant B's it does not exist.
    assert_eq!(login(&mut n, "ONLYA", "ONLYA").code(), Code::AccessAccept);
    let r = login(&mut s, "ONLYA", "ONLYA");
    assert_eq!(r.code(), Code::AccessReject);
    assert_eq!(r.reply_message().as_deref(), Some("Unknown voucher code"));
    // The same code, each tenant's own voucher and password.
    assert_eq!(login(&mut n, "SAME", "pw-of-a").code(), Code::AccessAccept);
    assert_eq!(login(&mut s, "SAME", "pw-of-b").code(), Code::AccessAccept);
    let r = login(&mut s, "SAME", "pw-of-a");
    assert_eq!(
        r.reply_message().as_deref(),
        Some("Wrong password for this voucher")
    );
    // Accounting for tenant A's code from tenant B's router is not charged to it.
    let r = s.account(
        server.acct,
        attr::acct_status::STOP,
        "ONLYA",
        "x-1",
        None,
        500,
        0,
        0,
    );
    assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    assert_eq!(db.voucher_json("ONLYA")["used_seconds"], 0);
    let r = s.account(
        server.acct,
        attr::acct_status::STOP,
        "SAME",
        "x-2",
        None,
        70,
        0,
        0,
    );
    assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    let b = parse_json(&db.cli(&[
        "voucher", "show", "--tenant", "isp-b", "SAME", "--format", "json",
    ]));
    assert_eq!(b["used_seconds"], 70, "{b}");
    assert_eq!(db.voucher_json("SAME")["used_seconds"], 0);
    // Sessions listed per tenant.
    let b_sessions =
        parse_json(&db.cli(&["session", "list", "--tenant", "isp-b", "--format", "json"]));
    assert!(
        b_sessions
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["nas_name"] == "south"),
        "{b_sessions}"
    );
    assert!(server.stop().success());
}

/// A plan valid at some sites: refused at a router of another site with a
/// clear Reply-Message, accepted at its own.
fn site_restricted_plan(db: &TestDb) {
    for (name, identity, secret, site) in [
        ("north", "north-gw", NORTH_SECRET, "north"),
        ("south", "south-gw", SOUTH_SECRET, "south"),
    ] {
        db.cli(&[
            "nas",
            "add",
            "--name",
            name,
            "--address",
            "127.0.0.1",
            "--identifier",
            identity,
            "--secret",
            secret,
            "--site",
            site,
        ]);
    }
    db.cli(&[
        "plan",
        "add",
        "--name",
        "north-only",
        "--time",
        "1h",
        "--sites",
        "north",
    ]);
    db.cli(&["voucher", "add", "N1", "--plan", "north-only"]);
    let plans = parse_json(&db.cli(&["plan", "list", "--format", "json"]));
    assert_eq!(plans[0]["sites"], serde_json::json!(["north"]));
    let server = Server::start(db);
    let r = south()
        .login(
            server.auth,
            "N1",
            Cred::Pap("N1"),
            Some("02:00:00:00:0D:01"),
        )
        .expect("answered");
    assert_eq!(r.code(), Code::AccessReject);
    assert_eq!(
        r.reply_message().as_deref(),
        Some("This voucher is not valid at this location")
    );
    server.wait_metric(
        "rrnet_radius_rejects_total{nas=\"south\",reason=\"wrong_site\"}",
        1.0,
        WAIT,
    );
    let r = north()
        .login(
            server.auth,
            "N1",
            Cred::Pap("N1"),
            Some("02:00:00:00:0D:01"),
        )
        .expect("answered");
    assert_eq!(r.code(), Code::AccessAccept);
    assert!(server.stop().success());
}

// ---- dynamic addresses ----

/// A router known by a host name (DDNS): found at the address the name
/// resolves to, and followed when the name moves. Names are resolved through
/// the hosts-format file of RRNET_HOSTS_FILE, so no DNS is involved.
fn host_name_nas_follows_its_address(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.3 router7.test\n").unwrap();
    db.cli(&[
        "nas",
        "add",
        "--name",
        "ddns",
        "--address",
        "Router7.test",
        "--secret",
        NORTH_SECRET,
    ]);
    let list = parse_json(&db.cli(&["nas", "list", "--format", "json"]));
    assert_eq!(list[0]["address"], "router7.test");
    db.cli(&[
        "plan",
        "add",
        "--name",
        "1h",
        "--time",
        "1h",
        "--shared-users",
        "5",
    ]);
    db.cli(&["voucher", "add", "D1", "--plan", "1h"]);
    let server = Server::start_with(
        db,
        ServerOptions {
            env: vec![(
                "RRNET_HOSTS_FILE".into(),
                hosts.to_string_lossy().into_owned(),
            )],
            ..Default::default()
        },
    );
    let mut at3 = Client::bind("127.0.0.3:0", NORTH_SECRET);
    let r = at3
        .login(
            server.auth,
            "D1",
            Cred::Pap("D1"),
            Some("02:00:00:00:0E:01"),
        )
        .expect("the resolved address is answered");
    assert_eq!(r.code(), Code::AccessAccept);
    assert!(
        server.metric_or_zero("rrnet_radius_nas_address_resolved_timestamp_seconds{nas=\"ddns\"}")
            > 0.0
    );

    // The router's address changes: its first packets from the new address
    // are unknown, and ask for the name to be resolved again.
    std::fs::write(&hosts, "127.0.0.4 router7.test\n").unwrap();
    let mut at4 = Client::bind("127.0.0.4:0", NORTH_SECRET);
    let r = wait_until("the new address to be recognised", WAIT, || {
        let (req, auth) =
            at4.access_request("D1", Cred::Pap("D1"), Some("02:00:00:00:0E:02"), true);
        at4.exchange_within(server.auth, &req, &auth, Duration::from_millis(300))
    });
    assert_eq!(r.code(), Code::AccessAccept);
    assert!(server.metric_or_zero(&drops("unknown", "unknown_nas")) >= 1.0);
    // The old address is no longer the router's.
    let (req, _) = at3.access_request("D1", Cred::Pap("D1"), None, true);
    expect_dropped(&server, &at3, &req, "unknown", "unknown_nas");
    assert!(server.stop().success());
}

/// `--address any --identifier ID`: the router is taken from any source when
/// its NAS-Identifier names the entry and its Message-Authenticator verifies.
fn any_source_nas_is_picked_by_identifier(db: &TestDb) {
    let refused = |args: &[&str], why: &str| {
        let out = db.cli_output(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{err}");
    };
    refused(
        &[
            "nas",
            "add",
            "--name",
            "r",
            "--address",
            "any",
            "--secret",
            NORTH_SECRET,
        ],
        "--identifier",
    );
    refused(
        &[
            "nas",
            "add",
            "--name",
            "r",
            "--address",
            "any",
            "--identifier",
            "roam-gw",
            "--secret",
            NORTH_SECRET,
            "--no-require-message-authenticator",
        ],
        "Message-Authenticator",
    );
    db.cli(&[
        "nas",
        "add",
        "--name",
        "roamer",
        "--address",
        "any",
        "--identifier",
        "roam-gw",
        "--secret",
        NORTH_SECRET,
    ]);
    db.cli(&["plan", "add", "--name", "1h", "--time", "1h"]);
    db.cli(&["voucher", "add", "R1", "--plan", "1h"]);
    let server = Server::start(db);
    let mut roam = Client::bind("127.0.0.6:0", NORTH_SECRET);
    roam.identity = Some("roam-gw".into());
    let r = roam
        .login(
            server.auth,
            "R1",
            Cred::Pap("R1"),
            Some("02:00:00:00:0F:01"),
        )
        .expect("answered from any address");
    assert_eq!(r.code(), Code::AccessAccept);
    let r = roam.account(
        server.acct,
        attr::acct_status::START,
        "R1",
        "roam-1",
        None,
        0,
        0,
        0,
    );
    assert_eq!(r.expect("acct answered").code(), Code::AccountingResponse);
    assert_eq!(db.session_json("roam-1").unwrap()["nas_name"], "roamer");
    // Without Message-Authenticator nothing proves it is the router.
    let (req, _) = roam.access_request("R1", Cred::Pap("R1"), None, false);
    expect_dropped(
        &server,
        &roam,
        &req,
        "roamer",
        "missing_message_authenticator",
    );
    // Another identity, or the right one with another secret, is not it.
    let mut stranger = Client::bind("127.0.0.7:0", NORTH_SECRET);
    stranger.identity = Some("someone".into());
    let (req, _) = stranger.access_request("R1", Cred::Pap("R1"), None, true);
    expect_dropped(
        &server,
        &stranger,
        &req,
        "unknown",
        "unknown_nas_identifier",
    );
    let mut forger = Client::bind("127.0.0.7:0", SOUTH_SECRET);
    forger.identity = Some("roam-gw".into());
    let (req, _) = forger.access_request("R1", Cred::Pap("R1"), None, true);
    expect_dropped(
        &server,
        &forger,
        &req,
        "roamer",
        "bad_message_authenticator",
    );
    assert!(server.stop().success());
}
