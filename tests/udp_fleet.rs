//! Two `serve` processes on one PostgreSQL schema must agree (DESIGN §5): a
//! single-device voucher tried from many devices at once, half of them through
//! each instance, is accepted exactly once and activated exactly once; NAS
//! changes made with the CLI reach both instances. PostgreSQL only: SQLite is
//! one process's file.
mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use rrnet_radius::proto::Code;

const WAIT: Duration = Duration::from_secs(10);
const DEVICES: usize = 50;
const IN_USE: &str = "This voucher is already in use on another device";

fn metric_sum(servers: &[Server], sample: &str) -> f64 {
    servers.iter().map(|s| s.metric_or_zero(sample)).sum()
}

fn first_login_seconds(v: &serde_json::Value) -> i64 {
    let text = v["first_login_at"]
        .as_str()
        .unwrap_or_else(|| panic!("first_login_at is set: {v}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339 time")
        .timestamp()
}

#[test]
fn simultaneous_first_logins_on_two_instances_accept_once() {
    let Some(db) = TestDb::postgres() else { return };
    db.setup_basic();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "single",
        "--time",
        "1h",
        "--validity",
        "1d",
        "--shared-users",
        "1",
    ]);
    db.cli(&["voucher", "add", "FLEET1", "--plan", "single"]);
    // Started one after the other so that their migrations do not race.
    let servers = vec![Server::start(&db), Server::start(&db)];
    let auth_ports: Vec<_> = servers.iter().map(|s| s.auth).collect();

    let barrier = Arc::new(Barrier::new(DEVICES));
    let threads: Vec<_> = (0..DEVICES)
        .map(|i| {
            let barrier = barrier.clone();
            let to = auth_ports[i % auth_ports.len()];
            std::thread::spawn(move || {
                let mac = format!("02:00:00:00:00:{i:02X}");
                let mut c = Client::new();
                let (req, auth) = c.access_request("FLEET1", Cred::Pap("FLEET1"), Some(&mac), true);
                barrier.wait();
                let r = c
                    .exchange_within(to, &req, &auth, Duration::from_secs(5))
                    .unwrap_or_else(|| panic!("no answer for {mac}"));
                (mac, r.code(), r.reply_message())
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    let accepted: Vec<_> = results
        .iter()
        .filter(|(_, code, _)| *code == Code::AccessAccept)
        .collect();
    assert_eq!(accepted.len(), 1, "exactly one device gets in: {results:?}");
    let winner = accepted[0].0.clone();
    for (mac, code, message) in results.iter().filter(|r| r.0 != winner) {
        assert_eq!(*code, Code::AccessReject, "{mac}");
        assert_eq!(message.as_deref(), Some(IN_USE), "{mac}");
    }
    // Both instances did part of the work.
    for s in &servers {
        s.wait_metric(
            "rrnet_radius_requests_total{nas=\"hotspot1\",result=\"reject\",type=\"access_request\"}",
            1.0,
            WAIT,
        );
    }
    // Outcomes are counted just after each reply; wait for all 50 before reading.
    wait_until("all outcomes to be counted", WAIT, || {
        let n = metric_sum(
            &servers,
            "rrnet_radius_requests_total{nas=\"hotspot1\",result=\"accept\",type=\"access_request\"}",
        ) + metric_sum(
            &servers,
            "rrnet_radius_requests_total{nas=\"hotspot1\",result=\"reject\",type=\"access_request\"}",
        );
        (n >= DEVICES as f64).then_some(())
    });
    assert_eq!(
        metric_sum(&servers, "rrnet_radius_vouchers_activated_total"),
        1.0
    );
    assert_eq!(
        metric_sum(
            &servers,
            "rrnet_radius_rejects_total{nas=\"hotspot1\",reason=\"shared_users_limit\"}"
        ),
        (DEVICES - 1) as f64
    );

    let v = db.voucher_json("FLEET1");
    let first = first_login_seconds(&v);
    let valid_until = v["valid_until"].clone();
    assert!(valid_until.is_string(), "{v}");
    // Timestamps have one-second resolution: let the clock pass the first login,
    // so that a second activation would be visible as a different value.
    wait_until("the clock to pass the first login", WAIT, || {
        (rrnet_radius::server::unix_now() > first).then_some(())
    });
    let mut c = Client::new();
    for s in &servers {
        let r = c
            .login(s.auth, "FLEET1", Cred::Pap("FLEET1"), Some(&winner))
            .expect("answer");
        assert_eq!(
            r.code(),
            Code::AccessAccept,
            "the same device logs in again"
        );
        let r = c
            .login(
                s.auth,
                "FLEET1",
                Cred::Pap("FLEET1"),
                Some("02:00:00:00:01:00"),
            )
            .expect("answer");
        assert_eq!(r.reply_message().as_deref(), Some(IN_USE));
    }
    let v = db.voucher_json("FLEET1");
    assert_eq!(
        first_login_seconds(&v),
        first,
        "activation happens once: {v}"
    );
    assert_eq!(v["valid_until"], valid_until, "{v}");
    for s in servers {
        assert!(s.stop().success());
    }
}

#[test]
fn nas_added_with_the_cli_reaches_both_instances() {
    let Some(db) = TestDb::postgres() else { return };
    db.setup_basic();
    db.cli(&["plan", "add", "--name", "1h", "--time", "1h"]);
    db.cli(&["voucher", "add", "NEWNAS1", "--plan", "1h"]);
    let servers = vec![Server::start(&db), Server::start(&db)];
    let secret = "branch-router-secret";
    let mut branch = Client::bind("127.0.0.5:0", secret);
    for s in &servers {
        let (req, auth) = branch.access_request("NEWNAS1", Cred::Pap("NEWNAS1"), None, true);
        assert!(
            branch
                .exchange_within(s.auth, &req, &auth, Duration::from_millis(300))
                .is_none(),
            "not a NAS yet"
        );
    }
    db.cli(&[
        "nas",
        "add",
        "--name",
        "branch",
        "--address",
        "127.0.0.5",
        "--secret",
        secret,
    ]);
    for s in &servers {
        let r = wait_until("the new NAS to be answered", WAIT, || {
            let (req, auth) = branch.access_request(
                "NEWNAS1",
                Cred::Pap("NEWNAS1"),
                Some("02:00:00:00:02:01"),
                true,
            );
            branch.exchange_within(s.auth, &req, &auth, Duration::from_millis(250))
        });
        assert_eq!(r.code(), Code::AccessAccept);
    }
    for s in servers {
        assert!(s.stop().success());
    }
}
