//! A webhook receiver on 127.0.0.1 for tests: it records every delivery and
//! checks its `Rrnet-Signature` with its own HMAC-SHA256 (the `hmac` and
//! `sha2` crates, not the server's signing code), so a signing bug in the
//! server cannot hide behind a matching bug in the check.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{wait_until, ServerOptions};

/// How long [`Receiver::wait_for`] waits for a delivery.
pub const WAIT: Duration = Duration::from_secs(15);

/// Server options with fast webhook retries and a short attempt deadline
/// (and 1 s housekeeping and NAS reloads), so tests take seconds.
pub fn fast() -> ServerOptions {
    ServerOptions {
        server_toml: "housekeeping_interval = \"1s\"\nnas_reload_interval = \"1s\"\n\
                      [webhooks]\nretry_base = \"1s\"\nretry_max = \"2s\"\ntimeout = \"2s\"\n"
            .into(),
        ..ServerOptions::default()
    }
}

/// How a receiver answers.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// 200 to everything.
    Ok,
    /// 500 to the first N requests, then 200.
    FailFirst(usize),
    /// Reads the request and never answers.
    Hang,
    /// Answers 200 with a body that never ends.
    Endless,
}

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub body: serde_json::Value,
    pub event_id_header: String,
    pub signature_ok: bool,
    /// Whether it was answered 2xx.
    pub accepted: bool,
}

/// An HTTP receiver on 127.0.0.1 that verifies `Rrnet-Signature` with `secret`.
pub struct Receiver {
    pub url: String,
    pub secret: Arc<Mutex<String>>,
    pub got: Arc<Mutex<Vec<Received>>>,
    /// Connections accepted (a hanging receiver answers none).
    pub connections: Arc<AtomicUsize>,
    /// An endless answer: the chunks written before the client hung up.
    pub ended_after: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn start(behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let secret = Arc::new(Mutex::new(String::new()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let ended_after = Arc::new(AtomicUsize::new(0));
        let (s, g, c) = (secret.clone(), got.clone(), connections.clone());
        let e = ended_after.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let n = c.fetch_add(1, Ordering::SeqCst);
                let Some((headers, body)) = read_request(&stream) else {
                    continue;
                };
                let accepted = match behaviour {
                    Behaviour::Ok => true,
                    Behaviour::FailFirst(k) => n >= k,
                    Behaviour::Hang => {
                        held.push(stream);
                        continue;
                    }
                    Behaviour::Endless => true,
                };
                let secret = s.lock().unwrap().clone();
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let received = Received {
                    signature_ok: verify(&secret, &header("rrnet-signature"), &body)
                        && header("content-type") == "application/json",
                    event_id_header: header("rrnet-event-id"),
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                    accepted,
                };
                g.lock().unwrap().push(received);
                if let Behaviour::Endless = behaviour {
                    // Chunks until the client hangs up: a write then fails.
                    let mut stream = stream;
                    let _ =
                        stream.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                    let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
                    let mut sent = 0usize;
                    while stream.write_all(chunk.as_bytes()).is_ok() {
                        sent += 1;
                        if sent > 1_000_000 {
                            break;
                        }
                    }
                    e.store(sent, Ordering::SeqCst);
                    continue;
                }
                let status = if accepted {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            }
        });
        Receiver {
            url,
            secret,
            got,
            connections,
            ended_after,
        }
    }

    pub fn set_secret(&self, secret: &str) {
        *self.secret.lock().unwrap() = secret.to_string();
    }

    /// The accepted deliveries so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.accepted)
            .cloned()
            .collect()
    }

    /// Wait for an accepted delivery of `event_type` about `key` = `value`
    /// in its data.
    pub fn wait_for(&self, event_type: &str, key: &str, value: &str) -> Received {
        wait_until(&format!("{event_type} with {key}={value}"), WAIT, || {
            self.accepted().into_iter().find(|r| {
                r.body["type"] == event_type && r.body["data"][key].as_str() == Some(value)
            })
        })
    }
}

/// Header names and values, in order.
pub type Headers = Vec<(String, String)>;

/// Read one HTTP/1.1 request: headers and a Content-Length body.
pub fn read_request(stream: &TcpStream) -> Option<(Headers, Vec<u8>)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if !line.starts_with("POST /hook HTTP/1.1") {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))?
        .1
        .parse()
        .ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((headers, body))
}

/// `t=<t>,v1=<hex>` checked the way a receiver would: HMAC-SHA256 of
/// "<t>.<body>" with the secret, compared in constant time.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(sig) = hex::decode(v1) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}
