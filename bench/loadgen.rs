//! rrnet-loadgen: a RADIUS load generator for loopback benchmarks.
//!
//! Sends PAP/CHAP Access-Requests or Accounting-Requests for K vouchers, closed
//! loop (N outstanding) or open loop (a target rate), verifies every reply's
//! Response Authenticator and Message-Authenticator, and reports throughput,
//! latency percentiles, timeouts and bad replies as text or JSON.
//!
//! `--mode mixed` plays a hotspot instead: simulated users log in (PAP), send an
//! Accounting Start, Interim-Updates with growing counters and a Stop, then log
//! in again or leave, a never-used voucher taking their place; Access-Requests go
//! to `--target`, accounting to `--acct-target`. See [`Mode::Mixed`].
//! Only loopback targets are accepted.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rrnet_radius::proto::{attr, chap_response, verify_response, Code, Packet, PacketBuilder};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Mode {
    Pap,
    Chap,
    AcctStart,
    AcctInterim,
    AcctStop,
    /// Start, then Interims, then Stop per voucher, round robin.
    AcctMix,
    /// A hotspot. Each simulated user (one per voucher of --users) logs in with
    /// PAP, sends Start, Interim-Updates and Stop, then logs in again or leaves;
    /// a voucher that was never used (from --fresh) takes a leaving user's place.
    /// Per --mix-first + --mix-repeat logins: as many Starts and Stops and
    /// --mix-interim Interims (default per 100 requests: 2 first logins, 3 repeat
    /// logins, 5 Starts, 85 Interims, 5 Stops). A user has one request
    /// outstanding at a time; a timed-out request is sent again. The warm-up
    /// lasts until every user has logged in and started a session (at most 60 s
    /// more), so the measured part has the shares of a running hotspot rather
    /// than a burst of logins. Needs --acct-target.
    Mixed,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum OutFormat {
    Text,
    Json,
}

#[derive(Parser, Debug)]
#[command(
    name = "rrnet-loadgen",
    about = "RADIUS load generator (loopback only)"
)]
struct Args {
    /// Server address (must be loopback). In mixed mode, the authentication port.
    #[arg(long, default_value = "127.0.0.1:1812")]
    target: SocketAddr,
    /// Accounting server address for --mode mixed (must be loopback).
    #[arg(long)]
    acct_target: Option<SocketAddr>,
    #[arg(long, env = "RRNET_LOADGEN_SECRET", default_value = "testing123")]
    secret: String,
    #[arg(long, value_enum, default_value = "pap")]
    mode: Mode,
    /// File with one voucher code per line (password = code). Default: codes
    /// PREFIX000000.. generated from --users and --prefix.
    #[arg(long)]
    codes_file: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value = "LG")]
    prefix: String,
    /// Mixed: never-used vouchers for first logins, codes PREFIX + number from
    /// --fresh-start on. When they run out, a leaving user logs in again instead
    /// and the report counts it under fresh.exhausted.
    #[arg(long, default_value_t = 0)]
    fresh: usize,
    /// Mixed: number of the first never-used voucher (default: --users, or the
    /// number of codes in --codes-file).
    #[arg(long)]
    fresh_start: Option<usize>,
    /// Mixed: first logins (never-used vouchers) per --mix-first + --mix-repeat logins.
    #[arg(long, default_value_t = 2)]
    mix_first: u32,
    /// Mixed: repeat logins per --mix-first + --mix-repeat logins.
    #[arg(long, default_value_t = 3)]
    mix_repeat: u32,
    /// Mixed: Interim-Updates per --mix-first + --mix-repeat logins.
    #[arg(long, default_value_t = 85)]
    mix_interim: u32,
    /// Closed loop: requests outstanding at once.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Open loop: target requests per second (overrides --window).
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before measuring (mixed mode: at least; see --mode).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Reply timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// UDP sockets to spread requests over (each carries up to 255 outstanding).
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Leave Message-Authenticator out of Access-Requests.
    #[arg(long)]
    no_message_authenticator: bool,
    #[arg(long, value_enum, default_value = "text")]
    format: OutFormat,
    /// Label for the report.
    #[arg(long, default_value = "")]
    label: String,
}

/// What a mixed-mode user sends next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    FirstLogin,
    RepeatLogin,
    Start,
    Interim,
    Stop,
}

impl Step {
    const ALL: [Step; 5] = [
        Step::FirstLogin,
        Step::RepeatLogin,
        Step::Start,
        Step::Interim,
        Step::Stop,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::FirstLogin => "first_login",
            Step::RepeatLogin => "repeat_login",
            Step::Start => "start",
            Step::Interim => "interim",
            Step::Stop => "stop",
        }
    }

    fn is_login(self) -> bool {
        matches!(self, Step::FirstLogin | Step::RepeatLogin)
    }
}

struct Outstanding {
    sent: Instant,
    auth: [u8; 16],
    measured: bool,
    /// Sent to the accounting port (no Message-Authenticator required).
    acct: bool,
    /// Mixed mode: the user and the step this request is.
    step: Option<(usize, Step)>,
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    ok: u64,
    accepts: u64,
    rejects: u64,
    timeouts: u64,
    bad: u64,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.latencies_us.extend(o.latencies_us);
        self.ok += o.ok;
        self.accepts += o.accepts;
        self.rejects += o.rejects;
        self.timeouts += o.timeouts;
        self.bad += o.bad;
    }
}

/// What one socket measured: Access-Requests and Accounting-Requests apart.
#[derive(Default)]
struct Report {
    auth: Stats,
    acct: Stats,
    /// Mixed mode: measured replies per [`Step`].
    steps: [u64; 5],
    /// Open loop: a send was due but all identifiers of the socket were in use
    /// (or, in mixed mode, every user was waiting for a reply).
    overruns: u64,
    /// Mixed mode: a user left but no never-used voucher was left to replace it.
    fresh_exhausted: u64,
}

fn mac_for(i: usize) -> String {
    let b = (i as u64).to_be_bytes();
    format!("02:00:{:02X}:{:02X}:{:02X}:{:02X}", b[4], b[5], b[6], b[7])
}

#[allow(clippy::too_many_arguments)]
fn access_request(
    id: u8,
    chap: bool,
    code: &str,
    mac: &str,
    nas_port: u32,
    session: &str,
    secret: &[u8],
    with_ma: bool,
) -> (Vec<u8>, [u8; 16]) {
    let auth: [u8; 16] = rand::random();
    let mut b = PacketBuilder::new(Code::AccessRequest, id);
    if with_ma {
        b.reserve_message_authenticator();
    }
    b.add_str(attr::USER_NAME, code).unwrap();
    if chap {
        let challenge: [u8; 16] = rand::random();
        let mut v = vec![id];
        v.extend_from_slice(&chap_response(id, code.as_bytes(), &challenge));
        b.add(attr::CHAP_PASSWORD, &v).unwrap();
        b.add(attr::CHAP_CHALLENGE, &challenge).unwrap();
    } else {
        b.add_user_password(code.as_bytes(), secret, &auth).unwrap();
    }
    b.add_str(attr::CALLING_STATION_ID, mac).unwrap();
    b.add_str(attr::CALLED_STATION_ID, "hotspot1").unwrap();
    b.add_str(attr::NAS_IDENTIFIER, "loadgen").unwrap();
    b.add(attr::NAS_IP_ADDRESS, &[127, 0, 0, 1]).unwrap();
    b.add_u32(attr::NAS_PORT, nas_port).unwrap();
    b.add_u32(attr::NAS_PORT_TYPE, 19).unwrap();
    b.add_u32(attr::SERVICE_TYPE, 1).unwrap();
    b.add_str(attr::ACCT_SESSION_ID, session).unwrap();
    (b.finish_access_request(&auth, secret), auth)
}

/// An Accounting-Request whose counters are those of the `seq`-th update of
/// the session; `class` is echoed from the Access-Accept, as a NAS does.
#[allow(clippy::too_many_arguments)]
fn accounting_request(
    id: u8,
    status: u32,
    code: &str,
    session: &str,
    mac: &str,
    seq: u32,
    class: Option<&[u8]>,
    secret: &[u8],
) -> (Vec<u8>, [u8; 16]) {
    let mut b = PacketBuilder::new(Code::AccountingRequest, id);
    b.add_u32(attr::ACCT_STATUS_TYPE, status).unwrap();
    b.add_str(attr::USER_NAME, code).unwrap();
    b.add_str(attr::ACCT_SESSION_ID, session).unwrap();
    b.add_str(attr::CALLING_STATION_ID, mac).unwrap();
    b.add(attr::NAS_IP_ADDRESS, &[127, 0, 0, 1]).unwrap();
    b.add_u32(attr::NAS_PORT_TYPE, 19).unwrap();
    if let Some(c) = class {
        b.add(attr::CLASS, c).unwrap();
    }
    b.add_u32(attr::ACCT_SESSION_TIME, seq).unwrap();
    b.add_u32(attr::ACCT_INPUT_OCTETS, seq.wrapping_mul(1000))
        .unwrap();
    b.add_u32(attr::ACCT_OUTPUT_OCTETS, seq.wrapping_mul(5000))
        .unwrap();
    if status == attr::acct_status::STOP {
        b.add_u32(attr::ACCT_TERMINATE_CAUSE, 1).unwrap();
    }
    let bytes = b.finish_accounting_request(secret);
    let auth: [u8; 16] = bytes[4..20].try_into().unwrap();
    (bytes, auth)
}

/// A request ready to go: bytes, Request Authenticator, to the accounting port
/// or not, and in mixed mode the user and step.
struct Request {
    bytes: Vec<u8>,
    auth: [u8; 16],
    acct: bool,
    step: Option<(usize, Step)>,
}

/// The single-kind modes: one request after the other over the vouchers.
struct Builder {
    mode: Mode,
    codes: Arc<Vec<String>>,
    secret: Vec<u8>,
    with_ma: bool,
    /// Per voucher: how many accounting packets were sent (for counters and mix).
    acct_seq: Vec<u32>,
    next: usize,
}

impl Builder {
    fn build(&mut self, id: u8) -> Request {
        let i = self.next % self.codes.len();
        self.next = self.next.wrapping_add(1);
        let code = &self.codes[i];
        let mac = mac_for(i);
        let session = format!("{:08x}", 0x8000_0000u32 | i as u32);
        match self.mode {
            Mode::Pap | Mode::Chap => {
                let (bytes, auth) = access_request(
                    id,
                    self.mode == Mode::Chap,
                    code,
                    &mac,
                    i as u32,
                    &session,
                    &self.secret,
                    self.with_ma,
                );
                Request {
                    bytes,
                    auth,
                    acct: false,
                    step: None,
                }
            }
            _ => {
                let seq = self.acct_seq[i];
                self.acct_seq[i] = seq.wrapping_add(1);
                let status = match self.mode {
                    Mode::AcctStart => attr::acct_status::START,
                    Mode::AcctInterim => attr::acct_status::INTERIM_UPDATE,
                    Mode::AcctStop => attr::acct_status::STOP,
                    _ => match seq % 10 {
                        0 => attr::acct_status::START,
                        9 => attr::acct_status::STOP,
                        _ => attr::acct_status::INTERIM_UPDATE,
                    },
                };
                let (bytes, auth) =
                    accounting_request(id, status, code, &session, &mac, seq, None, &self.secret);
                Request {
                    bytes,
                    auth,
                    acct: true,
                    step: None,
                }
            }
        }
    }
}

/// When measuring starts and stops, shared by the sockets. It starts after the
/// warm-up, and in mixed mode not before every user has logged in and had its
/// first Start answered (or `PRIME_LIMIT` after the warm-up, whichever is first).
struct Clock {
    begin: Instant,
    warmup: Duration,
    duration: Duration,
    /// Mixed mode: users that have not had their first Start answered yet.
    unprimed: AtomicUsize,
    primed_at: OnceLock<Instant>,
    /// Measuring started with users not yet primed (after `PRIME_LIMIT`).
    gave_up: AtomicBool,
}

const PRIME_LIMIT: Duration = Duration::from_secs(60);

impl Clock {
    /// The start of the measured part, once it is known.
    fn measure_from(&self) -> Option<Instant> {
        let warm = self.begin + self.warmup;
        let t = match self.primed_at.get() {
            Some(t) => *t,
            None => {
                let now = Instant::now();
                if self.unprimed.load(Ordering::Relaxed) > 0 {
                    if now < warm + PRIME_LIMIT {
                        return None;
                    }
                    self.gave_up.store(true, Ordering::Relaxed);
                }
                *self.primed_at.get_or_init(|| now)
            }
        };
        Some(t.max(warm))
    }
}

/// Never-used vouchers, shared by the sockets of a mixed run.
struct FreshPool {
    prefix: String,
    start: usize,
    count: usize,
    next: AtomicUsize,
}

impl FreshPool {
    /// The next never-used voucher: (number, code).
    fn take(&self) -> Option<(usize, String)> {
        let j = self.next.fetch_add(1, Ordering::Relaxed);
        (j < self.count).then(|| {
            let n = self.start + j;
            (n, format!("{}{:06}", self.prefix, n))
        })
    }

    fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed).min(self.count)
    }
}

/// Acct-Session-Ids of mixed runs: 8 hex digits whose first two are the NAS's
/// reboot counter (RFC 2866 §5.5, as RouterOS sends them). The counter is the
/// single-kind modes' (`80`), so no mode looks like a NAS reboot to a server
/// that detects them; the other six digits start above those modes' numbers.
struct SessionIds(AtomicU32);

impl SessionIds {
    fn new() -> Self {
        let base = 0x10_0000 + rand::random::<u32>() % 0x70_0000;
        SessionIds(AtomicU32::new(base))
    }

    fn next(&self) -> String {
        let n = self.0.fetch_add(1, Ordering::Relaxed) & 0xFF_FFFF;
        format!("80{n:06x}")
    }
}

/// One simulated hotspot user: the voucher it logs in with, its device and
/// where it is in its session.
struct User {
    number: usize,
    code: String,
    mac: String,
    step: Step,
    busy: bool,
    /// Its first Start was answered.
    primed: bool,
    session: String,
    class: Option<Vec<u8>>,
    /// Interim-Updates sent and answered in this session.
    seq: u32,
    interims_left: u32,
    /// The length of the first session, so that users do not move in step.
    first_interims: Option<u32>,
}

/// Mixed mode: the users of one socket, picked round robin among those not
/// waiting for a reply.
struct Mixer {
    users: Vec<User>,
    cursor: usize,
    clock: Arc<Clock>,
    fresh: Arc<FreshPool>,
    ids: Arc<SessionIds>,
    secret: Vec<u8>,
    with_ma: bool,
    first: u64,
    logins: u64,
    interims: u64,
    /// Sessions begun and ended on this socket, for the shares.
    begun: u64,
    ended: u64,
    fresh_exhausted: u64,
}

impl Mixer {
    fn new(
        codes: &[String],
        range: std::ops::Range<usize>,
        clock: Arc<Clock>,
        fresh: Arc<FreshPool>,
        ids: Arc<SessionIds>,
        args: &Args,
    ) -> Self {
        let logins = u64::from(args.mix_first + args.mix_repeat);
        let per_session = u64::from(args.mix_interim).div_ceil(logins) as u32;
        let users = range
            .enumerate()
            .map(|(k, i)| User {
                number: i,
                code: codes[i].clone(),
                mac: mac_for(i),
                step: Step::RepeatLogin,
                busy: false,
                primed: false,
                session: ids.next(),
                class: None,
                seq: 0,
                interims_left: 0,
                first_interims: Some(k as u32 % (per_session + 1)),
            })
            .collect();
        Mixer {
            users,
            cursor: 0,
            clock,
            fresh,
            ids,
            secret: args.secret.as_bytes().to_vec(),
            with_ma: !args.no_message_authenticator,
            first: u64::from(args.mix_first),
            logins,
            interims: u64::from(args.mix_interim),
            begun: 0,
            ended: 0,
            fresh_exhausted: 0,
        }
    }

    /// The next user's next request, or `None` when every user waits for a reply.
    fn build(&mut self, id: u8) -> Option<Request> {
        let n = self.users.len();
        let k = (0..n)
            .map(|d| (self.cursor + d) % n)
            .find(|&k| !self.users[k].busy)?;
        self.cursor = (k + 1) % n;
        let u = &mut self.users[k];
        u.busy = true;
        let (bytes, auth) = match u.step {
            Step::FirstLogin | Step::RepeatLogin => access_request(
                id,
                false,
                &u.code,
                &u.mac,
                u.number as u32,
                &u.session,
                &self.secret,
                self.with_ma,
            ),
            step => {
                let (status, seq) = match step {
                    Step::Start => (attr::acct_status::START, 0),
                    Step::Interim => (attr::acct_status::INTERIM_UPDATE, u.seq + 1),
                    _ => (attr::acct_status::STOP, u.seq + 1),
                };
                accounting_request(
                    id,
                    status,
                    &u.code,
                    &u.session,
                    &u.mac,
                    seq,
                    u.class.as_deref(),
                    &self.secret,
                )
            }
        };
        Some(Request {
            bytes,
            auth,
            acct: !u.step.is_login(),
            step: Some((k, u.step)),
        })
    }

    /// A verified reply moves the user on; a reject leaves it where it was.
    fn answered(&mut self, k: usize, step: Step, code: Code, reply: &[u8]) {
        self.users[k].busy = false;
        match step {
            Step::FirstLogin | Step::RepeatLogin => {
                if code != Code::AccessAccept {
                    return;
                }
                // Bresenham over the sessions begun: `interims` per `logins`.
                let n = self.begun;
                self.begun += 1;
                let share = ((n + 1) * self.interims / self.logins
                    - n * self.interims / self.logins) as u32;
                let u = &mut self.users[k];
                u.class = Packet::decode(reply)
                    .ok()
                    .and_then(|p| p.attr(attr::CLASS).map(<[u8]>::to_vec));
                u.seq = 0;
                u.interims_left = u.first_interims.take().unwrap_or(share);
                u.step = Step::Start;
            }
            Step::Start | Step::Interim => {
                let u = &mut self.users[k];
                if step == Step::Start && !u.primed {
                    u.primed = true;
                    self.clock.unprimed.fetch_sub(1, Ordering::Relaxed);
                }
                if step == Step::Interim {
                    u.seq += 1;
                    u.interims_left = u.interims_left.saturating_sub(1);
                }
                u.step = if u.interims_left > 0 {
                    Step::Interim
                } else {
                    Step::Stop
                };
            }
            Step::Stop => {
                // Bresenham over the sessions ended: `first` of every `logins`
                // users leave, and a never-used voucher logs in in their place.
                let n = self.ended;
                self.ended += 1;
                let leaves = (n + 1) * self.first / self.logins > n * self.first / self.logins;
                let next = if leaves { self.fresh.take() } else { None };
                if leaves && next.is_none() {
                    self.fresh_exhausted += 1;
                }
                let session = self.ids.next();
                let u = &mut self.users[k];
                u.session = session;
                u.class = None;
                u.step = match next {
                    Some((number, code)) => {
                        u.number = number;
                        u.code = code;
                        u.mac = mac_for(number);
                        Step::FirstLogin
                    }
                    None => Step::RepeatLogin,
                };
            }
        }
    }

    /// A timeout or a bad reply: the user sends the same step again.
    fn failed(&mut self, k: usize) {
        self.users[k].busy = false;
    }
}

enum Source {
    Fixed(Builder),
    Mixed(Mixer),
}

impl Source {
    fn build(&mut self, id: u8) -> Option<Request> {
        match self {
            Source::Fixed(b) => Some(b.build(id)),
            Source::Mixed(m) => m.build(id),
        }
    }

    fn answered(&mut self, step: Option<(usize, Step)>, code: Code, reply: &[u8]) {
        if let (Source::Mixed(m), Some((k, s))) = (self, step) {
            m.answered(k, s, code, reply);
        }
    }

    fn failed(&mut self, step: Option<(usize, Step)>) {
        if let (Source::Mixed(m), Some((k, _))) = (self, step) {
            m.failed(k);
        }
    }
}

fn run_socket(
    args: &Args,
    mut source: Source,
    window: usize,
    rate: Option<f64>,
    clock: &Clock,
    stop: &AtomicBool,
) -> Report {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback socket");
    // Mixed mode talks to two ports from one socket (one identifier space);
    // the single-kind modes keep a connected socket.
    let acct_target = match args.mode {
        Mode::Mixed => args.acct_target,
        _ => None,
    };
    if acct_target.is_none() {
        sock.connect(args.target).expect("connect");
    }
    let mut read_timeout = Duration::from_millis(2);
    sock.set_read_timeout(Some(read_timeout)).unwrap();
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut rep = Report::default();
    let mut outstanding: HashMap<u8, Outstanding> = HashMap::with_capacity(256);
    let mut next_id: u8 = rand::random();
    let start = Instant::now();
    let mut sent_total: u64 = 0;
    let mut buf = [0u8; 4096];
    let mut last_sweep = Instant::now();
    let window = window.clamp(1, 255);
    loop {
        let now = Instant::now();
        let measure_from = clock.measure_from();
        let over = measure_from.is_some_and(|t| now >= t + clock.duration);
        if over {
            stop.store(true, Ordering::Relaxed);
        }
        let running = !over && !stop.load(Ordering::Relaxed);
        if !running && outstanding.is_empty() {
            break;
        }
        // Send what is due.
        if running {
            let due = match rate {
                Some(r) => {
                    let should = (start.elapsed().as_secs_f64() * r) as u64;
                    should.saturating_sub(sent_total)
                }
                None => window.saturating_sub(outstanding.len()) as u64,
            };
            for _ in 0..due.min(256) {
                if outstanding.len() >= 255 {
                    if rate.is_some() {
                        rep.overruns += 1;
                        sent_total += 1;
                    }
                    break;
                }
                let mut id = next_id;
                while outstanding.contains_key(&id) {
                    id = id.wrapping_add(1);
                }
                let Some(req) = source.build(id) else {
                    // Every mixed-mode user waits for a reply.
                    if rate.is_some() {
                        rep.overruns += 1;
                        sent_total += 1;
                    }
                    break;
                };
                next_id = id.wrapping_add(1);
                let sent = Instant::now();
                let ok = match (acct_target, req.acct) {
                    (Some(a), true) => sock.send_to(&req.bytes, a).is_ok(),
                    (Some(_), false) => sock.send_to(&req.bytes, args.target).is_ok(),
                    (None, _) => sock.send(&req.bytes).is_ok(),
                };
                if ok {
                    outstanding.insert(
                        id,
                        Outstanding {
                            sent,
                            auth: req.auth,
                            measured: measure_from.is_some_and(|t| sent >= t),
                            acct: req.acct,
                            step: req.step,
                        },
                    );
                } else {
                    source.failed(req.step);
                }
                sent_total += 1;
            }
        }
        // Receive what arrived. In open loop, wait at most until the next
        // request is due, so requests go out evenly paced rather than in
        // bursts of a whole read timeout's worth (which the server would
        // queue, and the latency would show).
        if let (Some(r), true) = (rate, running) {
            let next_due = (sent_total + 1) as f64 / r;
            // In 50 µs steps, so the timeout is not set again on every reply.
            let wait_us = ((next_due - start.elapsed().as_secs_f64()) * 1e6).max(0.0) as u64;
            let wait = Duration::from_micros((wait_us / 50 * 50).clamp(50, 2000));
            if wait != read_timeout {
                sock.set_read_timeout(Some(wait)).unwrap();
                read_timeout = wait;
            }
        }
        let got = match acct_target {
            Some(a) => sock.recv_from(&mut buf).ok().and_then(|(n, from)| {
                // A reply to one port comes from that port; with one
                // identifier space, anything else is not ours.
                let o = outstanding.get(&buf[1]).filter(|_| n >= 2)?;
                let expected = if o.acct { a } else { args.target };
                (from == expected).then_some(n)
            }),
            None => sock.recv(&mut buf).ok().filter(|&n| n >= 2),
        };
        if let Some(n) = got {
            let id = buf[1];
            if let Some(o) = outstanding.remove(&id) {
                let lat = o.sent.elapsed();
                let stats = if o.acct { &mut rep.acct } else { &mut rep.auth };
                match verify_response(&buf[..n], &o.auth, args.secret.as_bytes(), !o.acct) {
                    Ok(code) => {
                        if o.measured {
                            stats.ok += 1;
                            match code {
                                Code::AccessAccept | Code::AccountingResponse => stats.accepts += 1,
                                _ => stats.rejects += 1,
                            }
                            stats
                                .latencies_us
                                .push(lat.as_micros().min(u32::MAX as u128) as u32);
                            if let Some((_, step)) = o.step {
                                rep.steps[step as usize] += 1;
                            }
                        }
                        source.answered(o.step, code, &buf[..n]);
                    }
                    Err(_) => {
                        if o.measured {
                            stats.bad += 1;
                        }
                        source.failed(o.step);
                    }
                }
            }
        }
        if last_sweep.elapsed() >= Duration::from_millis(10) {
            last_sweep = Instant::now();
            outstanding.retain(|_, o| {
                if o.sent.elapsed() > timeout {
                    if o.measured {
                        if o.acct {
                            rep.acct.timeouts += 1;
                        } else {
                            rep.auth.timeouts += 1;
                        }
                    }
                    source.failed(o.step);
                    false
                } else {
                    true
                }
            });
        }
    }
    if let Source::Mixed(m) = &source {
        rep.fresh_exhausted = m.fresh_exhausted;
    }
    rep
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Throughput and latency of a set of replies, for the JSON report.
fn summary(s: &mut Stats, secs: f64) -> serde_json::Value {
    s.latencies_us.sort_unstable();
    serde_json::json!({
        "replies": s.ok, "accepts": s.accepts, "rejects": s.rejects,
        "req_per_s": s.ok as f64 / secs,
        "p50_ms": percentile(&s.latencies_us, 0.50),
        "p99_ms": percentile(&s.latencies_us, 0.99),
        "p999_ms": percentile(&s.latencies_us, 0.999),
        "timeouts": s.timeouts, "bad_replies": s.bad,
    })
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(2)
}

fn main() {
    let args = Args::parse();
    for t in std::iter::once(args.target).chain(args.acct_target) {
        if !t.ip().is_loopback() {
            fail(&format!(
                "target {t} is not a loopback address; rrnet-loadgen only loads 127.0.0.0/8 or ::1"
            ));
        }
    }
    let mixed = args.mode == Mode::Mixed;
    if mixed {
        if args.acct_target.is_none() {
            fail("--mode mixed needs --acct-target ADDR (the accounting port)");
        }
        if args.mix_first + args.mix_repeat == 0 {
            fail("--mode mixed needs --mix-first + --mix-repeat > 0");
        }
        if args.mix_first > 0 && args.fresh == 0 {
            fail("--mode mixed needs --fresh N never-used vouchers for first logins (or --mix-first 0)");
        }
    }
    let codes: Vec<String> = match &args.codes_file {
        Some(p) => std::fs::read_to_string(p)
            .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", p.display())))
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        None => (0..args.users)
            .map(|i| format!("{}{:06}", args.prefix, i))
            .collect(),
    };
    if codes.is_empty() {
        fail("no voucher codes");
    }
    let codes = Arc::new(codes);
    let sockets = args.sockets.max(1);
    if mixed && codes.len() < sockets {
        fail(&format!(
            "--mode mixed needs at least one voucher per socket ({sockets})"
        ));
    }
    let fresh = Arc::new(FreshPool {
        prefix: args.prefix.clone(),
        start: args.fresh_start.unwrap_or(codes.len()),
        count: args.fresh,
        next: AtomicUsize::new(0),
    });
    let ids = Arc::new(SessionIds::new());
    let window_per = args.window.div_ceil(sockets).max(1);
    let rate_per = args.rate.map(|r| r as f64 / sockets as f64);
    let clock = Arc::new(Clock {
        begin: Instant::now(),
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        unprimed: AtomicUsize::new(if mixed { codes.len() } else { 0 }),
        primed_at: OnceLock::new(),
        gave_up: AtomicBool::new(false),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for k in 0..sockets {
            let range = k * codes.len() / sockets..(k + 1) * codes.len() / sockets;
            let source = if mixed {
                Source::Mixed(Mixer::new(
                    &codes,
                    range,
                    clock.clone(),
                    fresh.clone(),
                    ids.clone(),
                    &args,
                ))
            } else {
                Source::Fixed(Builder {
                    mode: args.mode,
                    codes: codes.clone(),
                    secret: args.secret.as_bytes().to_vec(),
                    with_ma: !args.no_message_authenticator,
                    acct_seq: vec![0; codes.len()],
                    next: range.start,
                })
            };
            let stop = stop.clone();
            let all = all.clone();
            let clock = clock.clone();
            let args = &args;
            s.spawn(move || {
                let rep = run_socket(args, source, window_per, rate_per, &clock, &stop);
                all.lock().unwrap().push(rep);
            });
        }
    });
    let mut auth = Stats::default();
    let mut acct = Stats::default();
    let mut steps = [0u64; 5];
    let (mut overruns, mut exhausted) = (0, 0);
    for rep in all.lock().unwrap().drain(..) {
        auth.merge(rep.auth);
        acct.merge(rep.acct);
        for (t, s) in steps.iter_mut().zip(rep.steps) {
            *t += s;
        }
        overruns += rep.overruns;
        exhausted += rep.fresh_exhausted;
    }
    let secs = args.duration;
    // The warm-up as it was: in mixed mode it waits for every user's first Start.
    let warmup_s = clock
        .measure_from()
        .map_or(f64::NAN, |t| (t - clock.begin).as_secs_f64());
    let primed = !clock.gave_up.load(Ordering::Relaxed);
    let (mut total, auth, acct) = if mixed {
        let mut total = Stats::default();
        let (a, c) = (summary(&mut auth, secs), summary(&mut acct, secs));
        total.merge(auth);
        total.merge(acct);
        (total, Some(a), Some(c))
    } else {
        auth.merge(acct);
        (auth, None, None)
    };
    total.latencies_us.sort_unstable();
    let rps = total.ok as f64 / secs;
    let (p50, p99, p999) = (
        percentile(&total.latencies_us, 0.50),
        percentile(&total.latencies_us, 0.99),
        percentile(&total.latencies_us, 0.999),
    );
    let measured: u64 = steps.iter().sum();
    let shares: serde_json::Map<String, serde_json::Value> = Step::ALL
        .iter()
        .map(|s| {
            let n = steps[*s as usize];
            let pct = if measured > 0 {
                100.0 * n as f64 / measured as f64
            } else {
                0.0
            };
            (s.name().to_string(), serde_json::json!(pct))
        })
        .collect();
    match args.format {
        OutFormat::Json => {
            let mut out = serde_json::json!({
                "label": args.label, "mode": format!("{:?}", args.mode).to_lowercase(),
                "target": args.target.to_string(), "users": codes.len(),
                "window": args.window, "rate": args.rate, "duration_s": secs,
                "replies": total.ok, "accepts": total.accepts, "rejects": total.rejects,
                "req_per_s": rps, "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
                "timeouts": total.timeouts, "bad_replies": total.bad, "overruns": overruns,
            });
            if mixed {
                let o = out.as_object_mut().unwrap();
                o.insert(
                    "acct_target".into(),
                    args.acct_target.map(|a| a.to_string()).into(),
                );
                o.insert("auth".into(), auth.unwrap());
                o.insert("acct".into(), acct.unwrap());
                o.insert(
                    "steps".into(),
                    Step::ALL
                        .iter()
                        .map(|s| (s.name().to_string(), steps[*s as usize].into()))
                        .collect::<serde_json::Map<_, _>>()
                        .into(),
                );
                o.insert("shares_pct".into(), shares.into());
                o.insert("warmup_s".into(), warmup_s.into());
                o.insert("primed".into(), primed.into());
                o.insert(
                    "mix".into(),
                    serde_json::json!({
                        "first": args.mix_first, "repeat": args.mix_repeat,
                        "interim": args.mix_interim,
                    }),
                );
                o.insert(
                    "fresh".into(),
                    serde_json::json!({
                        "pool": fresh.count, "start": fresh.start, "used": fresh.used(),
                        "exhausted": exhausted,
                    }),
                );
            }
            println!("{out}");
        }
        OutFormat::Text => {
            println!(
                "{} {:?} → {}{} ({} vouchers, {})",
                args.label,
                args.mode,
                args.target,
                match (mixed, args.acct_target) {
                    (true, Some(a)) => format!(" + {a}"),
                    _ => String::new(),
                },
                codes.len(),
                match args.rate {
                    Some(r) => format!("open loop {r}/s"),
                    None => format!("window {}", args.window),
                }
            );
            println!(
                "  replies {}  accepts {}  rejects {}  over {secs:.1}s = {rps:.0} req/s",
                total.ok, total.accepts, total.rejects
            );
            println!("  latency p50 {p50:.3} ms  p99 {p99:.3} ms  p99.9 {p999:.3} ms");
            println!(
                "  timeouts {}  bad replies {}  overruns {}",
                total.timeouts, total.bad, overruns
            );
            if mixed {
                for (kind, v) in [("auth", auth.unwrap()), ("acct", acct.unwrap())] {
                    println!(
                        "  {kind}: {:.0} req/s  p50 {:.3} ms  p99 {:.3} ms  timeouts {}  bad {}  rejects {}",
                        v["req_per_s"].as_f64().unwrap_or(0.0),
                        v["p50_ms"].as_f64().unwrap_or(f64::NAN),
                        v["p99_ms"].as_f64().unwrap_or(f64::NAN),
                        v["timeouts"],
                        v["bad_replies"],
                        v["rejects"],
                    );
                }
                println!(
                    "  shares %: {}",
                    Step::ALL
                        .iter()
                        .map(|s| format!(
                            "{} {:.1}",
                            s.name(),
                            shares[s.name()].as_f64().unwrap_or(0.0)
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                println!(
                    "  never-used vouchers: {} of {} logged in, {} times none was left",
                    fresh.used(),
                    fresh.count,
                    exhausted
                );
                println!(
                    "  warm-up {warmup_s:.1} s{}",
                    if primed {
                        ", until every user had logged in and started a session"
                    } else {
                        "; measuring began before every user had started a session"
                    }
                );
            }
        }
    }
}
