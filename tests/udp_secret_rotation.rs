//! Rotating a NAS secret without a gap: during the grace period both secrets are
//! accepted and each reply is signed with the secret its request used.
mod common;
use std::time::Duration;

use common::*;
use rrnet_radius::proto::{attr, Code};

const NEW_SECRET: &str = "rotated-secret-2";
const NEWEST_SECRET: &str = "rotated-secret-3";

#[test]
fn old_and_new_secret_work_during_rotation() {
    let db = TestDb::sqlite();
    db.setup_basic();
    db.cli(&["plan", "add", "--name", "p", "--time", "1h"]);
    db.cli(&["voucher", "add", "ROT1", "--plan", "p"]);
    let server = Server::start(&db);
    let mut old = Client::new();
    let mut new = Client::with_secret(NEW_SECRET);
    assert_eq!(
        old.login(
            server.auth,
            "ROT1",
            Cred::Pap("ROT1"),
            Some("AA:00:00:00:00:01")
        )
        .unwrap()
        .code(),
        Code::AccessAccept
    );
    assert!(new
        .login(
            server.auth,
            "ROT1",
            Cred::Pap("ROT1"),
            Some("AA:00:00:00:00:01")
        )
        .is_none());

    let out = db.cli(&[
        "nas",
        "set-secret",
        "hotspot1",
        "--secret",
        NEW_SECRET,
        "--keep-old",
        "1h",
    ]);
    assert!(out.contains("old one is accepted until"), "{out}");
    // The server reloads the NAS table within its reload interval.
    wait_until(
        "the new secret to be accepted",
        Duration::from_secs(10),
        || {
            new.login(
                server.auth,
                "ROT1",
                Cred::Pap("ROT1"),
                Some("AA:00:00:00:00:01"),
            )
            .filter(|r| r.code() == Code::AccessAccept)
        },
    );
    // The old secret still works, for authentication and accounting; `exchange`
    // verifies each reply with the client's own secret.
    let r = old
        .login(
            server.auth,
            "ROT1",
            Cred::Chap("ROT1"),
            Some("AA:00:00:00:00:01"),
        )
        .expect("old secret answered");
    assert_eq!(r.code(), Code::AccessAccept);
    assert_eq!(r.u32(attr::SESSION_TIMEOUT), Some(3600));
    let a = old
        .account(
            server.acct,
            1,
            "ROT1",
            "81000001",
            Some("AA:00:00:00:00:01"),
            0,
            0,
            0,
        )
        .expect("old secret accounting answered");
    assert_eq!(a.code(), Code::AccountingResponse);
    // Status-Server too: its reply is signed with the secret the request used
    // (`exchange` verifies the reply's Message-Authenticator with the old one).
    let (status, auth) = old.status_server(true);
    let r = old
        .exchange(server.auth, &status, &auth)
        .expect("Status-Server with the old secret answered");
    assert_eq!(r.code(), Code::AccessAccept);
    let used = wait_until(
        "the previous-secret counter",
        Duration::from_secs(5),
        || {
            server
                .metric("rrnet_radius_previous_secret_used_total{nas=\"hotspot1\"}")
                .filter(|v| *v >= 3.0)
        },
    );
    assert!(used >= 3.0);

    // Ending the rotation at once: only the newest secret works.
    db.cli(&[
        "nas",
        "set-secret",
        "hotspot1",
        "--secret",
        NEWEST_SECRET,
        "--keep-old",
        "0",
    ]);
    let mut newest = Client::with_secret(NEWEST_SECRET);
    wait_until(
        "the newest secret to be accepted",
        Duration::from_secs(10),
        || {
            newest
                .login(
                    server.auth,
                    "ROT1",
                    Cred::Pap("ROT1"),
                    Some("AA:00:00:00:00:01"),
                )
                .filter(|r| r.code() == Code::AccessAccept)
        },
    );
    assert!(new
        .login(
            server.auth,
            "ROT1",
            Cred::Pap("ROT1"),
            Some("AA:00:00:00:00:01")
        )
        .is_none());
    assert!(old
        .login(
            server.auth,
            "ROT1",
            Cred::Pap("ROT1"),
            Some("AA:00:00:00:00:01")
        )
        .is_none());

    let logs = server.log_text();
    for s in [SECRET, NEW_SECRET, NEWEST_SECRET] {
        assert!(!logs.contains(s), "a secret appeared in the logs");
    }
    let listed = db.cli(&["nas", "list", "--format", "json"]);
    for s in [SECRET, NEW_SECRET, NEWEST_SECRET] {
        assert!(!listed.contains(s), "nas list must not print secrets");
    }
}

#[test]
fn set_secret_errors() {
    let db = TestDb::sqlite();
    db.setup_basic();
    let out = db.cli_output(&["nas", "set-secret", "ghost", "--secret", "longenough1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAS ghost not found"));
    let out = db.cli_output(&["nas", "set-secret", "hotspot1", "--secret", "short"]);
    assert_eq!(out.status.code(), Some(1));
    let out = db.cli_output(&[
        "nas",
        "set-secret",
        "hotspot1",
        "--secret",
        "longenough1",
        "--keep-old",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid duration"));
}
