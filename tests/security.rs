//! Attacks from hostile networks and customers, as regressions: guessing codes
//! from one device, text a database cannot store, Proxy-State that fills the
//! reply, packets forged from a NAS's address, one NAS flooding another out.
//! (Slow and idle HTTP clients: tests/security_http.rs.)
mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rrnet_radius::proto::{attr, Code, PacketBuilder};

const GUARD_MESSAGE: &str = "Too many failed logins";

fn guard_server(db: &TestDb) -> Server {
    Server::start_with(
        db,
        ServerOptions {
            server_toml: "housekeeping_interval = \"1s\"\nnas_reload_interval = \"1s\"\n".into(),
            ..Default::default()
        },
    )
}

/// One device trying codes is stopped after a few tries, with a Reply-Message
/// that says to wait; the refusals cost no storage work and are summed up in
/// one auth-log row; other devices and customers are not affected.
fn guessing_from_one_device_is_throttled(db: TestDb) {
    db.setup_basic();
    db.cli(&["plan", "add", "--name", "p", "--time", "1h"]);
    db.cli(&["voucher", "add", "REAL0001", "--plan", "p"]);
    let server = guard_server(&db);
    let mut c = Client::new();
    let attacker = Some("AA:BB:CC:00:00:01");
    let mut messages = Vec::new();
    for i in 0..60 {
        let code = format!("GUESS{i:03}");
        let r = c
            .login(server.auth, &code, Cred::Pap(&code), attacker)
            .expect("every guess is answered");
        assert_eq!(r.code(), Code::AccessReject);
        messages.push(r.reply_message().unwrap_or_default());
    }
    // The first five are decided (unknown code), every later one is refused.
    for m in &messages[..5] {
        assert_eq!(m, "Unknown voucher code");
    }
    for m in &messages[5..] {
        assert!(m.starts_with(GUARD_MESSAGE), "{m}");
    }
    // Even the right code is refused from the blocked device.
    let r = c
        .login(server.auth, "REAL0001", Cred::Pap("REAL0001"), attacker)
        .unwrap();
    assert!(r.reply_message().unwrap().starts_with(GUARD_MESSAGE));
    // Another device: a mistyped code is decided, then the right one accepted.
    let other = Some("AA:BB:CC:00:00:02");
    let r = c
        .login(server.auth, "REAL0002", Cred::Pap("REAL0002"), other)
        .unwrap();
    assert_eq!(r.reply_message().as_deref(), Some("Unknown voucher code"));
    let r = c
        .login(server.auth, "REAL0001", Cred::Pap("REAL0001"), other)
        .unwrap();
    assert_eq!(r.code(), Code::AccessAccept);

    assert_eq!(
        server.metric("rrnet_radius_guard_refused_total{nas=\"hotspot1\",scope=\"device\"}"),
        Some(56.0)
    );
    assert_eq!(
        server.metric("rrnet_radius_guard_started_total{scope=\"device\"}"),
        Some(1.0)
    );
    // The 56 refusals become one auth-log row (flushed within a second or two),
    // beside the five decided rejects.
    let rows = wait_until("the guard's auth-log row", Duration::from_secs(10), || {
        let out = db.cli(&["auth-log", "--nas", "hotspot1", "--format", "json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        rows.iter()
            .any(|r| r["reason"] == "too_many_failures")
            .then_some(rows)
    });
    let guard_rows: Vec<_> = rows
        .iter()
        .filter(|r| r["reason"] == "too_many_failures")
        .collect();
    let summed: i64 = guard_rows
        .iter()
        .map(|r| r["repeats"].as_i64().unwrap())
        .sum();
    assert_eq!(summed, 56, "{guard_rows:?}");
    assert!(guard_rows.len() <= 3, "one row per flush: {guard_rows:?}");
    assert_eq!(guard_rows[0]["mac"], "AA:BB:CC:00:00:01");
    assert_eq!(
        rows.iter()
            .filter(|r| r["reason"] == "unknown_voucher")
            .count(),
        6
    );
    let text = db.cli(&["auth-log", "--nas", "hotspot1"]);
    assert!(text.contains("times until"), "{text}");
}

#[test]
fn guessing_is_throttled_sqlite() {
    guessing_from_one_device_is_throttled(TestDb::sqlite());
}

#[test]
fn guessing_is_throttled_postgres() {
    let Some(db) = TestDb::postgres() else { return };
    guessing_from_one_device_is_throttled(db);
}

/// A NAS whose devices keep changing MAC is guarded as a whole: devices that
/// failed there are refused and new ones rationed, while a device that logged
/// in before still gets in.
#[test]
fn many_devices_guessing_guard_the_nas() {
    let db = TestDb::sqlite();
    db.setup_basic();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "p",
        "--time",
        "1h",
        "--shared-users",
        "5",
    ]);
    db.cli(&["voucher", "add", "KNOWN001", "--plan", "p"]);
    let server = Server::start_with(
        &db,
        ServerOptions {
            server_toml: "housekeeping_interval = \"1s\"\nnas_reload_interval = \"1s\"\n\
                          [guard]\nnas_failures = 20\nguarded_new_per_second = 1\n"
                .into(),
            ..Default::default()
        },
    );
    let mut c = Client::new();
    let regular = Some("AA:00:00:00:00:99");
    assert_eq!(
        c.login(server.auth, "KNOWN001", Cred::Pap("KNOWN001"), regular)
            .unwrap()
            .code(),
        Code::AccessAccept
    );
    let mut refused = 0;
    for i in 0..200 {
        let mac = format!("AA:00:00:00:{:02X}:{:02X}", i / 256, i % 256);
        let code = format!("SPRAY{i:03}");
        let r = c
            .login(server.auth, &code, Cred::Pap(&code), Some(&mac))
            .unwrap();
        if r.reply_message().unwrap().starts_with(GUARD_MESSAGE) {
            refused += 1;
        }
    }
    // 20 failures guard the NAS; after that about one new device per second.
    assert!(
        refused >= 150,
        "only {refused} of 200 sprayed guesses refused"
    );
    assert_eq!(
        server.metric("rrnet_radius_guard_started_total{scope=\"nas\"}"),
        Some(1.0)
    );
    assert_eq!(
        c.login(server.auth, "KNOWN001", Cred::Pap("KNOWN001"), regular)
            .unwrap()
            .code(),
        Code::AccessAccept,
        "a device that logged in before passes a guarded NAS"
    );
}

/// Text with a NUL byte (or not UTF-8) never reaches the database: such a
/// request is a counted `invalid_text` drop, and the good requests sent with
/// it are all answered — on PostgreSQL, where a NUL once failed whole batches.
fn nul_bytes_are_refused_at_decode(db: TestDb) {
    db.setup_basic();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "p",
        "--time",
        "1h",
        "--shared-users",
        "100",
    ]);
    db.cli(&["voucher", "add", "GOODCODE", "--plan", "p"]);
    let server = Server::start(&db);
    let done = Arc::new(AtomicBool::new(false));
    // Bad requests, sent alongside the good ones so that they share batches.
    let bad = {
        let done = done.clone();
        let auth = server.auth;
        let acct = server.acct;
        std::thread::spawn(move || {
            let mut c = Client::new();
            let mut sent = 0;
            while !done.load(Ordering::Relaxed) && sent < 500 {
                let (req, _) = c.access_request("GOOD\0CODE", Cred::Pap("x"), None, true);
                c.sock.send_to(&req, auth).unwrap();
                let req = c.accounting_request(1, "GOODCODE", "bad\0sess", None, 0, 0, 0, &[]);
                c.sock.send_to(&req, acct).unwrap();
                sent += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            sent
        })
    };
    let mut c = Client::new();
    for i in 0..50 {
        let mac = format!("AA:00:00:00:01:{i:02X}");
        let r = c
            .login(server.auth, "GOODCODE", Cred::Pap("GOODCODE"), Some(&mac))
            .expect("a good login is answered");
        assert_eq!(r.code(), Code::AccessAccept);
        let r = c
            .account(
                server.acct,
                1,
                "GOODCODE",
                &format!("good-{i}"),
                Some(&mac),
                0,
                0,
                0,
            )
            .expect("good accounting is acknowledged");
        assert_eq!(r.code(), Code::AccountingResponse);
    }
    done.store(true, Ordering::Relaxed);
    let sent = bad.join().unwrap();
    assert!(sent > 0);
    let dropped = server.wait_metric(
        "rrnet_radius_drops_total{nas=\"hotspot1\",reason=\"invalid_text\"}",
        2.0 * sent as f64,
        Duration::from_secs(5),
    );
    assert_eq!(dropped, 2.0 * sent as f64);
    assert_eq!(
        server
            .metric_or_zero("rrnet_radius_drops_total{nas=\"hotspot1\",reason=\"storage_error\"}"),
        0.0
    );
    let sessions = db.sessions_json();
    assert_eq!(
        sessions
            .iter()
            .filter(|s| s["acct_session_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("good-")))
            .count(),
        50
    );
}

#[test]
fn nul_bytes_are_refused_sqlite() {
    nul_bytes_are_refused_at_decode(TestDb::sqlite());
}

#[test]
fn nul_bytes_are_refused_postgres() {
    let Some(db) = TestDb::postgres() else { return };
    nul_bytes_are_refused_at_decode(db);
}

/// Proxy-State that leaves no room for the reply's limits gets no reply (and a
/// counted drop), never an Access-Accept without its Session-Timeout; a few
/// Proxy-States are echoed with the limits intact.
#[test]
fn proxy_state_never_crowds_out_reply_attributes() {
    let db = TestDb::sqlite();
    db.setup_basic();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "p",
        "--time",
        "1h",
        "--shared-users",
        "9",
        "--rate-limit",
        "2M/2M",
        "--data",
        "1GiB",
    ]);
    db.cli(&["voucher", "add", "PROXY001", "--plan", "p"]);
    let server = Server::start(&db);
    let c = Client::new();
    let send = |states: usize| {
        let auth: [u8; 16] = rand::random();
        let mut b = PacketBuilder::new(Code::AccessRequest, states as u8);
        b.reserve_message_authenticator();
        b.add_str(attr::USER_NAME, "PROXY001").unwrap();
        b.add_user_password(b"PROXY001", SECRET.as_bytes(), &auth)
            .unwrap();
        for i in 0..states {
            b.add(attr::PROXY_STATE, &[i as u8; 253]).unwrap();
        }
        let mut req = b.finish_access_request(&auth, SECRET.as_bytes());
        if states > 2 {
            // One more Proxy-State filling the request to 4096 bytes: its echo
            // leaves the reply 28 bytes, too few for the Accept's attributes.
            let auth: [u8; 16] = rand::random();
            let mut b = PacketBuilder::new(Code::AccessRequest, states as u8);
            b.reserve_message_authenticator();
            b.add_str(attr::USER_NAME, "PROXY001").unwrap();
            b.add_user_password(b"PROXY001", SECRET.as_bytes(), &auth)
                .unwrap();
            for i in 0..states {
                b.add(attr::PROXY_STATE, &[i as u8; 253]).unwrap();
            }
            b.add(attr::PROXY_STATE, &vec![0xee; 4096 - req.len() - 2])
                .unwrap();
            req = b.finish_access_request(&auth, SECRET.as_bytes());
            assert_eq!(req.len(), 4096);
            return c.exchange_within(server.auth, &req, &auth, Duration::from_millis(1500));
        }
        c.exchange_within(server.auth, &req, &auth, Duration::from_millis(1500))
    };
    let r = send(2).expect("answered");
    assert_eq!(r.code(), Code::AccessAccept);
    assert_eq!(r.u32(attr::SESSION_TIMEOUT), Some(3600));
    assert_eq!(
        r.packet()
            .attributes()
            .filter(|a| a.typ == attr::PROXY_STATE)
            .count(),
        2
    );
    // A request full of Proxy-State: the Accept and its limits cannot fit.
    assert!(
        send(15).is_none(),
        "no reply rather than a reply without limits"
    );
    let dropped = server.wait_metric(
        "rrnet_radius_drops_total{nas=\"hotspot1\",reason=\"reply_too_long\"}",
        1.0,
        Duration::from_secs(5),
    );
    assert_eq!(dropped, 1.0);
}

/// Anyone can send from a NAS's address: a packet that fails authentication
/// does not make the NAS look alive.
#[test]
fn forged_packets_do_not_move_last_seen() {
    let db = TestDb::sqlite();
    db.setup_basic();
    let server = Server::start(&db);
    let sample = "rrnet_radius_nas_last_seen_timestamp_seconds{nas=\"hotspot1\"}";
    let mut forger = Client::with_secret("not-the-secret");
    for _ in 0..5 {
        let (req, _) = forger.access_request("X", Cred::Pap("x"), None, true);
        forger.sock.send_to(&req, server.auth).unwrap();
    }
    server.wait_metric(
        "rrnet_radius_drops_total{nas=\"hotspot1\",reason=\"bad_message_authenticator\"}",
        5.0,
        Duration::from_secs(5),
    );
    assert_eq!(server.metric(sample), Some(0.0));
    let mut c = Client::new();
    let (status, auth) = c.status_server(true);
    assert!(c.exchange(server.auth, &status, &auth).is_some());
    assert!(server.metric(sample).unwrap() > 0.0);
}

/// One NAS sending more Access-Requests than the server decides cannot starve
/// another: the flooding NAS is held to its share of the queue (`nas_busy`),
/// and the quiet NAS's customers are answered.
#[test]
fn a_flooding_nas_does_not_starve_another() {
    let db = TestDb::sqlite();
    db.setup_basic();
    db.cli(&[
        "nas",
        "add",
        "--name",
        "quiet",
        "--address",
        "127.0.0.3",
        "--secret",
        SECRET,
    ]);
    db.cli(&[
        "plan",
        "add",
        "--name",
        "p",
        "--time",
        "1h",
        "--shared-users",
        "1000",
    ]);
    db.cli(&["voucher", "add", "QUIET001", "--plan", "p"]);
    let server = Server::start_with(
        &db,
        ServerOptions {
            // The guard would stop the flood (unknown codes) before it reaches the
            // queue; here it is off, to test the queue's fairness itself.
            server_toml: "housekeeping_interval = \"1s\"\nnas_reload_interval = \"1s\"\n\
                          max_in_flight = 512\nnas_in_flight = 128\n\
                          auth_workers = 1\nauth_batch_max = 1\n\
                          \n[guard]\ndevice_failures = 0\n"
                .into(),
            ..Default::default()
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        let auth = server.auth;
        std::thread::spawn(move || {
            let mut c = Client::new();
            // Pre-built requests: the flood costs the sender little.
            let reqs: Vec<Vec<u8>> = (0..4096)
                .map(|i| {
                    let code = format!("FLOOD{i:05}");
                    c.access_request(&code, Cred::Pap(&code), Some("AA:FF:00:00:00:01"), true)
                        .0
                })
                .collect();
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut sent = 0u64;
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(20) {
                // About 30,000/s: more than a debug build decides, less than it reads.
                for r in reqs.iter().skip((sent % 4096) as usize).take(64) {
                    let _ = sock.send_to(r, auth);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut quiet = Client::bind("127.0.0.3:0", SECRET);
    let mut answered = 0;
    let tries = 100;
    for i in 0..tries {
        let mac = format!("AA:00:00:00:02:{i:02X}");
        if quiet
            .login(server.auth, "QUIET001", Cred::Pap("QUIET001"), Some(&mac))
            .is_some_and(|r| r.code() == Code::AccessAccept)
        {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    let busy =
        server.metric_or_zero("rrnet_radius_drops_total{nas=\"hotspot1\",reason=\"nas_busy\"}");
    let kernel = server.metric_or_zero("rrnet_radius_socket_receive_drops_total{port=\"auth\"}");
    eprintln!(
        "flood sent {sent}, nas_busy drops {busy}, kernel drops {kernel}, quiet NAS answered {answered}/{tries}"
    );
    assert!(
        busy > 0.0,
        "the flood must exceed its NAS's share for this test to mean anything"
    );
    // What the kernel drops when its buffer overflows falls on both NASes alike;
    // the budget's promise is that the queue itself never refuses the quiet one.
    assert!(
        answered >= tries * 8 / 10,
        "the quiet NAS got {answered} of {tries} answered"
    );
    assert_eq!(
        server.metric_or_zero("rrnet_radius_drops_total{nas=\"quiet\",reason=\"overload\"}")
            + server.metric_or_zero("rrnet_radius_drops_total{nas=\"quiet\",reason=\"nas_busy\"}"),
        0.0
    );
}

/// Datagrams the kernel drops because the socket's receive buffer is full are
/// counted in /metrics (they never reach the server, so nothing else would).
#[test]
fn kernel_receive_drops_are_counted() {
    let db = TestDb::sqlite();
    db.setup_basic();
    let server = Server::start_with(
        &db,
        ServerOptions {
            server_toml: "housekeeping_interval = \"1s\"\nnas_reload_interval = \"1s\"\n\
                          socket_receive_buffer = \"64KiB\"\n"
                .into(),
            ..Default::default()
        },
    );
    let sample = "rrnet_radius_socket_receive_drops_total{port=\"auth\"}";
    assert_eq!(server.metric(sample), Some(0.0));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A burst far faster than one receive loop reads: 1,000-byte datagrams that
    // would be dropped as malformed anyway.
    let junk = [0u8; 1000];
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        for _ in 0..1000 {
            let _ = sock.send_to(&junk, server.auth);
        }
    }
    let dropped = server.wait_metric(sample, 1.0, Duration::from_secs(5));
    assert!(dropped >= 1.0);
}

/// `reject_delay` holds rejects back like FreeRADIUS's; accepts go at once.
#[test]
fn reject_delay_holds_rejects_back() {
    let db = TestDb::sqlite();
    db.setup_basic();
    db.cli(&["plan", "add", "--name", "p", "--time", "1h"]);
    db.cli(&["voucher", "add", "FAST0001", "--plan", "p"]);
    let server = Server::start_with(
        &db,
        ServerOptions {
            server_toml: "housekeeping_interval = \"1s\"\nnas_reload_interval = \"1s\"\n\
                          [guard]\nreject_delay = \"1s\"\n"
                .into(),
            ..Default::default()
        },
    );
    let mut c = Client::new();
    let (req, auth) = c.access_request(
        "NOSUCH01",
        Cred::Pap("NOSUCH01"),
        Some("AA:00:00:00:00:01"),
        true,
    );
    let t = Instant::now();
    let r = c
        .exchange_within(server.auth, &req, &auth, Duration::from_secs(3))
        .expect("the reject comes, late");
    assert_eq!(r.code(), Code::AccessReject);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let r = c
        .login(
            server.auth,
            "FAST0001",
            Cred::Pap("FAST0001"),
            Some("AA:00:00:00:00:02"),
        )
        .unwrap();
    assert_eq!(r.code(), Code::AccessAccept);
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}
