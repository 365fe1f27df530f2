//! End to end with a real FreeRADIUS 3.2: radclient → FreeRADIUS (the shipped
//! deploy/freeradius configuration) → rlm_rest → the REST shim → storage.
//!
//! FreeRADIUS runs in the foreground (`-f`, logging to stdout, never `-X`) from a
//! temporary raddb built from the system one (/etc/freeradius/3.0) plus the
//! shipped files, listening on free loopback ports. Skipped loudly without
//! freeradius/radclient unless RRNET_REQUIRE_TOOLS=1.

mod common;
mod shim_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{have_tool, spawn_freeradius, TestDb, SECRET};
use shim_support::*;

const SYSTEM_RADDB: &str = "/etc/freeradius/3.0";

/// FreeRADIUS as a child process; killed on drop.
struct FreeRadius {
    child: Child,
    auth_port: u16,
    acct_port: u16,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {} failed", from.display());
}

/// Ports nothing listens on right now (UDP, loopback).
fn free_udp_ports() -> (u16, u16) {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn replace_in(path: &Path, edits: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{} has no {from:?}", path.display());
        text = text.replace(from, to);
    }
    std::fs::write(path, text).unwrap();
}

/// The system raddb with only the shipped site and module enabled, a client for
/// 127.0.0.1, and writable run/log directories.
fn build_raddb(dir: &Path, auth_port: u16, acct_port: u16) -> PathBuf {
    let raddb = dir.join("raddb");
    copy_dir(Path::new(SYSTEM_RADDB), &raddb);
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/freeradius");
    for sub in ["sites-enabled", "mods-enabled"] {
        for e in std::fs::read_dir(raddb.join(sub)).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    for file in [
        "mods-available/rrnet_rest",
        "sites-available/rrnet",
        "policy.d/rrnet",
    ] {
        std::fs::copy(shipped.join(file), raddb.join(file)).unwrap();
    }
    std::os::unix::fs::symlink(
        "../mods-available/rrnet_rest",
        raddb.join("mods-enabled/rrnet_rest"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../sites-available/rrnet",
        raddb.join("sites-enabled/rrnet"),
    )
    .unwrap();
    // Loopback and free ports instead of *:1812/1813.
    replace_in(
        &raddb.join("sites-available/rrnet"),
        &[
            ("ipaddr = *", "ipaddr = 127.0.0.1"),
            ("port = 1812", &format!("port = {auth_port}")),
            ("port = 1813", &format!("port = {acct_port}")),
        ],
    );
    // Run as the current user, with run and log directories it can write.
    let conf = raddb.join("radiusd.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("user = ") || t.starts_with("group = ") {
                format!("#{l}\n")
            } else if t.starts_with("run_dir = ") {
                format!("run_dir = {}\n", dir.join("run").display())
            } else if t.starts_with("logdir = ") {
                format!("logdir = {}\n", dir.join("log").display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&conf, text).unwrap();
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::create_dir_all(dir.join("log")).unwrap();
    std::fs::write(
        raddb.join("clients.conf"),
        format!("client localhost {{\n\tipaddr = 127.0.0.1\n\tsecret = {SECRET}\n}}\n"),
    )
    .unwrap();
    raddb
}

fn start_freeradius(rest_base: &str) -> FreeRadius {
    let dir = tempfile::tempdir().unwrap();
    let (auth_port, acct_port) = free_udp_ports();
    let raddb = build_raddb(dir.path(), auth_port, acct_port);
    let mut cmd = Command::new("freeradius");
    cmd.args(["-f", "-l", "stdout", "-d"])
        .arg(&raddb)
        .env("RRNET_RADIUS_REST_BASE", rest_base)
        .env("RRNET_RADIUS_REST_SECRET", REST_SECRET);
    let (child, logs) = spawn_freeradius(cmd);
    FreeRadius {
        child,
        auth_port,
        acct_port,
        logs,
        _dir: dir,
    }
}

/// Send one request with radclient (`-x` prints the reply's attributes);
/// returns its output. One try, short timeout.
fn radclient(port: u16, kind: &str, attrs: &str) -> String {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "3"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(kind)
        .arg(SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(attrs.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The reply part of radclient's output (after "Received …").
fn received(out: &str) -> Option<&str> {
    out.find("Received ").map(|i| &out[i..])
}

fn access(user: &str, cred: &str) -> String {
    format!(
        "User-Name = \"{user}\"\n{cred}\nCalling-Station-Id = \"AA:BB:CC:DD:EE:01\"\nCalled-Station-Id = \"hotspot1\"\nNAS-Identifier = \"MikroTik\"\nNAS-Port-Type = Wireless-802.11\nService-Type = Login-User\nMessage-Authenticator = 0x00\n"
    )
}

fn accounting(status: &str, time: u32, input: u32) -> String {
    format!(
        "Acct-Status-Type = {status}\nUser-Name = \"E2E1\"\nAcct-Session-Id = \"82000001\"\nCalling-Station-Id = \"AA:BB:CC:DD:EE:01\"\nFramed-IP-Address = 10.5.50.10\nAcct-Session-Time = {time}\nAcct-Input-Octets = {input}\nAcct-Output-Octets = 7000\nClass = 0x72726e65743a76313a31\nNAS-Identifier = \"MikroTik\"\n"
    )
}

#[test]
fn freeradius_forwards_to_the_shim() {
    if !have_tool("freeradius", &["-v"]) || !have_tool("radclient", &["-v"]) {
        return;
    }
    let db = TestDb::sqlite();
    db.setup_basic();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "hour",
        "--time",
        "1h",
        "--rate-limit",
        "2M/2M",
        "--shared-users",
        "2",
    ]);
    db.cli(&[
        "voucher",
        "add",
        "E2E1",
        "--plan",
        "hour",
        "--password",
        "pw-e2e-1",
    ]);
    db.cli(&[
        "voucher",
        "add",
        "E2E2",
        "--plan",
        "hour",
        "--password",
        "pw-e2e-2",
    ]);
    let (server, http) = start_shim(&db);
    let fr = start_freeradius(&format!("http://{http}/api/v1/radius"));
    let fr_logs = || fr.logs.lock().unwrap().join("\n");

    // PAP accept: the reply attributes reach the NAS.
    let out = radclient(
        fr.auth_port,
        "auth",
        &access("E2E1", "User-Password = \"pw-e2e-1\""),
    );
    let reply = received(&out).unwrap_or_else(|| panic!("no reply:\n{out}\n{}", fr_logs()));
    assert!(
        reply.starts_with("Received Access-Accept"),
        "{out}\n{}",
        fr_logs()
    );
    assert!(reply.contains("Session-Timeout = 3600"), "{out}");
    // The plan has no --interim: the server's default_interim (5m).
    assert!(reply.contains("Acct-Interim-Interval = 300"), "{out}");
    assert!(reply.contains("Mikrotik-Rate-Limit = \"2M/2M\""), "{out}");
    assert!(reply.contains("Class = 0x72726e65743a76313a31"), "{out}");
    // RouterOS 7.15+ drops replies without Message-Authenticator; radclient
    // verifies it when present, so its presence here means it is also right.
    assert!(reply.contains("Message-Authenticator = 0x"), "{out}");

    // CHAP without CHAP-Challenge: the site copies the Request Authenticator.
    let out = radclient(
        fr.auth_port,
        "auth",
        &access("E2E2", "CHAP-Password = \"pw-e2e-2\""),
    );
    assert!(
        received(&out).is_some_and(|r| r.starts_with("Received Access-Accept")),
        "{out}\n{}",
        fr_logs()
    );

    // Wrong password: Access-Reject with the reason for the login page.
    let out = radclient(
        fr.auth_port,
        "auth",
        &access("E2E1", "User-Password = \"nope\""),
    );
    let reply = received(&out).unwrap_or_else(|| panic!("no reply:\n{out}"));
    assert!(reply.starts_with("Received Access-Reject"), "{out}");
    assert!(
        reply.contains("Reply-Message = \"Wrong password for this voucher\""),
        "{out}"
    );
    assert!(reply.contains("Message-Authenticator = 0x"), "{out}");

    // Accounting Start, Interim, Stop: answered only once stored.
    for (status, time, input) in [
        ("Start", 0, 0),
        ("Interim-Update", 60, 3000),
        ("Stop", 90, 5000),
    ] {
        let out = radclient(fr.acct_port, "acct", &accounting(status, time, input));
        assert!(
            received(&out).is_some_and(|r| r.starts_with("Received Accounting-Response")),
            "{status}: {out}\n{}",
            fr_logs()
        );
    }
    let list = sessions(&db);
    let s = list
        .iter()
        .find(|s| s["acct_session_id"] == "82000001")
        .unwrap_or_else(|| panic!("session not stored: {list:?}"));
    assert_eq!(s["state"], "closed", "{s}");
    assert_eq!(s["session_time"], 90);
    assert_eq!(s["input_octets"], 5000);
    assert_eq!(s["output_octets"], 7000);
    assert_eq!(s["nas_name"], "hotspot1");
    assert_eq!(
        server.metric(r#"rrnet_radius_http_requests_total{route="acct",status="204"}"#),
        Some(3.0)
    );

    // With the shim gone FreeRADIUS must not acknowledge accounting, so the
    // NAS keeps retrying until it is back.
    server.stop();
    let out = radclient(
        fr.acct_port,
        "acct",
        &accounting("Interim-Update", 120, 6000),
    );
    assert!(
        received(&out).is_none(),
        "acknowledged without the shim:\n{out}"
    );
    assert!(out.contains("No reply"), "{out}");
}
