//! Domain records shared by `policy`, `store`, `server`, `http` and `cli`.
//!
//! Timestamps are Unix seconds in UTC (`i64`). Both storage backends keep them as
//! 64-bit integers, so the same SQL and the same comparisons work on SQLite and
//! PostgreSQL and nothing depends on a database time zone.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

/// Unix seconds, UTC.
pub type Timestamp = i64;

/// A shared secret. `Debug` and `Display` never show it, so a secret cannot leak
/// through a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret's bytes, for the authenticator and password computations only.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
    pub fn expose_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// An IPv4 or IPv6 network: an exact address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Network address with host bits cleared.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid address or CIDR {0:?}: expected an IP address or ADDRESS/PREFIX, e.g. 192.0.2.1 or 10.0.0.0/8")]
pub struct CidrParseError(pub String);

impl Cidr {
    /// The prefix length of one host: 32 or 128.
    pub fn max_prefix(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// Is this one host rather than a network?
    pub fn is_host(&self) -> bool {
        self.prefix == self.max_prefix()
    }

    /// Does this network contain `ip`? IPv4-mapped IPv6 sources are matched as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                (u32::from(ip) & mask) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                (u128::from(ip) & mask) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, seen on dual-stack sockets) become IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = CidrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrParseError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let addr = canonical_ip(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => {
                let p: u8 = p.trim().parse().map_err(|_| err())?;
                if p > max {
                    return Err(err());
                }
                p
            }
            None => max,
        };
        // Clear host bits so that 10.1.2.3/8 and 10.0.0.0/8 are the same network.
        let addr = match addr {
            IpAddr::V4(v4) => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(prefix))
                };
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(prefix))
                };
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// Where a NAS sends from when that is not a fixed address or network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DynamicAddress {
    /// A host name (DDNS, e.g. MikroTik IP Cloud `*.sn.mynetname.net`): the
    /// server resolves it at start and every `nas_resolve_interval`.
    Host(String),
    /// Any source address: the packet's NAS-Identifier picks the entry (it
    /// must have `--identifier`) and Message-Authenticator is required.
    Any,
    /// No address at all: a RadSec (RFC 6614) router, known by the client
    /// certificate it presents (`nas add --radsec-cn`). Its UDP packets match nothing.
    RadSec(CertIdentity),
}

/// How a RadSec NAS entry recognises its router's client certificate.
/// Stored in the `address` column as `radsec:cn=NAME` or `radsec:sha256=HEX`
/// (see ARCHITECTURE.md, RadSec).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CertIdentity {
    /// The subject CN, or a DNS name among the subject alternative names
    /// (ASCII, compared case-insensitively).
    Name(String),
    /// The SHA-256 fingerprint of the certificate (DER), lowercase hex.
    Sha256(String),
}

impl CertIdentity {
    /// A name given to `--radsec-cn`: printable ASCII without spaces or `:`, at most 253 bytes.
    pub fn name(s: &str) -> Result<CertIdentity, String> {
        let s = s.trim();
        if s.is_empty()
            || s.len() > 253
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':' && b != b'=')
        {
            return Err(format!(
                "certificate name {s:?}: give the CN or a DNS name of the router's certificate \
                 (printable ASCII, no spaces, ':' or '=', at most 253 characters)"
            ));
        }
        Ok(CertIdentity::Name(s.to_ascii_lowercase()))
    }

    /// A fingerprint given to `--radsec-fingerprint`: 64 hex digits, colons allowed.
    pub fn sha256(s: &str) -> Result<CertIdentity, String> {
        let hex: String = s.trim().chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "certificate fingerprint {s:?}: give the SHA-256 of the certificate, 64 hex digits"
            ));
        }
        Ok(CertIdentity::Sha256(hex.to_ascii_lowercase()))
    }

    fn parse(text: &str) -> Result<CertIdentity, String> {
        match text.split_once('=') {
            Some(("cn", name)) => CertIdentity::name(name),
            Some(("sha256", hex)) => CertIdentity::sha256(hex),
            _ => Err(format!(
                "invalid certificate identity {text:?}: radsec:cn=NAME or radsec:sha256=HEX"
            )),
        }
    }
}

impl std::fmt::Display for CertIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertIdentity::Name(n) => write!(f, "radsec:cn={n}"),
            CertIdentity::Sha256(h) => write!(f, "radsec:sha256={h}"),
        }
    }
}

/// What `--address` takes: an address or CIDR network, a host name, or `any`.
/// A dynamic address comes with the placeholder network `0.0.0.0/0`, which no
/// lookup by address uses (the NAS table places such entries by resolution or
/// by identifier) and which makes them count as "not one host" wherever a
/// single address is assumed (CoA then goes to the latest source).
pub fn parse_nas_address(s: &str) -> Result<(Cidr, Option<DynamicAddress>), String> {
    let s = s.trim();
    if let Ok(c) = s.parse::<Cidr>() {
        return Ok((c, None));
    }
    let placeholder = Cidr {
        addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        prefix: 0,
    };
    if s.eq_ignore_ascii_case("any") {
        return Ok((placeholder, Some(DynamicAddress::Any)));
    }
    if let Some(identity) = s.strip_prefix("radsec:") {
        let identity = CertIdentity::parse(identity)?;
        return Ok((placeholder, Some(DynamicAddress::RadSec(identity))));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let name = s.strip_suffix('.').unwrap_or(s);
    let numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if name.len() <= 253 && !numeric && name.split('.').all(label_ok) {
        return Ok((
            placeholder,
            Some(DynamicAddress::Host(name.to_ascii_lowercase())),
        ));
    }
    Err(format!(
        "invalid address or CIDR {s:?}: give an IP address, a CIDR network, a host name or `any`"
    ))
}

/// The tenant everything belongs to unless told otherwise (`default`), so a
/// single-operator install never names one.
pub const DEFAULT_TENANT: i64 = 1;

/// An operator (ISP) served by this deployment. Its NAS entries, plans and
/// vouchers are its own: a voucher is looked up only in the tenant of the NAS
/// that asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
    pub created_at: Timestamp,
}

/// A RADIUS client (a MikroTik router, or a FreeRADIUS proxy in front of routers).
#[derive(Clone, Debug)]
pub struct Nas {
    pub id: i64,
    /// Operator-chosen unique name; used as the metrics label and in logs.
    pub name: String,
    /// Source address or network the NAS sends from (`0.0.0.0/0`, unused,
    /// when `dynamic` is set).
    pub address: Cidr,
    /// A host name re-resolved on a timer, any source, or a RadSec client
    /// certificate (see [`DynamicAddress`]).
    pub dynamic: Option<DynamicAddress>,
    pub secret: Secret,
    /// Drop Access-Requests without Message-Authenticator (BlastRADIUS, CVE-2024-3596).
    pub require_message_authenticator: bool,
    /// UDP port of the router's `/radius incoming` listener for CoA/Disconnect.
    pub coa_port: u16,
    /// Where CoA/Disconnect requests go when it is not the NAS's own address
    /// (a CIDR entry, a router behind NAT). `None`: the address when it is one
    /// host, else the source of the NAS's latest authenticated packet.
    pub coa_address: Option<IpAddr>,
    /// Site/tenant scope: when set, only vouchers of the same site (or of no site) log in here.
    pub site: Option<String>,
    /// The router's NAS-Identifier (its RouterOS `/system identity`). When set,
    /// only packets carrying exactly this NAS-Identifier match the entry, which
    /// lets several entries share one address (routers behind one NAT address).
    pub identifier: Option<String>,
    /// The tenant whose vouchers log in here.
    pub tenant_id: i64,
    pub created_at: Timestamp,
    /// The secret before the last rotation, still accepted until `previous_secret_until`.
    pub previous_secret: Option<Secret>,
    pub previous_secret_until: Option<Timestamp>,
}

impl Nas {
    /// The client certificate a RadSec entry is known by; `None` for a UDP entry.
    pub fn cert_identity(&self) -> Option<&CertIdentity> {
        match &self.dynamic {
            Some(DynamicAddress::RadSec(identity)) => Some(identity),
            _ => None,
        }
    }

    /// `--address` as given: the address or network, host name, or `any`.
    pub fn address_text(&self) -> String {
        address_text(&self.address, self.dynamic.as_ref())
    }

    /// Which router of this entry sent a packet, as sessions are keyed: empty
    /// for an entry that stands for one router (it has an identifier); else the
    /// packet's NAS-Identifier, and for a network entry also the source address
    /// (routers on one network often keep RouterOS's default identity). Routers
    /// behind one NAT address that share an entry are told apart by identity.
    pub fn router_key(&self, nas_identifier: Option<&str>, source: Option<IpAddr>) -> String {
        if self.identifier.is_some() {
            return String::new();
        }
        let mut key = nas_identifier.unwrap_or_default().to_owned();
        let network = self.dynamic.is_none() && !self.address.is_host();
        if let (true, Some(ip)) = (network, source) {
            key.push('@');
            key.push_str(&ip.to_string());
        }
        key
    }

    /// The previous secret, if it is still accepted at `now`.
    pub fn previous_secret_at(&self, now: Timestamp) -> Option<&Secret> {
        match (&self.previous_secret, self.previous_secret_until) {
            (Some(s), Some(until)) if now < until => Some(s),
            _ => None,
        }
    }
}

/// `--address` as given: the address or network, host name, or `any`.
pub fn address_text(address: &Cidr, dynamic: Option<&DynamicAddress>) -> String {
    match dynamic {
        None => address.to_string(),
        Some(DynamicAddress::Host(h)) => h.clone(),
        Some(DynamicAddress::Any) => "any".into(),
        Some(DynamicAddress::RadSec(identity)) => identity.to_string(),
    }
}

/// Fields to create a NAS.
#[derive(Clone, Debug)]
pub struct NewNas {
    pub name: String,
    pub address: Cidr,
    /// See [`Nas::dynamic`].
    pub dynamic: Option<DynamicAddress>,
    pub secret: Secret,
    pub require_message_authenticator: bool,
    pub coa_port: u16,
    pub coa_address: Option<IpAddr>,
    pub site: Option<String>,
    /// See [`Nas::identifier`].
    pub identifier: Option<String>,
    pub tenant_id: i64,
}

/// A voucher profile: what a sold voucher is worth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub id: i64,
    /// The tenant the plan and its vouchers belong to.
    pub tenant_id: i64,
    pub name: String,
    /// Seconds of use (summed over sessions); `None` = unlimited.
    pub time_quota: Option<u64>,
    /// Seconds the voucher stays valid from its first login; `None` = no such limit.
    pub validity: Option<u64>,
    /// Absolute expiry (Unix seconds); `None` = none.
    pub expires_at: Option<Timestamp>,
    /// Bytes (input + output) of use; `None` = unlimited.
    pub data_quota: Option<u64>,
    /// Mikrotik-Rate-Limit string, `rx/tx [burst…]`, rx = client upload.
    pub rate_limit: Option<String>,
    /// Fair use: once the data quota is used up, the session is slowed to this
    /// Mikrotik-Rate-Limit (by CoA) instead of ended, and later logins are
    /// accepted at this rate with no data limit.
    pub after_data_rate_limit: Option<String>,
    /// Simultaneous devices (distinct MACs); at least 1.
    pub shared_users: u32,
    /// Bind the voucher to the MAC address of its first login.
    pub mac_lock: bool,
    /// Idle-Timeout seconds sent to the NAS.
    pub idle_timeout: Option<u32>,
    /// Acct-Interim-Interval seconds sent to the NAS.
    pub interim_interval: Option<u32>,
    /// Mikrotik-Group (hotspot user profile on the router).
    pub mikrotik_group: Option<String>,
    /// Mikrotik-Address-List the client address is added to.
    pub address_list: Option<String>,
    /// Display price for printed vouchers (free text, e.g. "5.00 USD").
    pub price: Option<String>,
    /// Sites (NAS `--site`) where the plan's vouchers log in; empty: everywhere.
    pub sites: Vec<String>,
    pub created_at: Timestamp,
}

/// Fields to create a plan.
#[derive(Clone, Debug, Default)]
pub struct NewPlan {
    /// `None`: the default tenant.
    pub tenant_id: Option<i64>,
    pub name: String,
    pub time_quota: Option<u64>,
    pub validity: Option<u64>,
    pub expires_at: Option<Timestamp>,
    pub data_quota: Option<u64>,
    pub rate_limit: Option<String>,
    pub after_data_rate_limit: Option<String>,
    pub shared_users: u32,
    pub mac_lock: bool,
    pub idle_timeout: Option<u32>,
    pub interim_interval: Option<u32>,
    pub mikrotik_group: Option<String>,
    pub address_list: Option<String>,
    pub price: Option<String>,
    pub sites: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VoucherState {
    Active,
    Revoked,
}

impl VoucherState {
    pub fn as_str(self) -> &'static str {
        match self {
            VoucherState::Active => "active",
            VoucherState::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(VoucherState::Active),
            "revoked" => Some(VoucherState::Revoked),
            _ => None,
        }
    }
}

/// A sold code. `code` is the User-Name the hotspot sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Voucher {
    pub id: i64,
    /// Its plan's tenant; the code is unique within it.
    pub tenant_id: i64,
    pub code: String,
    /// Login password; equals `code` unless set otherwise. Never logged.
    #[serde(skip_serializing)]
    pub password: String,
    pub plan_id: i64,
    pub plan_name: String,
    /// Site/tenant scope; `None` = valid at every NAS.
    pub site: Option<String>,
    pub state: VoucherState,
    /// When the voucher first logged in (activation).
    pub first_login_at: Option<Timestamp>,
    /// first_login + plan validity, capped by the plan's absolute expiry; set at activation.
    pub valid_until: Option<Timestamp>,
    /// Seconds used, summed over sessions.
    pub used_seconds: u64,
    /// Bytes used (input + output), summed over sessions.
    pub used_bytes: u64,
    /// MAC bound on first login when the plan has `mac_lock`, normalised `AA:BB:CC:DD:EE:FF`.
    pub bound_mac: Option<String>,
    /// Batch name from `voucher generate --batch`.
    pub batch: Option<String>,
    pub created_at: Timestamp,
}

/// Fields to create a voucher.
#[derive(Clone, Debug)]
pub struct NewVoucher {
    pub code: String,
    pub password: Option<String>,
    pub plan_id: i64,
    pub site: Option<String>,
    pub batch: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Access-Accept sent, no Accounting-Start yet. Counts against shared users for a short while.
    Authorized,
    /// Accounting-Start (or an Interim) seen.
    Open,
    /// Stop seen, or closed by the server (stale, NAS reboot, Accounting-On/Off).
    Closed,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Authorized => "authorized",
            SessionState::Open => "open",
            SessionState::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorized" => Some(SessionState::Authorized),
            "open" => Some(SessionState::Open),
            "closed" => Some(SessionState::Closed),
            _ => None,
        }
    }
}

/// One hotspot login, from Access-Accept to Accounting-Stop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Session {
    pub id: i64,
    pub nas_id: i64,
    pub nas_name: String,
    /// Acct-Session-Id; unique per NAS.
    pub acct_session_id: String,
    /// User-Name as sent by the NAS.
    pub username: String,
    pub voucher_id: Option<i64>,
    /// Calling-Station-Id, normalised.
    pub mac: Option<String>,
    pub framed_ip: Option<String>,
    pub state: SessionState,
    pub authorized_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    /// Last accounting packet (or the authorization) for this session.
    pub updated_at: Timestamp,
    pub stopped_at: Option<Timestamp>,
    pub session_time: u64,
    pub input_octets: u64,
    pub output_octets: u64,
    /// Acct-Terminate-Cause by name, or a server reason ("stale", "nas-reboot", "accounting-on").
    pub terminate_cause: Option<String>,
    /// Acct-Interim-Interval granted, to judge staleness.
    pub interim_interval: Option<u32>,
    /// When the server first asked the router to end this session (RFC 5176).
    pub disconnect_requested_at: Option<Timestamp>,
    /// The last CoA/Disconnect outcome, e.g. `disconnect ack`,
    /// `disconnect nak Session-Context-Not-Found`, `disconnect timeout`.
    pub coa_result: Option<String>,
    /// Which router of the NAS entry the session is on ([`Nas::router_key`]):
    /// empty for an entry that stands for one router.
    pub router: String,
}

impl Session {
    /// The address of the router the session is on, when its NAS entry is a
    /// network (the router key ends in `@ADDRESS`).
    pub fn router_address(&self) -> Option<IpAddr> {
        self.router.rsplit_once('@')?.1.parse().ok()
    }
}

/// Normalise a Calling-Station-Id MAC to `AA:BB:CC:DD:EE:FF`. Accepts the formats
/// RouterOS and other NASes emit: `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`,
/// `aabb.ccdd.eeff`, `AABBCCDDEEFF`. Anything else is returned `None`.
pub fn normalize_mac(s: &str) -> Option<String> {
    let mut hex = [0u8; 12];
    let mut n = 0;
    for c in s.trim().chars() {
        match c {
            ':' | '-' | '.' => continue,
            c if c.is_ascii_hexdigit() => {
                if n == 12 {
                    return None;
                }
                hex[n] = c.to_ascii_uppercase() as u8;
                n += 1;
            }
            _ => return None,
        }
    }
    if n != 12 {
        return None;
    }
    let mut out = String::with_capacity(17);
    for (i, pair) in hex.chunks(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(pair[0] as char);
        out.push(pair[1] as char);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nas_addresses() {
        assert_eq!(parse_nas_address("192.0.2.1").unwrap().1, None);
        assert_eq!(parse_nas_address("10.0.0.0/8").unwrap().1, None);
        assert_eq!(
            parse_nas_address("ANY").unwrap().1,
            Some(DynamicAddress::Any)
        );
        assert_eq!(
            parse_nas_address("HexAgon.sn.mynetname.net.").unwrap().1,
            Some(DynamicAddress::Host("hexagon.sn.mynetname.net".into()))
        );
        for bad in ["", "1.2.3.999", "a..b", "-a.b", "a b", "x/8", "a_b.c"] {
            assert!(parse_nas_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn radsec_identities_round_trip_through_the_address_text() {
        let fp = "AB:".repeat(31) + "AB";
        for (given, text) in [
            (CertIdentity::name("Cafe-1").unwrap(), "radsec:cn=cafe-1"),
            (
                CertIdentity::sha256(&fp).unwrap(),
                &*format!("radsec:sha256={}", "ab".repeat(32)),
            ),
        ] {
            assert_eq!(given.to_string(), text);
            let (_, dynamic) = parse_nas_address(text).unwrap();
            assert_eq!(dynamic, Some(DynamicAddress::RadSec(given)));
        }
        for bad in [
            "radsec:cn=",
            "radsec:cn=a b",
            "radsec:sha256=abc",
            "radsec:x=y",
        ] {
            assert!(parse_nas_address(bad).is_err(), "{bad}");
        }
        assert!(CertIdentity::name("a:b").is_err());
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.9".parse().unwrap()));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(one.prefix, 32);
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "300.1.1.1",
            "10.0.0.0/x",
            "::/129",
            "abc",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mac_formats() {
        for s in [
            "aa:bb:cc:dd:ee:ff",
            "AA-BB-CC-DD-EE-FF",
            "aabb.ccdd.eeff",
            "AABBCCDDEEFF",
        ] {
            assert_eq!(
                normalize_mac(s).as_deref(),
                Some("AA:BB:CC:DD:EE:FF"),
                "{s}"
            );
        }
        for s in ["", "aa:bb", "aabbccddeeff00", "gg:bb:cc:dd:ee:ff"] {
            assert_eq!(normalize_mac(s), None, "{s}");
        }
    }

    #[test]
    fn secret_debug_hides() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
