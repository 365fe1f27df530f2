//! What the server writes to its log, and what `auth-log` tells an operator.
//!
//! The harness runs the server at debug level with JSON logs, so every line the
//! server can write on this traffic is captured.
mod common;

use std::time::{Duration, Instant};

use common::*;
use rrnet_radius::proto::{Code, PacketBuilder};
use serde_json::Value;

const NAS: &str = "hotspot1";
const WRONG_SECRET: &str = "an-old-secret-from-2019";

fn json_lines(server: &Server) -> Vec<Value> {
    server
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn with_message<'a>(lines: &'a [Value], message: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// Wait until the server has counted `want` for a sample (drops have no reply to wait for).
fn wait_metric(server: &Server, sample: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric(sample) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{sample} = {:?}, want {want}",
            server.metric(sample)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn setup(db: &TestDb, vouchers: &[(&str, &str)]) {
    db.setup_basic();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "hour",
        "--time",
        "1h",
        "--shared-users",
        "3",
    ]);
    for (code, pw) in vouchers {
        db.cli(&["voucher", "add", code, "--plan", "hour", "--password", pw]);
    }
}

#[test]
fn no_secret_or_password_reaches_the_log() {
    let passwords = [
        ("PAPUSER", "Pap-Passw0rd-7781"),
        ("CHAPUSER", "Chap-Passw0rd-9912"),
        ("AUTHCHAP", "AuthChap-Passw0rd-4410"),
    ];
    let guessed = "Guessed-Passw0rd-3307";
    let db = TestDb::sqlite();
    setup(&db, &passwords);
    let server = Server::start(&db);
    let mut c = Client::new();
    let mac = Some("AA:BB:CC:00:10:01");

    // Accepts with each credential kind.
    let r = c.login(server.auth, "PAPUSER", Cred::Pap(passwords[0].1), mac);
    assert_eq!(r.unwrap().code(), Code::AccessAccept);
    let r = c.login(server.auth, "CHAPUSER", Cred::Chap(passwords[1].1), mac);
    assert_eq!(r.unwrap().code(), Code::AccessAccept);
    let r = c.login(
        server.auth,
        "AUTHCHAP",
        Cred::ChapNoChallenge(passwords[2].1),
        mac,
    );
    assert_eq!(r.unwrap().code(), Code::AccessAccept);
    // Rejects: a wrong password (PAP and CHAP) and an unknown code.
    let r = c.login(server.auth, "PAPUSER", Cred::Pap(guessed), mac);
    assert_eq!(r.unwrap().code(), Code::AccessReject);
    let r = c.login(server.auth, "CHAPUSER", Cred::Chap(guessed), mac);
    assert_eq!(r.unwrap().code(), Code::AccessReject);
    let r = c.login(server.auth, "NOSUCHCODE", Cred::Pap(guessed), mac);
    assert_eq!(r.unwrap().code(), Code::AccessReject);
    // Accounting: a whole session.
    for (status, time) in [(1, 0), (3, 60), (2, 120)] {
        let r = c.account(
            server.acct,
            status,
            "PAPUSER",
            "0d000001",
            mac,
            time,
            1000,
            2000,
        );
        assert_eq!(r.unwrap().code(), Code::AccountingResponse);
    }
    // Drops: wrong secret on both ports, no Message-Authenticator, malformed, unknown NAS.
    let mut wrong = Client::with_secret(WRONG_SECRET);
    let (req, _) = wrong.access_request("PAPUSER", Cred::Pap(passwords[0].1), mac, true);
    wrong.sock.send_to(&req, server.auth).unwrap();
    let req = wrong.accounting_request(3, "PAPUSER", "0d000001", mac, 1, 1, 1, &[]);
    wrong.sock.send_to(&req, server.acct).unwrap();
    let (req, _) = c.access_request("PAPUSER", Cred::Pap(passwords[0].1), mac, false);
    c.sock.send_to(&req, server.auth).unwrap();
    c.sock.send_to(&[1, 2, 0, 19], server.auth).unwrap();
    let mut stranger = Client::bind("127.0.0.2:0", SECRET);
    let (req, _) = stranger.access_request("PAPUSER", Cred::Pap(passwords[0].1), mac, true);
    stranger.sock.send_to(&req, server.auth).unwrap();
    // Status-Server.
    let a: [u8; 16] = rand::random();
    let mut b = PacketBuilder::new(Code::StatusServer, 1);
    b.reserve_message_authenticator();
    let req = b.finish_access_request(&a, SECRET.as_bytes());
    assert!(c.exchange(server.auth, &req, &a).is_some());

    wait_metric(
        &server,
        "rrnet_radius_drops_total{nas=\"unknown\",reason=\"unknown_nas\"}",
        1.0,
    );
    wait_metric(
        &server,
        "rrnet_radius_drops_total{nas=\"hotspot1\",reason=\"malformed\"}",
        1.0,
    );
    // Read the log after a clean stop, so shutdown lines are checked too.
    let captured = server.logs.clone();
    assert!(server.stop().success());
    std::thread::sleep(Duration::from_millis(200));
    let logs = captured.lock().unwrap().join("\n");
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.iter().any(|v| v["fields"]["message"] == "stopped"));

    let mut forbidden: Vec<String> = vec![SECRET.into(), WRONG_SECRET.into(), guessed.into()];
    forbidden.extend(passwords.iter().map(|(_, pw)| pw.to_string()));
    for s in forbidden {
        assert!(!logs.contains(&s), "the log contains {s:?}");
        // Nor as hex, as a packet dump would show it.
        let hex_lower = hex::encode(s.as_bytes());
        assert!(
            !logs.to_lowercase().contains(&hex_lower),
            "the log contains {s:?} as hex"
        );
    }

    // One line per reject, with its reason and NAS.
    let rejects = with_message(&lines, "reject");
    assert_eq!(rejects.len(), 3, "{logs}");
    let mut reasons: Vec<&str> = rejects
        .iter()
        .map(|v| v["fields"]["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["unknown_voucher", "wrong_password", "wrong_password"]
    );
    assert!(rejects.iter().all(|v| v["fields"]["nas"] == NAS));
    assert!(rejects
        .iter()
        .all(|v| v["fields"]["mac"] == "AA:BB:CC:00:10:01"));

    // One line per drop, with its reason and NAS.
    let drops = with_message(&lines, "dropped request");
    let mut seen: Vec<(String, String)> = drops
        .iter()
        .map(|v| {
            (
                v["fields"]["nas"].as_str().unwrap().to_string(),
                v["fields"]["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let want = [
        (NAS, "bad_authenticator"),
        (NAS, "bad_message_authenticator"),
        (NAS, "malformed"),
        (NAS, "missing_message_authenticator"),
        ("unknown", "unknown_nas"),
    ];
    assert_eq!(
        seen,
        want.map(|(n, r)| (n.to_string(), r.to_string())),
        "{logs}"
    );
    assert!(drops.iter().all(|v| v["level"] == "WARN"));
}

#[test]
fn drop_lines_are_rate_limited_and_the_rest_reported() {
    let db = TestDb::sqlite();
    db.setup_basic();
    let server = Server::start(&db);
    let c = Client::new();
    let flood = 300;
    for i in 0..flood {
        // Framing error: the Length field is below the RADIUS minimum.
        c.sock.send_to(&[1, i as u8, 0, 19], server.auth).unwrap();
        if i % 50 == 49 {
            // Paced so the kernel's receive buffer does not overflow; well
            // within one or two seconds either way.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let sample = "rrnet_radius_drops_total{nas=\"hotspot1\",reason=\"malformed\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let counted = loop {
        let n = server.metric(sample).unwrap_or(0.0);
        if n >= flood as f64 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(counted >= 250.0, "most of the flood arrives: {counted}");
    // A later drop, in a new second, is logged with the count held back.
    std::thread::sleep(Duration::from_millis(1100));
    c.sock.send_to(&[1, 0, 0, 19], server.auth).unwrap();
    wait_metric(&server, sample, counted + 1.0);
    std::thread::sleep(Duration::from_millis(200));

    let lines = json_lines(&server);
    let logged = with_message(&lines, "dropped request").len() as f64;
    let suppressed: f64 = lines
        .iter()
        .filter_map(|v| v["fields"]["suppressed"].as_u64())
        .sum::<u64>() as f64;
    // 20 lines a second; the flood may straddle a second boundary or two.
    assert!(logged <= 60.0, "{logged} drop lines for {counted} drops");
    assert!(suppressed > 0.0);
    // Every drop is either logged or reported as suppressed.
    assert_eq!(logged + suppressed, counted + 1.0);
    assert!(server.stop().success());
}

#[test]
fn auth_log_explains_rejects() {
    let db = TestDb::sqlite();
    setup(&db, &[("K7M2QX9P", "pw-K7M2QX9P"), ("OTHER", "pw-OTHER")]);
    let server = Server::start(&db);
    let mut c = Client::new();
    let mac = Some("aa-bb-cc-00-20-01");
    let r = c.login(server.auth, "K7M2QX9P", Cred::Pap("nope-nope"), mac);
    assert_eq!(r.unwrap().code(), Code::AccessReject);
    let r = c.login(server.auth, "K7M2QX9P", Cred::Pap("pw-K7M2QX9P"), mac);
    assert_eq!(r.unwrap().code(), Code::AccessAccept);
    let r = c.login(server.auth, "OTHER", Cred::Pap("pw-OTHER"), mac);
    assert_eq!(r.unwrap().code(), Code::AccessAccept);
    db.cli(&["voucher", "revoke", "K7M2QX9P"]);
    let_admin_change_land();
    let r = c.login(server.auth, "K7M2QX9P", Cred::Pap("pw-K7M2QX9P"), mac);
    assert_eq!(r.unwrap().code(), Code::AccessReject);

    // Auth events are written just after the replies: wait for the third.
    let (out, events) = wait_until("three auth events", Duration::from_secs(10), || {
        let out = db.cli(&["auth-log", "--user", "K7M2QX9P", "--format", "json"]);
        let events: Vec<Value> = serde_json::from_str(&out).unwrap();
        (events.len() >= 3).then_some((out, events))
    });
    assert_eq!(events.len(), 3, "{out}");
    // Oldest first.
    let results: Vec<_> = events
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["reject", "accept", "reject"]);
    assert_eq!(events[0]["reason"], "wrong_password");
    assert_eq!(events[0]["message"], "Wrong password for this voucher");
    assert_eq!(events[1]["reason"], Value::Null);
    assert_eq!(events[2]["reason"], "revoked");
    assert_eq!(events[2]["message"], "This voucher has been revoked");
    for e in &events {
        assert_eq!(e["nas"], NAS);
        assert_eq!(e["user"], "K7M2QX9P");
        // Normalised from the dash form the request carried.
        assert_eq!(e["mac"], "AA:BB:CC:00:20:01");
        let t = e["time"].as_str().unwrap();
        assert!(
            t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "{t}"
        );
    }

    // The readable form carries the same facts.
    let text = db.cli(&["auth-log", "--user", "K7M2QX9P", "--since", "1h"]);
    assert!(text.starts_with("TIME"), "{text}");
    assert!(text.contains("This voucher has been revoked"), "{text}");
    assert!(text.contains("AA:BB:CC:00:20:01"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");

    // Filters: NAS, limit (keeps the newest), since.
    let all: Vec<Value> =
        serde_json::from_str(&db.cli(&["auth-log", "--nas", NAS, "--format", "json"])).unwrap();
    assert_eq!(all.len(), 4);
    let none: Vec<Value> =
        serde_json::from_str(&db.cli(&["auth-log", "--nas", "elsewhere", "--format", "json"]))
            .unwrap();
    assert!(none.is_empty());
    let newest: Vec<Value> =
        serde_json::from_str(&db.cli(&["auth-log", "--limit", "1", "--format", "json"])).unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["reason"], "revoked");
    let future: Vec<Value> = serde_json::from_str(&db.cli(&[
        "auth-log",
        "--since",
        "2999-01-01T00:00:00Z",
        "--format",
        "json",
    ]))
    .unwrap();
    assert!(future.is_empty());
    let bad = db.cli_output(&["auth-log", "--since", "yesterday"]);
    assert!(!bad.status.success());

    // Retention is documented where the operator looks.
    let help = db.cli(&["auth-log", "--help"]);
    assert!(help.contains("auth_log_retention"), "{help}");
    assert!(server.stop().success());
}

#[test]
fn auth_log_retention_prunes_in_the_background() {
    let db = TestDb::sqlite();
    setup(&db, &[("OLDLOGIN", "pw-OLDLOGIN")]);
    let server = Server::start_with(
        &db,
        ServerOptions {
            server_toml: "housekeeping_interval = \"1s\"\nnas_reload_interval = \"1s\"\nauth_log_retention = \"2s\"\n".into(),
            ..ServerOptions::default()
        },
    );
    let mut c = Client::new();
    let r = c.login(server.auth, "OLDLOGIN", Cred::Pap("pw-OLDLOGIN"), None);
    assert_eq!(r.unwrap().code(), Code::AccessAccept);
    let count = || {
        serde_json::from_str::<Vec<Value>>(&db.cli(&["auth-log", "--format", "json"]))
            .unwrap()
            .len()
    };
    wait_until("the login's auth event", Duration::from_secs(10), || {
        (count() >= 1).then_some(())
    });
    assert_eq!(count(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() != 0 {
        assert!(Instant::now() < deadline, "the auth event was not pruned");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(server.stop().success());
}
