//! Known traffic in, exact counters out: every reject reason, every drop reason
//! a client can cause, accounting, duplicates and Status-Server, counted by the
//! real binary and read back from `/metrics`.
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rrnet_radius::proto::{attr, Code, PacketBuilder};

const NAS: &str = "hotspot1";
const WRONG_SECRET: &str = "not-the-secret-42";

/// `/metrics` parsed into (name, sorted labels) → value.
struct Scrape(BTreeMap<(String, String), f64>);

impl Scrape {
    fn parse(body: &str) -> Scrape {
        let mut m = BTreeMap::new();
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut pairs: Vec<&str> = labels.split(',').filter(|p| !p.is_empty()).collect();
            pairs.sort_unstable();
            m.insert(
                (name.to_string(), pairs.join(",")),
                value.parse::<f64>().expect("numeric sample"),
            );
        }
        Scrape(m)
    }

    /// A sample by name and labels (any order); `None` when the series is absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        pairs.sort_unstable();
        self.0.get(&(name.to_string(), pairs.join(","))).copied()
    }

    /// Every series of `name` with a non-zero value, as "labels=value".
    fn nonzero(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|((n, _), v)| n == name && **v != 0.0)
            .map(|((_, l), v)| format!("{l}={v}"))
            .collect()
    }
}

fn scrape(server: &Server) -> Scrape {
    let (status, body) = server.get_metrics_path("/metrics");
    assert_eq!(status, 200);
    Scrape::parse(&body)
}

/// Counters move after the reply is sent (or, for drops, with no reply at all),
/// so wait until `ready` holds, then give stragglers a moment to over-count.
fn settled(server: &Server, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(server);
        if ready(&s) || Instant::now() > deadline {
            std::thread::sleep(Duration::from_millis(300));
            return scrape(server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn code(r: Option<Reply>) -> Code {
    r.expect("a reply").code()
}

fn send(c: &Client, to: std::net::SocketAddr, bytes: &[u8]) {
    c.sock.send_to(bytes, to).unwrap();
}

#[test]
fn counters_match_known_traffic() {
    let db = TestDb::sqlite();
    db.setup_basic();
    for plan in [
        &["--name", "hour", "--time", "1h"][..],
        &["--name", "minute", "--time", "60s"],
        &["--name", "kilobyte", "--data", "1000"],
        &["--name", "locked", "--mac-lock"],
        &["--name", "old", "--expires", "2001-01-01T00:00:00Z"],
        &["--name", "instant", "--validity", "0"],
        &["--name", "elsewhere", "--sites", "far-away"],
    ] {
        let mut args = vec!["plan", "add"];
        args.extend_from_slice(plan);
        db.cli(&args);
    }
    for (code, plan) in [
        ("ACCEPT1", "hour"),
        ("ACCEPT2", "hour"),
        ("REVOKED", "hour"),
        ("SHARED", "hour"),
        ("MINUTE", "minute"),
        ("KILOBYTE", "kilobyte"),
        ("LOCKED", "locked"),
        ("NOMAC", "locked"),
        ("OLD", "old"),
        ("INSTANT", "instant"),
        ("ELSEWHERE", "elsewhere"),
    ] {
        let pw = format!("pw-{code}");
        db.cli(&["voucher", "add", code, "--plan", plan, "--password", &pw]);
    }
    db.cli(&["voucher", "revoke", "REVOKED"]);
    let server = Server::start(&db);
    let mut c = Client::new();
    let auth = server.auth;
    let acct = server.acct;
    let mac_a = Some("AA:BB:CC:00:00:01");
    let mac_b = Some("AA:BB:CC:00:00:02");

    // Zero before any traffic: per-NAS series exist so increase() sees the first event.
    let s = scrape(&server);
    for reason in ["bad_authenticator", "malformed", "storage_error"] {
        assert_eq!(
            s.get(
                "rrnet_radius_drops_total",
                &[("nas", NAS), ("reason", reason)]
            ),
            Some(0.0),
            "{reason}"
        );
    }
    assert_eq!(
        s.get(
            "rrnet_radius_rejects_total",
            &[("nas", NAS), ("reason", "wrong_password")]
        ),
        Some(0.0)
    );
    assert_eq!(
        s.get(
            "rrnet_radius_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("os", std::env::consts::OS),
                ("arch", std::env::consts::ARCH)
            ]
        ),
        Some(1.0)
    );

    // ---- accepts (5, of which 5 first logins) ----
    assert_eq!(
        code(c.login(auth, "ACCEPT1", Cred::Pap("pw-ACCEPT1"), mac_a)),
        Code::AccessAccept
    );
    assert_eq!(
        code(c.login(auth, "ACCEPT2", Cred::Chap("pw-ACCEPT2"), mac_a)),
        Code::AccessAccept
    );
    assert_eq!(
        code(c.login(auth, "SHARED", Cred::Pap("pw-SHARED"), mac_a)),
        Code::AccessAccept
    );
    assert_eq!(
        code(c.login(auth, "MINUTE", Cred::Pap("pw-MINUTE"), mac_a)),
        Code::AccessAccept
    );
    assert_eq!(
        code(c.login(auth, "KILOBYTE", Cred::Pap("pw-KILOBYTE"), mac_a)),
        Code::AccessAccept
    );
    assert_eq!(
        code(c.login(auth, "LOCKED", Cred::Pap("pw-LOCKED"), mac_a)),
        Code::AccessAccept
    );
    // A second login of the same device is not a first login.
    assert_eq!(
        code(c.login(auth, "ACCEPT1", Cred::Pap("pw-ACCEPT1"), mac_a)),
        Code::AccessAccept
    );

    // ---- accounting: use up MINUTE's time and KILOBYTE's data ----
    for (user, session) in [("MINUTE", "0a000001"), ("KILOBYTE", "0a000002")] {
        let r = c.account(acct, 1, user, session, mac_a, 0, 0, 0);
        assert_eq!(code(r), Code::AccountingResponse);
    }
    let r = c.account(acct, 3, "MINUTE", "0a000001", mac_a, 30, 10, 10);
    assert_eq!(code(r), Code::AccountingResponse);
    let r = c.account(acct, 2, "MINUTE", "0a000001", mac_a, 60, 20, 20);
    assert_eq!(code(r), Code::AccountingResponse);
    let r = c.account(acct, 2, "KILOBYTE", "0a000002", mac_a, 5, 600, 600);
    assert_eq!(code(r), Code::AccountingResponse);

    // ---- one reject of each reason ----
    let rejects = [
        ("NOSUCH", Cred::Pap("pw-NOSUCH"), mac_a, "unknown_voucher"),
        ("ACCEPT2", Cred::None, mac_a, "missing_password"),
        ("ACCEPT2", Cred::Pap("pw-guess"), mac_a, "wrong_password"),
        ("REVOKED", Cred::Pap("pw-REVOKED"), mac_a, "revoked"),
        ("OLD", Cred::Pap("pw-OLD"), mac_a, "expired"),
        ("INSTANT", Cred::Pap("pw-INSTANT"), mac_a, "validity_ended"),
        ("MINUTE", Cred::Pap("pw-MINUTE"), mac_a, "time_quota_used"),
        (
            "KILOBYTE",
            Cred::Pap("pw-KILOBYTE"),
            mac_a,
            "data_quota_used",
        ),
        ("LOCKED", Cred::Pap("pw-LOCKED"), mac_b, "mac_locked"),
        ("NOMAC", Cred::Pap("pw-NOMAC"), None, "missing_mac"),
        (
            "SHARED",
            Cred::Pap("pw-SHARED"),
            mac_b,
            "shared_users_limit",
        ),
        ("ELSEWHERE", Cred::Pap("pw-ELSEWHERE"), mac_a, "wrong_site"),
    ];
    for (user, cred, mac, reason) in rejects {
        let r = c.login(auth, user, cred, mac).expect("a reply");
        assert_eq!(r.code(), Code::AccessReject, "{user} should be rejected");
        assert_eq!(
            r.reply_message().as_deref(),
            rrnet_radius::policy::RejectReason::from_label(reason).map(|r| r.message()),
            "{user}"
        );
    }

    // ---- Status-Server on both ports ----
    for port in [auth, acct] {
        let a: [u8; 16] = rand::random();
        let mut b = PacketBuilder::new(Code::StatusServer, 7);
        b.reserve_message_authenticator();
        let req = b.finish_access_request(&a, SECRET.as_bytes());
        assert!(c.exchange(port, &req, &a).is_some());
    }

    // ---- a duplicate of an answered request gets the cached reply ----
    let (req, a) = c.access_request("ACCEPT2", Cred::Pap("pw-ACCEPT2"), mac_a, true);
    assert_eq!(code(c.exchange(auth, &req, &a)), Code::AccessAccept);
    assert_eq!(code(c.exchange(auth, &req, &a)), Code::AccessAccept);

    // ---- one drop of each reason a client can cause ----
    // unknown_nas: no NAS entry covers 127.0.0.2.
    let mut stranger = Client::bind("127.0.0.2:0", SECRET);
    let (req, _) = stranger.access_request("ACCEPT1", Cred::Pap("pw-ACCEPT1"), mac_a, true);
    send(&stranger, auth, &req);
    // bad_message_authenticator: signed with the wrong secret.
    let mut wrong = Client::with_secret(WRONG_SECRET);
    let (req, _) = wrong.access_request("ACCEPT1", Cred::Pap("pw-ACCEPT1"), mac_a, true);
    send(&wrong, auth, &req);
    // bad_authenticator: accounting signed with the wrong secret.
    let req = wrong.accounting_request(3, "ACCEPT1", "0a000009", mac_a, 1, 1, 1, &[]);
    send(&wrong, acct, &req);
    // missing_message_authenticator: the NAS requires it (the default).
    let (req, _) = c.access_request("ACCEPT1", Cred::Pap("pw-ACCEPT1"), mac_a, false);
    send(&c, auth, &req);
    // malformed: the Length field claims more than the datagram holds.
    let mut bogus = vec![1u8, 99, 0x10, 0x00];
    bogus.extend_from_slice(&[0u8; 16]);
    send(&c, auth, &bogus);
    // unexpected_code: an Access-Accept sent to the server.
    let req =
        PacketBuilder::new(Code::AccessAccept, 5).finish_response(&[0; 16], SECRET.as_bytes());
    send(&c, auth, &req);
    // missing_user_name: an authentic Access-Request without User-Name.
    let a: [u8; 16] = rand::random();
    let mut b = PacketBuilder::new(Code::AccessRequest, 6);
    b.reserve_message_authenticator();
    b.add_user_password(b"pw-ACCEPT1", SECRET.as_bytes(), &a)
        .unwrap();
    let req = b.finish_access_request(&a, SECRET.as_bytes());
    send(&c, auth, &req);
    // A malformed Accounting-Request (no Acct-Status-Type) counts as malformed too.
    let mut b = PacketBuilder::new(Code::AccountingRequest, 8);
    b.add_str(attr::ACCT_SESSION_ID, "0a000010").unwrap();
    let req = b.finish_accounting_request(SECRET.as_bytes());
    send(&c, acct, &req);

    let total_drops = 8.0;
    let s = settled(&server, |s| {
        s.nonzero("rrnet_radius_drops_total").len() == 7
            && s.get(
                "rrnet_radius_drops_total",
                &[("nas", NAS), ("reason", "malformed")],
            ) == Some(2.0)
            && s.get(
                "rrnet_radius_requests_total",
                &[
                    ("type", "access_request"),
                    ("nas", NAS),
                    ("result", "reject"),
                ],
            ) == Some(12.0)
    });

    let req = |typ: &str, result: &str| {
        s.get(
            "rrnet_radius_requests_total",
            &[("type", typ), ("nas", NAS), ("result", result)],
        )
    };
    // 7 accepts in the traffic above plus the one answered (then duplicated) at the end.
    assert_eq!(req("access_request", "accept"), Some(8.0));
    assert_eq!(req("access_request", "reject"), Some(12.0));
    assert_eq!(req("accounting_request", "start"), Some(2.0));
    assert_eq!(req("accounting_request", "interim_update"), Some(1.0));
    assert_eq!(req("accounting_request", "stop"), Some(2.0));
    assert_eq!(req("status_server", "answered"), Some(2.0));
    assert_eq!(
        s.nonzero("rrnet_radius_requests_total").len(),
        6,
        "{:?}",
        s.nonzero("rrnet_radius_requests_total")
    );

    use rrnet_radius::policy::RejectReason;
    for r in RejectReason::ALL {
        // The login guard's refusals need many failures (tests/security.rs); the
        // series exists at zero from the start.
        let expect = if r == RejectReason::TooManyFailures {
            0.0
        } else {
            1.0
        };
        let reason = r.label();
        assert_eq!(
            s.get(
                "rrnet_radius_rejects_total",
                &[("nas", NAS), ("reason", reason)]
            ),
            Some(expect),
            "rejects {reason}"
        );
    }
    assert_eq!(s.nonzero("rrnet_radius_rejects_total").len(), 12);

    let drop = |nas: &str, reason: &str| {
        s.get(
            "rrnet_radius_drops_total",
            &[("nas", nas), ("reason", reason)],
        )
    };
    assert_eq!(drop("unknown", "unknown_nas"), Some(1.0));
    assert_eq!(drop(NAS, "bad_message_authenticator"), Some(1.0));
    assert_eq!(drop(NAS, "bad_authenticator"), Some(1.0));
    assert_eq!(drop(NAS, "missing_message_authenticator"), Some(1.0));
    assert_eq!(drop(NAS, "malformed"), Some(2.0));
    assert_eq!(drop(NAS, "unexpected_code"), Some(1.0));
    assert_eq!(drop(NAS, "missing_user_name"), Some(1.0));
    // Nothing else dropped: no overload, no duplicate in progress, no storage error.
    assert_eq!(drop(NAS, "overload"), Some(0.0));
    assert_eq!(drop(NAS, "duplicate_in_progress"), Some(0.0));
    assert_eq!(drop(NAS, "storage_error"), Some(0.0));
    let dropped: f64 =
        s.0.iter()
            .filter(|((n, _), _)| n == "rrnet_radius_drops_total")
            .map(|(_, v)| v)
            .sum();
    assert_eq!(dropped, total_drops);

    assert_eq!(
        s.get("rrnet_radius_duplicates_answered_total", &[("nas", NAS)]),
        Some(1.0)
    );
    // ACCEPT1, ACCEPT2, SHARED, MINUTE, KILOBYTE, LOCKED: first logins.
    assert_eq!(
        s.get("rrnet_radius_vouchers_activated_total", &[]),
        Some(6.0)
    );

    // Histograms saw every answered request and every storage call, and have a
    // bucket at 100 µs.
    let count = |name: &str, labels: &[(&str, &str)]| s.get(name, labels);
    assert_eq!(
        count(
            "rrnet_radius_request_duration_seconds_count",
            &[("type", "access_request")]
        ),
        Some(20.0)
    );
    assert_eq!(
        count(
            "rrnet_radius_request_duration_seconds_count",
            &[("type", "accounting_request")]
        ),
        Some(5.0)
    );
    assert_eq!(
        count(
            "rrnet_radius_request_duration_seconds_count",
            &[("type", "status_server")]
        ),
        Some(2.0)
    );
    assert_eq!(
        count(
            "rrnet_radius_storage_duration_seconds_count",
            &[("op", "authorize")]
        ),
        Some(20.0)
    );
    assert!(count(
        "rrnet_radius_storage_duration_seconds_bucket",
        &[("op", "authorize"), ("le", "0.0001")]
    )
    .is_some());
    assert_eq!(
        count("rrnet_radius_storage_errors_total", &[("op", "authorize")]),
        Some(0.0)
    );
    assert!(
        count(
            "rrnet_radius_nas_last_seen_timestamp_seconds",
            &[("nas", NAS)]
        )
        .unwrap()
            > 1.7e9
    );

    // Open sessions per NAS: ACCEPT1/2, SHARED and LOCKED never started
    // accounting, MINUTE and KILOBYTE stopped, so none is open.
    let s = settled(&server, |s| {
        s.get("rrnet_radius_open_sessions", &[("nas", NAS)])
            .is_some()
    });
    assert_eq!(
        s.get("rrnet_radius_open_sessions", &[("nas", NAS)]),
        Some(0.0)
    );

    // Process metrics from the process collector.
    if cfg!(target_os = "linux") {
        assert!(s.get("process_resident_memory_bytes", &[]).unwrap() > 0.0);
        assert!(s.get("process_open_fds", &[]).unwrap() > 0.0);
        assert!(s.get("process_cpu_seconds_total", &[]).is_some());
    }
    assert!(server.stop().success());
}

#[test]
fn open_sessions_per_nas() {
    let db = TestDb::sqlite();
    db.setup_basic();
    db.cli(&[
        "nas",
        "add",
        "--name",
        "hotspot2",
        "--address",
        "127.0.0.3",
        "--secret",
        "second-nas-secret",
    ]);
    db.cli(&[
        "plan",
        "add",
        "--name",
        "hour",
        "--time",
        "1h",
        "--shared-users",
        "5",
    ]);
    db.cli(&[
        "voucher",
        "add",
        "V1",
        "--plan",
        "hour",
        "--password",
        "pw-V1",
    ]);
    let server = Server::start(&db);
    let mut c = Client::new();
    for (i, session) in ["0b000001", "0b000002"].iter().enumerate() {
        let mac = format!("AA:BB:CC:00:01:0{i}");
        let r = c.login(server.auth, "V1", Cred::Pap("pw-V1"), Some(&mac));
        assert_eq!(code(r), Code::AccessAccept);
        let r = c.account(server.acct, 1, "V1", session, Some(&mac), 0, 0, 0);
        assert_eq!(code(r), Code::AccountingResponse);
    }
    let mut other = Client::bind("127.0.0.3:0", "second-nas-secret");
    let r = other.login(
        server.auth,
        "V1",
        Cred::Pap("pw-V1"),
        Some("AA:BB:CC:00:02:01"),
    );
    assert_eq!(code(r), Code::AccessAccept);
    let r = other.account(
        server.acct,
        1,
        "V1",
        "0c000001",
        Some("AA:BB:CC:00:02:01"),
        0,
        0,
        0,
    );
    assert_eq!(code(r), Code::AccountingResponse);

    // The gauge is refreshed by housekeeping (every second in the harness).
    let s = settled(&server, |s| {
        s.get("rrnet_radius_open_sessions", &[("nas", NAS)]) == Some(2.0)
            && s.get("rrnet_radius_open_sessions", &[("nas", "hotspot2")]) == Some(1.0)
    });
    assert_eq!(
        s.get("rrnet_radius_open_sessions", &[("nas", NAS)]),
        Some(2.0)
    );
    assert_eq!(
        s.get("rrnet_radius_open_sessions", &[("nas", "hotspot2")]),
        Some(1.0)
    );

    let r = c.account(
        server.acct,
        2,
        "V1",
        "0b000001",
        Some("AA:BB:CC:00:01:00"),
        9,
        1,
        1,
    );
    assert_eq!(code(r), Code::AccountingResponse);
    let s = settled(&server, |s| {
        s.get("rrnet_radius_open_sessions", &[("nas", NAS)]) == Some(1.0)
    });
    assert_eq!(
        s.get("rrnet_radius_open_sessions", &[("nas", NAS)]),
        Some(1.0)
    );
    assert!(server.stop().success());
}
