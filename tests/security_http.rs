//! The HTTP listeners (REST shim and metrics) against hostile clients, on the
//! real binary: idle-connection floods, slowloris heads and bodies, one address
//! taking every slot, and log forging through a REST User-Name.
//!
//! Connections come from several loopback addresses (127.0.x.y all reach the
//! server on Linux), so the per-address and per-listener caps can be told apart.
mod common;
mod shim_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_until, Server, ServerOptions, TestDb, BIN};
use shim_support::{bearer, post_json, setup, REST_SECRET};
use socket2::{Domain, Socket, Type};

const AUTH: &str = "/api/v1/radius/auth";
const PASSWORD: &str = "pw-0451";

/// The server with the shim on and these `[http]` lines.
fn start(db: &TestDb, http_toml: &str) -> (Server, SocketAddr) {
    let server = Server::start_with(
        db,
        ServerOptions {
            server_toml: format!(
                "{}\n[http]\n{http_toml}",
                ServerOptions::default().server_toml
            ),
            env: vec![("RRNET_RADIUS_REST_SECRET".into(), REST_SECRET.into())],
            ..Default::default()
        },
    );
    let http = server.http.expect("REST shim address logged");
    (server, http)
}

fn auth_body(user: &str) -> Vec<u8> {
    serde_json::json!({
        "FreeRADIUS-Client-IP-Address": "127.0.0.1",
        "User-Name": user,
        "User-Password": PASSWORD,
    })
    .to_string()
    .into_bytes()
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddrV4::new(from, 0).into())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {to} from {from}: {e}"));
    s.into()
}

/// `count` connections that send nothing, `per_address` from each of
/// 127.<octet>.0.1, 127.<octet>.0.2, …
fn idle_connections(to: SocketAddr, count: usize, per_address: usize, octet: u8) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            let n = (i / per_address) as u16 + 1;
            connect_from(Ipv4Addr::new(127, octet, (n >> 8) as u8, n as u8), to)
        })
        .collect()
}

/// Has the server closed this connection (EOF or reset), without waiting?
fn closed_by_server(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let closed = match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// Wait up to `within` for the server to close `s`; the response bytes read meanwhile.
fn wait_closed(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(got),
        }
    }
    None
}

/// One request over a fresh connection from `from`; the whole response.
fn request_from(from: Ipv4Addr, to: SocketAddr, request: &[u8]) -> String {
    let mut s = connect_from(from, to);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
}

fn post_request(body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {AUTH} HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        bearer(),
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Send `bytes` one at a time every `every` until the server closes the
/// connection; how long that took and what it answered, or `None` if it was
/// still open after 6 s (every timeout under test is shorter).
fn trickle(s: &mut TcpStream, bytes: &[u8], every: Duration) -> Option<(Duration, String)> {
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for b in bytes {
        if started.elapsed() > Duration::from_secs(6) {
            return None;
        }
        if s.write_all(std::slice::from_ref(b)).is_err() {
            return Some((started.elapsed(), String::from_utf8_lossy(&answer).into()));
        }
        let until = Instant::now() + every;
        while Instant::now() < until {
            s.set_read_timeout(Some(
                until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
            match s.read(&mut buf) {
                Ok(0) => return Some((started.elapsed(), String::from_utf8_lossy(&answer).into())),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => {
                    return Some((started.elapsed(), String::from_utf8_lossy(&answer).into()))
                }
            }
        }
    }
    None
}

fn sample(server: &Server, sample: &str) -> f64 {
    server
        .metric(sample)
        .unwrap_or_else(|| panic!("no sample {sample}"))
}

/// (a) 1,100 idle connections to each listener: requests still get through at
/// once, the caps hold, and only the longest-idle connections were let go.
#[test]
fn idle_connection_floods_do_not_lock_out_requests() {
    let db = TestDb::sqlite();
    setup(&db, PASSWORD);
    // Long timeouts: the flood stays open for the whole test.
    let (server, http) = start(&db, "header_timeout = \"60s\"\nidle_timeout = \"60s\"\n");

    // 20 addresses × 55 (under the shim's 64 per address), 69 × 16 on metrics:
    // only the listener cap of 1,024 limits them.
    let rest_flood = idle_connections(http, 1100, 55, 1);
    let metrics_flood = idle_connections(server.metrics, 1100, 16, 2);
    std::thread::sleep(Duration::from_millis(500));

    let t = Instant::now();
    let r = post_json(http, AUTH, &auth_body("VOUCHER1"));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "shim took {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let (status, body) = server.get_metrics_path("/metrics");
    assert_eq!(status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "/metrics took {:?}",
        t.elapsed()
    );
    let value = |name: &str| {
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    for listener in ["rest", "metrics"] {
        let open = value(&format!(
            "rrnet_radius_http_connections_open{{listener=\"{listener}\"}}"
        ));
        assert!((1000.0..=1024.0).contains(&open), "{listener}: {open} open");
        // 76 of the flood, and one more for each request made at the cap.
        let evicted = value(&format!(
            "rrnet_radius_http_connections_closed_total{{listener=\"{listener}\",reason=\"evicted\"}}"
        ));
        assert!(
            (76.0..=80.0).contains(&evicted),
            "{listener}: {evicted} evicted"
        );
    }
    // The flood is held open, but for the connections that made room: the oldest.
    for (name, flood) in [("rest", &rest_flood), ("metrics", &metrics_flood)] {
        let closed: Vec<usize> = (0..flood.len())
            .filter(|i| closed_by_server(&flood[*i]))
            .collect();
        assert!(
            (76..=80).contains(&closed.len()),
            "{name}: {} closed",
            closed.len()
        );
        assert!(closed.iter().all(|i| *i < 100), "{name}: closed {closed:?}");
    }
}

/// (b) Slowloris: a head sent a byte every 500 ms is cut off at the header
/// timeout on both listeners; a slow body at the request timeout with 408; a
/// silent new connection and an idle kept-alive one at the idle timeout.
#[test]
fn slow_clients_are_cut_off_at_the_timeouts() {
    let db = TestDb::sqlite();
    setup(&db, PASSWORD);
    let (server, http) = start(
        &db,
        "header_timeout = \"1s\"\nrequest_timeout = \"2s\"\nidle_timeout = \"2s\"\n",
    );
    let every = Duration::from_millis(500);
    let head = format!(
        "POST {AUTH} HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n",
        bearer()
    );
    for (listener, addr) in [("rest", http), ("metrics", server.metrics)] {
        let mut s = connect_from(Ipv4Addr::LOCALHOST, addr);
        let (after, answer) = trickle(&mut s, head.as_bytes(), every)
            .unwrap_or_else(|| panic!("{listener}: a slow head was never cut off"));
        assert!(
            after >= Duration::from_millis(900) && after <= Duration::from_millis(2500),
            "{listener}: cut after {after:?}"
        );
        assert!(answer.is_empty(), "{listener}: {answer:?}");
        assert_eq!(
            sample(
                &server,
                &format!("rrnet_radius_http_connections_closed_total{{listener=\"{listener}\",reason=\"header_timeout\"}}")
            ),
            1.0
        );
    }

    // A connection that sends nothing is idle: cut at the idle timeout.
    let mut s = connect_from(Ipv4Addr::LOCALHOST, http);
    let t = Instant::now();
    assert!(wait_closed(&mut s, Duration::from_secs(5)).is_some());
    assert!(
        t.elapsed() >= Duration::from_millis(1700) && t.elapsed() <= Duration::from_millis(3500),
        "silent connection cut after {:?}",
        t.elapsed()
    );
    assert_eq!(
        sample(
            &server,
            r#"rrnet_radius_http_connections_closed_total{listener="rest",reason="idle_timeout"}"#
        ),
        1.0
    );

    // The head at once, then the body a byte every 500 ms: 408 at the request timeout.
    let mut s = connect_from(Ipv4Addr::LOCALHOST, http);
    s.write_all(head.as_bytes()).unwrap();
    let (after, answer) = trickle(&mut s, &[b' '; 100], every).expect("slow body cut off");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        after >= Duration::from_millis(1900) && after <= Duration::from_millis(3500),
        "cut after {after:?}"
    );
    assert_eq!(
        sample(
            &server,
            r#"rrnet_radius_http_connections_closed_total{listener="rest",reason="request_timeout"}"#
        ),
        1.0
    );

    // A kept-alive connection after its request: closed at the idle timeout, not before.
    let mut s = connect_from(Ipv4Addr::LOCALHOST, server.metrics);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let t = Instant::now();
    assert!(wait_closed(&mut s, Duration::from_secs(5)).is_some());
    assert!(
        t.elapsed() >= Duration::from_millis(1700) && t.elapsed() <= Duration::from_millis(3500),
        "idle cut after {:?}",
        t.elapsed()
    );
    assert_eq!(
        sample(
            &server,
            r#"rrnet_radius_http_connections_closed_total{listener="metrics",reason="idle_timeout"}"#
        ),
        1.0
    );
}

/// (c) One address at its cap is refused; another address still gets through,
/// and the first one's connections stay open (and do not hold up a stop).
#[test]
fn one_address_cannot_take_every_slot() {
    let db = TestDb::sqlite();
    setup(&db, PASSWORD);
    let (server, http) = start(
        &db,
        "header_timeout = \"60s\"\nrest_max_connections_per_peer = 4\nmetrics_max_connections_per_peer = 2\n",
    );
    let hog = Ipv4Addr::new(127, 0, 0, 3);
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let mut all_held = Vec::new();
    for (listener, addr, cap) in [("rest", http, 4), ("metrics", server.metrics, 2)] {
        let held: Vec<TcpStream> = (0..cap).map(|_| connect_from(hog, addr)).collect();
        let mut over = connect_from(hog, addr);
        assert!(
            wait_closed(&mut over, Duration::from_secs(2)).is_some(),
            "{listener}: a connection over the address's cap stayed open"
        );
        let answer = if listener == "rest" {
            request_from(other, addr, &post_request(&auth_body("VOUCHER1")))
        } else {
            request_from(other, addr, &get_request("/healthz"))
        };
        assert!(answer.starts_with("HTTP/1.1 200"), "{listener}: {answer}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            held.iter().all(|s| !closed_by_server(s)),
            "{listener}: the held connections were closed"
        );
        assert_eq!(
            sample(
                &server,
                &format!("rrnet_radius_http_connections_refused_total{{listener=\"{listener}\",reason=\"peer_full\"}}")
            ),
            1.0
        );
        all_held.extend(held);
    }
    // Held connections, one with half a head, do not hold up a stop.
    let mut half = connect_from(other, http);
    half.write_all(b"POST /api/v1/radius/auth HTTP/1.1\r\nHost:")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert!(server.stop().success());
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "stopped after {:?}",
        t.elapsed()
    );
    drop(all_held);
}

/// A User-Name that tries to start a log line of its own: a newline, a fake
/// line, and an ANSI colour escape.
const FORGED: &str = "FORGED rrnet_radius: accept user=admin";
fn forging_user_name() -> String {
    format!("EVIL\n{FORGED}\x1b[31m\r\nred")
}

fn assert_not_forged(log: &[u8], what: &str) {
    assert!(
        !log.contains(&0x1b),
        "{what}: a raw ESC byte reached the log"
    );
    let text = String::from_utf8_lossy(log);
    for line in text.split(['\n', '\r']) {
        assert!(
            !line.trim_start().starts_with("FORGED"),
            "{what}: forged line {line:?}"
        );
    }
}

/// (d) JSON logs: the reject is logged with the User-Name as sent, and nothing
/// of it starts a line or reaches the log as a raw escape.
#[test]
fn a_rest_user_name_cannot_forge_json_log_lines() {
    let db = TestDb::sqlite();
    setup(&db, PASSWORD);
    let (server, http) = start(&db, "");
    let user = forging_user_name();
    let r = post_json(http, AUTH, &auth_body(&user));
    assert_eq!(r.status, 401, "{r:?}");
    let line = wait_until("the reject line", Duration::from_secs(5), || {
        server
            .logs
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("\"reject\""))
            .cloned()
    });
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["fields"]["user"], user.as_str(), "{line}");
    assert_eq!(v["fields"]["transport"], "rest", "{line}");
    assert_not_forged(server.log_text().as_bytes(), "json");
}

/// The server with text logs (the harness reads JSON): its REST shim address
/// and everything it writes to stderr.
struct TextServer {
    child: Child,
    http: SocketAddr,
    log: Arc<Mutex<Vec<u8>>>,
}

impl Drop for TextServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_text(db: &TestDb) -> TextServer {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--auth-listen",
            "127.0.0.1:0",
            "--acct-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--http-listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
        ])
        .env("RRNET_DATABASE_URL", &db.url)
        .env("RRNET_LOG", "info,sqlx=warn")
        .env("RRNET_RADIUS_REST_SECRET", REST_SECRET)
        .env_remove("RRNET_CONFIG")
        .env_remove("RRNET_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }
    let http = wait_until("the REST shim address", Duration::from_secs(30), || {
        let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
        let line = text.lines().find(|l| l.contains("REST shim listening"))?;
        line.split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    TextServer { child, http, log }
}

/// (d) Text logs, the default format: the same.
#[test]
fn a_rest_user_name_cannot_forge_text_log_lines() {
    let db = TestDb::sqlite();
    setup(&db, PASSWORD);
    let server = start_text(&db);
    let r = post_json(server.http, AUTH, &auth_body(&forging_user_name()));
    assert_eq!(r.status, 401, "{r:?}");
    let line = wait_until("the reject line", Duration::from_secs(5), || {
        let text = String::from_utf8_lossy(&server.log.lock().unwrap()).into_owned();
        text.lines()
            .find(|l| l.contains(" reject ") || l.ends_with(" reject") || l.contains(": reject"))
            .map(str::to_owned)
    });
    // The whole User-Name is on the reject line, escaped.
    assert!(line.contains("EVIL\\n"), "{line}");
    assert!(line.contains(FORGED), "{line}");
    assert_not_forged(&server.log.lock().unwrap(), "text");
}
