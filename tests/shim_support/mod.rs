//! Helpers for the REST shim tests: a minimal HTTP/1.1 client (no client crate
//! needed) and the database set-up the captured rlm_rest fixtures expect.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::common::{Server, ServerOptions, TestDb};

pub const REST_SECRET: &str = "rest-secret-0123456789abcdef";

/// One HTTP response.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn {
            reader: BufReader::new(s),
        }
    }

    /// POST `body`; `headers` are added as given (so a test can leave out or
    /// spoil Authorization).
    pub fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let s = self.reader.get_mut();
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        self.read_reply()
    }

    fn read_reply(&mut self) -> HttpReply {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no status line: {line:?}"))
            .parse()
            .unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).unwrap();
        HttpReply {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }
}

/// POST on a fresh connection.
pub fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    Conn::open(addr).post(path, headers, body)
}

pub fn bearer() -> String {
    format!("Bearer {REST_SECRET}")
}

/// POST an rlm_rest JSON body with the right bearer.
pub fn post_json(addr: SocketAddr, path: &str, body: &[u8]) -> HttpReply {
    post(
        addr,
        path,
        &[
            ("Authorization", &bearer()),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// POST an rlm_rest form body with the right bearer.
pub fn post_form(addr: SocketAddr, path: &str, body: &[u8]) -> HttpReply {
    post(
        addr,
        path,
        &[
            ("Authorization", &bearer()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body,
    )
}

pub fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rlm_rest")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The NAS 127.0.0.1 (the address in the fixtures), a one-hour plan at 2M/2M,
/// and voucher VOUCHER1 (id 1, so the fixtures' Class matches) with `password`.
pub fn setup(db: &TestDb, password: &str) {
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
    ]);
    db.cli(&[
        "voucher",
        "add",
        "VOUCHER1",
        "--plan",
        "hour",
        "--password",
        password,
    ]);
}

/// The server with the shim enabled.
pub fn start_shim(db: &TestDb) -> (Server, SocketAddr) {
    let server = Server::start_with(
        db,
        ServerOptions {
            env: vec![("RRNET_RADIUS_REST_SECRET".into(), REST_SECRET.into())],
            ..Default::default()
        },
    );
    let http = server.http.expect("REST shim address logged");
    (server, http)
}

/// Sessions as `session list --format json` prints them.
pub fn sessions(db: &TestDb) -> Vec<serde_json::Value> {
    let out = db.cli(&["session", "list", "--format", "json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}
