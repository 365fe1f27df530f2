//! Shared by the management API tests: an HTTP/1.1 client over a plain
//! TcpStream (any method, any header), tokens made with the real CLI, the
//! server with its REST listener, and a router's `/radius incoming` stand-in.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rrnet_radius::proto::{attr, Code, Packet, PacketBuilder};
use serde_json::Value;

use crate::common::{Server, ServerOptions, TestDb};

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The problem `type` without its prefix, checking the media type.
    pub fn problem(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let j = self.json();
        assert_eq!(j["status"], self.status, "{self:?}");
        j["type"]
            .as_str()
            .unwrap()
            .strip_prefix("urn:rrnet-radius:problem:")
            .unwrap()
            .to_string()
    }
}

/// Send one request on a new connection and read the whole answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Answer {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    if let Some(b) = body {
        // The server may answer (413) before reading all of a large body.
        let _ = s.write_all(b);
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

fn parse(buf: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((len, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A client of the API with one token.
#[derive(Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub token: String,
}

impl Api {
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        self.send_with(method, path, &[], body)
    }

    pub fn send_with(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answer {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("Authorization", auth.as_str())];
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        if bytes.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        headers.extend_from_slice(extra);
        request(self.addr, method, path, &headers, bytes.as_deref())
    }

    pub fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None)
    }

    /// GET that must answer 200; its JSON.
    pub fn ok(&self, path: &str) -> Value {
        let a = self.get(path);
        assert_eq!(a.status, 200, "GET {path}: {a:?}");
        a.json()
    }

    pub fn post(&self, path: &str, body: Value) -> Answer {
        self.send("POST", path, Some(&body))
    }

    pub fn patch(&self, path: &str, body: Value) -> Answer {
        self.send("PATCH", path, Some(&body))
    }

    pub fn delete(&self, path: &str) -> Answer {
        self.send("DELETE", path, None)
    }

    /// The `items` of a listing.
    pub fn items(&self, path: &str) -> Vec<Value> {
        self.ok(path)["items"].as_array().unwrap().clone()
    }
}

/// `token add` with `flags`: the token, taken from the last line of its output.
pub fn add_token(db: &TestDb, name: &str, flags: &[&str]) -> String {
    let out = db.cli(&[&["token", "add", "--name", name], flags].concat());
    let token = out.lines().last().unwrap().trim().to_string();
    assert!(
        token.starts_with("rrnet_") && token.len() == 70,
        "token alone on the last line: {out}"
    );
    token
}

/// The server with its REST listener (started because a token exists).
pub fn start(db: &TestDb) -> (Server, SocketAddr) {
    start_with(db, ServerOptions::default())
}

/// [`start`] with `options`.
pub fn start_with(db: &TestDb, options: ServerOptions) -> (Server, SocketAddr) {
    let server = Server::start_with(db, options);
    let http = server
        .http
        .expect("the REST listener starts when a token exists");
    (server, http)
}

/// One request a router's `/radius incoming` got.
#[derive(Debug, Clone)]
pub struct Seen {
    pub code: Code,
    pub user: Option<String>,
    pub acct_session_id: Option<String>,
}

/// A router's `/radius incoming` on a loopback port: records what arrives
/// and acknowledges it.
pub struct NasStandIn {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl NasStandIn {
    pub fn start(secret: &str) -> NasStandIn {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let secret = secret.as_bytes().to_vec();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let Ok(p) = Packet::decode(&buf[..n]) else {
                    continue;
                };
                let text = |t| p.attr_str(t).ok().flatten().map(str::to_string);
                s.lock().unwrap().push(Seen {
                    code: p.code(),
                    user: text(attr::USER_NAME),
                    acct_session_id: text(attr::ACCT_SESSION_ID),
                });
                let ack = match p.code() {
                    Code::DisconnectRequest => Code::DisconnectAck,
                    _ => Code::CoaAck,
                };
                let mut b = PacketBuilder::new(ack, p.identifier());
                b.reserve_message_authenticator();
                let _ = sock.send_to(&b.finish_response(p.authenticator(), &secret), from);
            }
        });
        NasStandIn { port, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
