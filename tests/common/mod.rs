//! Shared harness for tests that drive the real `rrnet-radius` binary over UDP:
//! a temporary database (SQLite file or a fresh PostgreSQL schema), the server
//! process on ephemeral loopback ports, admin commands, and a RADIUS test client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod receiver;

use rrnet_radius::proto::{attr, chap_response, verify_response, Code, Packet, PacketBuilder};

/// `on_both_backends!(case, …)`: a `#[test]` per case on SQLite (`mod sqlite`)
/// and on PostgreSQL (`mod postgres`; recorded as skipped when it is not
/// reachable). Each case is a `fn(&TestDb)` of the test file.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    let db = super::TestDb::sqlite();
                    super::$case(&db);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $case() {
                    let Some(db) = super::TestDb::postgres() else { return };
                    super::$case(&db);
                }
            )*
        }
    };
}

pub const BIN: &str = env!("CARGO_BIN_EXE_rrnet-radius");
pub const SECRET: &str = "testing123-secret";

/// A database for one test; dropped with the test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("rrnet.db").display());
        TestDb {
            url,
            _dir: Some(dir),
            pg_schema: None,
        }
    }

    /// A fresh schema on the test PostgreSQL, or `None` when it is unreachable: the
    /// test is then recorded as skipped (see [`skip`]) and should return. With
    /// RRNET_REQUIRE_POSTGRES=1 an unreachable server fails the test.
    pub fn postgres() -> Option<TestDb> {
        let base = std::env::var("RRNET_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("t_{}", hex::encode(rand::random::<[u8; 6]>()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let created = rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&base).await?;
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut c)
                .await?;
            Ok::<_, sqlx::Error>(())
        });
        if let Err(e) = created {
            skip(
                Lacks::Postgres,
                &format!(
                    "PostgreSQL not reachable at {} ({e}); start it or set RRNET_TEST_POSTGRES_URL",
                    without_credentials(&base)
                ),
            );
            return None;
        }
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        Some(TestDb {
            url,
            _dir: None,
            pg_schema: Some((base, schema)),
        })
    }

    /// Run an admin command against this database; panics with its output on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(
            out.status.success(),
            "rrnet-radius {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn cli_output(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("RRNET_DATABASE_URL", &self.url)
            .env_remove("RRNET_CONFIG")
            .output()
            .unwrap()
    }

    /// A NAS for 127.0.0.1 with the test secret, a plan, and vouchers.
    pub fn setup_basic(&self) {
        self.cli(&[
            "nas",
            "add",
            "--name",
            "hotspot1",
            "--address",
            "127.0.0.1",
            "--secret",
            SECRET,
        ]);
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.pg_schema.take() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&base).await?;
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut c)
                    .await?;
                Ok::<_, sqlx::Error>(())
            });
        }
    }
}

/// The server process. Killed on drop.
pub struct Server {
    pub child: Child,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
    pub metrics: SocketAddr,
    pub http: Option<SocketAddr>,
    /// Every log line the server wrote (JSON).
    pub logs: Arc<Mutex<Vec<String>>>,
    _config_dir: tempfile::TempDir,
}

pub struct ServerOptions {
    /// Extra `[server]` lines for the config file.
    pub server_toml: String,
    pub env: Vec<(String, String)>,
    /// Fixed ports instead of ephemeral ones (restart tests).
    pub auth: Option<SocketAddr>,
    pub acct: Option<SocketAddr>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            server_toml: "housekeeping_interval = \"1s\"\nnas_reload_interval = \"1s\"\n".into(),
            env: Vec::new(),
            auth: None,
            acct: None,
        }
    }
}

impl Server {
    pub fn start(db: &TestDb) -> Server {
        Self::start_with(db, ServerOptions::default())
    }

    pub fn start_with(db: &TestDb, opts: ServerOptions) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("rrnet.toml");
        std::fs::write(&cfg, format!("[server]\n{}", opts.server_toml)).unwrap();
        let auth = opts
            .auth
            .map(|a| a.to_string())
            .unwrap_or("127.0.0.1:0".into());
        let acct = opts
            .acct
            .map(|a| a.to_string())
            .unwrap_or("127.0.0.1:0".into());
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(&cfg)
            .args(["--auth-listen", &auth, "--acct-listen", &acct])
            .args([
                "--metrics-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .env("RRNET_DATABASE_URL", &db.url)
            .env("RRNET_LOG_FORMAT", "json")
            .env("RRNET_LOG", "debug,sqlx=warn,hyper=warn")
            .env_remove("RRNET_RADIUS_REST_SECRET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let mut auth = None;
        let mut acct = None;
        let mut metrics = None;
        let mut http = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while auth.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "server did not start; logs:\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let f = &v["fields"];
            match f["message"].as_str() {
                Some(m) if m.starts_with("metrics listening") => {
                    metrics = f["addr"].as_str().map(|s| s.parse().unwrap());
                }
                Some(m)
                    if m.starts_with("REST shim listening")
                        || m.starts_with("management API listening") =>
                {
                    http = f["addr"].as_str().map(|s| s.parse().unwrap());
                }
                Some("listening for RADIUS") => {
                    auth = f["auth"].as_str().map(|s| s.parse().unwrap());
                    acct = f["acct"].as_str().map(|s| s.parse().unwrap());
                }
                _ => {}
            }
        }
        Server {
            child,
            auth: auth.unwrap(),
            acct: acct.unwrap(),
            metrics: metrics.expect("metrics address logged before RADIUS"),
            http,
            logs,
            _config_dir: dir,
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not stop within 15s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// GET a path on the metrics listener; (status, body).
    pub fn get_metrics_path(&self, path: &str) -> (u16, String) {
        http_get(self.metrics, path)
    }

    /// The value of one sample line, e.g. `rrnet_radius_drops_total{nas="x",reason="y"}`.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = self.get_metrics_path("/metrics");
        body.lines()
            .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal HTTP/1.1 GET over a TcpStream (no client crate needed).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies: good enough for Prometheus text, which is line based.
    (status, dechunk(&body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((len, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// A RADIUS client on 127.0.0.1.
pub struct Client {
    pub sock: UdpSocket,
    pub secret: Vec<u8>,
    /// NAS-Identifier sent in every request (RouterOS sends its
    /// `/system identity`, "MikroTik" by default); `None` sends none.
    pub identity: Option<String>,
    next_id: u8,
}

/// What a request should prove its password with.
pub enum Cred<'a> {
    Pap(&'a str),
    /// CHAP with a CHAP-Challenge attribute.
    Chap(&'a str),
    /// CHAP using the Request Authenticator as the challenge.
    ChapNoChallenge(&'a str),
    None,
}

pub struct Reply {
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn packet(&self) -> Packet<'_> {
        Packet::decode(&self.bytes).unwrap()
    }
    pub fn code(&self) -> Code {
        self.packet().code()
    }
    pub fn u32(&self, typ: u8) -> Option<u32> {
        self.packet().attr_u32(typ).unwrap()
    }
    pub fn vsa_str(&self, typ: u8) -> Option<String> {
        self.packet()
            .vsa(attr::mikrotik::VENDOR_ID, typ)
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }
    pub fn vsa_u32(&self, typ: u8) -> Option<u32> {
        self.packet()
            .vsa(attr::mikrotik::VENDOR_ID, typ)
            .map(|v| u32::from_be_bytes(v.try_into().unwrap()))
    }
    pub fn reply_message(&self) -> Option<String> {
        self.packet()
            .attr_str(attr::REPLY_MESSAGE)
            .unwrap()
            .map(str::to_owned)
    }
}

impl Client {
    pub fn new() -> Client {
        Self::with_secret(SECRET)
    }

    pub fn with_secret(secret: &str) -> Client {
        Self::bind("127.0.0.1:0", secret)
    }

    pub fn bind(addr: &str, secret: &str) -> Client {
        let sock = UdpSocket::bind(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        Client {
            sock,
            secret: secret.as_bytes().to_vec(),
            identity: Some("MikroTik".into()),
            next_id: rand::random(),
        }
    }

    fn id(&mut self) -> u8 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Build an Access-Request. `attrs` are added after the credential.
    pub fn access_request(
        &mut self,
        user: &str,
        cred: Cred<'_>,
        mac: Option<&str>,
        with_ma: bool,
    ) -> (Vec<u8>, [u8; 16]) {
        let auth: [u8; 16] = rand::random();
        let id = self.id();
        let mut b = PacketBuilder::new(Code::AccessRequest, id);
        if with_ma {
            b.reserve_message_authenticator();
        }
        b.add_str(attr::USER_NAME, user).unwrap();
        match cred {
            Cred::Pap(pw) => {
                b.add_user_password(pw.as_bytes(), &self.secret, &auth)
                    .unwrap();
            }
            Cred::Chap(pw) => {
                let challenge: [u8; 16] = rand::random();
                let ident: u8 = rand::random();
                let mut v = vec![ident];
                v.extend_from_slice(&chap_response(ident, pw.as_bytes(), &challenge));
                b.add(attr::CHAP_PASSWORD, &v).unwrap();
                b.add(attr::CHAP_CHALLENGE, &challenge).unwrap();
            }
            Cred::ChapNoChallenge(pw) => {
                let ident: u8 = rand::random();
                let mut v = vec![ident];
                v.extend_from_slice(&chap_response(ident, pw.as_bytes(), &auth));
                b.add(attr::CHAP_PASSWORD, &v).unwrap();
            }
            Cred::None => {}
        }
        if let Some(mac) = mac {
            b.add_str(attr::CALLING_STATION_ID, mac).unwrap();
        }
        b.add_str(attr::CALLED_STATION_ID, "hotspot1").unwrap();
        if let Some(identity) = &self.identity {
            b.add_str(attr::NAS_IDENTIFIER, identity).unwrap();
        }
        b.add_u32(attr::NAS_PORT_TYPE, 19).unwrap();
        b.add_u32(attr::SERVICE_TYPE, 1).unwrap();
        (b.finish_access_request(&auth, &self.secret), auth)
    }

    /// Send and wait for one reply (None on timeout). Verifies the reply's
    /// authenticators, and that Access replies carry Message-Authenticator first.
    pub fn exchange(&self, to: SocketAddr, request: &[u8], auth: &[u8; 16]) -> Option<Reply> {
        self.exchange_within(to, request, auth, Duration::from_millis(1500))
    }

    pub fn login(
        &mut self,
        to: SocketAddr,
        user: &str,
        cred: Cred<'_>,
        mac: Option<&str>,
    ) -> Option<Reply> {
        let (req, auth) = self.access_request(user, cred, mac, true);
        self.exchange(to, &req, &auth)
    }

    /// Build an Accounting-Request.
    #[allow(clippy::too_many_arguments)]
    pub fn accounting_request(
        &mut self,
        status: u32,
        user: &str,
        session_id: &str,
        mac: Option<&str>,
        session_time: u32,
        input: u64,
        output: u64,
        extra: &[(u8, Vec<u8>)],
    ) -> Vec<u8> {
        let id = self.id();
        let mut b = PacketBuilder::new(Code::AccountingRequest, id);
        b.add_u32(attr::ACCT_STATUS_TYPE, status).unwrap();
        b.add_str(attr::USER_NAME, user).unwrap();
        b.add_str(attr::ACCT_SESSION_ID, session_id).unwrap();
        if let Some(mac) = mac {
            b.add_str(attr::CALLING_STATION_ID, mac).unwrap();
        }
        b.add_u32(attr::ACCT_SESSION_TIME, session_time).unwrap();
        b.add_u32(attr::ACCT_INPUT_OCTETS, input as u32).unwrap();
        b.add_u32(attr::ACCT_INPUT_GIGAWORDS, (input >> 32) as u32)
            .unwrap();
        b.add_u32(attr::ACCT_OUTPUT_OCTETS, output as u32).unwrap();
        b.add_u32(attr::ACCT_OUTPUT_GIGAWORDS, (output >> 32) as u32)
            .unwrap();
        if let Some(identity) = &self.identity {
            b.add_str(attr::NAS_IDENTIFIER, identity).unwrap();
        }
        for (t, v) in extra {
            b.add(*t, v).unwrap();
        }
        b.finish_accounting_request(&self.secret)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn account(
        &mut self,
        to: SocketAddr,
        status: u32,
        user: &str,
        session_id: &str,
        mac: Option<&str>,
        session_time: u32,
        input: u64,
        output: u64,
    ) -> Option<Reply> {
        let req = self.accounting_request(
            status,
            user,
            session_id,
            mac,
            session_time,
            input,
            output,
            &[],
        );
        let auth: [u8; 16] = req[4..20].try_into().unwrap();
        self.exchange(to, &req, &auth)
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

/// Path of a helper script under tests/.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Is an external tool available? When it is not, the test is recorded as
/// skipped (see [`skip`]) and should return; with RRNET_REQUIRE_TOOLS=1 it fails.
pub fn have_tool(cmd: &str, probe: &[&str]) -> bool {
    let ok = Command::new(cmd)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        skip(Lacks::Tool, &format!("{cmd} is not installed"));
    }
    ok
}

/// [`have_tool`] for a prerequisite that is not a plain command, such as a Python
/// module or a minimum version: when `available` is false the test is recorded as
/// skipped (with `why`) and should return, or fails under RRNET_REQUIRE_TOOLS=1.
pub fn have_prerequisite(available: bool, what: &str, why: &str) -> bool {
    if !available {
        skip(Lacks::Tool, &format!("{what}: {why}"));
    }
    available
}

// ---- Skipped tests ----
//
// A test that cannot run here (no PostgreSQL, a tool missing) passes, so the test
// runners count it as passed, and cargo-nextest does not show the output of tests
// that pass. So every skip goes through [`skip`], which writes one record file to
// a directory that `./test.sh` empties before the run and summarises after it.

/// What a skipped test lacks. Each kind has a variable that forbids the skip:
/// with it set to 1, [`skip`] fails the test instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lacks {
    /// The test PostgreSQL server; RRNET_REQUIRE_POSTGRES=1 forbids the skip.
    Postgres,
    /// An external tool, Python module or packaged file; RRNET_REQUIRE_TOOLS=1
    /// forbids the skip.
    Tool,
}

impl Lacks {
    /// The first field of a skip record, read by `./test.sh`.
    pub fn label(self) -> &'static str {
        match self {
            Lacks::Postgres => "postgres",
            Lacks::Tool => "tool",
        }
    }

    pub fn require_var(self) -> &'static str {
        match self {
            Lacks::Postgres => "RRNET_REQUIRE_POSTGRES",
            Lacks::Tool => "RRNET_REQUIRE_TOOLS",
        }
    }
}

/// Where skip records go: `RRNET_TEST_SKIP_DIR` (set by `./test.sh`), else
/// `test-skips` in the target directory.
pub fn skip_dir() -> PathBuf {
    match std::env::var_os("RRNET_TEST_SKIP_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("CARGO_TARGET_TMPDIR is inside the target directory")
            .join("test-skips"),
    }
}

/// The running test as `BINARY TEST`, e.g. `udp_server postgres::accept_pap`
/// (`cargo nextest run --test BINARY TEST` runs it again). The test harness names
/// each test's thread after the test; async tests run their body on that thread.
pub fn current_test() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("?");
    // Test binaries are named `BINARY-HASH`.
    let binary = match stem.rsplit_once('-') {
        Some((b, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => b,
        _ => stem,
    };
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name,
        _ => "(unknown test)",
    };
    format!("{binary} {test}")
}

/// Skip the running test because something it needs is missing. The caller
/// returns right after (or leaves out the part that needs it).
///
/// With the [`Lacks::require_var`] variable set to 1 this panics, failing the
/// test. Otherwise it prints `SKIPPED: …` on the process's stderr (shown by
/// `cargo test`, hidden by `cargo nextest` for passing tests) and writes a record
/// `KIND<TAB>BINARY TEST<TAB>REASON` to a new file in [`skip_dir`], which
/// `./test.sh` lists at the end of the run.
pub fn skip(lacks: Lacks, reason: &str) {
    let var = lacks.require_var();
    if std::env::var(var).as_deref() == Ok("1") {
        panic!("{reason}; {var}=1 forbids skipping this test");
    }
    let test = current_test();
    // Straight to the process's stderr: the harness captures `eprintln!`.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: {reason} (set {var}=1 to make this fail)"
    );
    let one_line = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let record = format!(
        "{}\t{}\t{}\n",
        lacks.label(),
        one_line(&test),
        one_line(reason)
    );
    let dir = skip_dir();
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let file = dir.join(format!(
        "{}-{}-{}.skip",
        test.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, record)) {
        panic!("cannot record the skip in {}: {e}", file.display());
    }
}

/// A database URL without its credentials, for messages.
pub fn without_credentials(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_string(),
    }
}

// ---- Helpers for the UDP server, fleet and crash tests ----

/// A CLI change to vouchers or plans reaches the server's decisions from
/// memory within 50 ms of its commit (`ADMIN_CHECK_EVERY`, see ARCHITECTURE.md),
/// not on the very next request: wait that out before a login that must see it.
pub fn let_admin_change_land() {
    std::thread::sleep(Duration::from_millis(100));
}

/// Poll `probe` every 50 ms until it yields a value; panic with `what` after `within`.
/// Used instead of fixed sleeps for everything the server does asynchronously.
pub fn wait_until<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parse the JSON a `--format json` admin command printed.
pub fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

impl TestDb {
    /// `voucher show CODE --format json`.
    pub fn voucher_json(&self, code: &str) -> serde_json::Value {
        parse_json(&self.cli(&["voucher", "show", code, "--format", "json"]))
    }

    /// `session list --format json`, newest first.
    pub fn sessions_json(&self) -> Vec<serde_json::Value> {
        match parse_json(&self.cli(&["session", "list", "--format", "json"])) {
            serde_json::Value::Array(v) => v,
            other => panic!("session list is not an array: {other}"),
        }
    }

    /// The session with this Acct-Session-Id, if stored.
    pub fn session_json(&self, acct_session_id: &str) -> Option<serde_json::Value> {
        self.sessions_json()
            .into_iter()
            .find(|s| s["acct_session_id"] == acct_session_id)
    }
}

impl Server {
    /// A sample's value, 0 when the series does not exist yet (counters with
    /// labels appear on first increment).
    pub fn metric_or_zero(&self, sample: &str) -> f64 {
        self.metric(sample).unwrap_or(0.0)
    }

    /// Poll a counter until it reaches `at_least`; returns the value seen.
    pub fn wait_metric(&self, sample: &str, at_least: f64, within: Duration) -> f64 {
        wait_until(&format!("{sample} >= {at_least}"), within, || {
            let v = self.metric_or_zero(sample);
            (v >= at_least).then_some(v)
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Client {
    /// Like [`Client::exchange`] with its own bound on the wait, for polls and
    /// for checks that expect no answer.
    pub fn exchange_within(
        &self,
        to: SocketAddr,
        request: &[u8],
        auth: &[u8; 16],
        wait: Duration,
    ) -> Option<Reply> {
        self.sock.send_to(request, to).unwrap();
        let reply = self.receive_reply(request, auth, wait);
        self.sock
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        reply
    }

    fn receive_reply(&self, request: &[u8], auth: &[u8; 16], wait: Duration) -> Option<Reply> {
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                return None;
            };
            if buf[1] != request[1] {
                continue;
            }
            let bytes = buf[..n].to_vec();
            let code = verify_response(&bytes, auth, &self.secret, false).expect("reply verifies");
            if matches!(
                code,
                Code::AccessAccept | Code::AccessReject | Code::AccessChallenge
            ) {
                let p = Packet::decode(&bytes).unwrap();
                let first = p.attributes().next().expect("reply has attributes");
                assert_eq!(
                    first.typ,
                    attr::MESSAGE_AUTHENTICATOR,
                    "Message-Authenticator must come first"
                );
                verify_response(&bytes, auth, &self.secret, true)
                    .expect("Message-Authenticator verifies");
            }
            return Some(Reply { bytes });
        }
    }

    /// Whether any datagram arrives within `wait` (drains at most one).
    pub fn anything_within(&self, wait: Duration) -> bool {
        let mut buf = [0u8; 4096];
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let got = self.sock.recv_from(&mut buf).is_ok();
        self.sock
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        got
    }

    /// A Status-Server request (RFC 5997), with or without Message-Authenticator.
    pub fn status_server(&mut self, with_ma: bool) -> (Vec<u8>, [u8; 16]) {
        let auth: [u8; 16] = rand::random();
        let id = self.id();
        let mut b = PacketBuilder::new(Code::StatusServer, id);
        if with_ma {
            b.reserve_message_authenticator();
        }
        if let Some(identity) = &self.identity {
            b.add_str(attr::NAS_IDENTIFIER, identity).unwrap();
        }
        (b.finish_access_request(&auth, &self.secret), auth)
    }

    /// Send an Accounting-Request built by [`Client::accounting_request`] and wait
    /// for its Accounting-Response at most `wait`.
    pub fn send_accounting(&self, to: SocketAddr, request: &[u8], wait: Duration) -> Option<Reply> {
        let auth: [u8; 16] = request[4..20].try_into().unwrap();
        self.exchange_within(to, request, &auth, wait)
    }
}

/// Start FreeRADIUS (`cmd`, stdout and stderr captured) and wait, at most 20 s,
/// until it says it is ready. Returns the process and every line it wrote so
/// far and later; panics with its output if it does not start.
pub fn spawn_freeradius(mut cmd: Command) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start freeradius");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let logs = logs.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                logs.lock().unwrap().push(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("Ready to process requests") => break,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "FreeRADIUS did not start:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        }
    }
    (child, logs)
}
