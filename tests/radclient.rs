//! FreeRADIUS's own clients, `radclient` and `radtest` (Debian `freeradius-utils`),
//! against the real binary. They share no code with the server: they hide the
//! password, compute CHAP, sign requests with Message-Authenticator and verify the
//! reply's authenticators themselves, and their exit status says whether the reply
//! was the expected one — the same judgement a third-party NAS makes.
//!
//! Without the tools the tests print SKIPPED; with RRNET_REQUIRE_TOOLS=1 they fail.
mod common;
use common::*;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};

/// `radclient -h` exits 1 on 3.2; `-v` exits 0 when it runs at all.
fn have_radclient() -> bool {
    have_tool("radclient", &["-v"])
}

/// A 5 GiB plan, so that Mikrotik-Total-Limit needs its Gigawords companion.
const PLAN_BYTES: u64 = 5 << 30;

/// A NAS for 127.0.0.1, one plan, and one voucher per case so that the cases
/// cannot disturb each other's usage.
fn hotspot() -> (TestDb, Server) {
    let db = TestDb::sqlite();
    db.setup_basic();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "day",
        "--time",
        "1h",
        "--data",
        "5GiB",
        "--rate-limit",
        "2M/4M",
        "--interim",
        "5m",
        "--idle-timeout",
        "10m",
        "--group",
        "gold",
    ]);
    for (code, password) in [
        ("PAP1", "secret-pap"),
        ("CHAP1", "secret-chap"),
        ("REJ1", "right-one"),
        ("ACCT1", "secret-acct"),
        ("RADTEST1", "secret-rt"),
    ] {
        db.cli(&[
            "voucher",
            "add",
            code,
            "--plan",
            "day",
            "--password",
            password,
        ]);
    }
    let server = Server::start(&db);
    (db, server)
}

/// One radclient run: its exit status, its output, and the reply it printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// Packet type of the reply ("Access-Accept"), if one was received.
    reply_code: Option<String>,
    /// Reply attributes in wire order, string values without their quotes.
    reply: Vec<(String, String)>,
}

impl Run {
    fn attr(&self, name: &str) -> Option<&str> {
        self.reply
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn expect_attr(&self, name: &str) -> &str {
        self.attr(name)
            .unwrap_or_else(|| panic!("reply has no {name}:\n{}", self.stdout))
    }

    fn context(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }
}

/// Parse `radclient -x` output: after `Received <Code> Id …` come the reply
/// attributes, one per line, indented with a tab.
fn parse_reply(stdout: &str) -> (Option<String>, Vec<(String, String)>) {
    let mut code = None;
    let mut attrs = Vec::new();
    let mut in_reply = false;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("Received ") {
            code = rest.split(" Id ").next().map(str::to_owned);
            attrs.clear();
            in_reply = true;
        } else if in_reply && line.starts_with('\t') {
            if let Some((name, value)) = line.trim().split_once(" = ") {
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                attrs.push((name.to_string(), value.to_string()));
            }
        } else {
            in_reply = false;
        }
    }
    (code, attrs)
}

/// Run `radclient -x -r 1 -t <timeout> <server> <command> <secret>` with the
/// request attributes on stdin. One try only: a missing reply is a failure, not
/// something a retry should hide.
fn radclient_with(
    server: SocketAddr,
    command: &str,
    secret: &str,
    timeout_s: &str,
    attrs: &str,
) -> Run {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", timeout_s])
        .arg(server.to_string())
        .args([command, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(attrs.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (reply_code, reply) = parse_reply(&stdout);
    Run {
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout,
        reply_code,
        reply,
    }
}

fn radclient(server: SocketAddr, command: &str, attrs: &str) -> Run {
    radclient_with(server, command, SECRET, "2", attrs)
}

/// An Access-Request as a MikroTik hotspot sends it. `Message-Authenticator = 0x00`
/// makes radclient compute and add the real one (the server requires it).
fn access_request(user: &str, credential: &str, mac: &str) -> String {
    format!(
        "User-Name = \"{user}\"\n{credential}\nCalling-Station-Id = \"{mac}\"\n\
         Called-Station-Id = \"hotspot1\"\nNAS-Identifier = \"MikroTik\"\n\
         NAS-Port-Type = Wireless-802.11\nService-Type = Login-User\n\
         Message-Authenticator = 0x00\n"
    )
}

fn assert_accept(run: &Run) {
    assert!(run.status.success(), "radclient failed: {}", run.context());
    assert_eq!(
        run.reply_code.as_deref(),
        Some("Access-Accept"),
        "{}",
        run.context()
    );
    // RouterOS 7.15+ drops Access replies without it; radclient has already
    // verified its value, this checks the placement.
    assert_eq!(
        run.reply.first().map(|(n, _)| n.as_str()),
        Some("Message-Authenticator"),
        "Message-Authenticator must be the first attribute: {}",
        run.context()
    );
}

/// Class is printed as octets (`0x…`); the server puts `rrnet:v1:<voucher id>` in it.
fn class_voucher_id(run: &Run) -> i64 {
    let hex_value = run.expect_attr("Class");
    let bytes = hex::decode(hex_value.trim_start_matches("0x")).expect("Class is hex");
    let text = String::from_utf8(bytes).expect("Class is text");
    text.strip_prefix("rrnet:v1:")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("unexpected Class {text:?}"))
}

fn sessions(db: &TestDb) -> Vec<serde_json::Value> {
    serde_json::from_str(&db.cli(&["session", "list", "--format", "json"])).unwrap()
}

fn session(db: &TestDb, acct_session_id: &str) -> serde_json::Value {
    sessions(db)
        .into_iter()
        .find(|s| s["acct_session_id"] == acct_session_id)
        .unwrap_or_else(|| panic!("no session {acct_session_id}"))
}

#[test]
fn pap_accept_carries_the_plan() {
    if !have_radclient() {
        return;
    }
    let (_db, server) = hotspot();
    let run = radclient(
        server.auth,
        "auth",
        &access_request(
            "PAP1",
            "User-Password = \"secret-pap\"",
            "AA:BB:CC:DD:EE:01",
        ),
    );
    assert_accept(&run);
    // A fresh 1-hour voucher with no expiry: the whole hour.
    assert_eq!(run.expect_attr("Session-Timeout"), "3600");
    assert_eq!(run.expect_attr("Idle-Timeout"), "600");
    assert_eq!(run.expect_attr("Acct-Interim-Interval"), "300");
    assert_eq!(run.expect_attr("Mikrotik-Rate-Limit"), "2M/4M");
    assert_eq!(run.expect_attr("Mikrotik-Group"), "gold");
    // Bytes left, split into the low and high 32 bits.
    assert_eq!(
        run.expect_attr("Mikrotik-Total-Limit"),
        (PLAN_BYTES & 0xffff_ffff).to_string()
    );
    assert_eq!(
        run.expect_attr("Mikrotik-Total-Limit-Gigawords"),
        (PLAN_BYTES >> 32).to_string()
    );
    assert!(class_voucher_id(&run) > 0);
    assert_eq!(run.attr("Reply-Message"), None);
    assert!(server.stop().success());
}

#[test]
fn chap_accept_with_and_without_challenge() {
    if !have_radclient() {
        return;
    }
    let (_db, server) = hotspot();
    // radclient turns a cleartext CHAP-Password into the CHAP response; with no
    // CHAP-Challenge the Request Authenticator is the challenge (RFC 2865 §5.3).
    let run = radclient(
        server.auth,
        "auth",
        &access_request(
            "CHAP1",
            "CHAP-Password = \"secret-chap\"",
            "AA:BB:CC:DD:EE:02",
        ),
    );
    assert_accept(&run);
    assert_eq!(run.expect_attr("Session-Timeout"), "3600");
    assert_eq!(run.expect_attr("Mikrotik-Rate-Limit"), "2M/4M");
    assert!(
        run.stdout.contains("CHAP-Password = 0x"),
        "radclient sent a computed CHAP response: {}",
        run.context()
    );

    // The MikroTik way: an explicit CHAP-Challenge, which radclient uses instead.
    let run = radclient(
        server.auth,
        "auth",
        &access_request(
            "CHAP1",
            "CHAP-Password = \"secret-chap\"\nCHAP-Challenge = 0x0123456789abcdef0123456789abcdef",
            "AA:BB:CC:DD:EE:02",
        ),
    );
    assert_accept(&run);

    // The same challenge with the wrong password is refused.
    let run = radclient(
        server.auth,
        "auth",
        &access_request(
            "CHAP1",
            "CHAP-Password = \"not-it\"\nCHAP-Challenge = 0x0123456789abcdef0123456789abcdef",
            "AA:BB:CC:DD:EE:02",
        ),
    );
    assert!(!run.status.success(), "{}", run.context());
    assert_eq!(run.reply_code.as_deref(), Some("Access-Reject"));
    assert!(server.stop().success());
}

#[test]
fn rejects_say_why() {
    if !have_radclient() {
        return;
    }
    let (db, server) = hotspot();
    for (user, password, message) in [
        ("REJ1", "wrong-one", "Wrong password for this voucher"),
        ("NO-SUCH-CODE", "whatever", "Unknown voucher code"),
    ] {
        let run = radclient(
            server.auth,
            "auth",
            &access_request(
                user,
                &format!("User-Password = \"{password}\""),
                "AA:BB:CC:DD:EE:03",
            ),
        );
        // radclient expects an Access-Accept for `auth` and exits 1 on anything else.
        assert!(!run.status.success(), "{}", run.context());
        assert_eq!(
            run.reply_code.as_deref(),
            Some("Access-Reject"),
            "{}",
            run.context()
        );
        assert!(
            run.stderr
                .contains("Expected Access-Accept got Access-Reject"),
            "{}",
            run.context()
        );
        assert_eq!(
            run.reply.first().map(|(n, _)| n.as_str()),
            Some("Message-Authenticator")
        );
        assert_eq!(
            run.attr("Reply-Message"),
            Some(message),
            "{}",
            run.context()
        );
        assert_eq!(run.attr("Session-Timeout"), None);
        assert_eq!(run.attr("Class"), None);
    }

    // A revoked voucher with the right password.
    db.cli(&["voucher", "revoke", "REJ1"]);
    let_admin_change_land();
    let run = radclient(
        server.auth,
        "auth",
        &access_request("REJ1", "User-Password = \"right-one\"", "AA:BB:CC:DD:EE:03"),
    );
    assert!(!run.status.success());
    assert_eq!(
        run.attr("Reply-Message"),
        Some("This voucher has been revoked")
    );

    // A wrong shared secret: the Message-Authenticator does not verify, so the
    // server stays silent (no reply that could confirm the secret) and
    // radclient gives up.
    let run = radclient_with(
        server.auth,
        "auth",
        "not-the-secret",
        "1",
        &access_request(
            "PAP1",
            "User-Password = \"secret-pap\"",
            "AA:BB:CC:DD:EE:03",
        ),
    );
    assert!(!run.status.success(), "{}", run.context());
    assert_eq!(run.reply_code, None, "{}", run.context());
    assert!(server.stop().success());
}

#[test]
fn accounting_start_interim_stop() {
    if !have_radclient() {
        return;
    }
    let (db, server) = hotspot();
    let mac = "AA:BB:CC:DD:EE:04";
    let login = radclient(
        server.auth,
        "auth",
        &access_request("ACCT1", "User-Password = \"secret-acct\"", mac),
    );
    assert_accept(&login);
    let class = login.expect_attr("Class").to_string();
    let voucher_id = class_voucher_id(&login);

    // The NAS echoes Class (RFC 2865 §5.25); counters go past 4 GiB so the
    // Gigawords attributes matter.
    let acct = |status: &str, extra: &str| {
        let run = radclient(
            server.acct,
            "acct",
            &format!(
                "Acct-Status-Type = {status}\nUser-Name = \"ACCT1\"\n\
                 Acct-Session-Id = \"81a00001\"\nCalling-Station-Id = \"{mac}\"\n\
                 Framed-IP-Address = 10.5.50.7\nNAS-Identifier = \"MikroTik\"\n\
                 Class = {class}\n{extra}"
            ),
        );
        assert!(run.status.success(), "{status}: {}", run.context());
        assert_eq!(
            run.reply_code.as_deref(),
            Some("Accounting-Response"),
            "{status}: {}",
            run.context()
        );
        run
    };

    acct("Start", "Acct-Session-Time = 0\n");
    let s = session(&db, "81a00001");
    assert_eq!(s["state"], "open", "{s}");
    assert_eq!(s["voucher_id"], voucher_id);
    assert_eq!(s["mac"], mac);
    assert_eq!(s["framed_ip"], "10.5.50.7");

    acct(
        "Interim-Update",
        "Acct-Session-Time = 300\nAcct-Input-Octets = 1000\nAcct-Input-Gigawords = 0\n\
         Acct-Output-Octets = 5000\nAcct-Output-Gigawords = 1\n",
    );
    let s = session(&db, "81a00001");
    assert_eq!(s["state"], "open", "{s}");
    assert_eq!(s["session_time"], 300);
    assert_eq!(s["input_octets"], 1000);
    assert_eq!(s["output_octets"], (1u64 << 32) + 5000);

    acct(
        "Stop",
        "Acct-Session-Time = 600\nAcct-Input-Octets = 2000\nAcct-Input-Gigawords = 0\n\
         Acct-Output-Octets = 9000\nAcct-Output-Gigawords = 1\n\
         Acct-Terminate-Cause = User-Request\n",
    );
    let s = session(&db, "81a00001");
    assert_eq!(s["state"], "closed", "{s}");
    assert_eq!(s["session_time"], 600);
    assert_eq!(s["input_octets"], 2000);
    assert_eq!(s["output_octets"], (1u64 << 32) + 9000);
    assert_eq!(s["terminate_cause"], "User-Request");

    // A late retransmission of the interim (new Acct-Delay-Time, so a new
    // packet) is answered but moves nothing.
    acct(
        "Interim-Update",
        "Acct-Session-Time = 300\nAcct-Input-Octets = 1000\nAcct-Input-Gigawords = 0\n\
         Acct-Output-Octets = 5000\nAcct-Output-Gigawords = 1\nAcct-Delay-Time = 7\n",
    );
    let s = session(&db, "81a00001");
    assert_eq!(s["state"], "closed", "{s}");
    assert_eq!(s["session_time"], 600);
    assert_eq!(s["output_octets"], (1u64 << 32) + 9000);

    // One login, one row: the Start took over the row the Access-Accept made.
    let rows: Vec<_> = sessions(&db)
        .into_iter()
        .filter(|s| s["voucher_id"] == voucher_id)
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");

    let v: serde_json::Value =
        serde_json::from_str(&db.cli(&["voucher", "show", "ACCT1", "--format", "json"])).unwrap();
    assert_eq!(v["used_seconds"], 600);
    assert_eq!(v["used_bytes"], 2000 + (1u64 << 32) + 9000);
    assert!(server.stop().success());
}

#[test]
fn status_server_on_both_ports() {
    if !have_radclient() {
        return;
    }
    let (_db, server) = hotspot();
    // RFC 5997 §3: Status-Server must carry Message-Authenticator, and so does the reply.
    for (port, code) in [
        (server.auth, "Access-Accept"),
        (server.acct, "Accounting-Response"),
    ] {
        let run = radclient(port, "status", "Message-Authenticator = 0x00\n");
        assert!(run.status.success(), "{}", run.context());
        assert_eq!(run.reply_code.as_deref(), Some(code), "{}", run.context());
        assert_eq!(
            run.reply.first().map(|(n, _)| n.as_str()),
            Some("Message-Authenticator"),
            "{}",
            run.context()
        );
    }
    assert!(server.stop().success());
}

/// `radtest` is what operators type first; its exit status is the verdict
/// scripts and monitoring use: 0 on Access-Accept, non-zero otherwise.
#[test]
fn radtest_exit_status_is_the_verdict() {
    if !have_radclient()
        || !have_prerequisite(
            Command::new("sh")
                .args(["-c", "command -v radtest"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "radtest",
            "not on PATH (Debian freeradius-utils)",
        )
    {
        return;
    }
    let (_db, server) = hotspot();
    let radtest = |method: &str, password: &str| {
        let out = Command::new("radtest")
            .args(["-t", method, "RADTEST1", password])
            .arg(server.auth.to_string())
            .args(["0", SECRET])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status, parse_reply(&stdout), stdout)
    };
    for method in ["pap", "chap"] {
        let (status, (code, attrs), out) = radtest(method, "secret-rt");
        assert!(status.success(), "radtest -t {method}: {out}");
        assert_eq!(code.as_deref(), Some("Access-Accept"), "{out}");
        assert!(attrs
            .iter()
            .any(|(n, v)| n == "Session-Timeout" && v == "3600"));

        let (status, (code, attrs), out) = radtest(method, "wrong");
        assert!(
            !status.success(),
            "radtest -t {method} with a wrong password: {out}"
        );
        assert_eq!(code.as_deref(), Some("Access-Reject"), "{out}");
        assert!(attrs
            .iter()
            .any(|(n, v)| n == "Reply-Message" && v == "Wrong password for this voucher"));
    }
    assert!(server.stop().success());
}
