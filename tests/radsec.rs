//! RadSec (RADIUS over TLS, RFC 6614) with real peers: `radsecproxy` (Debian
//! `radsecproxy`) is the TLS client, fed by `radclient` over UDP on loopback;
//! a rustls client in this file sends what no proxy would (garbage, a foreign
//! or expired certificate). Every certificate comes from `rrnet-radius pki`,
//! except the foreign CA and the expired one, made with rcgen.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{have_tool, parse_json, wait_until, Server, ServerOptions, TestDb};
use rrnet_radius::proto::{Code, Packet, PacketBuilder};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The secret between radclient and radsecproxy (UDP on loopback).
const PROXY_SECRET: &str = "proxy-udp-secret";

fn have_tools() -> bool {
    have_tool("radclient", &["-v"]) && have_tool("radsecproxy", &["-v"])
}

/// The PKI of one test: the CA and the listener's certificate from `pki`.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new(db: &TestDb) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let out = db.cli(&["pki", "init", "--dir", d]);
        assert!(out.contains("ca.crt"), "{out}");
        let out = db.cli(&["pki", "server-cert", "--name", "127.0.0.1", "--dir", d]);
        assert!(out.contains("127.0.0.1.crt"), "{out}");
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `pki issue --nas N`: the router's certificate, key and bundle.
    fn issue(&self, db: &TestDb, nas: &str) -> String {
        db.cli(&[
            "pki",
            "issue",
            "--nas",
            nas,
            "--dir",
            self.dir.path().to_str().unwrap(),
        ])
    }
}

/// A server with RadSec on an ephemeral loopback port.
fn start(db: &TestDb, pki: &Pki, radsec_toml: &str) -> (Server, SocketAddr) {
    let opts = ServerOptions {
        server_toml: format!(
            "housekeeping_interval = \"1s\"\nnas_reload_interval = \"1s\"\n\
             [radsec]\nlisten = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\n{radsec_toml}",
            pki.path("127.0.0.1.crt"),
            pki.path("127.0.0.1.key"),
            pki.path("ca.crt"),
        ),
        ..ServerOptions::default()
    };
    let server = Server::start_with(db, opts);
    let addr = wait_until("the RadSec listener", Duration::from_secs(5), || {
        server.logs.lock().unwrap().iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let f = &v["fields"];
            f["message"]
                .as_str()?
                .starts_with("listening for RadSec")
                .then(|| f["addr"].as_str()?.parse().ok())?
        })
    });
    (server, addr)
}

/// radsecproxy: UDP from radclient in, RadSec to the server out.
struct Proxy {
    child: Child,
    udp: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start(radsec: SocketAddr, ca: &Path, cert: &Path, key: &Path) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let udp = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let log = dir.path().join("radsecproxy.log");
        let conf = dir.path().join("radsecproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "ListenUDP 127.0.0.1:{udp_port}\n\
                 LogLevel 4\n\
                 tls default {{\n\
                 \tCACertificateFile {ca}\n\
                 \tCertificateFile {cert}\n\
                 \tCertificateKeyFile {key}\n\
                 }}\n\
                 client radclient {{\n\thost 127.0.0.1\n\ttype udp\n\tsecret {PROXY_SECRET}\n}}\n\
                 server rrnet {{\n\thost 127.0.0.1\n\tport {port}\n\ttype tls\n\ttls default\n\tsecret radsec\n}}\n\
                 realm * {{\n\tserver rrnet\n\taccountingServer rrnet\n}}\n",
                udp_port = udp.port(),
                ca = ca.display(),
                cert = cert.display(),
                key = key.display(),
                port = radsec.port(),
            ),
        )
        .unwrap();
        // In the foreground radsecproxy logs to stderr: kept for failure messages.
        let child = Command::new("radsecproxy")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("radsecproxy runs");
        Proxy {
            child,
            udp,
            log,
            _dir: dir,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One radclient run and the reply it printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    reply_code: Option<String>,
    reply: Vec<(String, String)>,
}

impl Run {
    fn attr(&self, name: &str) -> Option<&str> {
        self.reply
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn radclient(proxy: &Proxy, command: &str, attrs: &str) -> Run {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "3", "-t", "2"])
        .arg(proxy.udp.to_string())
        .args([command, PROXY_SECRET])
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
    let mut reply_code = None;
    let mut reply = Vec::new();
    let mut in_reply = false;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("Received ") {
            reply_code = rest.split(" Id ").next().map(str::to_owned);
            reply.clear();
            in_reply = true;
        } else if in_reply && line.starts_with('\t') {
            if let Some((n, v)) = line.trim().split_once(" = ") {
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                reply.push((n.to_string(), v.to_string()));
            }
        } else {
            in_reply = false;
        }
    }
    Run {
        status: out.status,
        stdout,
        reply_code,
        reply,
    }
}

fn login(proxy: &Proxy, user: &str, credential: &str) -> Run {
    radclient(
        proxy,
        "auth",
        &format!(
            "User-Name = \"{user}\"\n{credential}\nCalling-Station-Id = \"AA:BB:CC:DD:EE:01\"\n\
             Called-Station-Id = \"hotspot1\"\nNAS-Identifier = \"cafe-1\"\n\
             NAS-Port-Type = Wireless-802.11\nService-Type = Login-User\n\
             Message-Authenticator = 0x00\n"
        ),
    )
}

fn account(proxy: &Proxy, user: &str, status: &str, session: &str, extra: &str) -> Run {
    radclient(
        proxy,
        "acct",
        &format!(
            "User-Name = \"{user}\"\nAcct-Status-Type = {status}\nAcct-Session-Id = \"{session}\"\n\
             Calling-Station-Id = \"AA:BB:CC:DD:EE:01\"\nNAS-Identifier = \"cafe-1\"\n{extra}"
        ),
    )
}

fn vouchers(db: &TestDb) {
    db.cli(&[
        "plan",
        "add",
        "--name",
        "day",
        "--time",
        "1h",
        "--rate-limit",
        "2M/4M",
        "--interim",
        "5m",
    ]);
    for (code, pw) in [("PAP1", "pw-pap"), ("CHAP1", "pw-chap"), ("REJ1", "right")] {
        db.cli(&["voucher", "add", code, "--plan", "day", "--password", pw]);
    }
}

/// A NAS bound to its certificate, the certificate issued by `pki`, a server
/// and radsecproxy logging in with it.
fn radsec_site(db: &TestDb) -> (Pki, Server, SocketAddr, Proxy) {
    db.cli(&["nas", "add", "--name", "cafe-1", "--radsec-cn", "cafe-1"]);
    vouchers(db);
    let pki = Pki::new(db);
    let issued = pki.issue(db, "cafe-1");
    assert!(issued.contains("passphrase:"), "{issued}");
    let (server, radsec) = start(db, &pki, "");
    let proxy = Proxy::start(
        radsec,
        &pki.path("ca.crt"),
        &pki.path("cafe-1.crt"),
        &pki.path("cafe-1.key"),
    );
    (pki, server, radsec, proxy)
}

fn metric(server: &Server, sample: &str) -> f64 {
    server.metric(sample).unwrap_or(0.0)
}

/// PAP and CHAP accepts with their reply attributes, a reject with its
/// message, accounting Start and Stop stored — all through radsecproxy over
/// TLS, with certificates from `pki`.
fn vouchers_log_in_over_tls(db: &TestDb) {
    if !have_tools() {
        return;
    }
    let (_pki, server, _radsec, proxy) = radsec_site(db);
    let ctx = |run: &Run| {
        format!(
            "{}\n--- radsecproxy\n{}\n--- server\n{}",
            run.stdout,
            proxy.log_text(),
            server.log_text()
        )
    };

    let pap = login(&proxy, "PAP1", "User-Password = \"pw-pap\"");
    assert_eq!(
        pap.reply_code.as_deref(),
        Some("Access-Accept"),
        "{}",
        ctx(&pap)
    );
    assert!(pap.status.success());
    assert_eq!(pap.attr("Session-Timeout"), Some("3600"), "{}", pap.stdout);
    assert_eq!(
        pap.attr("Mikrotik-Rate-Limit"),
        Some("2M/4M"),
        "{}",
        pap.stdout
    );
    assert_eq!(pap.attr("Acct-Interim-Interval"), Some("300"));

    let chap = login(&proxy, "CHAP1", "CHAP-Password = \"pw-chap\"");
    assert_eq!(
        chap.reply_code.as_deref(),
        Some("Access-Accept"),
        "{}",
        ctx(&chap)
    );

    let reject = login(&proxy, "REJ1", "User-Password = \"wrong\"");
    assert_eq!(
        reject.reply_code.as_deref(),
        Some("Access-Reject"),
        "{}",
        ctx(&reject)
    );
    assert!(reject.attr("Reply-Message").is_some(), "{}", reject.stdout);

    let start = account(&proxy, "PAP1", "Start", "rs-0001", "");
    assert_eq!(
        start.reply_code.as_deref(),
        Some("Accounting-Response"),
        "{}",
        ctx(&start)
    );
    let stop = account(
        &proxy,
        "PAP1",
        "Stop",
        "rs-0001",
        "Acct-Session-Time = 120\nAcct-Input-Octets = 1000\nAcct-Output-Octets = 5000\nAcct-Terminate-Cause = User-Request\n",
    );
    assert_eq!(
        stop.reply_code.as_deref(),
        Some("Accounting-Response"),
        "{}",
        ctx(&stop)
    );
    let session = db.session_json("rs-0001").expect("the session is stored");
    assert_eq!(session["nas_name"], "cafe-1", "{session}");
    assert_eq!(session["state"], "closed", "{session}");
    let voucher = db.voucher_json("PAP1");
    assert_eq!(voucher["used_seconds"], 120, "{voucher}");

    // Three logins and two accounting records, all counted as RadSec.
    assert_eq!(
        metric(
            &server,
            "rrnet_radius_requests_by_transport_total{transport=\"radsec\"}"
        ),
        5.0
    );
    assert_eq!(
        metric(
            &server,
            "rrnet_radius_requests_by_transport_total{transport=\"udp\"}"
        ),
        0.0
    );
    assert!(
        metric(
            &server,
            "rrnet_radius_radsec_handshakes_total{result=\"ok\"}"
        ) >= 1.0
    );
    assert_eq!(metric(&server, "rrnet_radius_radsec_connections_open"), 1.0);
    // No password reaches the log, whatever the transport.
    let logs = server.log_text();
    for pw in ["pw-pap", "pw-chap", "\"wrong\""] {
        assert!(!logs.contains(pw), "{pw} logged");
    }
}

on_both_backends!(vouchers_log_in_over_tls);

// ---- A rustls client, for what radsecproxy would never send ----

fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(
    radsec: SocketAddr,
    ca: &Path,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Tls {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(ca) {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from("127.0.0.1").unwrap().to_owned(),
    )
    .unwrap();
    let tcp = TcpStream::connect(radsec).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn pki_client(pki: &Pki, radsec: SocketAddr, nas: &str) -> Tls {
    tls_connect(
        radsec,
        &pki.path("ca.crt"),
        pem_certs(&pki.path(&format!("{nas}.crt"))),
        PrivateKeyDer::from_pem_file(pki.path(&format!("{nas}.key"))).unwrap(),
    )
}

/// Status-Server with Message-Authenticator, signed with `radsec`.
fn status_server(id: u8) -> Vec<u8> {
    let auth: [u8; 16] = rand::random();
    let mut b = PacketBuilder::new(Code::StatusServer, id);
    b.reserve_message_authenticator();
    b.finish_access_request(&auth, b"radsec")
}

/// Read one framed packet; `None` when the server closed the connection.
fn read_packet(tls: &mut Tls) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    tls.read_exact(&mut header).ok()?;
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut packet = header.to_vec();
    packet.resize(len, 0);
    tls.read_exact(&mut packet[4..]).ok()?;
    Some(packet)
}

fn status_answered(tls: &mut Tls, id: u8) {
    tls.write_all(&status_server(id)).unwrap();
    let reply = read_packet(tls).expect("a reply to Status-Server");
    let p = Packet::decode(&reply).unwrap();
    assert_eq!(p.code(), Code::AccessAccept);
    assert_eq!(p.identifier(), id);
    assert!(p.has_message_authenticator());
}

/// Status-Server is answered on the connection; a connection that sends a bad
/// Length is closed, one that speaks no TLS at all fails its handshake, and the
/// good connection goes on working through both.
#[test]
fn status_server_and_garbage() {
    let db = TestDb::sqlite();
    db.cli(&["nas", "add", "--name", "cafe-1", "--radsec-cn", "cafe-1"]);
    let pki = Pki::new(&db);
    pki.issue(&db, "cafe-1");
    let (server, radsec) = start(&db, &pki, "");
    let mut good = pki_client(&pki, radsec, "cafe-1");
    status_answered(&mut good, 1);

    // A Length of 65535: the stream cannot be framed; the server hangs up.
    let mut bad = pki_client(&pki, radsec, "cafe-1");
    bad.write_all(&[1, 9, 0xff, 0xff, 0, 0, 0, 0]).unwrap();
    assert!(read_packet(&mut bad).is_none(), "closed, not answered");
    server.wait_metric(
        "rrnet_radius_radsec_connections_closed_total{reason=\"bad_length\"}",
        1.0,
        Duration::from_secs(5),
    );
    // Plain bytes where a ClientHello belongs.
    let mut plain = TcpStream::connect(radsec).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(&[0x16; 64]).unwrap();
    plain.write_all(&[0; 4096]).unwrap();
    let mut sink = [0u8; 512];
    while matches!(plain.read(&mut sink), Ok(n) if n > 0) {}
    server.wait_metric(
        "rrnet_radius_radsec_handshakes_total{result=\"failed\"}",
        1.0,
        Duration::from_secs(5),
    );
    // An unframable packet inside a good frame (attribute overrun) is only dropped.
    let mut overrun = status_server(2);
    overrun[20] = 80;
    overrun[21] = 200;
    good.write_all(&overrun).unwrap();
    status_answered(&mut good, 3);
    assert!(
        metric(
            &server,
            "rrnet_radius_drops_total{nas=\"cafe-1\",reason=\"malformed\"}"
        ) >= 2.0
    );
    // A Status-Server without Message-Authenticator is dropped (RFC 5997 §3).
    let auth: [u8; 16] = rand::random();
    let plain_status =
        PacketBuilder::new(Code::StatusServer, 4).finish_access_request(&auth, b"radsec");
    good.write_all(&plain_status).unwrap();
    status_answered(&mut good, 5);
    assert_eq!(
        metric(
            &server,
            "rrnet_radius_drops_total{nas=\"cafe-1\",reason=\"missing_message_authenticator\"}"
        ),
        1.0
    );
    assert_eq!(metric(&server, "rrnet_radius_radsec_connections_open"), 1.0);
}

/// rcgen: a leaf certificate for `cn`, signed by `issuer`, valid between
/// the two offsets from now (days).
fn leaf_by(
    issuer: &rcgen::Certificate,
    issuer_key: &rcgen::KeyPair,
    cn: &str,
    from_days: i64,
    to_days: i64,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from_days);
    params.not_after = now + time::Duration::days(to_days);
    let cert = params.signed_by(&key, issuer, issuer_key).unwrap();
    (
        vec![cert.der().clone()],
        PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
}

/// The handshake (or the first read after it: TLS 1.3 clients finish before the
/// server has checked their certificate) fails.
fn refused(mut tls: Tls) {
    let sent = tls.write_all(&status_server(1));
    assert!(
        sent.is_err() || read_packet(&mut tls).is_none(),
        "the server answered a refused client"
    );
}

/// A certificate from another CA, an expired one from the right CA, and a
/// valid one whose NAS was removed are all refused, counted by result; the
/// removed NAS's open connection is closed within the NAS reload interval.
#[test]
fn certificates_are_refused() {
    let db = TestDb::sqlite();
    db.cli(&["nas", "add", "--name", "cafe-1", "--radsec-cn", "cafe-1"]);
    db.cli(&["nas", "add", "--name", "cafe-2", "--radsec-cn", "cafe-2"]);
    let pki = Pki::new(&db);
    pki.issue(&db, "cafe-1");
    pki.issue(&db, "cafe-2");
    let (server, radsec) = start(&db, &pki, "");
    let ca = pki.path("ca.crt");

    // Another CA, same CN.
    let foreign_key = rcgen::KeyPair::generate().unwrap();
    let mut foreign = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    foreign.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    foreign
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rrnet-radius RadSec CA 00000000");
    let foreign = foreign.self_signed(&foreign_key).unwrap();
    let (chain, key) = leaf_by(&foreign, &foreign_key, "cafe-1", -1, 30);
    refused(tls_connect(radsec, &ca, chain, key));
    server.wait_metric(
        "rrnet_radius_radsec_handshakes_total{result=\"bad_certificate\"}",
        1.0,
        Duration::from_secs(5),
    );

    // The right CA (the files `pki init` wrote), but expired yesterday.
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.path("ca.key")).unwrap()).unwrap();
    let ca_cert =
        rcgen::CertificateParams::from_ca_cert_pem(&std::fs::read_to_string(&ca).unwrap())
            .unwrap()
            .self_signed(&ca_key)
            .unwrap();
    let (chain, key) = leaf_by(&ca_cert, &ca_key, "cafe-1", -30, -1);
    refused(tls_connect(radsec, &ca, chain, key));
    server.wait_metric(
        "rrnet_radius_radsec_handshakes_total{result=\"bad_certificate\"}",
        2.0,
        Duration::from_secs(5),
    );
    // The same CA and a current certificate works: the refusals were the dates.
    let (chain, key) = leaf_by(&ca_cert, &ca_key, "cafe-1", -1, 1);
    let mut fresh = tls_connect(radsec, &ca, chain, key);
    status_answered(&mut fresh, 1);

    // A removed NAS: its open connection is closed, a new one refused.
    let mut open = pki_client(&pki, radsec, "cafe-2");
    status_answered(&mut open, 1);
    db.cli(&["nas", "remove", "cafe-2"]);
    let t = std::time::Instant::now();
    assert!(read_packet(&mut open).is_none(), "closed by the server");
    // The NAS reload interval (1 s here) and the connection's check (0.25 s).
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(
        metric(
            &server,
            "rrnet_radius_radsec_connections_closed_total{reason=\"nas_removed\"}"
        ),
        1.0
    );
    refused(pki_client(&pki, radsec, "cafe-2"));
    server.wait_metric(
        "rrnet_radius_radsec_handshakes_total{result=\"unknown_nas\"}",
        1.0,
        Duration::from_secs(5),
    );
    assert!(server
        .log_text()
        .contains("RadSec certificate matches no NAS entry"));
    // The other NAS is untouched.
    status_answered(&mut fresh, 2);
}

/// A removed NAS through radsecproxy: logins stop.
#[test]
fn removed_nas_is_refused_through_radsecproxy() {
    if !have_tools() {
        return;
    }
    let db = TestDb::sqlite();
    let (pki, server, radsec, proxy) = radsec_site(&db);
    let ok = login(&proxy, "PAP1", "User-Password = \"pw-pap\"");
    assert_eq!(
        ok.reply_code.as_deref(),
        Some("Access-Accept"),
        "{}",
        ok.stdout
    );
    db.cli(&["nas", "remove", "cafe-1"]);
    server.wait_metric(
        "rrnet_radius_radsec_connections_closed_total{reason=\"nas_removed\"}",
        1.0,
        Duration::from_secs(5),
    );
    // A router connecting afresh with that certificate (radsecproxy backs
    // off before it reconnects, so a new one stands in for the router).
    drop(proxy);
    let proxy = Proxy::start(
        radsec,
        &pki.path("ca.crt"),
        &pki.path("cafe-1.crt"),
        &pki.path("cafe-1.key"),
    );
    let after = login(&proxy, "PAP1", "User-Password = \"pw-pap\"");
    assert_eq!(after.reply_code, None, "{}", after.stdout);
    let unknown = metric(
        &server,
        "rrnet_radius_radsec_handshakes_total{result=\"unknown_nas\"}",
    );
    assert!(
        unknown >= 1.0,
        "{}\n---server\n{}",
        proxy.log_text(),
        server.log_text()
    );
}

/// SIGHUP reads the certificate files again: a new server certificate is
/// presented to new connections, and the established connection stays.
#[test]
fn sighup_reloads_certificates_without_dropping_connections() {
    let db = TestDb::sqlite();
    db.cli(&["nas", "add", "--name", "cafe-1", "--radsec-cn", "cafe-1"]);
    let pki = Pki::new(&db);
    pki.issue(&db, "cafe-1");
    let (server, radsec) = start(&db, &pki, "");
    let mut before = pki_client(&pki, radsec, "cafe-1");
    status_answered(&mut before, 1);
    let old = std::fs::read(pki.path("127.0.0.1.crt")).unwrap();
    db.cli(&[
        "pki",
        "server-cert",
        "--name",
        "127.0.0.1",
        "--dir",
        pki.dir.path().to_str().unwrap(),
    ]);
    let new = std::fs::read(pki.path("127.0.0.1.crt")).unwrap();
    assert_ne!(old, new);
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("the reload", Duration::from_secs(5), || {
        server
            .log_text()
            .contains("RadSec certificates reloaded")
            .then_some(())
    });
    let mut after = pki_client(&pki, radsec, "cafe-1");
    status_answered(&mut after, 1);
    let presented = after.conn.peer_certificates().unwrap()[0].to_vec();
    let new_leaf = pem_certs(&pki.path("127.0.0.1.crt"))[0].to_vec();
    assert_eq!(
        presented, new_leaf,
        "new connections get the new certificate"
    );
    status_answered(&mut before, 2);
}

/// `nas add --radsec-cn` needs no address or secret, refuses a secret, and
/// refuses a second entry for the same certificate; `pki` refuses a second CA.
#[test]
fn cli_binds_certificates_to_nas_entries() {
    let db = TestDb::sqlite();
    let out = db.cli(&["nas", "add", "--name", "cafe-1", "--radsec-cn", "Cafe-1"]);
    assert!(out.contains("radsec:cn=cafe-1"), "{out}");
    let fails = |args: &[&str], needle: &str| {
        let out = db.cli_output(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    };
    fails(
        &["nas", "add", "--name", "cafe-2", "--radsec-cn", "cafe-1"],
        "already identifies NAS cafe-1",
    );
    fails(
        &[
            "nas",
            "add",
            "--name",
            "cafe-3",
            "--radsec-cn",
            "cafe-3",
            "--secret",
            "something-long",
        ],
        "fixed to `radsec`",
    );
    fails(
        &[
            "nas",
            "add",
            "--name",
            "cafe-4",
            "--radsec-fingerprint",
            "abc",
        ],
        "64 hex digits",
    );
    let fp = "AB:".repeat(31) + "AB";
    db.cli(&[
        "nas",
        "add",
        "--name",
        "cafe-5",
        "--radsec-fingerprint",
        &fp,
    ]);
    let list = parse_json(&db.cli(&["nas", "list", "--format", "json"]));
    let addresses: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["address"].as_str().unwrap())
        .collect();
    assert!(addresses.contains(&"radsec:cn=cafe-1"), "{list}");
    assert!(
        addresses.contains(&&*format!("radsec:sha256={}", "ab".repeat(32))),
        "{list}"
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    db.cli(&["pki", "init", "--dir", d]);
    fails(&["pki", "init", "--dir", d], "already exists");
    fails(
        &["pki", "issue", "--nas", "nobody", "--dir", d],
        "no NAS \"nobody\"",
    );
    let out = db.cli(&["pki", "issue", "--nas", "cafe-1", "--dir", d]);
    assert!(
        out.contains("cafe-1.p12") && out.contains("passphrase:"),
        "{out}"
    );
    // No secret or key material on stdout beyond the passphrase line.
    assert!(!out.contains("PRIVATE KEY"), "{out}");
}

/// The listener's limits against hostile peers: a TCP connection that never
/// starts TLS is cut at the handshake timeout, connections past the per-address
/// cap are closed on accept, a quiet connection is closed at the idle timeout,
/// and a burst of requests past the in-flight cap is partly dropped (counted
/// `overload`) while the rest are answered. The server keeps serving.
#[test]
fn limits_hold_against_hostile_peers() {
    let db = TestDb::sqlite();
    db.cli(&["nas", "add", "--name", "cafe-1", "--radsec-cn", "cafe-1"]);
    let pki = Pki::new(&db);
    pki.issue(&db, "cafe-1");
    let (server, radsec) = start(
        &db,
        &pki,
        "handshake_timeout = \"1s\"\nidle_timeout = \"3s\"\nmax_connections_per_peer = 3\nmax_in_flight = 2\n",
    );
    let closed = |reason: &str| {
        metric(
            &server,
            &format!("rrnet_radius_radsec_connections_closed_total{{reason=\"{reason}\"}}"),
        )
    };

    // Silent TCP: no ClientHello. Closed by the server after about a second.
    let mut silent = TcpStream::connect(radsec).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let t = std::time::Instant::now();
    let mut byte = [0u8; 1];
    assert!(matches!(silent.read(&mut byte), Ok(0) | Err(_)));
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    server.wait_metric(
        "rrnet_radius_radsec_handshakes_total{result=\"timeout\"}",
        1.0,
        Duration::from_secs(5),
    );

    // Three connections from 127.0.0.1 are allowed; the fourth is closed at once.
    let mut held: Vec<Tls> = (0..3).map(|_| pki_client(&pki, radsec, "cafe-1")).collect();
    for (i, c) in held.iter_mut().enumerate() {
        status_answered(c, i as u8);
    }
    refused(pki_client(&pki, radsec, "cafe-1"));
    assert_eq!(closed("peer_full"), 1.0);

    // A burst of eleven Access-Requests in one write, two may be in flight.
    let mut client = common::Client::with_secret("radsec");
    let mut burst = Vec::new();
    for i in 0..11 {
        let (p, _) = client.access_request(
            &format!("NOSUCH{i}"),
            common::Cred::Pap("x"),
            Some("AA:BB:CC:DD:EE:09"),
            true,
        );
        burst.extend_from_slice(&p);
    }
    let mut first = held.remove(0);
    first.write_all(&burst).unwrap();
    // Every reply, until none comes for a while; then every request is
    // either answered or counted.
    first
        .sock
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut answered = 0;
    while let Some(p) = read_packet(&mut first) {
        assert_eq!(Packet::decode(&p).unwrap().code(), Code::AccessReject);
        answered += 1;
    }
    let dropped = metric(
        &server,
        "rrnet_radius_drops_total{nas=\"cafe-1\",reason=\"overload\"}",
    );
    assert!(dropped >= 1.0, "the cap held back none of the burst");
    assert_eq!(answered + dropped as usize, 11, "dropped {dropped}");
    assert!(answered >= 2, "the requests in flight are answered");

    // Quiet connections are closed at the idle timeout (3 s).
    let mut quiet = held.remove(0);
    assert!(read_packet(&mut quiet).is_none());
    server.wait_metric(
        "rrnet_radius_radsec_connections_closed_total{reason=\"idle_timeout\"}",
        1.0,
        Duration::from_secs(5),
    );
    // Their places are free again.
    drop(held);
    drop(first);
    let mut again = pki_client(&pki, radsec, "cafe-1");
    status_answered(&mut again, 9);
}

/// TLS 1.2 is served as well as 1.3 (RFC 6614 needs 1.2 at least; older
/// RouterOS and proxies speak it).
#[test]
fn tls12_is_served() {
    let db = TestDb::sqlite();
    db.cli(&["nas", "add", "--name", "cafe-1", "--radsec-cn", "cafe-1"]);
    let pki = Pki::new(&db);
    pki.issue(&db, "cafe-1");
    let (server, radsec) = start(&db, &pki, "");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&pki.path("ca.crt")) {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            pem_certs(&pki.path("cafe-1.crt")),
            PrivateKeyDer::from_pem_file(pki.path("cafe-1.key")).unwrap(),
        )
        .unwrap();
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from("127.0.0.1").unwrap().to_owned(),
    )
    .unwrap();
    let tcp = TcpStream::connect(radsec).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    status_answered(&mut tls, 7);
    assert_eq!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    // SIGTERM with the connection open: it is closed and the server exits cleanly.
    let t = std::time::Instant::now();
    assert!(server.stop().success());
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(read_packet(&mut tls).is_none());
}

/// radsecproxy presenting a certificate from another CA (same CN as a bound
/// NAS): the handshake is refused and counted, and no login gets through.
#[test]
fn foreign_certificate_is_refused_through_radsecproxy() {
    if !have_tools() {
        return;
    }
    let db = TestDb::sqlite();
    let (pki, server, radsec, _proxy) = radsec_site(&db);
    let foreign_key = rcgen::KeyPair::generate().unwrap();
    let mut foreign = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    foreign.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    foreign
        .distinguished_name
        .push(rcgen::DnType::CommonName, "another CA");
    let foreign = foreign.self_signed(&foreign_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["cafe-1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cafe-1");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &foreign, &foreign_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("forged.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("forged.key"), key.serialize_pem()).unwrap();
    let forged = Proxy::start(
        radsec,
        &pki.path("ca.crt"),
        &dir.path().join("forged.crt"),
        &dir.path().join("forged.key"),
    );
    let run = login(&forged, "PAP1", "User-Password = \"pw-pap\"");
    assert_eq!(run.reply_code, None, "{}", run.stdout);
    let refused = metric(
        &server,
        "rrnet_radius_radsec_handshakes_total{result=\"bad_certificate\"}",
    );
    assert!(refused >= 1.0, "{}", forged.log_text());
    assert_eq!(
        metric(
            &server,
            "rrnet_radius_requests_by_transport_total{transport=\"radsec\"}"
        ),
        0.0
    );
}

/// A retransmission on the same connection (RFC 5080 §2.2.2) gets the cached
/// reply byte for byte and is decided once; the same bytes on another
/// connection are a new request there.
#[test]
fn duplicates_are_answered_from_the_connection_cache() {
    let db = TestDb::sqlite();
    db.cli(&["nas", "add", "--name", "cafe-1", "--radsec-cn", "cafe-1"]);
    vouchers(&db);
    let pki = Pki::new(&db);
    pki.issue(&db, "cafe-1");
    let (server, radsec) = start(&db, &pki, "");
    let mut client = common::Client::with_secret("radsec");
    let (request, _) = client.access_request(
        "PAP1",
        common::Cred::Pap("pw-pap"),
        Some("AA:BB:CC:DD:EE:02"),
        true,
    );
    let mut tls = pki_client(&pki, radsec, "cafe-1");
    tls.write_all(&request).unwrap();
    let first = read_packet(&mut tls).expect("an answer");
    assert_eq!(Packet::decode(&first).unwrap().code(), Code::AccessAccept);
    tls.write_all(&request).unwrap();
    let again = read_packet(&mut tls).expect("the cached answer");
    assert_eq!(first, again);
    assert_eq!(
        metric(
            &server,
            "rrnet_radius_duplicates_answered_total{nas=\"cafe-1\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &server,
            "rrnet_radius_requests_by_transport_total{transport=\"radsec\"}"
        ),
        1.0
    );
    let mut other = pki_client(&pki, radsec, "cafe-1");
    other.write_all(&request).unwrap();
    let fresh = read_packet(&mut other).expect("an answer");
    assert_eq!(Packet::decode(&fresh).unwrap().code(), Code::AccessAccept);
    assert_eq!(
        metric(
            &server,
            "rrnet_radius_requests_by_transport_total{transport=\"radsec\"}"
        ),
        2.0
    );
}

/// The PKCS#12 bundle `pki issue` writes opens with another implementation
/// (OpenSSL, in its legacy mode for RC2, as RouterOS reads it) with the printed
/// passphrase, and holds the router's certificate, its key and the CA.
#[test]
fn p12_bundle_opens_with_openssl() {
    if !have_tool("openssl", &["version"]) {
        return;
    }
    let db = TestDb::sqlite();
    db.cli(&["nas", "add", "--name", "cafe-1", "--radsec-cn", "cafe-1"]);
    let pki = Pki::new(&db);
    let out = pki.issue(&db, "cafe-1");
    let passphrase = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("passphrase:"))
        .expect("a passphrase is printed")
        .trim()
        .to_string();
    let open = |pass: &str| {
        Command::new("openssl")
            .args(["pkcs12", "-legacy", "-nodes", "-in"])
            .arg(pki.path("cafe-1.p12"))
            .args(["-passin", &format!("pass:{pass}")])
            .output()
            .unwrap()
    };
    let ok = open(&passphrase);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("CN = cafe-1"), "{text}");
    assert!(text.contains("CN = rrnet-radius RadSec CA"), "{text}");
    assert!(text.contains("BEGIN PRIVATE KEY"), "{text}");
    assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2, "{text}");
    assert!(!open("wrong-passphrase").status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["ca.key", "cafe-1.key", "cafe-1.p12"] {
            let mode = std::fs::metadata(pki.path(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = std::fs::metadata(pki.path(""))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the PKI directory");
    }
}

/// `serve` with RadSec on but a file missing or unreadable stops with an error
/// naming it, rather than serving without TLS or panicking.
#[test]
fn serve_refuses_radsec_without_its_files() {
    let db = TestDb::sqlite();
    let pki = Pki::new(&db);
    let serve = |extra: &[&str]| {
        let out = Command::new(common::BIN)
            .args([
                "serve",
                "--auth-listen",
                "127.0.0.1:0",
                "--acct-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "off",
                "--radsec-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("RRNET_DATABASE_URL", &db.url)
            .env_remove("RRNET_CONFIG")
            .env_remove("RRNET_RADIUS_REST_SECRET")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = serve(&[]);
    assert!(stderr.contains("needs --tls-cert"), "{stderr}");
    let ca = pki.path("ca.crt");
    let key = pki.path("127.0.0.1.key");
    let stderr = serve(&[
        "--tls-cert",
        "/nonexistent/server.crt",
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-client-ca",
        ca.to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("--tls-cert /nonexistent/server.crt"),
        "{stderr}"
    );
    // A key that is not the certificate's.
    let stderr = serve(&[
        "--tls-cert",
        pki.path("127.0.0.1.crt").to_str().unwrap(),
        "--tls-key",
        pki.path("ca.key").to_str().unwrap(),
        "--tls-client-ca",
        ca.to_str().unwrap(),
    ]);
    assert!(stderr.contains("--tls-key"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
