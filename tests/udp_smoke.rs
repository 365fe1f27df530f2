//! Smoke test of the harness: the real binary accepts a voucher over UDP.
mod common;
use common::*;
use rrnet_radius::proto::{attr, Code};

#[test]
fn pap_accept_on_sqlite() {
    let db = TestDb::sqlite();
    db.setup_basic();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "1h",
        "--time",
        "1h",
        "--rate-limit",
        "2M/2M",
    ]);
    db.cli(&["voucher", "add", "CODE1", "--plan", "1h"]);
    let server = Server::start(&db);
    let mut c = Client::new();
    let r = c
        .login(
            server.auth,
            "CODE1",
            Cred::Pap("CODE1"),
            Some("AA:BB:CC:DD:EE:01"),
        )
        .expect("reply");
    assert_eq!(r.code(), Code::AccessAccept);
    assert_eq!(r.u32(attr::SESSION_TIMEOUT), Some(3600));
    assert_eq!(
        r.vsa_str(attr::mikrotik::RATE_LIMIT).as_deref(),
        Some("2M/2M")
    );
    assert!(server.stop().success());
}
