//! `rrnet-radius routeros-script`: the RouterOS v7 commands that point one
//! router's hotspot at this server, for the two connectivity tiers of the
//! operations guide (`deploy/README.md`):
//!
//! - `direct`: the router sends RADIUS over the public internet to the server's
//!   public address; the server's firewall allows only the routers' addresses.
//! - `vpn`: the router dials a WireGuard tunnel to the server and sends RADIUS
//!   from its tunnel address to the server's tunnel address.
//! - `radsec`: the router speaks RADIUS over TLS (RFC 6614) to the server's
//!   public address, TCP 2083, with the client certificate `pki issue` made
//!   for it; the secret is the fixed `radsec` (RouterOS `/radius`
//!   `protocol=radsec certificate=…`).
//!
//! The script is rendered by a pure function of its parameters so that golden
//! files can pin it byte for byte. It is written to be re-run: entries it adds
//! carry a comment and are removed by that comment first, and the WireGuard
//! interface is created only when missing (re-creating it would change the
//! router's key).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail};
use clap::{Args, ValueEnum};

use crate::model::{Cidr, Nas};
use crate::store::Store;

/// Comment put on every entry the script adds, so a re-run can find and replace them.
const TAG: &str = "rrnet-radius";

/// Stands in for the shared secret unless `--show-secret` is given: a script is
/// often pasted into tickets and chats, a secret should not be.
pub const SECRET_PLACEHOLDER: &str = "PASTE-THE-SHARED-SECRET-HERE";

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq, Default)]
pub enum Tier {
    /// RADIUS over the public internet to the server's public address.
    #[default]
    Direct,
    /// RADIUS through a WireGuard tunnel from the router to the server.
    Vpn,
    /// RADIUS over TLS (RadSec) to the server's public address; the NAS must
    /// be a RadSec entry (`nas add --radsec-cn`) with a certificate from `pki issue`.
    Radsec,
}

/// Stands in for the PKCS#12 passphrase unless `--p12-passphrase` is given.
pub const PASSPHRASE_PLACEHOLDER: &str = "PASTE-THE-P12-PASSPHRASE-HERE";

/// The common name every CA made by `pki init` starts with; the script marks
/// the imported CA trusted by it.
const PKI_CA_PREFIX: &str = "rrnet-radius RadSec CA";

#[derive(Args, Debug, Clone)]
pub struct RouterosScriptArgs {
    /// The NAS entry (from `nas add`) to write the script for.
    #[arg(long)]
    pub nas: String,
    /// The server's IP address as the router reaches it (direct tier). RouterOS
    /// `/radius` takes an address, not a host name.
    #[arg(long)]
    pub server: Option<String>,
    /// A second server instance (same database) the router falls back to when the
    /// first does not answer: an IP address (in the vpn tier, reachable through the tunnel).
    #[arg(long)]
    pub secondary_server: Option<String>,
    /// How the router reaches the server.
    #[arg(long, value_enum, default_value_t)]
    pub tier: Tier,
    /// Hotspot server profile on the router that should use RADIUS.
    #[arg(long, default_value = "hsprof1")]
    pub hotspot_profile: String,
    /// Print the NAS's real shared secret in the script instead of a placeholder.
    #[arg(long)]
    pub show_secret: bool,
    /// How long the router waits for an answer before it retries (RouterOS syntax: 300ms, 1s).
    #[arg(long, default_value = "1s")]
    pub timeout: String,
    /// The server's authentication port.
    #[arg(long, default_value_t = 1812)]
    pub auth_port: u16,
    /// The server's accounting port.
    #[arg(long, default_value_t = 1813)]
    pub acct_port: u16,
    /// vpn: name of the WireGuard interface created on the router.
    #[arg(long, default_value = "wg-rrnet")]
    pub wg_interface: String,
    /// vpn: the server's WireGuard endpoint, HOST:PORT (a host name is allowed here).
    #[arg(long)]
    pub wg_server_endpoint: Option<String>,
    /// vpn: the server's WireGuard public key (base64, from `wg pubkey`).
    #[arg(long)]
    pub wg_server_public_key: Option<String>,
    /// vpn: the router's tunnel address with prefix, e.g. 10.8.0.2/24.
    #[arg(long)]
    pub wg_address: Option<String>,
    /// vpn: the server's tunnel address, where RADIUS is sent, e.g. 10.8.0.1.
    #[arg(long)]
    pub wg_server_address: Option<String>,
    /// vpn: networks routed into the tunnel [default: the server's tunnel address,
    /// and the secondary server's].
    #[arg(long)]
    pub wg_allowed_address: Option<String>,
    /// vpn: keepalive that holds the router's NAT mapping open, so CoA can reach it.
    #[arg(long, default_value = "25s")]
    pub wg_keepalive: String,
    /// radsec: the server's RadSec port (`serve --radsec-listen`).
    #[arg(long, default_value_t = crate::radsec::DEFAULT_PORT)]
    pub radsec_port: u16,
    /// radsec: the PKCS#12 file from `pki issue --nas N`, uploaded to the router [default: N.p12].
    #[arg(long)]
    pub p12_file: Option<String>,
    /// radsec: the bundle's passphrase printed by `pki issue` [default: a placeholder to replace].
    #[arg(long, env = "RRNET_P12_PASSPHRASE", hide_env_values = true)]
    pub p12_passphrase: Option<String>,
}

/// Quote a string for RouterOS scripting: inside double quotes `\`, `"` and `$`
/// (variable substitution) must be escaped, `?` would open the terminal's help,
/// and control characters are written as `\HH`.
pub fn ros_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' | '$' | '?' => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn parse_ip(s: &str, flag: &str, what: &str) -> anyhow::Result<IpAddr> {
    s.trim()
        .parse()
        .map_err(|_| anyhow!("--{flag} {s:?}: expected {what} as an IP address, e.g. 203.0.113.10"))
}

/// `ADDRESS/PREFIX` keeping the host part (unlike `Cidr`, which clears it).
fn parse_if_address(s: &str, flag: &str) -> anyhow::Result<(IpAddr, u8)> {
    let err = || anyhow!("--{flag} {s:?}: expected ADDRESS/PREFIX, e.g. 10.8.0.2/24");
    let (a, p) = s.trim().split_once('/').ok_or_else(err)?;
    let addr: IpAddr = a.parse().map_err(|_| err())?;
    let prefix: u8 = p.parse().map_err(|_| err())?;
    if prefix > if addr.is_ipv4() { 32 } else { 128 } {
        return Err(err());
    }
    Ok((addr, prefix))
}

/// `HOST:PORT` or `[IPv6]:PORT`.
fn parse_endpoint(s: &str) -> anyhow::Result<(String, u16)> {
    let err =
        || anyhow!("--wg-server-endpoint {s:?}: expected HOST:PORT, e.g. vpn.example.net:51820");
    let (host, port) = s.trim().rsplit_once(':').ok_or_else(err)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| err())?;
    if host.is_empty()
        || port == 0
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
    {
        return Err(err());
    }
    Ok((host.to_string(), port))
}

/// A WireGuard key is 32 bytes in standard base64: 43 characters and `=`.
fn check_wg_key(k: &str) -> anyhow::Result<()> {
    let ok = k.len() == 44
        && k.ends_with('=')
        && k[..43]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    if !ok {
        bail!("--wg-server-public-key {k:?}: expected a WireGuard public key (44 base64 characters, as printed by `wg pubkey`)");
    }
    Ok(())
}

/// RouterOS time values the script passes through: a number with `ms` or `s`.
fn check_ros_time(v: &str, flag: &str) -> anyhow::Result<()> {
    let digits = v
        .strip_suffix("ms")
        .or_else(|| v.strip_suffix('s'))
        .unwrap_or("");
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        bail!("--{flag} {v:?}: expected a RouterOS time like 300ms or 1s");
    }
    Ok(())
}

fn check_name(v: &str, flag: &str) -> anyhow::Result<()> {
    if v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_control()) {
        bail!("--{flag} must be 1 to 64 printable characters");
    }
    Ok(())
}

/// The WireGuard side of the vpn tier, validated.
struct Tunnel {
    interface: String,
    endpoint_host: String,
    endpoint_port: u16,
    server_public_key: String,
    router_address: IpAddr,
    router_prefix: u8,
    server_address: IpAddr,
    allowed_address: String,
    /// Allowed networks outside the tunnel address's own network.
    routes: Vec<Cidr>,
    keepalive: String,
}

fn tunnel(a: &RouterosScriptArgs, secondary: Option<IpAddr>) -> anyhow::Result<Tunnel> {
    let missing: Vec<&str> = [
        ("--wg-server-endpoint", a.wg_server_endpoint.is_none()),
        ("--wg-server-public-key", a.wg_server_public_key.is_none()),
        ("--wg-address", a.wg_address.is_none()),
        ("--wg-server-address", a.wg_server_address.is_none()),
    ]
    .into_iter()
    .filter_map(|(f, m)| m.then_some(f))
    .collect();
    if !missing.is_empty() {
        bail!(
            "the vpn tier needs {}: the server's WireGuard endpoint and public key come from the \
             server's WireGuard setup (deploy/README.md), the tunnel addresses from your address plan; \
             keys are never invented here",
            missing.join(", ")
        );
    }
    let (endpoint_host, endpoint_port) = parse_endpoint(a.wg_server_endpoint.as_deref().unwrap())?;
    let key = a
        .wg_server_public_key
        .as_deref()
        .unwrap()
        .trim()
        .to_string();
    check_wg_key(&key)?;
    let (router_address, router_prefix) =
        parse_if_address(a.wg_address.as_deref().unwrap(), "wg-address")?;
    let server_address = parse_ip(
        a.wg_server_address.as_deref().unwrap(),
        "wg-server-address",
        "the server's tunnel address",
    )?;
    if server_address == router_address {
        bail!("--wg-server-address and --wg-address must differ");
    }
    let host_prefix = |ip: IpAddr| if ip.is_ipv4() { 32 } else { 128 };
    let allowed_address = match &a.wg_allowed_address {
        Some(v) => {
            for part in v.split(',') {
                part.trim()
                    .parse::<Cidr>()
                    .map_err(|e| anyhow!("--wg-allowed-address: {e}"))?;
            }
            v.split(',').map(str::trim).collect::<Vec<_>>().join(",")
        }
        None => std::iter::once(server_address)
            .chain(secondary)
            .map(|ip| format!("{ip}/{}", host_prefix(ip)))
            .collect::<Vec<_>>()
            .join(","),
    };
    let own: Cidr = format!("{router_address}/{router_prefix}").parse()?;
    let mut routes = Vec::new();
    for part in allowed_address.split(',') {
        let net: Cidr = part.parse()?;
        let on_link = net.prefix >= own.prefix && own.contains(net.addr);
        if !on_link && !routes.contains(&net) {
            routes.push(net);
        }
    }
    check_ros_time(&a.wg_keepalive, "wg-keepalive")?;
    check_name(&a.wg_interface, "wg-interface")?;
    Ok(Tunnel {
        interface: a.wg_interface.clone(),
        endpoint_host,
        endpoint_port,
        server_public_key: key,
        router_address,
        router_prefix,
        server_address,
        allowed_address,
        routes,
        keepalive: a.wg_keepalive.clone(),
    })
}

/// Render the script for `nas`. Returns the script and warnings for stderr.
pub fn render(nas: &Nas, a: &RouterosScriptArgs) -> anyhow::Result<(String, Vec<String>)> {
    check_ros_time(&a.timeout, "timeout")?;
    check_name(&a.hotspot_profile, "hotspot-profile")?;
    let mut warnings = Vec::new();
    let secondary = a
        .secondary_server
        .as_deref()
        .map(|s| parse_ip(s, "secondary-server", "the secondary server"))
        .transpose()?;
    let (primary, src_address, tunnel) = match a.tier {
        Tier::Direct => {
            let server = a.server.as_deref().ok_or_else(|| {
                anyhow!("the direct tier needs --server: the server's public IP address as the router reaches it")
            })?;
            (
                parse_ip(server, "server", "the server's public address")?,
                None,
                None,
            )
        }
        Tier::Radsec => {
            if nas.cert_identity().is_none() {
                bail!(
                    "NAS {} is not a RadSec entry ({}): add one with `nas add --name N --radsec-cn N` and issue its certificate with `pki issue --nas N`",
                    nas.name,
                    nas.address_text()
                );
            }
            let server = a.server.as_deref().ok_or_else(|| {
                anyhow!("the radsec tier needs --server: the server's public IP address as the router reaches it")
            })?;
            (
                parse_ip(server, "server", "the server's public address")?,
                None,
                None,
            )
        }
        Tier::Vpn => {
            if a.server.is_some() {
                bail!("--server is for the direct tier; in the vpn tier RADIUS goes to --wg-server-address");
            }
            let t = tunnel(a, secondary)?;
            if !nas.address.contains(t.router_address) {
                warnings.push(format!(
                    "NAS {} is registered for {}, but through the tunnel its packets come from {}: \
                     the server will drop them until the NAS entry matches (nas remove {} and nas add … --address {})",
                    nas.name,
                    nas.address_text(),
                    t.router_address,
                    nas.name,
                    t.router_address
                ));
            }
            (t.server_address, Some(t.router_address), Some(t))
        }
    };
    if Some(primary) == secondary {
        bail!("--secondary-server must differ from the primary server address");
    }
    let radsec = a.tier == Tier::Radsec;
    if radsec && a.p12_passphrase.is_none() {
        warnings.push(format!(
            "the script holds the placeholder {PASSPHRASE_PLACEHOLDER}: replace it with the passphrase `pki issue --nas {}` printed (or use --p12-passphrase)",
            nas.name
        ));
    }
    if !a.show_secret && !radsec {
        warnings.push(format!(
            "the script holds the placeholder {SECRET_PLACEHOLDER}: replace it with NAS {}'s secret before running it (or use --show-secret)",
            nas.name
        ));
    }

    let mut s = String::new();
    let tier = match a.tier {
        Tier::Direct => "direct",
        Tier::Vpn => "vpn",
        Tier::Radsec => "radsec",
    };
    let _ = writeln!(
        s,
        "# RouterOS v7 script from rrnet-radius for NAS {:?} (tier: {tier}).",
        nas.name
    );
    let _ = writeln!(s, "# Run it in a terminal (paste it) or save it as rrnet.rsc and run /import file-name=rrnet.rsc.");
    let _ = writeln!(
        s,
        "# Running it again replaces what it added before (entries with comment={}).",
        ros_quote(TAG)
    );
    let _ = writeln!(
        s,
        "# Needs RouterOS 7.15 or later (require-message-auth, BlastRADIUS / CVE-2024-3596)."
    );
    let secret = if radsec {
        // RFC 6614 §2.3: the secret of RADIUS over TLS is `radsec`.
        ros_quote(crate::radsec::RADSEC_SECRET)
    } else if a.show_secret {
        ros_quote(nas.secret.expose_str())
    } else {
        let _ = writeln!(s, "#");
        let _ = writeln!(
            s,
            "# >>> The shared secret is not printed. Replace {SECRET_PLACEHOLDER} below with the"
        );
        let _ = writeln!(
            s,
            "# >>> secret given to `rrnet-radius nas add --name {}` before you run this script.",
            nas.name
        );
        ros_quote(SECRET_PLACEHOLDER)
    };
    let _ = writeln!(s);

    if let Some(identity) = &nas.identifier {
        // The entry matches only packets whose NAS-Identifier is exactly this:
        // RouterOS sends its system identity as NAS-Identifier.
        let _ = writeln!(
            s,
            "# The router's identity, sent as NAS-Identifier: the server tells this router apart"
        );
        let _ = writeln!(
            s,
            "# from others at the same address by it. It must stay exactly this name."
        );
        let _ = writeln!(s, "/system identity set name={}", ros_quote(identity));
        let _ = writeln!(s);
    }

    if let Some(t) = &tunnel {
        let iface = ros_quote(&t.interface);
        let _ = writeln!(
            s,
            "# 1. WireGuard tunnel to the server. The router keeps its private key; only its"
        );
        let _ = writeln!(
            s,
            "#    public key (printed at the end) goes to the server."
        );
        let _ = writeln!(s, ":if ([:len [/interface wireguard find where name={iface}]] = 0) do={{ /interface wireguard add name={iface} comment={} }}", ros_quote(TAG));
        let _ = writeln!(
            s,
            "/interface wireguard peers remove [find where comment={}]",
            ros_quote(TAG)
        );
        let _ = writeln!(
            s,
            "/interface wireguard peers add interface={iface} public-key={} endpoint-address={} endpoint-port={} allowed-address={} persistent-keepalive={} comment={}",
            ros_quote(&t.server_public_key),
            ros_quote(&t.endpoint_host),
            t.endpoint_port,
            t.allowed_address,
            t.keepalive,
            ros_quote(TAG)
        );
        let _ = writeln!(
            s,
            "/ip address remove [find where comment={}]",
            ros_quote(TAG)
        );
        let _ = writeln!(
            s,
            "/ip address add address={}/{} interface={iface} comment={}",
            t.router_address,
            t.router_prefix,
            ros_quote(TAG)
        );
        // RouterOS does not route a peer's allowed-address by itself: the tunnel
        // address gives a route to its own network only, anything else needs one.
        let _ = writeln!(
            s,
            "/ip route remove [find where comment={}]",
            ros_quote(TAG)
        );
        for dst in &t.routes {
            let _ = writeln!(
                s,
                "/ip route add dst-address={}/{} gateway={iface} comment={}",
                dst.addr,
                dst.prefix,
                ros_quote(TAG)
            );
        }
        let _ = writeln!(s);
    }

    let cert_name = format!("{TAG}-{}", nas.name);
    if radsec {
        let file = a
            .p12_file
            .clone()
            .unwrap_or_else(|| format!("{}.p12", nas.name));
        check_name(&file, "p12-file")?;
        let passphrase = a
            .p12_passphrase
            .as_deref()
            .unwrap_or(PASSPHRASE_PLACEHOLDER);
        let _ = writeln!(
            s,
            "# 1. Certificates. Upload {file} (from `rrnet-radius pki issue --nas {}`) to the",
            nas.name
        );
        let _ = writeln!(
            s,
            "#    router's Files first. It holds the router's certificate and key and the CA that"
        );
        let _ = writeln!(
            s,
            "#    signed the server's certificate; the CA is marked trusted so the router can verify"
        );
        let _ = writeln!(
            s,
            "#    the server. The router's certificate is renamed for /radius certificate= below."
        );
        let _ = writeln!(
            s,
            "/certificate remove [find where name={}]",
            ros_quote(&cert_name)
        );
        let _ = writeln!(
            s,
            "/certificate import file-name={} passphrase={}",
            ros_quote(&file),
            ros_quote(passphrase)
        );
        let _ = writeln!(
            s,
            ":if ([:len [/certificate find where common-name={} and private-key]] = 0) do={{ :error {} }}",
            ros_quote(&nas.name),
            ros_quote(&format!(
                "no certificate with CN {} and its key was imported: check the file and the passphrase",
                nas.name
            ))
        );
        let _ = writeln!(
            s,
            "/certificate set [find where common-name={} and private-key] name={}",
            ros_quote(&nas.name),
            ros_quote(&cert_name)
        );
        let _ = writeln!(
            s,
            "/certificate set [find where common-name~{} and !private-key] trusted=yes",
            ros_quote(&format!("^{PKI_CA_PREFIX}"))
        );
        let _ = writeln!(s);
    }

    let n = if tunnel.is_some() || radsec { 2 } else { 1 };
    if secondary.is_some() {
        let _ = writeln!(
            s,
            "# {n}. The RADIUS servers; the router asks the second when the first does not answer."
        );
    } else {
        let _ = writeln!(s, "# {n}. The RADIUS server.");
    }
    let _ = writeln!(
        s,
        "#    Replies must carry Message-Authenticator; the server always sends it."
    );
    let _ = writeln!(s, "/radius remove [find where comment={}]", ros_quote(TAG));
    for addr in std::iter::once(primary).chain(secondary) {
        if radsec {
            // Authentication and accounting share the one TLS port.
            let _ = write!(
                s,
                "/radius add service=hotspot address={addr} protocol=radsec certificate={} secret={secret} authentication-port={port} accounting-port={port} timeout={} require-message-auth=yes-for-request-resp",
                ros_quote(&cert_name),
                a.timeout,
                port = a.radsec_port,
            );
        } else {
            let _ = write!(
                s,
                "/radius add service=hotspot address={addr} secret={secret} authentication-port={} accounting-port={} timeout={} require-message-auth=yes-for-request-resp",
                a.auth_port, a.acct_port, a.timeout
            );
        }
        if let Some(src) = src_address {
            let _ = write!(s, " src-address={src}");
        }
        let _ = writeln!(s, " comment={}", ros_quote(TAG));
    }
    let _ = writeln!(s);

    let profile = ros_quote(&a.hotspot_profile);
    let _ = writeln!(
        s,
        "# {}. The hotspot asks RADIUS, sends accounting, and takes the interim interval from",
        n + 1
    );
    let _ = writeln!(s, "#    the server's Acct-Interim-Interval.");
    let _ = writeln!(
        s,
        ":if ([:len [/ip hotspot profile find where name={profile}]] = 0) do={{ :error {} }}",
        ros_quote(&format!(
            "hotspot profile {} not found: pass --hotspot-profile",
            a.hotspot_profile
        ))
    );
    let _ = writeln!(s, "/ip hotspot profile set [find where name={profile}] use-radius=yes radius-accounting=yes radius-interim-update=received");
    let _ = writeln!(s);

    let _ = writeln!(
        s,
        "# {}. CoA and Disconnect-Request from the server only: the listener on UDP {} and",
        n + 2,
        nas.coa_port
    );
    let _ = writeln!(
        s,
        "#    firewall rules at the top of the input chain that let only the server reach it."
    );
    let _ = writeln!(s, "/radius incoming set accept=yes port={}", nas.coa_port);
    let _ = writeln!(
        s,
        "/ip firewall filter remove [find where comment={}]",
        ros_quote(TAG)
    );
    let in_iface = tunnel
        .as_ref()
        .map(|t| format!(" in-interface={}", ros_quote(&t.interface)))
        .unwrap_or_default();
    // Rules are added in reverse order, each at the top, so they end up in order:
    // the accepts first, then the drop for everyone else.
    let rules: Vec<String> = std::iter::once(primary)
        .chain(secondary)
        .map(|addr| {
            format!(
                "chain=input protocol=udp dst-port={} src-address={addr}{in_iface} action=accept",
                nas.coa_port
            )
        })
        .chain(std::iter::once(format!(
            "chain=input protocol=udp dst-port={} action=drop",
            nas.coa_port
        )))
        .collect();
    for rule in rules.iter().rev() {
        let _ = writeln!(
            s,
            ":if ([:len [/ip firewall filter find where chain=input]] = 0) do={{ /ip firewall filter add {rule} comment={tag} }} else={{ /ip firewall filter add {rule} comment={tag} place-before=[:pick [/ip firewall filter find where chain=input] 0] }}",
            tag = ros_quote(TAG)
        );
    }

    if let Some(t) = &tunnel {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "# {}. Give this key to the server: in its WireGuard config add a [Peer] with",
            n + 3
        );
        let _ = writeln!(
            s,
            "#    PublicKey = <the key printed below> and AllowedIPs = {}/{}.",
            t.router_address,
            if t.router_address.is_ipv4() { 32 } else { 128 }
        );
        let _ = writeln!(
            s,
            ":put (\"WireGuard public key of this router: \" . [/interface wireguard get [find where name={}] public-key])",
            ros_quote(&t.interface)
        );
    }
    Ok((s, warnings))
}

pub async fn run(store: Arc<dyn Store>, a: &RouterosScriptArgs) -> anyhow::Result<()> {
    let nas = store
        .list_nas()
        .await?
        .into_iter()
        .find(|n| n.name == a.nas)
        .ok_or_else(|| anyhow!("NAS {:?} not found (see `rrnet-radius nas list`)", a.nas))?;
    let (script, warnings) = render(&nas, a)?;
    for w in warnings {
        eprintln!("note: {w}");
    }
    print!("{script}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_routeros_specials() {
        assert_eq!(ros_quote("plain"), "\"plain\"");
        assert_eq!(ros_quote(r#"a"b\c$d?e"#), r#""a\"b\\c\$d\?e""#);
        assert_eq!(ros_quote("x\ny"), "\"x\\0Ay\"");
    }

    #[test]
    fn endpoints_and_keys() {
        assert_eq!(
            parse_endpoint("vpn.example.net:51820").unwrap(),
            ("vpn.example.net".into(), 51820)
        );
        assert_eq!(
            parse_endpoint("[2001:db8::1]:51820").unwrap(),
            ("2001:db8::1".into(), 51820)
        );
        assert!(parse_endpoint("vpn.example.net").is_err());
        assert!(parse_endpoint("a b:1").is_err());
        assert!(check_wg_key("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=").is_ok());
        assert!(check_wg_key("not-a-key").is_err());
        assert!(check_ros_time("300ms", "t").is_ok());
        assert!(check_ros_time("1s", "t").is_ok());
        assert!(check_ros_time("1", "t").is_err());
        assert!(check_ros_time("s", "t").is_err());
    }
}
