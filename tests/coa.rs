//! Sessions end when the voucher ends (RFC 5176): the real server and CLI
//! against a NAS stand-in listening on a loopback UDP port. The stand-in
//! verifies each request's Request Authenticator and Message-Authenticator
//! with the shared secret and checks the identifying attributes, then answers
//! ACK, NAK with an Error-Cause, or nothing, as the test asks.
//!
//! Every case runs on SQLite and on PostgreSQL (`on_both_backends!`).

#[macro_use]
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rrnet_radius::proto::{attr, verify_request_authenticator, Code, Packet, PacketBuilder};

const MAC1: &str = "AA:BB:CC:00:00:01";
const MAC2: &str = "AA:BB:CC:00:00:02";
const IP1: [u8; 4] = [10, 5, 50, 11];
const IP2: [u8; 4] = [10, 5, 50, 12];
const WAIT: Duration = Duration::from_secs(10);

on_both_backends!(
    revoke_disconnects_within_two_seconds,
    revoke_while_the_server_is_down_is_sent_at_start,
    revoke_no_disconnect_sends_nothing,
    revoke_right_after_login_reaches_the_session,
    interim_over_the_data_quota_disconnects,
    stop_over_the_time_quota_disconnects_the_other_session,
    fair_use_slows_by_coa_instead,
    plan_and_voucher_changes_send_coa,
    nak_with_error_cause_is_recorded,
    no_answer_is_three_tries_then_a_timeout,
    nas_without_a_coa_address_is_logged_not_retried,
    cli_session_disconnect_prints_ack_and_nak,
    cli_refuses_what_cannot_work,
    network_entry_disconnects_at_the_sessions_router,
);

/// How the stand-in answers.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ack,
    Nak(u32),
    Silent,
}

/// One request the stand-in received, with what it checked.
#[derive(Clone, Debug)]
struct Seen {
    bytes: Vec<u8>,
    code: Code,
    at: Instant,
    user: Option<String>,
    acct_session_id: Option<String>,
    framed_ip: Option<[u8; 4]>,
    mac: Option<String>,
    rate_limit: Option<String>,
    session_timeout: Option<u32>,
}

/// A router's `/radius incoming` on a loopback port.
struct NasStandIn {
    port: u16,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Requests that failed a check (authenticators, missing identity).
    bad: Arc<Mutex<Vec<String>>>,
}

impl NasStandIn {
    fn start(secret: &str) -> NasStandIn {
        Self::start_at(secret, "127.0.0.1:0")
    }

    fn start_at(secret: &str, addr: &str) -> NasStandIn {
        let sock = UdpSocket::bind(addr).unwrap();
        let port = sock.local_addr().unwrap().port();
        let answer = Arc::new(Mutex::new(Answer::Ack));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let (a, s, b) = (answer.clone(), seen.clone(), bad.clone());
        let secret = secret.as_bytes().to_vec();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    return;
                };
                let bytes = buf[..n].to_vec();
                match check(&bytes, &secret) {
                    Ok(seen) => {
                        let code = seen.code;
                        s.lock().unwrap().push(seen);
                        let answer = *a.lock().unwrap();
                        if let Some(reply) = reply(&bytes, code, answer, &secret) {
                            let _ = sock.send_to(&reply, from);
                        }
                    }
                    Err(why) => b.lock().unwrap().push(why),
                }
            }
        });
        NasStandIn {
            port,
            answer,
            seen,
            bad,
        }
    }

    fn answer(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    fn seen(&self) -> Vec<Seen> {
        assert!(
            self.bad.lock().unwrap().is_empty(),
            "requests that failed the stand-in's checks: {:?}",
            self.bad.lock().unwrap()
        );
        self.seen.lock().unwrap().clone()
    }

    /// Wait until `n` requests arrived.
    fn wait_for(&self, n: usize, within: Duration) -> Vec<Seen> {
        wait_until(&format!("{n} CoA/Disconnect request(s)"), within, || {
            let s = self.seen();
            (s.len() >= n).then_some(s)
        })
    }
}

/// What a RouterOS `/radius incoming` checks before it acts (RFC 5176 §3,
/// §3.4): the code, the Request Authenticator, the Message-Authenticator,
/// and a session identified by User-Name and Acct-Session-Id.
fn check(bytes: &[u8], secret: &[u8]) -> Result<Seen, String> {
    let p = Packet::decode(bytes).map_err(|e| format!("malformed: {e}"))?;
    let code = p.code();
    if !matches!(code, Code::DisconnectRequest | Code::CoaRequest) {
        return Err(format!("unexpected code {}", code.name()));
    }
    if !verify_request_authenticator(&p, secret) {
        return Err("Request Authenticator does not verify".into());
    }
    match p.verify_request_message_authenticator(secret) {
        Some(true) => {}
        Some(false) => return Err("Message-Authenticator does not verify".into()),
        None => return Err("no Message-Authenticator".into()),
    }
    let s = |t| p.attr_str(t).ok().flatten().map(str::to_string);
    let seen = Seen {
        bytes: bytes.to_vec(),
        code,
        at: Instant::now(),
        user: s(attr::USER_NAME),
        acct_session_id: s(attr::ACCT_SESSION_ID),
        framed_ip: p
            .attr_ipv4(attr::FRAMED_IP_ADDRESS)
            .ok()
            .flatten()
            .map(|ip| ip.octets()),
        mac: s(attr::CALLING_STATION_ID),
        rate_limit: p
            .vsa(attr::mikrotik::VENDOR_ID, attr::mikrotik::RATE_LIMIT)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        session_timeout: p.attr_u32(attr::SESSION_TIMEOUT).ok().flatten(),
    };
    if seen.user.is_none() || seen.acct_session_id.is_none() {
        return Err("no User-Name or Acct-Session-Id".into());
    }
    Ok(seen)
}

/// The answer, signed as a NAS signs it: Message-Authenticator over the
/// request's authenticator, then the Response Authenticator.
fn reply(request: &[u8], code: Code, answer: Answer, secret: &[u8]) -> Option<Vec<u8>> {
    let p = Packet::decode(request).ok()?;
    let (ack, nak) = match code {
        Code::DisconnectRequest => (Code::DisconnectAck, Code::DisconnectNak),
        _ => (Code::CoaAck, Code::CoaNak),
    };
    let mut b = match answer {
        Answer::Silent => return None,
        Answer::Ack => PacketBuilder::new(ack, p.identifier()),
        Answer::Nak(_) => PacketBuilder::new(nak, p.identifier()),
    };
    b.reserve_message_authenticator();
    if let Answer::Nak(cause) = answer {
        b.add_u32(101, cause).unwrap();
    }
    Some(b.finish_response(p.authenticator(), secret))
}

// ---- the router side of a session ----

/// NAS `hotspot1` (127.0.0.1) whose CoA port is the stand-in's.
fn nas(db: &TestDb, standin: &NasStandIn) {
    db.cli(&[
        "nas",
        "add",
        "--name",
        "hotspot1",
        "--address",
        "127.0.0.1",
        "--secret",
        SECRET,
        "--coa-port",
        &standin.port.to_string(),
    ]);
}

/// SIGTERM; the server must exit cleanly (its log is shown otherwise).
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

fn voucher(db: &TestDb, code: &str, plan: &str) {
    db.cli(&["voucher", "add", code, "--plan", plan]);
}

/// A login as RouterOS makes it, then Accounting-Start with Framed-IP-Address.
fn open_session(c: &mut Client, server: &Server, code: &str, asid: &str, mac: &str, ip: [u8; 4]) {
    let r = c
        .login(server.auth, code, Cred::Pap(code), Some(mac))
        .expect("an answer");
    assert_eq!(r.code(), Code::AccessAccept, "{code} accepted");
    assert!(
        r.u32(attr::ACCT_INTERIM_INTERVAL).is_some(),
        "every Access-Accept carries Acct-Interim-Interval"
    );
    account(c, server, 1, code, asid, mac, ip, 0, 0);
}

#[allow(clippy::too_many_arguments)]
fn account(
    c: &mut Client,
    server: &Server,
    status: u32,
    code: &str,
    asid: &str,
    mac: &str,
    ip: [u8; 4],
    seconds: u32,
    bytes: u64,
) {
    let req = c.accounting_request(
        status,
        code,
        asid,
        Some(mac),
        seconds,
        bytes / 2,
        bytes - bytes / 2,
        &[(attr::FRAMED_IP_ADDRESS, ip.to_vec())],
    );
    let auth: [u8; 16] = req[4..20].try_into().unwrap();
    let r = c
        .exchange(server.acct, &req, &auth)
        .expect("accounting answered");
    assert_eq!(r.code(), Code::AccountingResponse);
}

fn session_field(db: &TestDb, asid: &str, field: &str) -> serde_json::Value {
    db.session_json(asid)
        .unwrap_or_else(|| panic!("session {asid} listed"))[field]
        .clone()
}

fn wait_session_result(db: &TestDb, asid: &str, want: &str) {
    wait_until(&format!("session {asid} coa_result {want:?}"), WAIT, || {
        (session_field(db, asid, "coa_result") == want).then_some(())
    });
}

fn coa_metric(kind: &str, result: &str, cause: &str) -> String {
    format!(
        "rrnet_radius_coa_requests_total{{error_cause=\"{cause}\",kind=\"{kind}\",nas=\"hotspot1\",result=\"{result}\"}}"
    )
}

// ---- cases ----

fn revoke_disconnects_within_two_seconds(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    nas(db, &standin);
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "REV1", "1h");
    voucher(db, "KEEP1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();
    open_session(&mut c, &server, "REV1", "81000001", MAC1, IP1);
    open_session(&mut c, &server, "KEEP1", "81000002", MAC2, IP2);

    // The CLI is another process: the server notices through the queue.
    let revoked_at = Instant::now();
    db.cli(&["voucher", "revoke", "REV1"]);
    let seen = standin.wait_for(1, WAIT);
    let d = &seen[0];
    assert!(
        d.at.duration_since(revoked_at) <= Duration::from_secs(2),
        "Disconnect-Request {:?} after the revoke",
        d.at.duration_since(revoked_at)
    );
    assert_eq!(d.code, Code::DisconnectRequest);
    assert_eq!(d.user.as_deref(), Some("REV1"));
    assert_eq!(d.acct_session_id.as_deref(), Some("81000001"));
    assert_eq!(d.framed_ip, Some(IP1));
    assert_eq!(d.mac.as_deref(), Some(MAC1));

    wait_session_result(db, "81000001", "disconnect ack");
    assert!(session_field(db, "81000001", "disconnect_requested_at").is_number());
    assert!(session_field(db, "81000002", "disconnect_requested_at").is_null());
    server.wait_metric(&coa_metric("disconnect", "ack", ""), 1.0, WAIT);
    // Only the revoked voucher's session.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(standin.seen().len(), 1);
    let logs = server.log_text();
    assert!(logs.contains("CoA outcome"), "one log line per outcome");
    assert!(!logs.contains(SECRET), "no secret in the log");
    // The listing shows it too.
    let text = db.cli(&["session", "list"]);
    assert!(text.contains("disconnect ack"), "{text}");
    let text = db.cli(&["voucher", "show", "REV1"]);
    assert!(text.contains("81000001 open"), "{text}");
    assert!(text.contains("(disconnect ack)"), "{text}");
}

fn revoke_while_the_server_is_down_is_sent_at_start(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    nas(db, &standin);
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "DOWN1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();
    open_session(&mut c, &server, "DOWN1", "82000001", MAC1, IP1);
    stop(server);
    // Durable: the request waits in the database for the next server.
    db.cli(&["voucher", "revoke", "DOWN1"]);
    std::thread::sleep(Duration::from_millis(600));
    assert!(standin.seen().is_empty());
    let _server = Server::start(db);
    let seen = standin.wait_for(1, WAIT);
    assert_eq!(seen[0].acct_session_id.as_deref(), Some("82000001"));
    wait_session_result(db, "82000001", "disconnect ack");
}

fn revoke_no_disconnect_sends_nothing(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    nas(db, &standin);
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "QUIET1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();
    open_session(&mut c, &server, "QUIET1", "83000001", MAC1, IP1);
    let out = db.cli(&["voucher", "revoke", "QUIET1", "--no-disconnect"]);
    assert!(out.contains("left running"), "{out}");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(standin.seen().is_empty());
    assert!(session_field(db, "83000001", "disconnect_requested_at").is_null());
    // Later logins are still refused.
    let r = c
        .login(server.auth, "QUIET1", Cred::Pap("QUIET1"), Some(MAC1))
        .unwrap();
    assert_eq!(r.code(), Code::AccessReject);
}

fn revoke_right_after_login_reaches_the_session(db: &TestDb) {
    // RouterOS names the session in its Access-Request; a revoke between the
    // Accept and the Accounting-Start still ends it.
    let standin = NasStandIn::start(SECRET);
    nas(db, &standin);
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "EARLY1", "1h");
    let server = Server::start(db);
    let auth: [u8; 16] = rand::random();
    let mut b = PacketBuilder::new(Code::AccessRequest, 7);
    b.reserve_message_authenticator();
    b.add_str(attr::USER_NAME, "EARLY1").unwrap();
    b.add_user_password(b"EARLY1", SECRET.as_bytes(), &auth)
        .unwrap();
    b.add_str(attr::CALLING_STATION_ID, MAC1).unwrap();
    b.add_str(attr::ACCT_SESSION_ID, "8c000001").unwrap();
    b.add(attr::FRAMED_IP_ADDRESS, &IP1).unwrap();
    let req = b.finish_access_request(&auth, SECRET.as_bytes());
    let r = Client::new()
        .exchange(server.auth, &req, &auth)
        .expect("an answer");
    assert_eq!(r.code(), Code::AccessAccept);
    wait_until("the authorized session row", WAIT, || {
        db.session_json("8c000001").map(|_| ())
    });
    db.cli(&["voucher", "revoke", "EARLY1"]);
    let seen = standin.wait_for(1, WAIT);
    assert_eq!(seen[0].code, Code::DisconnectRequest);
    assert_eq!(seen[0].acct_session_id.as_deref(), Some("8c000001"));
    assert_eq!(seen[0].user.as_deref(), Some("EARLY1"));
    wait_session_result(db, "8c000001", "disconnect ack");
}

fn interim_over_the_data_quota_disconnects(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    nas(db, &standin);
    plan(db, "1k", &["--data", "1000"]);
    voucher(db, "DATA1", "1k");
    let server = Server::start(db);
    let mut c = Client::new();
    open_session(&mut c, &server, "DATA1", "84000001", MAC1, IP1);
    account(&mut c, &server, 3, "DATA1", "84000001", MAC1, IP1, 60, 400);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(standin.seen().is_empty(), "quota not used up yet");
    account(
        &mut c, &server, 3, "DATA1", "84000001", MAC1, IP1, 120, 1500,
    );
    let seen = standin.wait_for(1, WAIT);
    assert_eq!(seen[0].code, Code::DisconnectRequest);
    assert_eq!(seen[0].acct_session_id.as_deref(), Some("84000001"));
    wait_session_result(db, "84000001", "disconnect ack");
    // The next Interim does not send it again (it was acknowledged).
    account(
        &mut c, &server, 3, "DATA1", "84000001", MAC1, IP1, 180, 1600,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(standin.seen().len(), 1);
}

fn stop_over_the_time_quota_disconnects_the_other_session(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    nas(db, &standin);
    plan(db, "two", &["--time", "10m", "--shared-users", "2"]);
    voucher(db, "TWO1", "two");
    let server = Server::start(db);
    let mut c = Client::new();
    open_session(&mut c, &server, "TWO1", "85000001", MAC1, IP1);
    open_session(&mut c, &server, "TWO1", "85000002", MAC2, IP2);
    account(&mut c, &server, 3, "TWO1", "85000002", MAC2, IP2, 240, 0);
    // A Stop that brings the total to 10 minutes: the other device goes.
    account(&mut c, &server, 2, "TWO1", "85000001", MAC1, IP1, 360, 0);
    let seen = standin.wait_for(1, WAIT);
    assert_eq!(seen[0].code, Code::DisconnectRequest);
    assert_eq!(seen[0].acct_session_id.as_deref(), Some("85000002"));
    assert_eq!(seen[0].mac.as_deref(), Some(MAC2));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        standin.seen().len(),
        1,
        "the stopped session is not disconnected"
    );
}

fn fair_use_slows_by_coa_instead(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    nas(db, &standin);
    plan(
        db,
        "fair",
        &[
            "--data",
            "1000",
            "--time",
            "1h",
            "--rate-limit",
            "2M/2M",
            "--after-data-rate-limit",
            "256k/256k",
        ],
    );
    voucher(db, "FAIR1", "fair");
    let server = Server::start(db);
    let mut c = Client::new();
    let r = c
        .login(server.auth, "FAIR1", Cred::Pap("FAIR1"), Some(MAC1))
        .unwrap();
    assert_eq!(r.code(), Code::AccessAccept);
    assert_eq!(
        r.vsa_str(attr::mikrotik::RATE_LIMIT).as_deref(),
        Some("2M/2M")
    );
    assert_eq!(
        r.vsa_u32(attr::mikrotik::TOTAL_LIMIT),
        None,
        "no data limit: the router would cut the session at it"
    );
    account(&mut c, &server, 1, "FAIR1", "86000001", MAC1, IP1, 0, 0);
    account(
        &mut c, &server, 3, "FAIR1", "86000001", MAC1, IP1, 300, 1200,
    );
    let seen = standin.wait_for(1, WAIT);
    let coa = &seen[0];
    assert_eq!(coa.code, Code::CoaRequest, "slowed, not cut");
    assert_eq!(coa.rate_limit.as_deref(), Some("256k/256k"));
    assert_eq!(coa.acct_session_id.as_deref(), Some("86000001"));
    // 300 s into the session, 3300 s left on the voucher.
    assert_eq!(coa.session_timeout, Some(3600));
    wait_session_result(db, "86000001", "coa ack");
    server.wait_metric(&coa_metric("coa", "ack", ""), 1.0, WAIT);
    // Once acknowledged, later Interims send nothing more.
    account(
        &mut c, &server, 3, "FAIR1", "86000001", MAC1, IP1, 360, 1300,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(standin.seen().len(), 1);
    // A later login is accepted at the slow rate, with no data limit.
    let r = c
        .login(server.auth, "FAIR1", Cred::Pap("FAIR1"), Some(MAC1))
        .unwrap();
    assert_eq!(r.code(), Code::AccessAccept);
    assert_eq!(
        r.vsa_str(attr::mikrotik::RATE_LIMIT).as_deref(),
        Some("256k/256k")
    );
    assert_eq!(r.vsa_u32(attr::mikrotik::TOTAL_LIMIT), None);
}

fn plan_and_voucher_changes_send_coa(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    nas(db, &standin);
    plan(db, "slow", &["--time", "1h", "--rate-limit", "1M/1M"]);
    plan(db, "fast", &["--time", "2h", "--rate-limit", "8M/8M"]);
    voucher(db, "CHG1", "slow");
    let server = Server::start(db);
    let mut c = Client::new();
    open_session(&mut c, &server, "CHG1", "87000001", MAC1, IP1);
    account(&mut c, &server, 3, "CHG1", "87000001", MAC1, IP1, 100, 10);

    let out = db.cli(&["plan", "set", "slow", "--rate-limit", "2M/2M"]);
    assert!(out.contains("1 open session"), "{out}");
    let seen = standin.wait_for(1, WAIT);
    assert_eq!(seen[0].code, Code::CoaRequest);
    assert_eq!(seen[0].rate_limit.as_deref(), Some("2M/2M"));
    assert_eq!(seen[0].session_timeout, Some(3600));
    wait_session_result(db, "87000001", "coa ack");

    db.cli(&["voucher", "set", "CHG1", "--plan", "fast"]);
    let seen = standin.wait_for(2, WAIT);
    assert_eq!(seen[1].code, Code::CoaRequest);
    assert_eq!(seen[1].rate_limit.as_deref(), Some("8M/8M"));
    // 100 s in, 2 h − 100 s left.
    assert_eq!(seen[1].session_timeout, Some(7200));
    let v = db.voucher_json("CHG1");
    assert_eq!(v["plan"], "fast");
    // The plan's new values are listed.
    let plans = parse_json(&db.cli(&["plan", "list", "--format", "json"]));
    let slow = plans
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "slow")
        .unwrap();
    assert_eq!(slow["rate_limit"], "2M/2M");
}

fn nak_with_error_cause_is_recorded(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    standin.answer(Answer::Nak(503));
    nas(db, &standin);
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "NAK1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();
    open_session(&mut c, &server, "NAK1", "88000001", MAC1, IP1);
    db.cli(&["voucher", "revoke", "NAK1"]);
    standin.wait_for(1, WAIT);
    wait_session_result(db, "88000001", "disconnect nak Session-Context-Not-Found");
    server.wait_metric(
        &coa_metric("disconnect", "nak", "Session-Context-Not-Found"),
        1.0,
        WAIT,
    );
    wait_until("the NAK logged with its cause", WAIT, || {
        server
            .log_text()
            .lines()
            .any(|l| l.contains("CoA outcome") && l.contains("Session-Context-Not-Found"))
            .then_some(())
    });
    // A NAK is an answer: one request, no retransmission.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(standin.seen().len(), 1);
    let text = db.cli(&["session", "list"]);
    assert!(text.contains("Session-Context-Not-Found"), "{text}");
}

fn no_answer_is_three_tries_then_a_timeout(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    standin.answer(Answer::Silent);
    nas(db, &standin);
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "SIL1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();
    open_session(&mut c, &server, "SIL1", "89000001", MAC1, IP1);
    db.cli(&["voucher", "revoke", "SIL1"]);
    let seen = standin.wait_for(3, Duration::from_secs(15));
    // Retransmissions are the same packet (same Identifier and authenticator),
    // 1 s and then 2 s apart.
    assert_eq!(seen[0].bytes, seen[1].bytes);
    assert_eq!(seen[1].bytes, seen[2].bytes);
    let gap1 = seen[1].at.duration_since(seen[0].at);
    let gap2 = seen[2].at.duration_since(seen[1].at);
    assert!(
        gap1 >= Duration::from_millis(900) && gap1 < Duration::from_millis(1800),
        "{gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(1900) && gap2 < Duration::from_millis(2800),
        "{gap2:?}"
    );
    server.wait_metric(&coa_metric("disconnect", "timeout", ""), 1.0, WAIT);
    wait_session_result(db, "89000001", "disconnect timeout");
    // Three tries, no fourth.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(standin.seen().len(), 3);
}

fn nas_without_a_coa_address_is_logged_not_retried(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    // An entry for a router at any address: where it is is not known from the
    // entry, and it has sent nothing since the server started.
    db.cli(&[
        "nas",
        "add",
        "--name",
        "hotspot1",
        "--address",
        "any",
        "--identifier",
        "gw1",
        "--secret",
        SECRET,
        "--coa-port",
        &standin.port.to_string(),
    ]);
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "NET1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();
    c.identity = Some("gw1".into());
    account(&mut c, &server, 1, "NET1", "8a000001", MAC1, IP1, 0, 0);
    // A new server has heard nothing from the router yet.
    stop(server);
    let server = Server::start(db);
    db.cli(&["voucher", "revoke", "NET1"]);
    server.wait_metric(
        "rrnet_radius_coa_requests_total{error_cause=\"\",kind=\"disconnect\",nas=\"hotspot1\",result=\"unreachable\"}",
        1.0,
        WAIT,
    );
    wait_session_result(db, "8a000001", "disconnect unreachable");
    assert!(server.log_text().contains("no CoA address for this NAS"));
    // Not retried: the count stays at one.
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        server.metric(
            "rrnet_radius_coa_requests_total{error_cause=\"\",kind=\"disconnect\",nas=\"hotspot1\",result=\"unreachable\"}"
        ),
        Some(1.0)
    );
    assert!(standin.seen().is_empty());

    // Once the router sent an authenticated packet, requests go to the
    // address it came from.
    voucher(db, "NET2", "1h");
    account(&mut c, &server, 1, "NET2", "8a000002", MAC2, IP2, 0, 0);
    db.cli(&["voucher", "revoke", "NET2"]);
    let seen = standin.wait_for(1, WAIT);
    assert_eq!(seen[0].acct_session_id.as_deref(), Some("8a000002"));

    // And with an address set, there.
    stop(server);
    db.cli(&["nas", "set", "hotspot1", "--coa-address", "127.0.0.1"]);
    let _server = Server::start(db);
    voucher(db, "NET3", "1h");
    let mut c = Client::new();
    c.identity = Some("gw1".into());
    let server_acct = _server.acct;
    let req = c.accounting_request(
        1,
        "NET3",
        "8a000003",
        Some(MAC1),
        0,
        0,
        0,
        &[(attr::FRAMED_IP_ADDRESS, IP1.to_vec())],
    );
    let auth: [u8; 16] = req[4..20].try_into().unwrap();
    assert!(c.exchange(server_acct, &req, &auth).is_some());
    db.cli(&["voucher", "revoke", "NET3"]);
    let seen = standin.wait_for(2, WAIT);
    assert_eq!(seen[1].acct_session_id.as_deref(), Some("8a000003"));
}

fn cli_session_disconnect_prints_ack_and_nak(db: &TestDb) {
    let standin = NasStandIn::start(SECRET);
    nas(db, &standin);
    plan(db, "1h", &["--time", "1h", "--shared-users", "2"]);
    voucher(db, "CLI1", "1h");
    let server = Server::start(db);
    let mut c = Client::new();
    open_session(&mut c, &server, "CLI1", "8b000001", MAC1, IP1);
    open_session(&mut c, &server, "CLI1", "8b000002", MAC2, IP2);
    let out = db.cli(&["session", "disconnect", "--user", "CLI1"]);
    assert_eq!(out.matches(": ACK").count(), 2, "{out}");
    let seen = standin.seen();
    assert_eq!(seen.len(), 2);
    let mut ids: Vec<_> = seen
        .iter()
        .map(|s| s.acct_session_id.clone().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["8b000001", "8b000002"]);
    assert_eq!(
        session_field(db, "8b000001", "coa_result"),
        "disconnect ack"
    );

    standin.answer(Answer::Nak(503));
    let id = session_field(db, "8b000002", "id").as_i64().unwrap();
    let out = db.cli_output(&["session", "disconnect", "--id", &id.to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a NAK is a failure for the operator");
    assert!(stdout.contains("NAK Session-Context-Not-Found"), "{stdout}");
    assert_eq!(
        session_field(db, "8b000002", "coa_result"),
        "disconnect nak Session-Context-Not-Found"
    );
    drop(server);
}

/// A network entry covering two routers: a Disconnect goes to the router the
/// session is on, not to whichever router sent the latest packet.
fn network_entry_disconnects_at_the_sessions_router(db: &TestDb) {
    let first = NasStandIn::start_at(SECRET, "127.0.3.2:0");
    let second = NasStandIn::start_at(SECRET, &format!("127.0.3.3:{}", first.port));
    db.cli(&[
        "nas",
        "add",
        "--name",
        "lan",
        "--address",
        "127.0.3.0/24",
        "--secret",
        SECRET,
        "--coa-port",
        &first.port.to_string(),
    ]);
    plan(db, "1h", &["--time", "1h"]);
    voucher(db, "NET2", "1h");
    voucher(db, "NET3", "1h");
    let server = Server::start(db);
    let mut at2 = Client::bind("127.0.3.2:0", SECRET);
    let mut at3 = Client::bind("127.0.3.3:0", SECRET);
    open_session(&mut at2, &server, "NET2", "81000002", MAC1, IP1);
    // The router at .3 is the entry's latest source from here on.
    open_session(&mut at3, &server, "NET3", "81000003", MAC2, IP2);
    db.cli(&["voucher", "revoke", "NET2"]);
    let seen = first.wait_for(1, WAIT);
    assert_eq!(seen[0].code, Code::DisconnectRequest);
    assert_eq!(seen[0].acct_session_id.as_deref(), Some("81000002"));
    wait_session_result(db, "81000002", "disconnect ack");
    assert!(
        second.seen().is_empty(),
        "the Disconnect went to the other router: {:?}",
        second.seen()
    );
    stop(server);
}

fn cli_refuses_what_cannot_work(db: &TestDb) {
    let fails = |args: &[&str], why: &str| {
        let out = db.cli_output(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(why), "{args:?}: {err}");
    };
    db.cli(&[
        "nas",
        "add",
        "--name",
        "net",
        "--address",
        "10.8.0.0/24",
        "--secret",
        SECRET,
    ]);
    fails(&["nas", "set", "net"], "nothing to change");
    fails(
        &["nas", "set", "net", "--coa-address", "router"],
        "expected an IP address",
    );
    fails(
        &["nas", "set", "nope", "--coa-port", "1700"],
        "NAS nope not found",
    );
    let out = db.cli(&[
        "nas",
        "set",
        "net",
        "--coa-address",
        "10.8.0.2",
        "--coa-port",
        "1700",
    ]);
    assert!(out.contains("10.8.0.2:1700"), "{out}");
    let nas = parse_json(&db.cli(&["nas", "list", "--format", "json"]));
    assert_eq!(nas[0]["coa_address"], "10.8.0.2");
    assert_eq!(nas[0]["coa_port"], 1700);
    db.cli(&["nas", "set", "net", "--coa-address", "none"]);
    let nas = parse_json(&db.cli(&["nas", "list", "--format", "json"]));
    assert!(nas[0]["coa_address"].is_null());

    fails(
        &[
            "plan",
            "add",
            "--name",
            "x",
            "--after-data-rate-limit",
            "256k/256k",
        ],
        "needs --data",
    );
    fails(
        &[
            "plan",
            "add",
            "--name",
            "x",
            "--data",
            "1GiB",
            "--after-data-rate-limit",
            "256k;drop",
        ],
        "RouterOS syntax",
    );
    db.cli(&["plan", "add", "--name", "p", "--time", "1h"]);
    fails(
        &["plan", "set", "p", "--after-data-rate-limit", "1M/1M"],
        "data quota",
    );
    fails(&["plan", "set", "p", "--shared-users", "0"], "at least 1");
    fails(
        &["plan", "set", "nope", "--time", "2h"],
        "plan nope not found",
    );
    db.cli(&[
        "plan",
        "set",
        "p",
        "--data",
        "1GiB",
        "--after-data-rate-limit",
        "1M/1M",
        "--time",
        "none",
        "--mac-lock",
    ]);
    let plans = parse_json(&db.cli(&["plan", "list", "--format", "json"]));
    assert_eq!(plans[0]["after_data_rate_limit"], "1M/1M");
    assert!(plans[0]["time_quota_seconds"].is_null());
    assert_eq!(plans[0]["data_quota_bytes"], 1u64 << 30);
    assert_eq!(plans[0]["mac_lock"], true);
    db.cli(&["plan", "set", "p", "--no-mac-lock"]);
    let plans = parse_json(&db.cli(&["plan", "list", "--format", "json"]));
    assert_eq!(plans[0]["mac_lock"], false);
    fails(
        &["plan", "set", "p", "--mac-lock", "--no-mac-lock"],
        "cannot be used with",
    );
    fails(
        &["voucher", "set", "NOPE", "--plan", "p"],
        "voucher NOPE not found",
    );
    fails(&["session", "disconnect"], "--id");
}

#[test]
fn bad_answers_never_crash_and_are_ignored() {
    // Garbage and forged answers on the request's socket are dropped while the
    // client waits for the real one (unit level: coa::read_answer covers each
    // kind); here a forger answers first, then the real NAS.
    use rrnet_radius::coa::{CoaClient, CoaKind, Outcome, SessionIdent};
    use rrnet_radius::model::Secret;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target: SocketAddr = sock.local_addr().unwrap();
    let secret = SECRET.as_bytes().to_vec();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        let req = buf[..n].to_vec();
        // Junk, a forged ACK (wrong secret), then the real ACK.
        sock.send_to(&[0xff; 7], from).unwrap();
        let forged = reply(&req, Code::DisconnectRequest, Answer::Ack, b"wrong-secret").unwrap();
        sock.send_to(&forged, from).unwrap();
        let real = reply(&req, Code::DisconnectRequest, Answer::Ack, &secret).unwrap();
        sock.send_to(&real, from).unwrap();
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ex = rt.block_on(CoaClient::default().send(
        target,
        CoaKind::Disconnect,
        &SessionIdent {
            username: "U".into(),
            acct_session_id: "1".into(),
            framed_ip: None,
            mac: None,
        },
        &[],
        &Secret::new(SECRET),
    ));
    assert_eq!(ex.outcome, Outcome::Ack);
    assert_eq!(ex.tries, 1);
    assert_eq!(ex.bad_answer_count, 2);
}
