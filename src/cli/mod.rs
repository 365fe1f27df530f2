//! The `rrnet-radius` command line. `main.rs` only calls [`run`].

pub mod admin;
pub mod auth_log;
pub(crate) mod output;
mod pki;
pub mod print;
pub mod routeros;
mod serve;
pub mod token;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::DEFAULT_DATABASE_URL;

#[derive(Parser, Debug)]
#[command(
    name = "rrnet-radius",
    version,
    about = "RADIUS server for MikroTik hotspot vouchers",
    long_about = "RADIUS server for MikroTik hotspot vouchers.\n\nRun `rrnet-radius serve` to start it on an embedded SQLite database (created on first start); use the other commands to manage NAS entries, plans and vouchers in the same database."
)]
pub struct Cli {
    /// Database URL: sqlite://PATH (default sqlite://rrnet-radius.db) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "RRNET_DATABASE_URL")]
    pub database: Option<String>,
    /// Log format for messages on stderr.
    #[arg(long, global = true, env = "RRNET_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

/// Also `log_format = "text" | "json"` in the config file of `serve`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Default)]
pub enum ListFormat {
    #[default]
    Text,
    Csv,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the RADIUS server (UDP authentication and accounting), the metrics
    /// listener, the REST listener (the shim when RRNET_RADIUS_REST_SECRET is
    /// set, the management API when an API token exists (`token add`)), and
    /// RadSec (RADIUS over TLS) when --radsec-listen is set.
    Serve(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage tenants: the operators (ISPs) this deployment serves. Each has
    /// its own NAS entries, plans and vouchers; a voucher logs in only on its
    /// tenant's routers. Everything made without --tenant is in `default`.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage NAS entries (the routers allowed to talk to the server).
    Nas(NasArgs),
    /// Manage plans (what a voucher is worth).
    Plan(PlanArgs),
    /// Manage vouchers.
    Voucher(VoucherArgs),
    /// Show sessions.
    Session(SessionArgs),
    /// Work with raw RADIUS packets.
    #[command(subcommand)]
    Packet(PacketCommand),
    /// Print the RouterOS v7 script that points a NAS's hotspot at this server.
    RouterosScript(routeros::RouterosScriptArgs),
    /// A small certificate authority for RadSec: the CA, client certificates
    /// for routers, the listener's certificate.
    Pki(pki::PkiArgs),
    /// Show recent logins and rejections: why can't this customer log in?
    ///
    /// Lists auth events with their time (RFC 3339, UTC), NAS, user (voucher code),
    /// device MAC, result (accept or reject), the reject reason label and the message
    /// the hotspot login page showed. Events are listed oldest first, ending with the
    /// newest; --limit keeps the newest N.
    ///
    /// Retention: the server deletes events older than `auth_log_retention` in the
    /// `[server]` section of its config file (a duration such as "30d"; default 30d;
    /// "0" keeps everything), checked every `housekeeping_interval` (default 30s).
    ///
    /// Dropped packets (wrong shared secret, unknown NAS, malformed) are not auth
    /// events: see the server log and the rrnet_radius_drops_total metric.
    AuthLog(auth_log::AuthLogArgs),
    /// Manage webhooks: voucher and session events POSTed to the ERP, signed.
    Webhook(webhook::WebhookArgs),
    /// Manage bearer tokens of the management API (/api/v1/…) for the ERP.
    #[command(subcommand)]
    Token(token::TokenCommand),
}

#[derive(Subcommand, Debug)]
pub enum PacketCommand {
    /// Print a packet attribute by attribute, by dictionary name, like a sniffer would.
    ///
    /// With --secret, User-Password is un-hidden and the Request Authenticator
    /// (accounting, CoA, Disconnect) and Message-Authenticator are verified.
    Decode {
        /// The packet as hex (spaces, colons and a leading 0x are fine), or `-` to read it from stdin.
        hex: String,
        /// The shared secret.
        #[arg(long, env = "RRNET_PACKET_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Extra FreeRADIUS-format dictionary files.
        #[arg(long = "dictionary")]
        dictionaries: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file; environment variables and flags override it.
    #[arg(long, env = "RRNET_CONFIG")]
    pub config: Option<PathBuf>,
    /// UDP address for Access-Requests [default: 0.0.0.0:1812].
    #[arg(long, env = "RRNET_AUTH_LISTEN")]
    pub auth_listen: Option<std::net::SocketAddr>,
    /// UDP address for Accounting-Requests [default: 0.0.0.0:1813].
    #[arg(long, env = "RRNET_ACCT_LISTEN")]
    pub acct_listen: Option<std::net::SocketAddr>,
    /// HTTP address of the REST shim and the management API, used only when
    /// RRNET_RADIUS_REST_SECRET is set or an API token exists [default: 127.0.0.1:8080].
    #[arg(long, env = "RRNET_HTTP_LISTEN")]
    pub http_listen: Option<std::net::SocketAddr>,
    /// HTTP address for /metrics, /healthz and /readyz; "off" disables it [default: 127.0.0.1:9812].
    #[arg(long, env = "RRNET_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// TCP address of the RadSec (RADIUS over TLS) listener, conventionally
    /// port 2083 [default: off]. Needs --tls-cert, --tls-key and --tls-client-ca.
    #[arg(long, env = "RRNET_RADSEC_LISTEN")]
    pub radsec_listen: Option<std::net::SocketAddr>,
    /// RadSec: PEM file with the server certificate (and intermediates); `pki server-cert` writes one.
    #[arg(long, env = "RRNET_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// RadSec: PEM file with the server certificate's private key.
    #[arg(long, env = "RRNET_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// RadSec: PEM file with the CA that signs the routers' client
    /// certificates (`pki init` makes one: ca.crt). SIGHUP reads the three files again.
    #[arg(long, env = "RRNET_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

/// `--tenant T`: the tenant a command works in.
#[derive(Args, Debug, Default)]
pub struct TenantScope {
    /// The tenant (operator) to work in [default: the `default` tenant].
    #[arg(long, global = true)]
    pub tenant: Option<String>,
}

#[derive(Args, Debug)]
pub struct NasArgs {
    #[command(flatten)]
    pub scope: TenantScope,
    #[command(subcommand)]
    pub command: NasCommand,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub scope: TenantScope,
    #[command(subcommand)]
    pub command: PlanCommand,
}

#[derive(Args, Debug)]
pub struct VoucherArgs {
    #[command(flatten)]
    pub scope: TenantScope,
    #[command(subcommand)]
    pub command: VoucherCommand,
}

#[derive(Args, Debug)]
pub struct SessionArgs {
    #[command(flatten)]
    pub scope: TenantScope,
    #[command(subcommand)]
    pub command: SessionCommand,
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Add a tenant.
    Add {
        /// Its name: letters, digits, '-', '_' or '.'.
        name: String,
    },
    /// List tenants.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
pub enum NasCommand {
    /// Add a NAS. Requests from its address (or network) are checked with its
    /// secret; a RadSec NAS (--radsec-cn or --radsec-fingerprint) is known by
    /// its client certificate instead, and needs neither address nor secret.
    Add {
        /// Unique name (used in logs and metrics).
        #[arg(long)]
        name: String,
        /// Source address or CIDR network, e.g. 203.0.113.7 or 10.8.0.0/24;
        /// a host name (DDNS); or `any` (with --identifier).
        #[arg(long, required_unless_present_any = ["radsec_cn", "radsec_fingerprint"])]
        address: Option<String>,
        /// Shared secret (at least 8 characters; RouterOS allows up to 64).
        /// Not for RadSec, whose secret is fixed to `radsec` (RFC 6614 §2.3).
        #[arg(long, env = "RRNET_NAS_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// RadSec: the router is the one whose client certificate has this
        /// subject CN or DNS subject alternative name (`pki issue --nas N`
        /// issues one with CN = N). Case-insensitive.
        #[arg(long, conflicts_with_all = ["address", "radsec_fingerprint", "identifier"])]
        radsec_cn: Option<String>,
        /// RadSec: the router is the one whose client certificate has this
        /// SHA-256 fingerprint (64 hex digits, colons allowed).
        #[arg(long, conflicts_with_all = ["address", "identifier"])]
        radsec_fingerprint: Option<String>,
        /// Accept Access-Requests without Message-Authenticator from this NAS
        /// (weakens BlastRADIUS protection; only for old RouterOS).
        #[arg(long)]
        no_require_message_authenticator: bool,
        /// UDP port of the router's `/radius incoming` (CoA/Disconnect).
        #[arg(long, default_value_t = 3799)]
        coa_port: u16,
        /// Where CoA/Disconnect requests go [default: --address when it is one
        /// host, else the source of the router's latest authenticated packet].
        #[arg(long)]
        coa_address: Option<std::net::IpAddr>,
        /// Site/tenant scope: only vouchers of this site (or of no site) log in here.
        #[arg(long)]
        site: Option<String>,
        /// The router's NAS-Identifier (RouterOS `/system identity`). Only
        /// packets carrying exactly this identifier match the entry; several
        /// entries may share an address when each has its own.
        #[arg(long)]
        identifier: Option<String>,
    },
    /// Change a NAS's CoA/Disconnect settings or its identifier.
    Set {
        name: String,
        /// The router's NAS-Identifier (RouterOS `/system identity`); `none`
        /// removes it. Needed before a second entry may share the address.
        #[arg(long)]
        identifier: Option<String>,
        /// UDP port of the router's `/radius incoming`.
        #[arg(long)]
        coa_port: Option<u16>,
        /// Where CoA/Disconnect requests go; `none` goes back to the default.
        #[arg(long)]
        coa_address: Option<String>,
    },
    /// List NAS entries (secrets are not shown).
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove a NAS by name (its sessions go with it).
    Remove { name: String },
    /// Give a NAS a new shared secret without a gap: the old secret keeps working
    /// for --keep-old (replies are signed with whichever secret the request used),
    /// so the routers can be switched one by one. The metric
    /// rrnet_radius_previous_secret_used_total{nas=…} shows when none uses the old one.
    SetSecret {
        name: String,
        /// The new shared secret (at least 8 characters).
        #[arg(long, env = "RRNET_NAS_SECRET", hide_env_values = true)]
        secret: String,
        /// How long the old secret stays valid, e.g. 1h, 1d; 0 ends it at once.
        #[arg(long, default_value = "1d")]
        keep_old: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// Add a plan.
    Add(Box<PlanAddArgs>),
    /// Change a plan: any flag of `plan add` (`none` clears a text or duration
    /// setting). Open sessions of its vouchers get the new rate limit and
    /// Session-Timeout by CoA-Request from the running server.
    Set(Box<PlanSetArgs>),
    /// List plans.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Args, Debug)]
pub struct PlanAddArgs {
    #[arg(long)]
    pub name: String,
    /// Time quota: seconds of use, e.g. 1h, 30m [default: unlimited].
    #[arg(long)]
    pub time: Option<String>,
    /// Validity from first login, e.g. 1d, 7d [default: none].
    #[arg(long)]
    pub validity: Option<String>,
    /// Absolute expiry, RFC 3339, e.g. 2026-12-31T23:59:59Z.
    #[arg(long)]
    pub expires: Option<String>,
    /// Data quota (upload + download), e.g. 500MiB, 2GiB [default: unlimited].
    #[arg(long)]
    pub data: Option<String>,
    /// Mikrotik-Rate-Limit, `rx/tx [burst-rx/burst-tx …]` (rx = client upload), e.g. 2M/4M.
    #[arg(long)]
    pub rate_limit: Option<String>,
    /// Fair use: when the data quota is used up, slow the session to this
    /// Mikrotik-Rate-Limit (by CoA) instead of ending it; later logins get
    /// this rate and no data limit. E.g. 256k/256k.
    #[arg(long)]
    pub after_data_rate_limit: Option<String>,
    /// Simultaneous devices.
    #[arg(long, default_value_t = 1)]
    pub shared_users: u32,
    /// Bind the voucher to the first device (MAC) that logs in.
    #[arg(long)]
    pub mac_lock: bool,
    /// Idle-Timeout, e.g. 5m.
    #[arg(long)]
    pub idle_timeout: Option<String>,
    /// Acct-Interim-Interval, e.g. 5m.
    #[arg(long)]
    pub interim: Option<String>,
    /// Mikrotik-Group (hotspot user profile on the router).
    #[arg(long)]
    pub group: Option<String>,
    /// Mikrotik-Address-List to put the client's address in.
    #[arg(long)]
    pub address_list: Option<String>,
    /// Price shown on printed vouchers, e.g. "5.00 USD".
    #[arg(long)]
    pub price: Option<String>,
    /// Sites (NAS --site) where its vouchers log in, comma-separated, e.g.
    /// north,south [default: every site]. Elsewhere they are refused with
    /// "This voucher is not valid at this location".
    #[arg(long, value_delimiter = ',')]
    pub sites: Vec<String>,
}

/// `plan set`: the flags of `plan add`, each optional.
#[derive(Args, Debug)]
pub struct PlanSetArgs {
    /// The plan to change.
    pub name: String,
    /// A new name.
    #[arg(long)]
    pub rename: Option<String>,
    /// New time quota, e.g. 2h (`none`: unlimited).
    #[arg(long)]
    pub time: Option<String>,
    /// New validity from first login, e.g. 7d (`none`: no limit).
    #[arg(long)]
    pub validity: Option<String>,
    /// New absolute expiry, RFC 3339 (`none`: never).
    #[arg(long)]
    pub expires: Option<String>,
    /// New data quota, e.g. 2GiB (`none`: unlimited).
    #[arg(long)]
    pub data: Option<String>,
    /// New Mikrotik-Rate-Limit, e.g. 4M/8M (`none`: no limit).
    #[arg(long)]
    pub rate_limit: Option<String>,
    /// New fair-use rate once the data quota is used up (`none`: end the session instead).
    #[arg(long)]
    pub after_data_rate_limit: Option<String>,
    /// New number of simultaneous devices.
    #[arg(long)]
    pub shared_users: Option<u32>,
    /// Bind vouchers to the first device that logs in.
    #[arg(long, conflicts_with = "no_mac_lock")]
    pub mac_lock: bool,
    /// Stop binding vouchers to their first device.
    #[arg(long)]
    pub no_mac_lock: bool,
    /// New Idle-Timeout, e.g. 10m (`none`: none).
    #[arg(long)]
    pub idle_timeout: Option<String>,
    /// New Acct-Interim-Interval, e.g. 5m (`none`: the server's default_interim).
    #[arg(long)]
    pub interim: Option<String>,
    /// New Mikrotik-Group (`none`: none).
    #[arg(long)]
    pub group: Option<String>,
    /// New Mikrotik-Address-List (`none`: none).
    #[arg(long)]
    pub address_list: Option<String>,
    /// New price printed on vouchers (`none`: none).
    #[arg(long)]
    pub price: Option<String>,
    /// Sites where its vouchers log in, comma-separated; `none`: everywhere.
    #[arg(long)]
    pub sites: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum VoucherCommand {
    /// Add one voucher with a chosen code.
    Add {
        code: String,
        #[arg(long)]
        plan: String,
        /// Password [default: the code itself].
        #[arg(long)]
        password: Option<String>,
        /// Site/tenant scope.
        #[arg(long)]
        site: Option<String>,
        /// Batch name.
        #[arg(long)]
        batch: Option<String>,
    },
    /// Generate random vouchers.
    ///
    /// Codes are drawn from the operating system's CSPRNG over a 32-character
    /// alphabet without look-alikes (23456789ABCDEFGHJKLMNPQRSTUVWXYZ: no 0/O,
    /// 1/I), so each character carries 5 bits: the default length 8 gives 40 bits
    /// of entropy (about 1.1 × 10^12 codes), length 10 gives 50 bits.
    Generate {
        #[arg(long)]
        plan: String,
        #[arg(long)]
        count: u32,
        /// Characters per code (6–32), not counting the prefix.
        #[arg(long, default_value_t = 8)]
        length: usize,
        /// Fixed prefix put before each code.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Site/tenant scope.
        #[arg(long)]
        site: Option<String>,
        /// Batch name recorded with the vouchers.
        #[arg(long)]
        batch: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Import vouchers from a file (or `-` for stdin): one code per line, or
    /// `code,password`. Blank lines and lines starting with `#` are skipped.
    /// All or nothing: a duplicate code fails the whole import.
    Import {
        file: String,
        #[arg(long)]
        plan: String,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        batch: Option<String>,
    },
    /// Show one voucher: plan, usage, what is left, its sessions.
    ///
    /// "valid until" (`valid_until` in JSON) is the date the voucher stops working:
    /// the end of its validity window, which starts at the first login, or the
    /// plan's `--expires`, whichever comes first. Before the first login it is the
    /// plan's expiry, or empty when the plan has none.
    Show {
        code: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List vouchers.
    List {
        #[arg(long)]
        plan: Option<String>,
        #[arg(long)]
        batch: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: ListFormat,
    },
    /// Revoke a voucher: later logins are rejected, and the running server
    /// ends its open sessions (Disconnect-Request to the router) within ~2 s.
    Revoke {
        code: String,
        /// Leave the open sessions running until they end on their own.
        #[arg(long)]
        no_disconnect: bool,
    },
    /// Move a voucher to another plan; its open sessions get the new plan's
    /// rate limit and Session-Timeout by CoA-Request from the running server.
    Set {
        code: String,
        #[arg(long)]
        plan: String,
    },
    /// Print a batch as an A4 sheet of cards (HTML, with QR codes) or as CSV.
    Print(print::PrintArgs),
}

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// List sessions, newest first.
    List {
        /// Only sessions still open (or authorized and not yet started).
        #[arg(long)]
        open: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// End sessions now: send Disconnect-Request to the router (RFC 5176) and
    /// print its answer (ACK, or NAK with the Error-Cause) per session.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "user"])))]
    Disconnect {
        /// The session's id (`session list --format json`).
        #[arg(long)]
        id: Option<i64>,
        /// Every open session of this voucher.
        #[arg(long)]
        user: Option<String>,
    },
}

/// Parse the command line, run it, and turn errors into a message and exit code 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_logging(log_format(&cli));
    abort_on_panic();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--log-format` / RRNET_LOG_FORMAT, else `log_format` in the config file of
/// `serve`, else text. Logging starts before `serve` reads its file for the rest,
/// so the file is read here too; a file that cannot be read or parsed is left for
/// `serve` to report.
fn log_format(cli: &Cli) -> LogFormat {
    let from_file = || match &cli.command {
        Command::Serve(ServeArgs {
            config: Some(path), ..
        }) => crate::config::FileConfig::load(path).ok()?.log_format,
        _ => None,
    };
    cli.log_format.or_else(from_file).unwrap_or(LogFormat::Text)
}

/// A panic anywhere — a receive task, a decider, the SQLite thread — ends the
/// process, logged, instead of leaving it up but deaf: systemd (or the container
/// runtime) then restarts it, and the NAS retransmits what went unanswered.
fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "internal error (panic); stopping the process so that it is restarted");
        default_hook(info);
        std::process::abort();
    }));
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("RRNET_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The database URL from the flag or environment, else the default.
fn database_url(cli: &Cli, file: Option<&str>) -> String {
    cli.database
        .clone()
        .or_else(|| file.map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
}

/// The URL with every password replaced, for messages: the one in
/// `user:password@` and any query parameter whose name contains "password"
/// (`?password=`, `&sslpassword=`, any case).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((creds, host)) => match creds.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:****@{host}"),
                None => base.to_string(),
            },
            None => base.to_string(),
        },
        None => base.to_string(),
    };
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                    format!("{name}=****")
                }
                _ => param.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

async fn open_store(url: &str) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
    let store = crate::store::open(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", redact_url(url)))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("cannot migrate database {}: {e}", redact_url(url)))?;
    Ok(store)
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => serve::run(&cli, args).await,
        Command::Migrate => {
            let url = database_url(&cli, None);
            open_store(&url).await?;
            println!("database {} is up to date", redact_url(&url));
            Ok(())
        }
        Command::Tenant(c) => admin::tenant(open_store(&database_url(&cli, None)).await?, c).await,
        Command::Nas(a) => {
            let store = open_store(&database_url(&cli, None)).await?;
            let tenant = admin::resolve_scope(&*store, &a.scope).await?;
            admin::nas(store, &tenant, &a.command).await
        }
        Command::Plan(a) => {
            let store = open_store(&database_url(&cli, None)).await?;
            let tenant = admin::resolve_scope(&*store, &a.scope).await?;
            admin::plan(store, &tenant, &a.command).await
        }
        Command::Voucher(a) => {
            let store = open_store(&database_url(&cli, None)).await?;
            let tenant = admin::resolve_scope(&*store, &a.scope).await?;
            admin::voucher(store, &tenant, &a.command).await
        }
        Command::Session(a) => {
            let store = open_store(&database_url(&cli, None)).await?;
            let tenant = admin::resolve_scope(&*store, &a.scope).await?;
            admin::session(store, &tenant, &a.command).await
        }
        Command::Packet(PacketCommand::Decode {
            hex,
            secret,
            dictionaries,
            format,
        }) => packet_decode(hex, secret.as_deref(), dictionaries, *format),
        Command::RouterosScript(a) => {
            routeros::run(open_store(&database_url(&cli, None)).await?, a).await
        }
        Command::AuthLog(a) => auth_log::run(open_store(&database_url(&cli, None)).await?, a).await,
        Command::Webhook(a) => {
            webhook::run(open_store(&database_url(&cli, None)).await?, &a.command).await
        }
        Command::Token(c) => token::run(open_store(&database_url(&cli, None)).await?, c).await,
        Command::Pki(a) => {
            let url = database_url(&cli, None);
            let dir = pki::dir(a, &url);
            match &a.command {
                pki::PkiCommand::Issue { nas, out } => {
                    pki::issue(open_store(&url).await?, &dir, nas, out.as_deref()).await
                }
                command => pki::run_offline(&dir, command),
            }
        }
    }
}

fn packet_decode(
    hex: &str,
    secret: Option<&str>,
    dictionaries: &[PathBuf],
    format: Format,
) -> anyhow::Result<()> {
    use std::io::Read;
    let text = if hex == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        hex.to_string()
    };
    let bytes =
        crate::packet_dump::parse_hex(&text).map_err(|e| anyhow::anyhow!("bad hex: {e}"))?;
    let mut extra;
    let dict = if dictionaries.is_empty() {
        crate::dictionary::Dictionary::builtin()
    } else {
        extra = crate::dictionary::Dictionary::with_builtin();
        for p in dictionaries {
            extra.load_file(p)?;
        }
        &extra
    };
    let dump = crate::packet_dump::dump(&bytes, dict, secret.map(str::as_bytes))
        .map_err(|e| anyhow::anyhow!("malformed packet: {e}"))?;
    match format {
        Format::Text => print!("{}", dump.to_text()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&dump.to_json())?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic in a spawned task (a receive loop, a decider) ends the process
    /// with SIGABRT instead of leaving it up but deaf. The test runs itself again
    /// as a child process that installs the hook and panics in a task.
    #[test]
    fn a_panic_in_a_task_aborts_the_process() {
        if std::env::var_os("RRNET_PANIC_CHILD").is_some() {
            abort_on_panic();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let task = tokio::spawn(async { panic!("receive loop failed") });
                // Without the hook the panic is caught in the JoinHandle and the
                // process would go on; it must not get here.
                let _ = task.await;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            });
            std::process::exit(0);
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cli::tests::a_panic_in_a_task_aborts_the_process",
                "--nocapture",
            ])
            .env("RRNET_PANIC_CHILD", "1")
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "expected SIGABRT, got {:?}; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("receive loop failed"));
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn log_format_from_flag_then_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("json.toml");
        std::fs::write(&json, "log_format = \"json\"\n").unwrap();
        let json = json.to_str().unwrap();
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, "").unwrap();
        let empty = empty.to_str().unwrap();
        let resolved = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["rrnet-radius"], args].concat()).unwrap();
            log_format(&cli)
        };
        assert_eq!(resolved(&["serve", "--config", json]), LogFormat::Json);
        assert_eq!(
            resolved(&["--log-format", "text", "serve", "--config", json]),
            LogFormat::Text
        );
        assert_eq!(resolved(&["serve", "--config", empty]), LogFormat::Text);
        assert_eq!(resolved(&["serve"]), LogFormat::Text);
        // Unreadable: text, and `serve` reports the file.
        assert_eq!(
            resolved(&["serve", "--config", "/nonexistent/rrnet.toml"]),
            LogFormat::Text
        );
        assert_eq!(resolved(&["plan", "list"]), LogFormat::Text);
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:****@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw&sslmode=disable"),
            "postgres://h/db?user=u&password=****&sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://u:p%40ss@h/db?PASSWORD=x&sslpassword=y"),
            "postgres://u:****@h/db?PASSWORD=****&sslpassword=****"
        );
        // A password containing '@' still hides all of it.
        assert_eq!(
            redact_url("postgres://u:a@b@h/db"),
            "postgres://u:****@h/db"
        );
    }
}
