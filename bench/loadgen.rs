//! rrnet-loadgen: a RADIUS load generator for loopback benchmarks.
//!
//! Sends PAP/CHAP Access-Requests or Accounting-Requests for K vouchers, closed
//! loop (N outstanding) or open loop (a target rate), verifies every reply's
//! Response Authenticator and Message-Authenticator, and reports throughput,
//! latency percentiles, timeouts and bad replies as text or JSON.
//! Only loopback targets are accepted.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rrnet_radius::proto::{attr, chap_response, verify_response, Code, PacketBuilder};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Mode {
    Pap,
    Chap,
    AcctStart,
    AcctInterim,
    AcctStop,
    /// Start, then Interims, then Stop per voucher, round robin.
    AcctMix,
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
    /// Server address (must be loopback).
    #[arg(long, default_value = "127.0.0.1:1812")]
    target: SocketAddr,
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
    /// Closed loop: requests outstanding at once.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Open loop: target requests per second (overrides --window).
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Reply timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// UDP sockets to spread requests over (each carries up to 256 outstanding).
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

struct Outstanding {
    sent: Instant,
    auth: [u8; 16],
    measured: bool,
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    ok: u64,
    accepts: u64,
    rejects: u64,
    timeouts: u64,
    bad: u64,
    /// Open loop: a send was due but all identifiers of the socket were in use.
    overruns: u64,
}

fn mac_for(i: usize) -> String {
    let b = (i as u64).to_be_bytes();
    format!("02:00:{:02X}:{:02X}:{:02X}:{:02X}", b[4], b[5], b[6], b[7])
}

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
    fn build(&mut self, id: u8) -> (Vec<u8>, [u8; 16]) {
        let i = self.next % self.codes.len();
        self.next = self.next.wrapping_add(1);
        let code = &self.codes[i];
        let mac = mac_for(i);
        let session = format!("{:08x}", 0x8000_0000u32 | i as u32);
        match self.mode {
            Mode::Pap | Mode::Chap => {
                let auth: [u8; 16] = rand::random();
                let mut b = PacketBuilder::new(Code::AccessRequest, id);
                if self.with_ma {
                    b.reserve_message_authenticator();
                }
                b.add_str(attr::USER_NAME, code).unwrap();
                if self.mode == Mode::Pap {
                    b.add_user_password(code.as_bytes(), &self.secret, &auth)
                        .unwrap();
                } else {
                    let challenge: [u8; 16] = rand::random();
                    let mut v = vec![id];
                    v.extend_from_slice(&chap_response(id, code.as_bytes(), &challenge));
                    b.add(attr::CHAP_PASSWORD, &v).unwrap();
                    b.add(attr::CHAP_CHALLENGE, &challenge).unwrap();
                }
                b.add_str(attr::CALLING_STATION_ID, &mac).unwrap();
                b.add_str(attr::CALLED_STATION_ID, "hotspot1").unwrap();
                b.add_str(attr::NAS_IDENTIFIER, "loadgen").unwrap();
                b.add(attr::NAS_IP_ADDRESS, &[127, 0, 0, 1]).unwrap();
                b.add_u32(attr::NAS_PORT, i as u32).unwrap();
                b.add_u32(attr::NAS_PORT_TYPE, 19).unwrap();
                b.add_u32(attr::SERVICE_TYPE, 1).unwrap();
                b.add_str(attr::ACCT_SESSION_ID, &session).unwrap();
                (b.finish_access_request(&auth, &self.secret), auth)
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
                let mut b = PacketBuilder::new(Code::AccountingRequest, id);
                b.add_u32(attr::ACCT_STATUS_TYPE, status).unwrap();
                b.add_str(attr::USER_NAME, code).unwrap();
                b.add_str(attr::ACCT_SESSION_ID, &session).unwrap();
                b.add_str(attr::CALLING_STATION_ID, &mac).unwrap();
                b.add(attr::NAS_IP_ADDRESS, &[127, 0, 0, 1]).unwrap();
                b.add_u32(attr::NAS_PORT_TYPE, 19).unwrap();
                b.add_u32(attr::ACCT_SESSION_TIME, seq).unwrap();
                b.add_u32(attr::ACCT_INPUT_OCTETS, seq.wrapping_mul(1000))
                    .unwrap();
                b.add_u32(attr::ACCT_OUTPUT_OCTETS, seq.wrapping_mul(5000))
                    .unwrap();
                if status == attr::acct_status::STOP {
                    b.add_u32(attr::ACCT_TERMINATE_CAUSE, 1).unwrap();
                }
                let bytes = b.finish_accounting_request(&self.secret);
                let auth: [u8; 16] = bytes[4..20].try_into().unwrap();
                (bytes, auth)
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_socket(
    args: &Args,
    codes: Arc<Vec<String>>,
    window: usize,
    rate: Option<f64>,
    offset: usize,
    measure_from: Instant,
    stop_at: Instant,
    stop: &AtomicBool,
) -> Stats {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback socket");
    sock.connect(args.target).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    let timeout = Duration::from_millis(args.timeout_ms);
    let users = codes.len();
    let mut b = Builder {
        mode: args.mode,
        codes,
        secret: args.secret.as_bytes().to_vec(),
        with_ma: !args.no_message_authenticator,
        acct_seq: vec![0; users],
        next: offset,
    };
    let mut stats = Stats::default();
    let mut outstanding: HashMap<u8, Outstanding> = HashMap::with_capacity(256);
    let mut next_id: u8 = rand::random();
    let start = Instant::now();
    let mut sent_total: u64 = 0;
    let mut buf = [0u8; 4096];
    let mut last_sweep = Instant::now();
    let window = window.clamp(1, 255);
    loop {
        let now = Instant::now();
        let running = now < stop_at && !stop.load(Ordering::Relaxed);
        if !running && outstanding.is_empty() {
            break;
        }
        if running && now >= stop_at {
            stop.store(true, Ordering::Relaxed);
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
                        stats.overruns += 1;
                        sent_total += 1;
                    }
                    break;
                }
                let mut id = next_id;
                while outstanding.contains_key(&id) {
                    id = id.wrapping_add(1);
                }
                next_id = id.wrapping_add(1);
                let (bytes, auth) = b.build(id);
                let sent = Instant::now();
                if sock.send(&bytes).is_ok() {
                    outstanding.insert(
                        id,
                        Outstanding {
                            sent,
                            auth,
                            measured: sent >= measure_from,
                        },
                    );
                }
                sent_total += 1;
            }
        }
        // Receive what arrived.
        if let Ok(n) = sock.recv(&mut buf) {
            {
                let id = buf[1];
                if let Some(o) = outstanding.remove(&id) {
                    let lat = o.sent.elapsed();
                    let require_ma = matches!(args.mode, Mode::Pap | Mode::Chap);
                    match verify_response(&buf[..n], &o.auth, args.secret.as_bytes(), require_ma) {
                        Ok(code) => {
                            if o.measured {
                                stats.ok += 1;
                                match code {
                                    Code::AccessAccept | Code::AccountingResponse => {
                                        stats.accepts += 1
                                    }
                                    _ => stats.rejects += 1,
                                }
                                stats
                                    .latencies_us
                                    .push(lat.as_micros().min(u32::MAX as u128) as u32);
                            }
                        }
                        Err(_) => {
                            if o.measured {
                                stats.bad += 1;
                            }
                        }
                    }
                }
            }
        }
        if last_sweep.elapsed() >= Duration::from_millis(10) {
            last_sweep = Instant::now();
            outstanding.retain(|_, o| {
                if o.sent.elapsed() > timeout {
                    if o.measured {
                        stats.timeouts += 1;
                    }
                    false
                } else {
                    true
                }
            });
        }
    }
    stats
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

fn main() {
    let args = Args::parse();
    if !args.target.ip().is_loopback() {
        eprintln!("error: target {} is not a loopback address; rrnet-loadgen only loads 127.0.0.0/8 or ::1", args.target);
        std::process::exit(2);
    }
    let codes: Vec<String> = match &args.codes_file {
        Some(p) => std::fs::read_to_string(p)
            .unwrap_or_else(|e| {
                eprintln!("error: cannot read {}: {e}", p.display());
                std::process::exit(2)
            })
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
        eprintln!("error: no voucher codes");
        std::process::exit(2);
    }
    let codes = Arc::new(codes);
    let sockets = args.sockets.max(1);
    let window_per = args.window.div_ceil(sockets).max(1);
    let rate_per = args.rate.map(|r| r as f64 / sockets as f64);
    let begin = Instant::now();
    let measure_from = begin + Duration::from_secs_f64(args.warmup);
    let stop_at = measure_from + Duration::from_secs_f64(args.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for k in 0..sockets {
            let codes = codes.clone();
            let stop = stop.clone();
            let all = all.clone();
            let args = &args;
            s.spawn(move || {
                let offset = k * codes.len() / sockets;
                let st = run_socket(
                    args,
                    codes,
                    window_per,
                    rate_per,
                    offset,
                    measure_from,
                    stop_at,
                    &stop,
                );
                all.lock().unwrap().push(st);
            });
        }
    });
    let mut total = Stats::default();
    for st in all.lock().unwrap().drain(..) {
        total.latencies_us.extend(st.latencies_us);
        total.ok += st.ok;
        total.accepts += st.accepts;
        total.rejects += st.rejects;
        total.timeouts += st.timeouts;
        total.bad += st.bad;
        total.overruns += st.overruns;
    }
    total.latencies_us.sort_unstable();
    let secs = args.duration;
    let rps = total.ok as f64 / secs;
    let (p50, p99, p999) = (
        percentile(&total.latencies_us, 0.50),
        percentile(&total.latencies_us, 0.99),
        percentile(&total.latencies_us, 0.999),
    );
    match args.format {
        OutFormat::Json => println!(
            "{}",
            serde_json::json!({
                "label": args.label, "mode": format!("{:?}", args.mode).to_lowercase(),
                "target": args.target.to_string(), "users": codes.len(),
                "window": args.window, "rate": args.rate, "duration_s": secs,
                "replies": total.ok, "accepts": total.accepts, "rejects": total.rejects,
                "req_per_s": rps, "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
                "timeouts": total.timeouts, "bad_replies": total.bad, "overruns": total.overruns,
            })
        ),
        OutFormat::Text => {
            println!(
                "{} {:?} → {} ({} vouchers, {})",
                args.label,
                args.mode,
                args.target,
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
                total.timeouts, total.bad, total.overruns
            );
        }
    }
}
