//! pyrad (PyPI, ≥ 2.5) as an independent RADIUS client of the real binary.
//! `tests/scripts/pyrad_client.py` sends one request per run with pyrad's
//! `Client`, verifies the reply with pyrad's own code (Response Authenticator,
//! Message-Authenticator) and prints it as JSON, decoded with a dictionary of
//! its own (`tests/scripts/dictionary.pyrad`); these tests judge that JSON and
//! the stored sessions.
//!
//! Without python3 or a new enough pyrad the tests print SKIPPED; with
//! RRNET_REQUIRE_TOOLS=1 they fail. RRNET_PYTHON picks the interpreter.
mod common;
use common::*;

use std::process::{Command, ExitStatus};

use serde_json::{json, Value};

fn python() -> String {
    std::env::var("RRNET_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// pyrad 2.5 is the first release that signs requests with Message-Authenticator
/// and verifies it in replies; Debian's 2.1 can do neither.
fn have_pyrad() -> bool {
    if !have_tool(&python(), &["--version"]) {
        return false;
    }
    let probe = "import sys, pyrad\n\
                 from importlib.metadata import version\n\
                 v = getattr(pyrad, '__version__', None) or version('pyrad')\n\
                 sys.exit(0 if tuple(int(x) for x in v.split('.')[:2]) >= (2, 5) else 1)";
    let ok = Command::new(python())
        .args(["-c", probe])
        .output()
        .is_ok_and(|o| o.status.success());
    have_prerequisite(ok, "pyrad >= 2.5", "`import pyrad` failed or is too old")
}

/// A 5 GiB plan, so that Mikrotik-Total-Limit needs its Gigawords companion.
const PLAN_BYTES: u64 = 5 << 30;

fn hotspot() -> (TestDb, Server) {
    let db = TestDb::sqlite();
    db.setup_basic();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "day",
        "--time",
        "2h",
        "--data",
        "5GiB",
        "--rate-limit",
        "1M/3M",
        "--interim",
        "1m",
        "--idle-timeout",
        "5m",
        "--group",
        "silver",
        "--address-list",
        "paid",
    ]);
    for (code, password) in [
        ("PYPAP", "pw-pap"),
        ("PYCHAP", "pw-chap"),
        ("PYREJ", "pw-rej"),
        ("PYACCT", "pw-acct"),
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

struct Run {
    status: ExitStatus,
    json: Value,
    context: String,
}

fn pyrad_with(server: &Server, secret: &str, timeout: &str, args: &[&str]) -> Run {
    let script = tests_dir().join("scripts").join("pyrad_client.py");
    let out = Command::new(python())
        .arg(script)
        .args(["--server", "127.0.0.1"])
        .args(["--auth-port", &server.auth.port().to_string()])
        .args(["--acct-port", &server.acct.port().to_string()])
        .args(["--secret", secret, "--timeout", timeout])
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let context = format!(
        "pyrad_client.py {args:?}: exit {:?}\n--- stdout\n{stdout}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    Run {
        status: out.status,
        json,
        context,
    }
}

/// Run the script and insist on a reply of `code_name` that pyrad verified.
fn pyrad(server: &Server, args: &[&str], code_name: &str) -> Value {
    let run = pyrad_with(server, SECRET, "2", args);
    assert!(run.status.success(), "{}", run.context);
    assert_eq!(run.json["code_name"], code_name, "{}", run.context);
    let verified = &run.json["verified"];
    assert_eq!(verified["response_authenticator"], true, "{}", run.context);
    let signed = code_name != "Accounting-Response" || args.first() == Some(&"status");
    if signed {
        // Access replies and Status-Server replies: signed, and signed first.
        assert_eq!(
            verified["message_authenticator_present"], true,
            "{}",
            run.context
        );
        assert_eq!(verified["message_authenticator"], true, "{}", run.context);
        assert_eq!(
            verified["message_authenticator_first"], true,
            "{}",
            run.context
        );
    }
    run.json["attributes"].clone()
}

/// `rrnet:v1:<voucher id>` from the hex Class pyrad printed.
fn class_voucher_id(attrs: &Value) -> i64 {
    let hex_value = attrs["Class"][0].as_str().expect("Class in reply");
    let bytes = hex::decode(hex_value.trim_start_matches("0x")).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    text.strip_prefix("rrnet:v1:")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("unexpected Class {text:?}"))
}

fn session(db: &TestDb, acct_session_id: &str) -> Value {
    let list: Vec<Value> =
        serde_json::from_str(&db.cli(&["session", "list", "--format", "json"])).unwrap();
    list.into_iter()
        .find(|s| s["acct_session_id"] == acct_session_id)
        .unwrap_or_else(|| panic!("no session {acct_session_id}"))
}

#[test]
fn pap_accept_verified_by_pyrad() {
    if !have_pyrad() {
        return;
    }
    let (_db, server) = hotspot();
    let attrs = pyrad(
        &server,
        &[
            "auth",
            "--user",
            "PYPAP",
            "--pap",
            "pw-pap",
            "--mac",
            "AA:BB:CC:00:00:01",
        ],
        "Access-Accept",
    );
    assert_eq!(attrs["Session-Timeout"], json!([7200]), "{attrs}");
    assert_eq!(attrs["Idle-Timeout"], json!([300]));
    assert_eq!(attrs["Acct-Interim-Interval"], json!([60]));
    assert_eq!(attrs["Mikrotik-Rate-Limit"], json!(["1M/3M"]));
    assert_eq!(attrs["Mikrotik-Group"], json!(["silver"]));
    assert_eq!(attrs["Mikrotik-Address-List"], json!(["paid"]));
    assert_eq!(
        attrs["Mikrotik-Total-Limit"],
        json!([PLAN_BYTES & 0xffff_ffff])
    );
    assert_eq!(
        attrs["Mikrotik-Total-Limit-Gigawords"],
        json!([PLAN_BYTES >> 32])
    );
    assert!(class_voucher_id(&attrs) > 0);
    assert!(attrs.get("Reply-Message").is_none());
    assert!(server.stop().success());
}

#[test]
fn chap_accept_verified_by_pyrad() {
    if !have_pyrad() {
        return;
    }
    let (_db, server) = hotspot();
    // With CHAP-Challenge (MikroTik's http-chap), then with the Request
    // Authenticator as the challenge.
    for extra in [&[][..], &["--no-challenge"][..]] {
        let mut args = vec![
            "auth",
            "--user",
            "PYCHAP",
            "--chap",
            "pw-chap",
            "--mac",
            "AA:BB:CC:00:00:02",
        ];
        args.extend_from_slice(extra);
        let attrs = pyrad(&server, &args, "Access-Accept");
        assert_eq!(attrs["Session-Timeout"], json!([7200]), "{attrs}");
        assert_eq!(attrs["Mikrotik-Rate-Limit"], json!(["1M/3M"]));
    }
    let attrs = pyrad(
        &server,
        &["auth", "--user", "PYCHAP", "--chap", "wrong"],
        "Access-Reject",
    );
    assert_eq!(
        attrs["Reply-Message"],
        json!(["Wrong password for this voucher"])
    );
    assert!(server.stop().success());
}

#[test]
fn rejects_verified_by_pyrad() {
    if !have_pyrad() {
        return;
    }
    let (_db, server) = hotspot();
    for (user, password, message) in [
        ("PYREJ", "nope", "Wrong password for this voucher"),
        ("PY-UNKNOWN", "nope", "Unknown voucher code"),
    ] {
        let attrs = pyrad(
            &server,
            &["auth", "--user", user, "--pap", password],
            "Access-Reject",
        );
        assert_eq!(attrs["Reply-Message"], json!([message]), "{attrs}");
        assert!(attrs.get("Session-Timeout").is_none());
        assert!(attrs.get("Class").is_none());
    }
    // Wrong secret: the server drops the request, so pyrad sees no reply.
    let run = pyrad_with(
        &server,
        "not-the-secret",
        "1",
        &["auth", "--user", "PYPAP", "--pap", "pw-pap"],
    );
    assert_eq!(run.status.code(), Some(3), "{}", run.context);
    assert_eq!(run.json["error"], "timeout", "{}", run.context);
    assert!(server.stop().success());
}

#[test]
fn accounting_and_status_server_with_pyrad() {
    if !have_pyrad() {
        return;
    }
    let (db, server) = hotspot();
    let mac = "AA:BB:CC:00:00:04";
    let attrs = pyrad(
        &server,
        &["auth", "--user", "PYACCT", "--pap", "pw-acct", "--mac", mac],
        "Access-Accept",
    );
    let class = attrs["Class"][0].as_str().unwrap().to_string();
    let voucher_id = class_voucher_id(&attrs);

    let acct = |extra: &[&str]| {
        let mut args = vec![
            "acct",
            "--user",
            "PYACCT",
            "--session-id",
            "py-0001",
            "--mac",
            mac,
            "--framed-ip",
            "10.5.50.9",
            "--class-hex",
            &class,
        ];
        args.extend_from_slice(extra);
        let attrs = pyrad(&server, &args, "Accounting-Response");
        assert_eq!(attrs, json!({}), "Accounting-Response carries nothing");
    };

    acct(&["--status", "Start"]);
    let s = session(&db, "py-0001");
    assert_eq!(s["state"], "open", "{s}");
    assert_eq!(s["voucher_id"], voucher_id);
    assert_eq!(s["framed_ip"], "10.5.50.9");

    // pyrad can also sign accounting requests (RFC 5176 §3.4 style, zero vector);
    // such a request must be accepted, not dropped as a bad Message-Authenticator.
    let input = 4_500_000_000u64.to_string();
    acct(&[
        "--status",
        "Interim-Update",
        "--session-time",
        "60",
        "--input",
        &input,
        "--output",
        "1234",
        "--message-authenticator",
    ]);
    let s = session(&db, "py-0001");
    assert_eq!(s["state"], "open", "{s}");
    assert_eq!(s["session_time"], 60);
    assert_eq!(s["input_octets"], 4_500_000_000u64);
    assert_eq!(s["output_octets"], 1234);

    let input = 4_500_000_500u64.to_string();
    acct(&[
        "--status",
        "Stop",
        "--session-time",
        "90",
        "--input",
        &input,
        "--output",
        "2345",
        "--terminate-cause",
        "Idle-Timeout",
    ]);
    let s = session(&db, "py-0001");
    assert_eq!(s["state"], "closed", "{s}");
    assert_eq!(s["session_time"], 90);
    assert_eq!(s["input_octets"], 4_500_000_500u64);
    assert_eq!(s["output_octets"], 2345);
    assert_eq!(s["terminate_cause"], "Idle-Timeout");

    let v: Value =
        serde_json::from_str(&db.cli(&["voucher", "show", "PYACCT", "--format", "json"])).unwrap();
    assert_eq!(v["used_seconds"], 90);
    assert_eq!(v["used_bytes"], 4_500_000_500u64 + 2345);
    assert_eq!(v["data_left_bytes"], PLAN_BYTES - 4_500_000_500 - 2345);

    // Status-Server (RFC 5997) on both ports, signed replies.
    for (port, code) in [("auth", "Access-Accept"), ("acct", "Accounting-Response")] {
        let attrs = pyrad(&server, &["status", "--port", port], code);
        let names: Vec<&String> = attrs.as_object().unwrap().keys().collect();
        assert_eq!(names, ["Message-Authenticator"], "{port}: {attrs}");
    }
    assert!(server.stop().success());
}
