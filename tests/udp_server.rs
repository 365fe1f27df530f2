//! The real `rrnet-radius` binary over UDP, driven by the Rust test client.
//!
//! Every case is written once as a function taking the test database and is
//! instantiated for SQLite and PostgreSQL by `on_both_backends!`, so the two
//! backends are held to the same observable behaviour on the wire.
#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use rrnet_radius::proto::{attr, verify_response, Code, PacketBuilder};

const MAC1: &str = "AA:BB:CC:00:00:01";
const MAC2: &str = "AA:BB:CC:00:00:02";
/// Bound for anything the server does in the background (metrics, NAS reloads).
const WAIT: Duration = Duration::from_secs(10);
/// How long to listen for a reply that must not come once its drop was counted:
/// the drop is decided before any reply could be sent, so this only catches a
/// stray datagram.
const SILENCE: Duration = Duration::from_millis(200);

on_both_backends!(
    pap_accept_carries_exact_reply_attributes,
    chap_accept_with_and_without_challenge,
    rejects_carry_the_reason,
    time_quota_used_up_by_accounting,
    data_quota_used_up_by_accounting,
    mac_lock_keeps_the_first_device,
    shared_users_limit_until_stop,
    unknown_nas_is_dropped_and_counted,
    message_authenticator_is_enforced,
    accounting_with_bad_authenticator_is_dropped,
    duplicates_get_the_cached_reply,
    status_server_on_both_ports,
    accounting_lifecycle_is_stored,
    nas_changes_are_picked_up_while_running,
    sigterm_stops_cleanly,
);

// ---- helpers ----

fn drops(nas: &str, reason: &str) -> String {
    format!("rrnet_radius_drops_total{{nas=\"{nas}\",reason=\"{reason}\"}}")
}

fn rejects(reason: &str) -> String {
    format!("rrnet_radius_rejects_total{{nas=\"hotspot1\",reason=\"{reason}\"}}")
}

fn plan(db: &TestDb, name: &str, args: &[&str]) {
    let mut all = vec!["plan", "add", "--name", name];
    all.extend_from_slice(args);
    db.cli(&all);
}

fn voucher(db: &TestDb, code: &str, plan: &str) {
    db.cli(&["voucher", "add", code, "--plan", plan]);
}

/// The voucher id, read from the session row the accept created (written
/// just after the reply, hence the poll).
fn voucher_id_of(db: &TestDb, code: &str) -> i64 {
    wait_until(
        &format!("a session with a voucher for {code}"),
        WAIT,
        || {
            db.sessions_json()
                .iter()
                .find(|s| s["username"] == code)
                .and_then(|s| s["voucher_id"].as_i64())
        },
    )
}

#[track_caller]
fn expect_accept(reply: Option<Reply>) -> Reply {
    let r = reply.expect("an answer");
    assert_eq!(
        r.code(),
        Code::AccessAccept,
        "expected Access-Accept, got {:?} ({:?})",
        r.code(),
        r.reply_message()
    );
    r
}

#[track_caller]
fn expect_reject(reply: Option<Reply>, message: &str) {
    let r = reply.expect("an answer");
    assert_eq!(r.code(), Code::AccessReject);
    // A reject carries Message-Authenticator (checked by the client) and the reason only.
    assert_eq!(reply_attrs(&r), vec![format!("Reply-Message={message}")]);
}

#[track_caller]
fn expect_acct_response(reply: Option<Reply>) {
    let r = reply.expect("an Accounting-Response");
    assert_eq!(r.code(), Code::AccountingResponse);
}

/// Send `request` and assert it is dropped for `reason`: the drop counter moves
/// and nothing comes back.
#[track_caller]
fn expect_dropped(
    server: &Server,
    client: &Client,
    to: std::net::SocketAddr,
    request: &[u8],
    nas: &str,
    reason: &str,
) {
    let sample = drops(nas, reason);
    let before = server.metric_or_zero(&sample);
    client.sock.send_to(request, to).unwrap();
    server.wait_metric(&sample, before + 1.0, WAIT);
    assert!(
        !client.anything_within(SILENCE),
        "a request dropped for {reason} was answered"
    );
}

/// The reply's attributes (Message-Authenticator aside), by name, in wire order.
fn reply_attrs(r: &Reply) -> Vec<String> {
    let p = r.packet();
    let mut out = Vec::new();
    let u32_of = |v: &[u8]| u32::from_be_bytes(v.try_into().expect("4-octet integer"));
    let text = |v: &[u8]| String::from_utf8(v.to_vec()).expect("UTF-8 text");
    for a in p.attributes() {
        match a.typ {
            attr::MESSAGE_AUTHENTICATOR => {}
            attr::SESSION_TIMEOUT => out.push(format!("Session-Timeout={}", u32_of(a.value))),
            attr::IDLE_TIMEOUT => out.push(format!("Idle-Timeout={}", u32_of(a.value))),
            attr::ACCT_INTERIM_INTERVAL => {
                out.push(format!("Acct-Interim-Interval={}", u32_of(a.value)))
            }
            attr::CLASS => out.push(format!("Class={}", text(a.value))),
            attr::REPLY_MESSAGE => out.push(format!("Reply-Message={}", text(a.value))),
            attr::VENDOR_SPECIFIC => {
                use attr::mikrotik as mt;
                for v in a.vendor_attributes().expect("vendor attribute") {
                    assert_eq!(v.vendor, mt::VENDOR_ID, "only MikroTik attributes are sent");
                    out.push(match v.typ {
                        mt::RATE_LIMIT => format!("Mikrotik-Rate-Limit={}", text(v.value)),
                        mt::TOTAL_LIMIT => format!("Mikrotik-Total-Limit={}", u32_of(v.value)),
                        mt::TOTAL_LIMIT_GIGAWORDS => {
                            format!("Mikrotik-Total-Limit-Gigawords={}", u32_of(v.value))
                        }
                        mt::GROUP => format!("Mikrotik-Group={}", text(v.value)),
                        mt::ADDRESS_LIST => format!("Mikrotik-Address-List={}", text(v.value)),
                        t => format!("Mikrotik-{t}={}", hex::encode(v.value)),
                    });
                }
            }
            t => out.push(format!("attr{t}={}", hex::encode(a.value))),
        }
    }
    out
}

/// Accounting-On (RFC 2866 §5.1): the NAS restarted, all its sessions are gone.
fn accounting_on(client: &Client) -> Vec<u8> {
    let mut b = PacketBuilder::new(Code::AccountingRequest, rand::random());
    b.add_u32(attr::ACCT_STATUS_TYPE, attr::acct_status::ACCOUNTING_ON)
        .unwrap();
    b.add_str(attr::NAS_IDENTIFIER, "MikroTik").unwrap();
    b.finish_accounting_request(&client.secret)
}

// ---- cases ----

fn pap_accept_carries_exact_reply_attributes(db: &TestDb) {
    db.setup_basic();
    // 5 GiB does not fit Mikrotik-Total-Limit's 32 bits: the high part goes in Gigawords.
    plan(
        db,
        "big",
        &[
            "--time",
            "2h",
            "--validity",
            "1d",
            "--data",
            "5GiB",
            "--rate-limit",
            "2M/4M",
            "--idle-timeout",
            "5m",
            "--interim",
            "1m",
            "--group",
            "premium",
            "--address-list",
            "paid",
        ],
    );
    plan(db, "small", &["--time", "1h", "--data", "500MiB"]);
    voucher(db, "BIG1", "big");
    voucher(db, "SMALL1", "small");
    // Longer than one 16-octet block, so un-hiding crosses blocks (RFC 2865 §5.2).
    db.cli(&[
        "voucher",
        "add",
        "LONGPW",
        "--plan",
        "small",
        "--password",
        "correct horse battery staple!",
    ]);
    let server = Server::start(db);
    let mut c = Client::new();

    let r = expect_accept(c.login(server.auth, "BIG1", Cred::Pap("BIG1"), Some(MAC1)));
    let id = voucher_id_of(db, "BIG1");
    assert_eq!(
        reply_attrs(&r),
        vec![
            // min(time quota 2h, validity 1d from now)
            "Session-Timeout=7200".to_string(),
            "Idle-Timeout=300".into(),
            "Acct-Interim-Interval=60".into(),
            "Mikrotik-Rate-Limit=2M/4M".into(),
            // 5 GiB = 1 × 2^32 + 1 GiB
            "Mikrotik-Total-Limit=1073741824".into(),
            "Mikrotik-Total-Limit-Gigawords=1".into(),
            "Mikrotik-Group=premium".into(),
            "Mikrotik-Address-List=paid".into(),
            format!("Class=rrnet:v1:{id}"),
        ]
    );
    let v = db.voucher_json("BIG1");
    assert!(v["first_login_at"].is_string(), "first login recorded: {v}");
    assert!(v["valid_until"].is_string(), "validity window set: {v}");

    let r = expect_accept(c.login(server.auth, "SMALL1", Cred::Pap("SMALL1"), Some(MAC1)));
    let id = voucher_id_of(db, "SMALL1");
    assert_eq!(
        reply_attrs(&r),
        vec![
            "Session-Timeout=3600".to_string(),
            // No --interim on the plan: every Accept still carries one, the
            // server's default_interim (5m), or RouterOS sends no Interim-Update.
            "Acct-Interim-Interval=300".into(),
            "Mikrotik-Total-Limit=524288000".into(),
            format!("Class=rrnet:v1:{id}"),
        ]
    );

    expect_accept(c.login(
        server.auth,
        "LONGPW",
        Cred::Pap("correct horse battery staple!"),
        Some(MAC1),
    ));
    // The outcome is counted just after the reply goes out, hence the poll.
    let accepts =
        "rrnet_radius_requests_total{nas=\"hotspot1\",result=\"accept\",type=\"access_request\"}";
    assert_eq!(server.wait_metric(accepts, 3.0, WAIT), 3.0);
    assert!(server.stop().success());
}

fn chap_accept_with_and_without_challenge(db: &TestDb) {
    db.setup_basic();
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "CHAP1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();
    // MikroTik's http-chap sends CHAP-Challenge.
    expect_accept(c.login(server.auth, "CHAP1", Cred::Chap("CHAP1"), Some(MAC1)));
    // Without it the Request Authenticator is the challenge (RFC 2865 §2.2).
    expect_accept(c.login(
        server.auth,
        "CHAP1",
        Cred::ChapNoChallenge("CHAP1"),
        Some(MAC1),
    ));
    expect_reject(
        c.login(server.auth, "CHAP1", Cred::Chap("chap1"), Some(MAC1)),
        "Wrong password for this voucher",
    );
    expect_reject(
        c.login(
            server.auth,
            "CHAP1",
            Cred::ChapNoChallenge("CHAP2"),
            Some(MAC1),
        ),
        "Wrong password for this voucher",
    );
    assert!(server.stop().success());
}

fn rejects_carry_the_reason(db: &TestDb) {
    db.setup_basic();
    plan(db, "1h", &["--time", "1h"]);
    plan(db, "old", &["--expires", "2020-01-01T00:00:00Z"]);
    plan(db, "blink", &["--validity", "1s"]);
    voucher(db, "W1", "1h");
    voucher(db, "R1", "1h");
    voucher(db, "E1", "old");
    voucher(db, "V1", "blink");
    let server = Server::start(db);
    let mut c = Client::new();

    expect_reject(
        c.login(server.auth, "W1", Cred::Pap("W2"), Some(MAC1)),
        "Wrong password for this voucher",
    );
    expect_reject(
        c.login(server.auth, "NOPE", Cred::Pap("NOPE"), Some(MAC1)),
        "Unknown voucher code",
    );
    // A voucher added by another process while the server runs counts within
    // 50 ms, though the server had just found no such code.
    voucher(db, "NOPE", "1h");
    let_admin_change_land();
    expect_accept(c.login(server.auth, "NOPE", Cred::Pap("NOPE"), Some(MAC1)));

    // Revoking a voucher in use takes effect on its next login after 50 ms.
    expect_accept(c.login(server.auth, "R1", Cred::Pap("R1"), Some(MAC1)));
    db.cli(&["voucher", "revoke", "R1"]);
    let_admin_change_land();
    expect_reject(
        c.login(server.auth, "R1", Cred::Pap("R1"), Some(MAC1)),
        "This voucher has been revoked",
    );

    expect_reject(
        c.login(server.auth, "E1", Cred::Pap("E1"), Some(MAC1)),
        "This voucher has expired",
    );

    // A one-second validity window: accepted once, then refused once it has passed.
    let r = expect_accept(c.login(server.auth, "V1", Cred::Pap("V1"), Some(MAC1)));
    assert_eq!(r.u32(attr::SESSION_TIMEOUT), Some(1));
    let r = wait_until("the validity window to end", WAIT, || {
        let r = c.login(server.auth, "V1", Cred::Pap("V1"), Some(MAC1))?;
        (r.code() == Code::AccessReject).then_some(r)
    });
    expect_reject(Some(r), "This voucher's validity period has ended");

    for (reason, n) in [
        ("wrong_password", 1.0),
        ("unknown_voucher", 1.0),
        ("revoked", 1.0),
        ("expired", 1.0),
        ("validity_ended", 1.0),
    ] {
        // Counted just after the reply goes out, hence the poll.
        assert_eq!(server.wait_metric(&rejects(reason), n, WAIT), n, "{reason}");
    }
    assert!(server.stop().success());
}

fn time_quota_used_up_by_accounting(db: &TestDb) {
    db.setup_basic();
    plan(db, "1min", &["--time", "60s"]);
    voucher(db, "T1", "1min");
    let server = Server::start(db);
    let mut c = Client::new();
    let r = expect_accept(c.login(server.auth, "T1", Cred::Pap("T1"), Some(MAC1)));
    assert_eq!(r.u32(attr::SESSION_TIMEOUT), Some(60));
    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::START,
        "T1",
        "time-1",
        Some(MAC1),
        0,
        0,
        0,
    ));
    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::STOP,
        "T1",
        "time-1",
        Some(MAC1),
        60,
        1000,
        2000,
    ));
    let v = db.voucher_json("T1");
    assert_eq!(v["used_seconds"], 60, "{v}");
    assert_eq!(v["time_left_seconds"], 0, "{v}");
    expect_reject(
        c.login(server.auth, "T1", Cred::Pap("T1"), Some(MAC1)),
        "No time left on this voucher",
    );
    assert!(server.stop().success());
}

fn data_quota_used_up_by_accounting(db: &TestDb) {
    db.setup_basic();
    plan(db, "1mib", &["--data", "1MiB"]);
    voucher(db, "D1", "1mib");
    let server = Server::start(db);
    let mut c = Client::new();
    let r = expect_accept(c.login(server.auth, "D1", Cred::Pap("D1"), Some(MAC1)));
    assert_eq!(
        r.vsa_u32(attr::mikrotik::TOTAL_LIMIT),
        Some(1024 * 1024),
        "bytes left"
    );
    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::START,
        "D1",
        "data-1",
        Some(MAC1),
        0,
        0,
        0,
    ));
    // Upload + download together reach the quota.
    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::STOP,
        "D1",
        "data-1",
        Some(MAC1),
        30,
        524_288,
        524_288,
    ));
    let v = db.voucher_json("D1");
    assert_eq!(v["used_bytes"], 1_048_576, "{v}");
    expect_reject(
        c.login(server.auth, "D1", Cred::Pap("D1"), Some(MAC1)),
        "No data left on this voucher",
    );
    assert!(server.stop().success());
}

fn mac_lock_keeps_the_first_device(db: &TestDb) {
    db.setup_basic();
    plan(db, "locked", &["--time", "1h", "--mac-lock"]);
    voucher(db, "M1", "locked");
    let server = Server::start(db);
    let mut c = Client::new();
    expect_accept(c.login(server.auth, "M1", Cred::Pap("M1"), Some(MAC1)));
    // On SQLite the binding is written just after the reply (ARCHITECTURE.md,
    // "Durability"): wait for it rather than race it.
    let bound = wait_until(
        "the MAC binding to be stored",
        Duration::from_secs(5),
        || {
            let v = db.voucher_json("M1");
            (!v["bound_mac"].is_null()).then(|| v["bound_mac"].clone())
        },
    );
    assert_eq!(bound, MAC1);
    expect_reject(
        c.login(server.auth, "M1", Cred::Pap("M1"), Some(MAC2)),
        "This voucher is locked to another device",
    );
    // The owner logs in again, also with the MAC written another way.
    expect_accept(c.login(server.auth, "M1", Cred::Pap("M1"), Some(MAC1)));
    expect_accept(c.login(
        server.auth,
        "M1",
        Cred::Pap("M1"),
        Some("aa-bb-cc-00-00-01"),
    ));
    assert!(server.stop().success());
}

fn shared_users_limit_until_stop(db: &TestDb) {
    db.setup_basic();
    plan(db, "single", &["--time", "1h", "--shared-users", "1"]);
    voucher(db, "S1", "single");
    let server = Server::start(db);
    let mut c = Client::new();
    expect_accept(c.login(server.auth, "S1", Cred::Pap("S1"), Some(MAC1)));
    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::START,
        "S1",
        "shared-1",
        Some(MAC1),
        0,
        0,
        0,
    ));
    expect_reject(
        c.login(server.auth, "S1", Cred::Pap("S1"), Some(MAC2)),
        "This voucher is already in use on another device",
    );
    // The Start took over the accept's session row, so the Stop ends the only
    // live session of the first device and the second one may log in.
    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::STOP,
        "S1",
        "shared-1",
        Some(MAC1),
        10,
        100,
        100,
    ));
    expect_accept(c.login(server.auth, "S1", Cred::Pap("S1"), Some(MAC2)));
    // ... and now the first device is the second user.
    expect_reject(
        c.login(server.auth, "S1", Cred::Pap("S1"), Some(MAC1)),
        "This voucher is already in use on another device",
    );
    assert_eq!(
        server.wait_metric(&rejects("shared_users_limit"), 2.0, WAIT),
        2.0
    );
    assert!(server.stop().success());
}

fn unknown_nas_is_dropped_and_counted(db: &TestDb) {
    db.setup_basic();
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "U1", "1h");
    let server = Server::start(db);
    // Only 127.0.0.1 is a NAS; 127.0.0.2 is another loopback source.
    let mut stranger = Client::bind("127.0.0.2:0", SECRET);
    let (req, _) = stranger.access_request("U1", Cred::Pap("U1"), Some(MAC1), true);
    expect_dropped(
        &server,
        &stranger,
        server.auth,
        &req,
        "unknown",
        "unknown_nas",
    );
    let acct = stranger.accounting_request(
        attr::acct_status::START,
        "U1",
        "stranger-1",
        Some(MAC1),
        0,
        0,
        0,
        &[],
    );
    expect_dropped(
        &server,
        &stranger,
        server.acct,
        &acct,
        "unknown",
        "unknown_nas",
    );
    assert!(db.session_json("stranger-1").is_none());
    // The NAS itself is still served.
    expect_accept(Client::new().login(server.auth, "U1", Cred::Pap("U1"), Some(MAC1)));
    assert!(server.stop().success());
}

fn message_authenticator_is_enforced(db: &TestDb) {
    db.setup_basic();
    // An old router that cannot send Message-Authenticator, exempted explicitly.
    db.cli(&[
        "nas",
        "add",
        "--name",
        "legacy",
        "--address",
        "127.0.0.3",
        "--secret",
        SECRET,
        "--no-require-message-authenticator",
    ]);
    plan(db, "1h", &["--time", "1h", "--shared-users", "5"]);
    voucher(db, "MA1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();

    // Forged: one bit of the Message-Authenticator value flipped. It is the first
    // attribute, so its value sits at offset 22..38.
    let (mut req, _) = c.access_request("MA1", Cred::Pap("MA1"), Some(MAC1), true);
    assert_eq!(req[20], attr::MESSAGE_AUTHENTICATOR);
    req[30] ^= 0x01;
    expect_dropped(
        &server,
        &c,
        server.auth,
        &req,
        "hotspot1",
        "bad_message_authenticator",
    );

    // Wrong shared secret: the Message-Authenticator does not verify either.
    let mut wrong = Client::with_secret("not-the-secret-42");
    let (req, _) = wrong.access_request("MA1", Cred::Pap("MA1"), Some(MAC1), true);
    expect_dropped(
        &server,
        &wrong,
        server.auth,
        &req,
        "hotspot1",
        "bad_message_authenticator",
    );

    // Missing on a NAS that requires it (the default; BlastRADIUS).
    let (req, _) = c.access_request("MA1", Cred::Pap("MA1"), Some(MAC1), false);
    expect_dropped(
        &server,
        &c,
        server.auth,
        &req,
        "hotspot1",
        "missing_message_authenticator",
    );

    // The exempt NAS is answered without one, and the answer still carries it.
    let mut legacy = Client::bind("127.0.0.3:0", SECRET);
    let (req, auth) = legacy.access_request("MA1", Cred::Pap("MA1"), Some(MAC2), false);
    expect_accept(legacy.exchange(server.auth, &req, &auth));
    // Exempt from sending one, not from a wrong one.
    let (mut req, _) = legacy.access_request("MA1", Cred::Pap("MA1"), Some(MAC2), true);
    req[30] ^= 0x01;
    expect_dropped(
        &server,
        &legacy,
        server.auth,
        &req,
        "legacy",
        "bad_message_authenticator",
    );

    // A correct request from the strict NAS is still answered.
    expect_accept(c.login(server.auth, "MA1", Cred::Pap("MA1"), Some(MAC1)));
    assert!(server.stop().success());
}

fn accounting_with_bad_authenticator_is_dropped(db: &TestDb) {
    db.setup_basic();
    let server = Server::start(db);
    let mut c = Client::new();
    let mut req = c.accounting_request(
        attr::acct_status::START,
        "BA1",
        "bad-auth-1",
        Some(MAC1),
        0,
        0,
        0,
        &[],
    );
    req[4] ^= 0x01;
    expect_dropped(
        &server,
        &c,
        server.acct,
        &req,
        "hotspot1",
        "bad_authenticator",
    );
    let mut wrong = Client::with_secret("not-the-secret-42");
    let req = wrong.accounting_request(
        attr::acct_status::START,
        "BA1",
        "bad-auth-2",
        Some(MAC1),
        0,
        0,
        0,
        &[],
    );
    expect_dropped(
        &server,
        &wrong,
        server.acct,
        &req,
        "hotspot1",
        "bad_authenticator",
    );
    assert!(db.session_json("bad-auth-1").is_none());
    assert!(db.session_json("bad-auth-2").is_none());
    // The same record, correctly signed, is stored.
    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::START,
        "BA1",
        "bad-auth-1",
        Some(MAC1),
        0,
        0,
        0,
    ));
    assert!(db.session_json("bad-auth-1").is_some());
    assert!(server.stop().success());
}

fn duplicates_get_the_cached_reply(db: &TestDb) {
    db.setup_basic();
    plan(db, "1h", &["--time", "1h", "--data", "1GiB"]);
    voucher(db, "DUP1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();
    let sample = "rrnet_radius_duplicates_answered_total{nas=\"hotspot1\"}";

    let (req, auth) = c.access_request("DUP1", Cred::Pap("DUP1"), Some(MAC1), true);
    let first = expect_accept(c.exchange(server.auth, &req, &auth));
    let again = expect_accept(c.exchange(server.auth, &req, &auth));
    assert_eq!(
        first.bytes, again.bytes,
        "retransmission answered byte for byte"
    );
    assert_eq!(server.metric(sample), Some(1.0));

    let req = c.accounting_request(
        attr::acct_status::INTERIM_UPDATE,
        "DUP1",
        "dup-1",
        Some(MAC1),
        60,
        1000,
        1000,
        &[],
    );
    let first = c.send_accounting(server.acct, &req, Duration::from_millis(1500));
    let again = c.send_accounting(server.acct, &req, Duration::from_millis(1500));
    assert_eq!(first.expect("answer").bytes, again.expect("answer").bytes);
    assert_eq!(server.metric(sample), Some(2.0));
    assert_eq!(db.voucher_json("DUP1")["used_bytes"], 2000);
    assert!(server.stop().success());
}

fn status_server_on_both_ports(db: &TestDb) {
    db.setup_basic();
    let server = Server::start(db);
    let mut c = Client::new();

    // RFC 5997 §3: Access-Accept on the authentication port...
    let (req, auth) = c.status_server(true);
    let r = c
        .exchange(server.auth, &req, &auth)
        .expect("answer on auth");
    assert_eq!(r.code(), Code::AccessAccept);
    // ... Accounting-Response on the accounting port, both signed.
    let (req, auth) = c.status_server(true);
    let r = c
        .exchange(server.acct, &req, &auth)
        .expect("answer on acct");
    assert_eq!(r.code(), Code::AccountingResponse);
    assert_eq!(
        verify_response(&r.bytes, &auth, &c.secret, true),
        Ok(Code::AccountingResponse),
        "Message-Authenticator on the accounting port's reply"
    );

    // Status-Server without Message-Authenticator is never answered.
    let (req, _) = c.status_server(false);
    expect_dropped(
        &server,
        &c,
        server.auth,
        &req,
        "hotspot1",
        "missing_message_authenticator",
    );
    let (req, _) = c.status_server(false);
    expect_dropped(
        &server,
        &c,
        server.acct,
        &req,
        "hotspot1",
        "missing_message_authenticator",
    );
    assert!(server.stop().success());
}

fn accounting_lifecycle_is_stored(db: &TestDb) {
    db.setup_basic();
    plan(db, "open", &["--interim", "1m"]);
    voucher(db, "A1", "open");
    let server = Server::start(db);
    let mut c = Client::new();
    const GIB: u64 = 1 << 30;
    expect_accept(c.login(server.auth, "A1", Cred::Pap("A1"), Some(MAC1)));
    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::START,
        "A1",
        "acct-1",
        Some(MAC1),
        0,
        0,
        0,
    ));
    let s = db.session_json("acct-1").expect("session stored");
    assert_eq!(s["state"], "open", "{s}");
    assert_eq!(s["mac"], MAC1, "{s}");

    // Counters past 4 GiB arrive split into octets + gigawords.
    let (input, output) = (5 * GIB + 123, 2 * GIB + 7);
    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::INTERIM_UPDATE,
        "A1",
        "acct-1",
        Some(MAC1),
        120,
        input,
        output,
    ));
    let s = db.session_json("acct-1").unwrap();
    assert_eq!(s["state"], "open", "{s}");
    assert_eq!(s["session_time"], 120, "{s}");
    assert_eq!(s["input_octets"], input, "{s}");
    assert_eq!(s["output_octets"], output, "{s}");
    let v = db.voucher_json("A1");
    assert_eq!(v["used_seconds"], 120, "{v}");
    assert_eq!(v["used_bytes"], input + output, "{v}");

    // The NAS resends the same interim with Acct-Delay-Time: a new packet (new
    // authenticator, so not a duplicate) carrying the same counters.
    let resent = c.accounting_request(
        attr::acct_status::INTERIM_UPDATE,
        "A1",
        "acct-1",
        Some(MAC1),
        120,
        input,
        output,
        &[(attr::ACCT_DELAY_TIME, 3u32.to_be_bytes().to_vec())],
    );
    expect_acct_response(c.send_accounting(server.acct, &resent, Duration::from_millis(1500)));
    let v = db.voucher_json("A1");
    assert_eq!(v["used_seconds"], 120, "counted once: {v}");
    assert_eq!(v["used_bytes"], input + output, "counted once: {v}");

    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::INTERIM_UPDATE,
        "A1",
        "acct-1",
        Some(MAC1),
        180,
        input + 1000,
        output,
    ));
    let stop = c.accounting_request(
        attr::acct_status::STOP,
        "A1",
        "acct-1",
        Some(MAC1),
        200,
        input + 3000,
        output + 500,
        &[(attr::ACCT_TERMINATE_CAUSE, 1u32.to_be_bytes().to_vec())],
    );
    expect_acct_response(c.send_accounting(server.acct, &stop, Duration::from_millis(1500)));
    let s = db.session_json("acct-1").unwrap();
    assert_eq!(s["state"], "closed", "{s}");
    assert_eq!(s["terminate_cause"], "User-Request", "{s}");
    assert_eq!(s["session_time"], 200, "{s}");
    let v = db.voucher_json("A1");
    assert_eq!(v["used_seconds"], 200, "{v}");
    assert_eq!(v["used_bytes"], input + output + 3500, "{v}");
    let listed = v["sessions"]
        .as_array()
        .expect("voucher show lists sessions");
    assert!(
        listed.iter().any(|s| s["acct_session_id"] == "acct-1"),
        "{v}"
    );

    // Accounting-On: the NAS restarted, so its open sessions are over.
    for sid in ["acct-2", "acct-3"] {
        expect_acct_response(c.account(
            server.acct,
            attr::acct_status::START,
            "A1",
            sid,
            Some(MAC1),
            0,
            0,
            0,
        ));
        assert_eq!(db.session_json(sid).unwrap()["state"], "open");
    }
    let on = accounting_on(&c);
    expect_acct_response(c.send_accounting(server.acct, &on, Duration::from_millis(1500)));
    for sid in ["acct-2", "acct-3"] {
        let s = db.session_json(sid).unwrap();
        assert_eq!(s["state"], "closed", "{s}");
        assert_eq!(s["terminate_cause"], "accounting-on", "{s}");
    }
    // A session that had ended keeps its own cause.
    assert_eq!(
        db.session_json("acct-1").unwrap()["terminate_cause"],
        "User-Request"
    );
    assert!(server.stop().success());
}

fn nas_changes_are_picked_up_while_running(db: &TestDb) {
    db.setup_basic();
    plan(db, "1h", &["--time", "1h", "--shared-users", "5"]);
    voucher(db, "N1", "1h");
    let server = Server::start(db);
    let late_secret = "late-router-secret";
    let mut late = Client::bind("127.0.0.4:0", late_secret);
    let (req, _) = late.access_request("N1", Cred::Pap("N1"), Some(MAC1), true);
    expect_dropped(&server, &late, server.auth, &req, "unknown", "unknown_nas");

    db.cli(&[
        "nas",
        "add",
        "--name",
        "late",
        "--address",
        "127.0.0.4",
        "--secret",
        late_secret,
    ]);
    let r = wait_until("the new NAS to be answered", WAIT, || {
        let (req, auth) = late.access_request("N1", Cred::Pap("N1"), Some(MAC1), true);
        late.exchange_within(server.auth, &req, &auth, Duration::from_millis(250))
    });
    expect_accept(Some(r));

    db.cli(&["nas", "remove", "late"]);
    let unknown = drops("unknown", "unknown_nas");
    wait_until("the removed NAS to be ignored", WAIT, || {
        let before = server.metric_or_zero(&unknown);
        let (req, auth) = late.access_request("N1", Cred::Pap("N1"), Some(MAC1), true);
        let reply = late.exchange_within(server.auth, &req, &auth, Duration::from_millis(250));
        (reply.is_none() && server.metric_or_zero(&unknown) > before).then_some(())
    });
    // The remaining NAS is unaffected by the reloads.
    expect_accept(Client::new().login(server.auth, "N1", Cred::Pap("N1"), Some(MAC2)));
    assert!(server.stop().success());
}

fn sigterm_stops_cleanly(db: &TestDb) {
    db.setup_basic();
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "G1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();
    expect_accept(c.login(server.auth, "G1", Cred::Pap("G1"), Some(MAC1)));
    expect_acct_response(c.account(
        server.acct,
        attr::acct_status::START,
        "G1",
        "term-1",
        Some(MAC1),
        0,
        0,
        0,
    ));
    let logs = server.logs.clone();
    let status = server.stop();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    // The log reader thread may lag the exit by a moment.
    wait_until("the shutdown to be logged", WAIT, || {
        logs.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("\"message\":\"stopped\""))
            .then_some(())
    });
    // Stopping the server does not end the hotspot's sessions: they stay open
    // for the next start (or for another instance) to keep accounting.
    assert_eq!(db.session_json("term-1").unwrap()["state"], "open");
}
