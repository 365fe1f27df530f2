//! Settings, layered: built-in defaults → TOML file (`--config`) → environment
//! variables → command-line flags. Environment and flags are handled by clap
//! (`env = …` on each flag); this module owns the file and the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::http::listener::HttpLimits;
use crate::server::ServerConfig;
use crate::units::parse_duration;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://rrnet-radius.db";
pub const DEFAULT_AUTH_LISTEN: &str = "0.0.0.0:1812";
pub const DEFAULT_ACCT_LISTEN: &str = "0.0.0.0:1813";
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9812";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
/// The REST shim refuses shorter bearer secrets.
pub const MIN_REST_SECRET_LEN: usize = 16;

/// The TOML config file. Unknown keys are an error, so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database: Option<String>,
    pub auth_listen: Option<SocketAddr>,
    pub acct_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    /// Set to an empty string to disable the metrics listener.
    pub metrics_listen: Option<String>,
    /// "text" or "json"; `--log-format` / RRNET_LOG_FORMAT override it.
    pub log_format: Option<crate::cli::LogFormat>,
    /// Extra FreeRADIUS-format dictionary files loaded at start.
    #[serde(default)]
    pub dictionaries: Vec<PathBuf>,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub guard: GuardSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub webhooks: WebhooksSection,
    #[serde(default)]
    pub radsec: RadSecSection,
}

/// `[webhooks]`: the delivery worker (see `events::DeliveryWorker`).
/// Durations as strings like "10s", "1h".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    /// The first retry's delay; doubled per failed attempt.
    pub retry_base: Option<String>,
    /// The longest delay between two attempts.
    pub retry_max: Option<String>,
    /// A delivery not made this long after its event is marked failed.
    pub give_up: Option<String>,
    /// One attempt's deadline (connect, TLS, request, answer).
    pub timeout: Option<String>,
    /// Attempts in flight at once, over all webhooks.
    pub max_in_flight: Option<usize>,
    /// Deliveries of one webhook in flight at once.
    pub per_webhook: Option<usize>,
}

/// `[radsec]`: the RadSec (RADIUS over TLS) listener. Off unless `listen` (or
/// `--radsec-listen`) is set; then the three files are required.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadSecSection {
    /// TCP address, conventionally port 2083.
    pub listen: Option<SocketAddr>,
    /// PEM file: the server certificate (and intermediates).
    pub tls_cert: Option<PathBuf>,
    /// PEM file: the server's private key.
    pub tls_key: Option<PathBuf>,
    /// PEM file: the CA that signs the routers' client certificates.
    pub tls_client_ca: Option<PathBuf>,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Option<String>,
    /// A connection with no complete packet for this long is closed.
    pub idle_timeout: Option<String>,
    /// Open connections in all.
    pub max_connections: Option<usize>,
    /// Open connections from one client address.
    pub max_connections_per_peer: Option<usize>,
    /// Requests of one connection in flight at once.
    pub max_in_flight: Option<usize>,
}

/// `[guard]`: the defence against guessing voucher codes (see `handler::guard`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    pub device_failures: Option<u32>,
    pub window: Option<String>,
    pub block: Option<String>,
    pub max_block: Option<String>,
    pub nas_failures: Option<u32>,
    pub guarded_new_per_second: Option<u32>,
    pub max_devices: Option<usize>,
    pub reject_delay: Option<String>,
}

/// `[http]` section: limits of the REST shim and metrics listeners
/// (`http::listener`). Durations as strings like "5s".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Time a request's head may take from its first byte.
    pub header_timeout: Option<String>,
    /// Time from a request's head to its response, body included.
    pub request_timeout: Option<String>,
    /// Time a connection may wait for a request (new, or kept alive).
    pub idle_timeout: Option<String>,
    /// Open connections per listener.
    pub max_connections: Option<usize>,
    /// Open connections from one client address on the REST shim.
    pub rest_max_connections_per_peer: Option<usize>,
    /// Open connections from one client address on the metrics listener.
    pub metrics_max_connections_per_peer: Option<usize>,
    /// Requests processed at once by the REST shim; more are answered 503.
    pub rest_max_requests: Option<usize>,
    /// Requests processed at once by the metrics listener; more are answered 503.
    pub metrics_max_requests: Option<usize>,
}

/// `[server]` section: durations as strings like "5s", "30d".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub max_in_flight: Option<usize>,
    pub auth_workers: Option<usize>,
    pub auth_batch_max: Option<usize>,
    pub dedup_lifetime: Option<String>,
    /// Most requests remembered by each duplicate cache (authentication and
    /// accounting each have one); when full the oldest entry makes room.
    pub dedup_capacity: Option<usize>,
    pub acct_queue: Option<usize>,
    pub acct_batch_max: Option<usize>,
    pub acct_writers: Option<usize>,
    pub default_interim: Option<String>,
    pub stale_grace: Option<String>,
    pub authorized_ttl: Option<String>,
    pub auth_log_retention: Option<String>,
    /// How long events (and their deliveries) are kept; "0" keeps them.
    pub events_retention: Option<String>,
    pub housekeeping_interval: Option<String>,
    pub nas_reload_interval: Option<String>,
    pub nas_resolve_interval: Option<String>,
    pub nas_in_flight: Option<usize>,
    pub socket_receive_buffer: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }

    /// Apply the `[server]` section over the defaults.
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        let mut c = ServerConfig::default();
        let s = &self.server;
        let dur = |v: &Option<String>, key: &str| -> anyhow::Result<Option<u64>> {
            v.as_deref()
                .map(|x| parse_duration(x).map_err(|e| anyhow::anyhow!("[server] {key}: {e}")))
                .transpose()
        };
        if let Some(v) = s.max_in_flight {
            c.max_in_flight = v.max(1);
        }
        if let Some(v) = s.auth_workers {
            c.auth_workers = v.max(1);
        }
        if let Some(v) = s.auth_batch_max {
            c.auth_batch_max = v.max(1);
        }
        if let Some(v) = dur(&s.dedup_lifetime, "dedup_lifetime")? {
            c.dedup_lifetime = Duration::from_secs(v);
        }
        if let Some(v) = s.dedup_capacity {
            c.dedup_capacity = v.max(1);
        }
        if let Some(v) = s.acct_queue {
            c.acct_queue = v.max(1);
        }
        if let Some(v) = s.acct_batch_max {
            c.acct_batch_max = v.max(1);
        }
        if let Some(v) = s.acct_writers {
            c.acct_writers = v.max(1);
        }
        if let Some(v) = dur(&s.default_interim, "default_interim")? {
            c.default_interim = v.max(1);
        }
        if let Some(v) = dur(&s.stale_grace, "stale_grace")? {
            c.stale_grace = v;
        }
        if let Some(v) = dur(&s.authorized_ttl, "authorized_ttl")? {
            c.authorize.authorized_ttl = v;
        }
        if let Some(v) = dur(&s.auth_log_retention, "auth_log_retention")? {
            c.auth_log_retention = if v == 0 { None } else { Some(v) };
        }
        if let Some(v) = dur(&s.events_retention, "events_retention")? {
            c.events_retention = if v == 0 { None } else { Some(v) };
        }
        if let Some(v) = dur(&s.housekeeping_interval, "housekeeping_interval")? {
            c.housekeeping_interval = Duration::from_secs(v.max(1));
        }
        if let Some(v) = dur(&s.nas_reload_interval, "nas_reload_interval")? {
            c.nas_reload_interval = Duration::from_secs(v.max(1));
        }
        if let Some(v) = dur(&s.nas_resolve_interval, "nas_resolve_interval")? {
            c.nas_resolve_interval = Duration::from_secs(v.max(1));
        }
        if let Some(v) = s.nas_in_flight {
            c.nas_in_flight = v;
        }
        if let Some(v) = &s.socket_receive_buffer {
            let bytes = crate::units::parse_size(v)
                .map_err(|e| anyhow::anyhow!("[server] socket_receive_buffer: {e}"))?;
            c.socket_receive_buffer = usize::try_from(bytes)
                .map_err(|_| anyhow::anyhow!("[server] socket_receive_buffer: too large"))?;
        }
        let g = &self.guard;
        let gdur = |v: &Option<String>, key: &str| -> anyhow::Result<Option<Duration>> {
            v.as_deref()
                .map(|x| {
                    parse_duration(x)
                        .map(Duration::from_secs)
                        .map_err(|e| anyhow::anyhow!("[guard] {key}: {e}"))
                })
                .transpose()
        };
        if let Some(v) = g.device_failures {
            c.guard.device_failures = v;
        }
        if let Some(v) = gdur(&g.window, "window")? {
            c.guard.window = v.max(Duration::from_secs(1));
        }
        if let Some(v) = gdur(&g.block, "block")? {
            c.guard.block = v.max(Duration::from_secs(1));
        }
        if let Some(v) = gdur(&g.max_block, "max_block")? {
            c.guard.max_block = v;
        }
        c.guard.max_block = c.guard.max_block.max(c.guard.block);
        if let Some(v) = g.nas_failures {
            c.guard.nas_failures = v;
        }
        if let Some(v) = g.guarded_new_per_second {
            c.guard.guarded_new_per_second = v;
        }
        if let Some(v) = g.max_devices {
            c.guard.max_devices = v.max(1);
        }
        if let Some(v) = gdur(&g.reject_delay, "reject_delay")? {
            c.guard.reject_delay = v;
        }
        Ok(c)
    }

    /// Apply the `[webhooks]` section over the defaults.
    pub fn webhook_settings(&self) -> anyhow::Result<crate::events::WorkerSettings> {
        let w = &self.webhooks;
        let mut c = crate::events::WorkerSettings::default();
        let dur = |v: &Option<String>, key: &str| -> anyhow::Result<Option<u64>> {
            v.as_deref()
                .map(|x| {
                    parse_duration(x)
                        .map(|s| s.max(1))
                        .map_err(|e| anyhow::anyhow!("[webhooks] {key}: {e}"))
                })
                .transpose()
        };
        if let Some(v) = dur(&w.retry_base, "retry_base")? {
            c.retry_base = v;
        }
        if let Some(v) = dur(&w.retry_max, "retry_max")? {
            c.retry_max = v;
        }
        c.retry_max = c.retry_max.max(c.retry_base);
        if let Some(v) = dur(&w.give_up, "give_up")? {
            c.give_up = v;
        }
        if let Some(v) = dur(&w.timeout, "timeout")? {
            c.timeout = Duration::from_secs(v);
        }
        if let Some(v) = w.max_in_flight {
            c.max_in_flight = v.max(1);
        }
        if let Some(v) = w.per_webhook {
            c.per_webhook = v.max(1);
        }
        Ok(c)
    }

    /// Apply the `[radsec]` section's limits over the defaults. Durations
    /// are at least 1s, counts at least 1.
    pub fn radsec_limits(&self) -> anyhow::Result<crate::radsec::RadSecLimits> {
        let r = &self.radsec;
        let mut l = crate::radsec::RadSecLimits::default();
        let dur = |v: &Option<String>, key: &str| -> anyhow::Result<Option<Duration>> {
            v.as_deref()
                .map(|x| {
                    parse_duration(x)
                        .map(|s| Duration::from_secs(s.max(1)))
                        .map_err(|e| anyhow::anyhow!("[radsec] {key}: {e}"))
                })
                .transpose()
        };
        if let Some(v) = dur(&r.handshake_timeout, "handshake_timeout")? {
            l.handshake_timeout = v;
        }
        if let Some(v) = dur(&r.idle_timeout, "idle_timeout")? {
            l.idle_timeout = v;
        }
        if let Some(v) = r.max_connections {
            l.max_connections = v.max(1);
        }
        if let Some(v) = r.max_connections_per_peer {
            l.max_connections_per_peer = v.max(1);
        }
        if let Some(v) = r.max_in_flight {
            l.max_in_flight = v.max(1);
        }
        Ok(l)
    }

    /// Apply the `[http]` section over the defaults: the limits of the REST
    /// shim and of the metrics listener. Durations are at least 1s, counts at least 1.
    pub fn http_limits(&self) -> anyhow::Result<(HttpLimits, HttpLimits)> {
        let h = &self.http;
        let (mut rest, mut metrics) = (HttpLimits::rest(), HttpLimits::metrics());
        let dur = |v: &Option<String>, key: &str| -> anyhow::Result<Option<Duration>> {
            v.as_deref()
                .map(|x| {
                    parse_duration(x)
                        .map(|s| Duration::from_secs(s.max(1)))
                        .map_err(|e| anyhow::anyhow!("[http] {key}: {e}"))
                })
                .transpose()
        };
        for l in [&mut rest, &mut metrics] {
            if let Some(v) = dur(&h.header_timeout, "header_timeout")? {
                l.header_timeout = v;
            }
            if let Some(v) = dur(&h.request_timeout, "request_timeout")? {
                l.request_timeout = v;
            }
            if let Some(v) = dur(&h.idle_timeout, "idle_timeout")? {
                l.idle_timeout = v;
            }
            if let Some(v) = h.max_connections {
                l.max_connections = v.max(1);
            }
        }
        if let Some(v) = h.rest_max_connections_per_peer {
            rest.max_connections_per_peer = v.max(1);
        }
        if let Some(v) = h.metrics_max_connections_per_peer {
            metrics.max_connections_per_peer = v.max(1);
        }
        if let Some(v) = h.rest_max_requests {
            rest.max_requests = v.max(1);
        }
        if let Some(v) = h.metrics_max_requests {
            metrics.max_requests = v.max(1);
        }
        Ok((rest, metrics))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<FileConfig>("databse = \"x\"").unwrap_err();
        assert!(e.to_string().contains("databse"), "{e}");
        let e = toml::from_str::<FileConfig>("[server]\nmax_in_flite = 3").unwrap_err();
        assert!(e.to_string().contains("max_in_flite"), "{e}");
        let e = toml::from_str::<FileConfig>("log_format = \"xml\"").unwrap_err();
        assert!(e.to_string().contains("json"), "{e}");
    }

    #[test]
    fn server_section() {
        let f: FileConfig = toml::from_str(
            "database = \"sqlite://x.db\"\nauth_listen = \"127.0.0.1:11812\"\n[server]\nstale_grace = \"2m\"\nauth_log_retention = \"0\"\nacct_writers = 4",
        )
        .unwrap();
        let c = f.server_config().unwrap();
        assert_eq!(c.stale_grace, 120);
        assert_eq!(c.auth_log_retention, None);
        assert_eq!(c.acct_writers, 4);
        let f: FileConfig = toml::from_str("[server]\nstale_grace = \"soon\"").unwrap();
        assert!(f.server_config().is_err());
    }

    /// The README's example file names every key, and its `[server]` values are
    /// the defaults.
    #[test]
    fn readme_example_has_every_key_and_the_defaults() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("```toml\n# rrnet-radius.toml")
            .expect("example")
            + 7;
        let len = readme[start..].find("```").unwrap();
        let f: FileConfig = toml::from_str(&readme[start..start + len]).unwrap();
        // Destructured so that a new key does not compile until it is listed here.
        let FileConfig {
            database,
            auth_listen,
            acct_listen,
            http_listen,
            metrics_listen,
            log_format,
            dictionaries: _,
            server,
            guard,
            http,
            webhooks,
            radsec,
        } = &f;
        assert!(database.is_some() && auth_listen.is_some() && acct_listen.is_some());
        assert!(http_listen.is_some() && metrics_listen.is_some() && log_format.is_some());
        assert!(readme[start..start + len].contains("\ndictionaries = "));
        let ServerSection {
            max_in_flight,
            auth_workers,
            auth_batch_max,
            dedup_lifetime,
            dedup_capacity,
            acct_queue,
            acct_batch_max,
            acct_writers,
            default_interim,
            stale_grace,
            authorized_ttl,
            auth_log_retention,
            events_retention,
            housekeeping_interval,
            nas_reload_interval,
            nas_resolve_interval,
            nas_in_flight,
            socket_receive_buffer,
        } = server;
        let GuardSection {
            device_failures,
            window,
            block,
            max_block,
            nas_failures,
            guarded_new_per_second,
            max_devices,
            reject_delay,
        } = guard;
        assert!(nas_in_flight.is_some() && socket_receive_buffer.is_some());
        assert!(device_failures.is_some() && nas_failures.is_some());
        assert!(guarded_new_per_second.is_some() && max_devices.is_some());
        assert!([window, block, max_block, reject_delay]
            .iter()
            .all(|v| v.is_some()));
        let counts = [
            max_in_flight,
            auth_workers,
            auth_batch_max,
            dedup_capacity,
            acct_queue,
            acct_batch_max,
            acct_writers,
        ];
        let durations = [
            dedup_lifetime,
            default_interim,
            stale_grace,
            authorized_ttl,
            auth_log_retention,
            events_retention,
            housekeeping_interval,
            nas_reload_interval,
            nas_resolve_interval,
        ];
        assert!(counts.iter().all(|v| v.is_some()), "{server:?}");
        assert!(durations.iter().all(|v| v.is_some()), "{server:?}");
        assert_eq!(
            format!("{:?}", f.server_config().unwrap()),
            format!("{:?}", ServerConfig::default())
        );
        let HttpSection {
            header_timeout,
            request_timeout,
            idle_timeout,
            max_connections,
            rest_max_connections_per_peer,
            metrics_max_connections_per_peer,
            rest_max_requests,
            metrics_max_requests,
        } = http;
        assert!(
            [header_timeout, request_timeout, idle_timeout]
                .iter()
                .all(|v| v.is_some())
                && [
                    max_connections,
                    rest_max_connections_per_peer,
                    metrics_max_connections_per_peer,
                    rest_max_requests,
                    metrics_max_requests
                ]
                .iter()
                .all(|v| v.is_some()),
            "{http:?}"
        );
        assert_eq!(
            f.http_limits().unwrap(),
            (HttpLimits::rest(), HttpLimits::metrics())
        );
        let WebhooksSection {
            retry_base,
            retry_max,
            give_up,
            timeout,
            max_in_flight,
            per_webhook,
        } = webhooks;
        assert!(
            [retry_base, retry_max, give_up, timeout]
                .iter()
                .all(|v| v.is_some())
                && max_in_flight.is_some()
                && per_webhook.is_some(),
            "{webhooks:?}"
        );
        assert_eq!(
            format!("{:?}", f.webhook_settings().unwrap()),
            format!("{:?}", crate::events::WorkerSettings::default())
        );
        let RadSecSection {
            listen,
            tls_cert,
            tls_key,
            tls_client_ca,
            handshake_timeout,
            idle_timeout,
            max_connections,
            max_connections_per_peer,
            max_in_flight,
        } = radsec;
        assert!(listen.is_some() && tls_cert.is_some() && tls_key.is_some());
        assert!(tls_client_ca.is_some() && handshake_timeout.is_some() && idle_timeout.is_some());
        assert!(
            max_connections.is_some()
                && max_connections_per_peer.is_some()
                && max_in_flight.is_some()
        );
        assert_eq!(
            f.radsec_limits().unwrap(),
            crate::radsec::RadSecLimits::default()
        );
    }

    #[test]
    fn webhooks_section() {
        let f: FileConfig =
            toml::from_str("[webhooks]\nretry_base = \"1s\"\nretry_max = \"0\"\ntimeout = \"2s\"")
                .unwrap();
        let w = f.webhook_settings().unwrap();
        assert_eq!((w.retry_base, w.retry_max), (1, 1));
        assert_eq!(w.timeout, Duration::from_secs(2));
        let f: FileConfig = toml::from_str("[webhooks]\ngive_up = \"never\"").unwrap();
        assert!(f.webhook_settings().is_err());
        assert!(toml::from_str::<FileConfig>("[webhooks]\nretries = 3").is_err());
    }

    #[test]
    fn http_section() {
        let f: FileConfig = toml::from_str(
            "[http]\nheader_timeout = \"2s\"\nmax_connections = 10\nrest_max_connections_per_peer = 0\nmetrics_max_requests = 3",
        )
        .unwrap();
        let (rest, metrics) = f.http_limits().unwrap();
        assert_eq!(rest.header_timeout, Duration::from_secs(2));
        assert_eq!(metrics.header_timeout, Duration::from_secs(2));
        assert_eq!((rest.max_connections, metrics.max_connections), (10, 10));
        assert_eq!(rest.max_connections_per_peer, 1);
        assert_eq!(metrics.max_connections_per_peer, 16);
        assert_eq!((rest.max_requests, metrics.max_requests), (256, 3));
        let f: FileConfig = toml::from_str("[http]\nidle_timeout = \"0\"").unwrap();
        assert_eq!(
            f.http_limits().unwrap().0.idle_timeout,
            Duration::from_secs(1)
        );
        let f: FileConfig = toml::from_str("[http]\nrequest_timeout = \"soon\"").unwrap();
        assert!(f.http_limits().is_err());
        assert!(toml::from_str::<FileConfig>("[http]\nmax_conections = 3").is_err());
    }

    #[test]
    fn dedup_capacity() {
        let default = FileConfig::default().server_config().unwrap();
        assert_eq!(
            default.dedup_capacity,
            ServerConfig::default().dedup_capacity
        );
        let f: FileConfig = toml::from_str("[server]\ndedup_capacity = 1000").unwrap();
        assert_eq!(f.server_config().unwrap().dedup_capacity, 1000);
        // Like the other counts, 0 is raised to the smallest working value.
        let f: FileConfig = toml::from_str("[server]\ndedup_capacity = 0").unwrap();
        assert_eq!(f.server_config().unwrap().dedup_capacity, 1);
        assert!(toml::from_str::<FileConfig>("[server]\ndedup_capacity = -1").is_err());
    }
}
