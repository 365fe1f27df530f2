//! An Accounting-Response promises that the record is stored (DESIGN §3): the
//! server is killed with SIGKILL in the middle of an accounting burst, restarted
//! on the same database, and every record a client saw acknowledged must be
//! there. Run on SQLite and on PostgreSQL.
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rrnet_radius::proto::{attr, Code};

const SESSIONS: usize = 200;
const ROUNDS: u32 = 10;
const THREADS: usize = 8;
const VOUCHERS: usize = 4;
/// Acknowledgements to collect before the kill: well inside the burst of 2,000.
const KILL_AFTER: usize = 800;
const GIB: u64 = 1 << 30;

fn session_id(s: usize) -> String {
    format!("crash-{s:03}")
}

fn voucher_code(s: usize) -> String {
    format!("CRASH{}", s % VOUCHERS)
}

/// Counters of session `s` in round `r`; they grow every round, input past 4 GiB.
fn counters(s: usize, r: u32) -> (u32, u64, u64) {
    let r64 = u64::from(r);
    (r * 30, r64 * GIB + s as u64, r64 * 1_000_000 + s as u64)
}

/// Send one Interim-Update and wait for its Accounting-Response. Retransmits
/// the same bytes like a NAS would; gives up once the server has been killed.
fn interim(
    client: &mut Client,
    to: std::net::SocketAddr,
    s: usize,
    r: u32,
    killed: &AtomicBool,
) -> bool {
    let (time, input, output) = counters(s, r);
    let req = client.accounting_request(
        attr::acct_status::INTERIM_UPDATE,
        &voucher_code(s),
        &session_id(s),
        Some("02:00:00:00:AA:01"),
        time,
        input,
        output,
        &[],
    );
    for _ in 0..10 {
        if let Some(reply) = client.send_accounting(to, &req, Duration::from_millis(500)) {
            assert_eq!(reply.code(), Code::AccountingResponse);
            return true;
        }
        if killed.load(Ordering::SeqCst) {
            return false;
        }
    }
    panic!(
        "no Accounting-Response for {} round {r} from a live server",
        session_id(s)
    );
}

fn acknowledged_accounting_survives_kill9(db: &TestDb) {
    db.setup_basic();
    db.cli(&["plan", "add", "--name", "unlimited"]);
    for v in 0..VOUCHERS {
        db.cli(&[
            "voucher",
            "add",
            &format!("CRASH{v}"),
            "--plan",
            "unlimited",
        ]);
    }
    let server = Server::start(db);
    let acct = server.acct;
    let killed = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));

    // Each thread owns every THREADS-th session and walks them round by round,
    // so many sessions are in flight at once and each one's records stay in order.
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let killed = killed.clone();
            let acks = acks.clone();
            std::thread::spawn(move || {
                let mut client = Client::new();
                let mut highest: HashMap<usize, u32> = HashMap::new();
                for r in 1..=ROUNDS {
                    for s in (t..SESSIONS).step_by(THREADS) {
                        if !interim(&mut client, acct, s, r, &killed) {
                            return highest;
                        }
                        highest.insert(s, r);
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                }
                highest
            })
        })
        .collect();

    wait_until("the burst to be under way", Duration::from_secs(60), || {
        (acks.load(Ordering::SeqCst) >= KILL_AFTER).then_some(())
    });
    server.kill9();
    killed.store(true, Ordering::SeqCst);
    let mut acknowledged: HashMap<usize, u32> = HashMap::new();
    for t in threads {
        acknowledged.extend(t.join().unwrap());
    }
    let total = acks.load(Ordering::SeqCst);
    assert!(
        total < SESSIONS * ROUNDS as usize,
        "the kill must land inside the burst ({total} acknowledged)"
    );

    // Restarting proves the database opens cleanly after the crash.
    let server = Server::start(db);
    let stored: HashMap<String, serde_json::Value> = db
        .sessions_json()
        .into_iter()
        .map(|s| (s["acct_session_id"].as_str().unwrap().to_string(), s))
        .collect();
    for (&s, &r) in &acknowledged {
        let (time, input, output) = counters(s, r);
        let row = stored
            .get(&session_id(s))
            .unwrap_or_else(|| panic!("acknowledged session {} is missing", session_id(s)));
        let get = |k: &str| row[k].as_u64().unwrap();
        assert!(
            get("session_time") >= u64::from(time)
                && get("input_octets") >= input
                && get("output_octets") >= output,
            "session {} lost acknowledged round {r}: {row}",
            session_id(s)
        );
    }
    check_voucher_usage(db);

    // The restarted server takes the rest; resent records add nothing twice.
    let mut client = Client::new();
    let alive = AtomicBool::new(false);
    for s in 0..SESSIONS {
        assert!(interim(&mut client, server.acct, s, ROUNDS, &alive));
    }
    for s in db.sessions_json() {
        let id: usize = s["acct_session_id"].as_str().unwrap()["crash-".len()..]
            .parse()
            .unwrap();
        let (time, input, output) = counters(id, ROUNDS);
        assert_eq!(s["session_time"], time, "{s}");
        assert_eq!(s["input_octets"], input, "{s}");
        assert_eq!(s["output_octets"], output, "{s}");
    }
    check_voucher_usage(db);
    assert!(server.stop().success());
}

/// A voucher's usage moves in the same transaction as its sessions' counters,
/// so after any crash it equals the sum over its sessions.
fn check_voucher_usage(db: &TestDb) {
    let sessions = db.sessions_json();
    for v in 0..VOUCHERS {
        let code = format!("CRASH{v}");
        let (mut seconds, mut bytes) = (0u64, 0u64);
        for s in sessions.iter().filter(|s| s["username"] == code) {
            seconds += s["session_time"].as_u64().unwrap();
            bytes += s["input_octets"].as_u64().unwrap() + s["output_octets"].as_u64().unwrap();
        }
        let shown = db.voucher_json(&code);
        assert_eq!(shown["used_seconds"], seconds, "{code}: {shown}");
        assert_eq!(shown["used_bytes"], bytes, "{code}: {shown}");
    }
}

#[test]
fn acknowledged_accounting_survives_kill9_on_sqlite() {
    acknowledged_accounting_survives_kill9(&TestDb::sqlite());
}

#[test]
fn acknowledged_accounting_survives_kill9_on_postgres() {
    let Some(db) = TestDb::postgres() else { return };
    acknowledged_accounting_survives_kill9(&db);
}
