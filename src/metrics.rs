//! Prometheus metrics. Labels stay bounded: packet types, NAS names, reasons —
//! never usernames, MACs or client addresses.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::policy::{AcctStatus, RejectReason};

/// Latency buckets fine enough to see 100 µs (a cached SQLite authorize takes
/// a few hundred µs) and wide enough to see the 1 s RouterOS `timeout=` being
/// reached, past which the NAS has already retransmitted or given up.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.002, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Label used for packets whose source matched no NAS.
pub const UNKNOWN_NAS: &str = "unknown";

/// The `op` label values of storage latency and storage errors.
pub const STORAGE_OPS: &[&str] = &[
    "authorize",
    "record_accounting",
    "close_nas_sessions",
    "close_stale_sessions",
    "prune_auth_events",
    "open_sessions_by_nas",
    "nas_generation",
    "load_nas",
];

/// One NAS's counters, resolved once when the NAS table is loaded, so a packet
/// costs no label lookup (a hash of the label values and a lock per metric).
pub struct NasCounters {
    /// `nas_last_seen{nas}`.
    pub last_seen: IntGauge,
    /// `requests{access_request, nas, accept}` and `{…, reject}`.
    pub accepts: IntCounter,
    pub rejects: IntCounter,
    /// `rejects{nas, reason}`, in the order of [`RejectReason::ALL`].
    pub reject_reasons: Vec<IntCounter>,
    /// `requests{accounting_request, nas, status}`, by [`acct_index`].
    pub accounting: Vec<IntCounter>,
    /// `requests{status_server, nas, answered}`.
    pub status_answered: IntCounter,
    /// `duplicates_answered{nas}`.
    pub duplicates: IntCounter,
    /// Access-Requests of this NAS queued or being decided now (not exported:
    /// the per-NAS budget of the request handler counts with it).
    pub in_flight: std::sync::atomic::AtomicUsize,
}

/// The Acct-Status-Type values counted, in [`NasCounters::accounting`] order.
pub const ACCT_STATUSES: [AcctStatus; 5] = [
    AcctStatus::Start,
    AcctStatus::Stop,
    AcctStatus::InterimUpdate,
    AcctStatus::AccountingOn,
    AcctStatus::AccountingOff,
];

/// Position of `status` in [`ACCT_STATUSES`].
pub fn acct_index(status: AcctStatus) -> usize {
    ACCT_STATUSES
        .iter()
        .position(|s| *s == status)
        .expect("every status is listed")
}

impl std::fmt::Debug for NasCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NasCounters")
    }
}

impl NasCounters {
    /// The counter for one reject reason.
    pub fn reject_reason(&self, reason: RejectReason) -> &IntCounter {
        let i = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        &self.reject_reasons[i]
    }

    /// Counters attached to no registry, for a NAS table built without metrics.
    pub fn detached() -> NasCounters {
        let counter = || IntCounter::new("detached", "not exported").expect("valid name");
        NasCounters {
            last_seen: IntGauge::new("detached", "not exported").expect("valid name"),
            accepts: counter(),
            rejects: counter(),
            reject_reasons: RejectReason::ALL.iter().map(|_| counter()).collect(),
            accounting: ACCT_STATUSES.iter().map(|_| counter()).collect(),
            status_answered: counter(),
            duplicates: counter(),
            in_flight: Default::default(),
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Requests handled, by packet type, NAS and result.
    pub requests: IntCounterVec,
    /// Access-Rejects by NAS and reason.
    pub rejects: IntCounterVec,
    /// Datagrams dropped without a reply, by NAS and reason.
    pub drops: IntCounterVec,
    /// Duplicates answered from the cache.
    pub duplicates_answered: IntCounterVec,
    /// Time from receiving a request to sending its reply.
    pub request_duration: HistogramVec,
    /// `request_duration{type=access_request}`, resolved once.
    pub access_duration: Histogram,
    /// `request_duration{type=accounting_request}`, resolved once.
    pub accounting_duration: Histogram,
    /// `request_duration{type=status_server}`, resolved once.
    pub status_duration: Histogram,
    /// Time spent in storage calls, by operation.
    pub storage_duration: HistogramVec,
    /// Accounting records per group commit.
    pub accounting_batch_size: prometheus::Histogram,
    /// Access-Requests per `authorize_batch` call.
    pub access_batch_size: prometheus::Histogram,
    /// Live sessions per NAS (refreshed periodically).
    pub open_sessions: IntGaugeVec,
    /// First logins.
    pub vouchers_activated: IntCounter,
    /// Stale sessions and sessions closed by NAS reboot detection.
    pub sessions_closed: IntCounterVec,
    /// REST shim requests by route and HTTP status.
    pub http_requests: IntCounterVec,
    /// Management API requests by route template (`/api/v1/plans/{name}`),
    /// method and HTTP status.
    pub api_requests: IntCounterVec,
    /// Requests verified with a NAS's previous secret during a rotation: when it
    /// stays at zero for a while, every router has the new secret.
    pub previous_secret_used: IntCounterVec,
    /// Failed storage calls, by operation: the request path counts its packets in
    /// `drops{reason="storage_error"}`, this counts the calls (housekeeping too).
    pub storage_errors: IntCounterVec,
    /// Access-Requests the login guard refused without a decision, by NAS and
    /// scope (`device`: that device failed too often; `nas`: the NAS is guarded).
    pub guard_refused: IntCounterVec,
    /// Device blocks and NAS guards started, by scope.
    pub guard_started: IntCounterVec,
    /// Devices the login guard tracks now.
    pub guard_devices: IntGauge,
    /// Datagrams the kernel dropped because a socket's receive buffer was full,
    /// by port (`auth`, `acct`): counted before the server could see them.
    pub socket_receive_drops: IntCounterVec,
    /// Unix time of the last authentic datagram from each NAS (anyone can send
    /// from its address; only its secret proves it is up), so an alert
    /// can tell a router that went silent from one with no users; 0 for a NAS
    /// that has sent nothing since the server started.
    pub nas_last_seen: IntGaugeVec,
    /// Unix time each NAS host name (`--address HOST`) last resolved, by NAS:
    /// `time() - …` is the age of the address the server uses for it.
    pub nas_address_resolved: IntGaugeVec,
    /// Open connections per HTTP listener (`rest`, `metrics`).
    pub http_connections_open: IntGaugeVec,
    /// Connections closed at once on accept, by listener and reason
    /// (`peer_full`, `listener_full`).
    pub http_connections_refused: IntCounterVec,
    /// Connections the server closed, by listener and reason (`header_timeout`,
    /// `request_timeout`, `idle_timeout`, `evicted`).
    pub http_connections_closed: IntCounterVec,
    /// Requests answered 503 because the listener had its most requests in progress.
    pub http_requests_shed: IntCounterVec,
    /// Requests handed to the request handler, by transport (udp, rest, radsec).
    pub requests_by_transport: IntCounterVec,
    /// RadSec TLS handshakes by result (see `radsec::Handshake`).
    pub radsec_handshakes: IntCounterVec,
    /// RadSec connections open now.
    pub radsec_connections_open: IntGauge,
    /// RadSec connections closed by the server, by reason (see `radsec::Close`).
    pub radsec_connections_closed: IntCounterVec,
}

/// The `listener` label values of the HTTP listener metrics.
pub const HTTP_LISTENERS: &[&str] = &["rest", "metrics"];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_requests_total",
                "RADIUS requests answered, by packet type, NAS and result",
            ),
            &["type", "nas", "result"],
        )
        .unwrap();
        let rejects = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_rejects_total",
                "Access-Rejects by NAS and reason",
            ),
            &["nas", "reason"],
        )
        .unwrap();
        let drops = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_drops_total",
                "Datagrams dropped without a reply, by NAS and reason",
            ),
            &["nas", "reason"],
        )
        .unwrap();
        let duplicates_answered = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_duplicates_answered_total",
                "Retransmissions answered from the duplicate cache",
            ),
            &["nas"],
        )
        .unwrap();
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "rrnet_radius_request_duration_seconds",
                "Time from receiving a request to sending its reply",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["type"],
        )
        .unwrap();
        let storage_duration = HistogramVec::new(
            HistogramOpts::new(
                "rrnet_radius_storage_duration_seconds",
                "Time spent in storage calls",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["op"],
        )
        .unwrap();
        let accounting_batch_size = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "rrnet_radius_accounting_batch_size",
                "Accounting records stored per transaction",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
        )
        .unwrap();
        let access_batch_size = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "rrnet_radius_access_batch_size",
                "Access-Requests decided per storage call",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .unwrap();
        let open_sessions = IntGaugeVec::new(
            Opts::new("rrnet_radius_open_sessions", "Open sessions per NAS"),
            &["nas"],
        )
        .unwrap();
        let vouchers_activated = IntCounter::new(
            "rrnet_radius_vouchers_activated_total",
            "Vouchers activated by their first login",
        )
        .unwrap();
        let sessions_closed = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_sessions_closed_total",
                "Sessions closed by the server, by cause",
            ),
            &["cause"],
        )
        .unwrap();
        let previous_secret_used = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_previous_secret_used_total",
                "Requests verified with a NAS's previous secret during a secret rotation",
            ),
            &["nas"],
        )
        .unwrap();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_http_requests_total",
                "REST shim requests by route and status",
            ),
            &["route", "status"],
        )
        .unwrap();
        let api_requests = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_api_requests_total",
                "Management API requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )
        .unwrap();
        let storage_errors = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_storage_errors_total",
                "Storage calls that failed, by operation",
            ),
            &["op"],
        )
        .unwrap();
        let nas_last_seen = IntGaugeVec::new(
            Opts::new(
                "rrnet_radius_nas_last_seen_timestamp_seconds",
                "Unix time of the last authentic datagram received from each NAS",
            ),
            &["nas"],
        )
        .unwrap();
        let nas_address_resolved = IntGaugeVec::new(
            Opts::new(
                "rrnet_radius_nas_address_resolved_timestamp_seconds",
                "Unix time each NAS host name last resolved",
            ),
            &["nas"],
        )
        .unwrap();
        let guard_refused = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_guard_refused_total",
                "Access-Requests refused by the login guard without a decision, by NAS and scope",
            ),
            &["nas", "scope"],
        )
        .unwrap();
        let guard_started = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_guard_started_total",
                "Login guard blocks started: scope device (one device failed too often) or nas (a NAS is guarded)",
            ),
            &["scope"],
        )
        .unwrap();
        for scope in ["device", "nas"] {
            guard_started.with_label_values(&[scope]);
        }
        let guard_devices = IntGauge::new(
            "rrnet_radius_guard_devices",
            "Devices the login guard tracks",
        )
        .unwrap();
        let socket_receive_drops = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_socket_receive_drops_total",
                "Datagrams the kernel dropped because the socket's receive buffer was full, by port",
            ),
            &["port"],
        )
        .unwrap();
        for port in ["auth", "acct"] {
            socket_receive_drops.with_label_values(&[port]);
        }
        let http_connections_open = IntGaugeVec::new(
            Opts::new(
                "rrnet_radius_http_connections_open",
                "Open connections per HTTP listener",
            ),
            &["listener"],
        )
        .unwrap();
        let http_connections_refused = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_http_connections_refused_total",
                "HTTP connections closed at once on accept, by listener and reason",
            ),
            &["listener", "reason"],
        )
        .unwrap();
        let http_connections_closed = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_http_connections_closed_total",
                "HTTP connections closed by the server (timeouts, eviction at the cap), by listener and reason",
            ),
            &["listener", "reason"],
        )
        .unwrap();
        let http_requests_shed = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_http_requests_shed_total",
                "HTTP requests answered 503 because the listener had its most requests in progress",
            ),
            &["listener"],
        )
        .unwrap();
        let requests_by_transport = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_requests_by_transport_total",
                "Access- and Accounting-Requests handed to the request handler, by transport",
            ),
            &["transport"],
        )
        .unwrap();
        for t in crate::handler::Transport::ALL {
            requests_by_transport.with_label_values(&[t.label()]);
        }
        let radsec_handshakes = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_radsec_handshakes_total",
                "RadSec TLS handshakes, by result",
            ),
            &["result"],
        )
        .unwrap();
        for r in crate::radsec::Handshake::ALL {
            radsec_handshakes.with_label_values(&[r.label()]);
        }
        let radsec_connections_open = IntGauge::new(
            "rrnet_radius_radsec_connections_open",
            "RadSec connections open now",
        )
        .unwrap();
        let radsec_connections_closed = IntCounterVec::new(
            Opts::new(
                "rrnet_radius_radsec_connections_closed_total",
                "RadSec connections closed by the server, by reason",
            ),
            &["reason"],
        )
        .unwrap();
        for r in crate::radsec::Close::ALL {
            radsec_connections_closed.with_label_values(&[r.label()]);
        }
        let build_info = IntGaugeVec::new(
            Opts::new(
                "rrnet_radius_build_info",
                "Build information; the value is always 1",
            ),
            &["version", "os", "arch"],
        )
        .unwrap();
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
            ])
            .set(1);
        // Failures are rare; created at zero so `increase()` sees the first one.
        for op in STORAGE_OPS {
            storage_errors.with_label_values(&[op]);
        }
        for listener in HTTP_LISTENERS {
            http_connections_open.with_label_values(&[listener]);
            http_requests_shed.with_label_values(&[listener]);
            for reason in crate::http::listener::Refusal::ALL {
                http_connections_refused.with_label_values(&[listener, reason.label()]);
            }
            for reason in crate::http::listener::Cut::ALL {
                http_connections_closed.with_label_values(&[listener, reason.label()]);
            }
        }

        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rejects.clone()),
            Box::new(drops.clone()),
            Box::new(duplicates_answered.clone()),
            Box::new(request_duration.clone()),
            Box::new(storage_duration.clone()),
            Box::new(accounting_batch_size.clone()),
            Box::new(access_batch_size.clone()),
            Box::new(open_sessions.clone()),
            Box::new(vouchers_activated.clone()),
            Box::new(sessions_closed.clone()),
            Box::new(http_requests.clone()),
            Box::new(api_requests.clone()),
            Box::new(previous_secret_used.clone()),
            Box::new(storage_errors.clone()),
            Box::new(nas_last_seen.clone()),
            Box::new(nas_address_resolved.clone()),
            Box::new(guard_refused.clone()),
            Box::new(guard_started.clone()),
            Box::new(guard_devices.clone()),
            Box::new(socket_receive_drops.clone()),
            Box::new(http_connections_open.clone()),
            Box::new(http_connections_refused.clone()),
            Box::new(http_connections_closed.clone()),
            Box::new(http_requests_shed.clone()),
            Box::new(requests_by_transport.clone()),
            Box::new(radsec_handshakes.clone()),
            Box::new(radsec_connections_open.clone()),
            Box::new(radsec_connections_closed.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registers once");

        Metrics {
            registry,
            requests,
            rejects,
            drops,
            duplicates_answered,
            access_duration: request_duration.with_label_values(&["access_request"]),
            accounting_duration: request_duration.with_label_values(&["accounting_request"]),
            status_duration: request_duration.with_label_values(&["status_server"]),
            request_duration,
            storage_duration,
            accounting_batch_size,
            access_batch_size,
            open_sessions,
            vouchers_activated,
            sessions_closed,
            http_requests,
            api_requests,
            previous_secret_used,
            storage_errors,
            nas_last_seen,
            nas_address_resolved,
            guard_refused,
            guard_started,
            guard_devices,
            socket_receive_drops,
            http_connections_open,
            http_connections_refused,
            http_connections_closed,
            http_requests_shed,
            requests_by_transport,
            radsec_handshakes,
            radsec_connections_open,
            radsec_connections_closed,
        }
    }

    /// Create every per-NAS series at zero. A counter that appears at 1 hides its
    /// first increment from `increase()`, and the first bad-authenticator drop of
    /// a NAS (a wrong shared secret) is exactly what an alert should see.
    pub fn init_nas(&self, nas: &str, drop_reasons: &[&str], reject_reasons: &[&str]) {
        for reason in drop_reasons {
            self.drops.with_label_values(&[nas, reason]);
        }
        for reason in reject_reasons {
            self.rejects.with_label_values(&[nas, reason]);
        }
        for result in ["accept", "reject"] {
            self.requests
                .with_label_values(&["access_request", nas, result]);
        }
        self.duplicates_answered.with_label_values(&[nas]);
    }

    /// Time one storage call: observe its latency under `op` and count a failure.
    /// The counters of NAS `nas`, created at zero if new.
    pub fn nas_counters(&self, nas: &str) -> NasCounters {
        NasCounters {
            last_seen: self.nas_last_seen.with_label_values(&[nas]),
            accepts: self
                .requests
                .with_label_values(&["access_request", nas, "accept"]),
            rejects: self
                .requests
                .with_label_values(&["access_request", nas, "reject"]),
            reject_reasons: RejectReason::ALL
                .iter()
                .map(|r| self.rejects.with_label_values(&[nas, r.label()]))
                .collect(),
            accounting: ACCT_STATUSES
                .iter()
                .map(|s| {
                    self.requests
                        .with_label_values(&["accounting_request", nas, s.label()])
                })
                .collect(),
            status_answered: self
                .requests
                .with_label_values(&["status_server", nas, "answered"]),
            duplicates: self.duplicates_answered.with_label_values(&[nas]),
            in_flight: Default::default(),
        }
    }

    pub fn storage_call<T, E>(&self, op: &str, started: std::time::Instant, result: &Result<T, E>) {
        self.storage_duration
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.storage_errors.with_label_values(&[op]).inc();
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
