//! A real peer as the router's CoA receiver: FreeRADIUS 3.2 with a
//! `listen { type = coa }` and a `recv-coa` section that checks what a
//! RouterOS `/radius incoming` needs (User-Name, Acct-Session-Id,
//! Framed-IP-Address, Calling-Station-Id; the rate for a CoA-Request) and
//! answers ACK, else NAK. FreeRADIUS itself drops a request whose Request
//! Authenticator or Message-Authenticator does not verify with the client's
//! secret, so an ACK proves both. Skipped without `freeradius` unless
//! RRNET_REQUIRE_TOOLS=1.

#[macro_use]
mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rrnet_radius::proto::{attr, Code};

const SYSTEM_RADDB: &str = "/etc/freeradius/3.0";
const WAIT: Duration = Duration::from_secs(15);

on_both_backends!(
    freeradius_acknowledges_our_disconnect_and_coa,
    freeradius_drops_a_request_signed_with_another_secret,
);

/// FreeRADIUS listening for CoA/Disconnect on a loopback port; killed on drop.
struct CoaReceiver {
    child: Child,
    port: u16,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for CoaReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The site: ACK when the request names the expected session, NAK otherwise.
fn site(port: u16) -> String {
    format!(
        r#"listen {{
	type = coa
	ipaddr = 127.0.0.1
	port = {port}
	virtual_server = rrnet_coa
}}

server rrnet_coa {{
	recv-coa {{
		if (&request:Packet-Type == Disconnect-Request && &User-Name == "FR1" && &Acct-Session-Id == "91000001" && &Framed-IP-Address == 10.5.50.11 && &Calling-Station-Id == "AA:BB:CC:00:00:01") {{
			ok
		}}
		elsif (&request:Packet-Type == CoA-Request && &User-Name == "FR2" && &Acct-Session-Id == "91000002" && &Mikrotik-Rate-Limit == "256k/256k") {{
			ok
		}}
		else {{
			reject
		}}
	}}
	send-coa {{
		ok
	}}
}}
"#
    )
}

fn start_receiver(secret: &str) -> Option<CoaReceiver> {
    if !have_tool("freeradius", &["-v"]) {
        return None;
    }
    if !Path::new(SYSTEM_RADDB).join("radiusd.conf").exists() {
        skip(
            Lacks::Tool,
            &format!("{SYSTEM_RADDB}/radiusd.conf missing (Debian package freeradius)"),
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let raddb = dir.path().join("raddb");
    let status = Command::new("cp")
        .arg("-a")
        .arg(SYSTEM_RADDB)
        .arg(&raddb)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {SYSTEM_RADDB}");
    for sub in ["sites-enabled", "mods-enabled"] {
        for e in std::fs::read_dir(raddb.join(sub)).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(raddb.join("sites-enabled/rrnet_coa"), site(port)).unwrap();
    // `ok` and `reject` are instances of the `always` module.
    std::os::unix::fs::symlink(
        "../mods-available/always",
        raddb.join("mods-enabled/always"),
    )
    .unwrap();
    std::fs::write(
        raddb.join("clients.conf"),
        format!("client rrnet {{\n\tipaddr = 127.0.0.1\n\tsecret = {secret}\n}}\n"),
    )
    .unwrap();
    // Run as the current user, with run and log directories it can write.
    let conf = raddb.join("radiusd.conf");
    let text: String = std::fs::read_to_string(&conf)
        .unwrap()
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("user = ") || t.starts_with("group = ") {
                format!("#{l}\n")
            } else if t.starts_with("run_dir = ") {
                format!("run_dir = {}\n", dir.path().join("run").display())
            } else if t.starts_with("logdir = ") {
                format!("logdir = {}\n", dir.path().join("log").display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&conf, text).unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    std::fs::create_dir_all(dir.path().join("log")).unwrap();
    // -x: one line per packet, so the test can see what FreeRADIUS received.
    let mut cmd = Command::new("freeradius");
    cmd.args(["-f", "-x", "-l", "stdout", "-d"]).arg(&raddb);
    let (child, logs) = spawn_freeradius(cmd);
    Some(CoaReceiver {
        child,
        port,
        logs,
        _dir: dir,
    })
}

fn login_and_start(c: &mut Client, server: &Server, code: &str, asid: &str, ip: [u8; 4]) {
    let r = c
        .login(
            server.auth,
            code,
            Cred::Pap(code),
            Some("AA:BB:CC:00:00:01"),
        )
        .expect("an answer");
    assert_eq!(r.code(), Code::AccessAccept);
    let req = c.accounting_request(
        1,
        code,
        asid,
        Some("AA:BB:CC:00:00:01"),
        0,
        0,
        0,
        &[(attr::FRAMED_IP_ADDRESS, ip.to_vec())],
    );
    let auth: [u8; 16] = req[4..20].try_into().unwrap();
    assert!(c.exchange(server.acct, &req, &auth).is_some());
}

fn coa_result(db: &TestDb, asid: &str, want: &str, within: Duration) {
    wait_until(&format!("{asid}: {want}"), within, || {
        (db.session_json(asid)?["coa_result"] == want).then_some(())
    });
}

fn freeradius_acknowledges_our_disconnect_and_coa(db: &TestDb) {
    let Some(fr) = start_receiver(SECRET) else {
        return;
    };
    let port = fr.port.to_string();
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
        &port,
    ]);
    db.cli(&["plan", "add", "--name", "1h", "--time", "1h"]);
    db.cli(&[
        "plan",
        "add",
        "--name",
        "fair",
        "--data",
        "1000",
        "--after-data-rate-limit",
        "256k/256k",
    ]);
    db.cli(&["voucher", "add", "FR1", "--plan", "1h"]);
    db.cli(&["voucher", "add", "FR2", "--plan", "fair"]);
    let server = Server::start(db);
    let mut c = Client::new();
    login_and_start(&mut c, &server, "FR1", "91000001", [10, 5, 50, 11]);
    login_and_start(&mut c, &server, "FR2", "91000002", [10, 5, 50, 12]);

    db.cli(&["voucher", "revoke", "FR1"]);
    coa_result(db, "91000001", "disconnect ack", WAIT);

    // Fair use: data used up by an Interim → CoA-Request with the slow rate.
    let req = c.accounting_request(
        3,
        "FR2",
        "91000002",
        Some("AA:BB:CC:00:00:01"),
        60,
        800,
        800,
        &[(attr::FRAMED_IP_ADDRESS, vec![10, 5, 50, 12])],
    );
    let auth: [u8; 16] = req[4..20].try_into().unwrap();
    assert!(c.exchange(server.acct, &req, &auth).is_some());
    coa_result(db, "91000002", "coa ack", WAIT);

    let logs = fr.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("Disconnect-Request"),
        "FreeRADIUS log:\n{logs}"
    );
    assert!(logs.contains("CoA-Request"), "FreeRADIUS log:\n{logs}");
    server.wait_metric(
        "rrnet_radius_coa_requests_total{error_cause=\"\",kind=\"disconnect\",nas=\"hotspot1\",result=\"ack\"}",
        1.0,
        WAIT,
    );
}

fn freeradius_drops_a_request_signed_with_another_secret(db: &TestDb) {
    // FreeRADIUS knows the router by another secret: it must not answer.
    let Some(fr) = start_receiver("not-the-nas-secret") else {
        return;
    };
    let port = fr.port.to_string();
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
        &port,
    ]);
    db.cli(&["plan", "add", "--name", "1h", "--time", "1h"]);
    db.cli(&["voucher", "add", "FR1", "--plan", "1h"]);
    let server = Server::start(db);
    let mut c = Client::new();
    login_and_start(&mut c, &server, "FR1", "91000001", [10, 5, 50, 11]);
    db.cli(&["voucher", "revoke", "FR1"]);
    coa_result(db, "91000001", "disconnect timeout", WAIT);
}
