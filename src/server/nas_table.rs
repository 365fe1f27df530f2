//! The NAS table in memory: source address (and NAS-Identifier) → NAS, longest
//! prefix wins. Reloaded from storage when `nas_generation` changes; never
//! queried per packet.
//!
//! Single-address entries (the common case: one router, one address) sit in a
//! hash map, so a fleet of thousands of routers costs one lookup per packet;
//! network entries (VPN subnets) are scanned, most specific first, only when no
//! single-address entry matches.
//!
//! Several entries may share an address when each has an identifier (routers
//! behind one NAT address, told apart by their NAS-Identifier, RFC 2865 §5.32).
//! The rule: a packet belongs to the most specific entry whose address covers
//! its source and whose identifier, when it has one, equals the packet's
//! NAS-Identifier byte for byte. That entry's secret must then verify the
//! packet. `nas add` keeps an entry without identifier alone on its address,
//! so at most one entry can match at each address. No step allocates.
//!
//! Entries with a host name sit among the single addresses under each address
//! the name resolved to ([`super::resolve`]); a new resolution builds a new
//! table from the same entries. Entries for `any` source come last, matched by
//! NAS-Identifier alone (their Message-Authenticator is required).
//!
//! RadSec entries (RFC 6614) have no address: they sit apart, by the client
//! certificate that identifies them ([`NasTable::by_certificate`]), and no
//! UDP packet or REST request ever matches them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::resolve::Resolved;
use crate::handler::Signer;
use crate::metrics::{Metrics, NasCounters};
use crate::model::{canonical_ip, CertIdentity, DynamicAddress, Nas, Secret};
use crate::proto::MacKey;

/// A NAS and its secret prepared for HMAC-MD5.
#[derive(Debug)]
pub struct NasEntry {
    pub nas: Arc<Nas>,
    /// This NAS's metrics, resolved once (see [`NasTable::count_with`]).
    pub counters: Arc<NasCounters>,
    pub mac_key: MacKey,
    /// The secret before a rotation, while it is still accepted.
    pub previous: Option<PreviousSecret>,
}

#[derive(Debug)]
pub struct PreviousSecret {
    pub secret: Secret,
    pub mac_key: MacKey,
    /// Accepted while `now < until` (Unix seconds).
    pub until: i64,
}

impl NasEntry {
    fn new(nas: Nas) -> Self {
        let mac_key = MacKey::new(nas.secret.expose());
        let previous = match (&nas.previous_secret, nas.previous_secret_until) {
            (Some(secret), Some(until)) => Some(PreviousSecret {
                mac_key: MacKey::new(secret.expose()),
                secret: secret.clone(),
                until,
            }),
            _ => None,
        };
        NasEntry {
            nas: Arc::new(nas),
            counters: Arc::new(NasCounters::detached()),
            mac_key,
            previous,
        }
    }
}

impl NasEntry {
    /// The secret a request made with `signer` is verified and answered with.
    pub fn secret_for(&self, signer: Signer) -> &[u8] {
        match (signer, &self.previous) {
            (Signer::Previous, Some(p)) => p.secret.expose(),
            _ => self.secret.expose(),
        }
    }

    /// [`NasEntry::secret_for`] prepared for HMAC-MD5.
    pub fn key_for(&self, signer: Signer) -> &MacKey {
        match (signer, &self.previous) {
            (Signer::Previous, Some(p)) => &p.mac_key,
            _ => &self.mac_key,
        }
    }
}

impl std::ops::Deref for NasEntry {
    type Target = Nas;
    fn deref(&self) -> &Nas {
        &self.nas
    }
}

impl NasEntry {
    /// Whether a packet carrying `identifier` (its NAS-Identifier) may be this
    /// entry's: always when the entry has no identifier, else when they are equal.
    pub fn answers_to(&self, identifier: Option<&[u8]>) -> bool {
        match &self.nas.identifier {
            None => true,
            Some(own) => identifier == Some(own.as_bytes()),
        }
    }
}

#[derive(Debug, Default)]
pub struct NasTable {
    /// Entries that are one address (/32, /128); several per address when each
    /// has an identifier.
    hosts: HashMap<IpAddr, Vec<NasEntry>>,
    /// Network entries, longest prefix first.
    networks: Vec<NasEntry>,
    /// Entries for any source (`--address any`), matched by identifier.
    any: Vec<NasEntry>,
    /// RadSec entries, by the client certificate that identifies them.
    radsec: HashMap<CertIdentity, NasEntry>,
    /// Storage generation this table was loaded at.
    pub generation: i64,
    /// The entries as loaded, to build the table again after a resolution.
    loaded: Vec<Nas>,
    /// What the entries' host names resolved to.
    pub resolved: Resolved,
}

fn is_host(nas: &Nas) -> bool {
    nas.address.is_host()
}

impl NasTable {
    /// A table of `nas` whose host names are not resolved yet.
    pub fn new(nas: Vec<Nas>, generation: i64) -> Self {
        Self::resolved(nas, generation, Resolved::new())
    }

    /// A table of `nas` with their host names resolved as in `resolved`.
    pub fn resolved(nas: Vec<Nas>, generation: i64, resolved: Resolved) -> Self {
        let mut hosts: HashMap<IpAddr, Vec<NasEntry>> = HashMap::new();
        let mut networks = Vec::new();
        let mut any = Vec::new();
        let mut radsec = HashMap::new();
        let loaded = nas.clone();
        for n in nas {
            match &n.dynamic {
                Some(DynamicAddress::RadSec(identity)) => {
                    radsec.insert(identity.clone(), NasEntry::new(n));
                    continue;
                }
                Some(DynamicAddress::Any) => {
                    any.push(NasEntry::new(n));
                    continue;
                }
                Some(DynamicAddress::Host(name)) => {
                    for ip in resolved.get(name).into_iter().flatten() {
                        hosts
                            .entry(canonical_ip(*ip))
                            .or_default()
                            .push(NasEntry::new(n.clone()));
                    }
                    continue;
                }
                None => {}
            }
            if is_host(&n) {
                hosts
                    .entry(n.address.addr)
                    .or_default()
                    .push(NasEntry::new(n));
            } else {
                networks.push(NasEntry::new(n));
            }
        }
        networks.sort_by_key(|n| std::cmp::Reverse(n.address.prefix));
        NasTable {
            hosts,
            networks,
            any,
            radsec,
            generation,
            loaded,
            resolved,
        }
    }

    /// The RadSec entry a client certificate identifies: by its SHA-256
    /// fingerprint first, else by its subject CN, else by one of its DNS
    /// subject alternative names. `None`: the certificate is valid but no
    /// NAS entry is bound to it.
    pub fn by_certificate(&self, cert: &CertificateNames) -> Option<&NasEntry> {
        if self.radsec.is_empty() {
            return None;
        }
        let by_name = |n: &String| self.radsec.get(&CertIdentity::Name(n.to_ascii_lowercase()));
        self.radsec
            .get(&CertIdentity::Sha256(cert.sha256.clone()))
            .or_else(|| cert.common_name.as_ref().and_then(by_name))
            .or_else(|| cert.dns_names.iter().find_map(by_name))
    }

    /// Whether some entry is a RadSec one.
    pub fn has_radsec(&self) -> bool {
        !self.radsec.is_empty()
    }

    /// Whether some entry has a host name (no allocation: asked per unknown packet).
    pub fn has_host_names(&self) -> bool {
        self.loaded
            .iter()
            .any(|n| matches!(n.dynamic, Some(DynamicAddress::Host(_))))
    }

    /// The host names of the table's entries, to resolve.
    pub fn host_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .loaded
            .iter()
            .filter_map(|n| match &n.dynamic {
                Some(DynamicAddress::Host(h)) => Some(h.clone()),
                _ => None,
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// This table's entries with host names resolved as in `resolved`; a name
    /// that did not resolve this time keeps its previous addresses (a DNS
    /// outage must not cut routers off).
    pub fn re_resolved(&self, mut resolved: Resolved) -> NasTable {
        for (name, ips) in &self.resolved {
            resolved.entry(name.clone()).or_insert_with(|| ips.clone());
        }
        NasTable::resolved(self.loaded.clone(), self.generation, resolved)
    }

    /// Attach each entry to its series in `metrics` (created at zero if new).
    pub fn count_with(mut self, metrics: &Metrics) -> Self {
        for entry in self
            .hosts
            .values_mut()
            .flatten()
            .chain(self.networks.iter_mut())
            .chain(self.any.iter_mut())
            .chain(self.radsec.values_mut())
        {
            entry.counters = Arc::new(metrics.nas_counters(&entry.nas.name));
        }
        self
    }

    /// The entries a packet from `ip` may belong to, before its NAS-Identifier
    /// is read; `None` when no entry covers `ip` (the packet is dropped unread).
    pub fn sources(&self, ip: IpAddr) -> Option<Sources<'_>> {
        let ip = canonical_ip(ip);
        let host = self.hosts.get(&ip).map(Vec::as_slice).unwrap_or(&[]);
        let network = if host.is_empty() {
            match self.networks.iter().position(|n| n.address.contains(ip)) {
                Some(i) => Some(i),
                // Only entries for any source could take it.
                None if !self.any.is_empty() => Some(self.networks.len()),
                None => return None,
            }
        } else {
            None
        };
        Some(Sources {
            table: self,
            ip,
            host,
            network,
        })
    }

    /// The NAS a packet from `ip` carrying NAS-Identifier `identifier` belongs
    /// to (see the module documentation for the rule).
    pub fn lookup(&self, ip: IpAddr, identifier: Option<&[u8]>) -> Option<&NasEntry> {
        self.sources(ip)?.pick(identifier)
    }

    pub fn by_id(&self, id: i64) -> Option<&NasEntry> {
        self.iter().find(|n| n.id == id)
    }

    /// Every entry; one with a host name appears once per resolved address.
    pub fn iter(&self) -> impl Iterator<Item = &NasEntry> {
        self.hosts
            .values()
            .flatten()
            .chain(self.networks.iter())
            .chain(self.any.iter())
            .chain(self.radsec.values())
    }

    /// How many NAS entries were loaded.
    pub fn len(&self) -> usize {
        self.loaded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|n| n.name.as_str())
    }
}

/// What a client certificate says about itself, for [`NasTable::by_certificate`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateNames {
    /// The subject's CN, when it has one that is text.
    pub common_name: Option<String>,
    /// The DNS names among its subject alternative names.
    pub dns_names: Vec<String>,
    /// SHA-256 of the certificate (DER), lowercase hex.
    pub sha256: String,
}

/// The entries whose address covers one source, most specific first.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    table: &'a NasTable,
    ip: IpAddr,
    /// The entries of exactly this address (may be empty).
    host: &'a [NasEntry],
    /// Index of the first (most specific) network covering `ip`, when no
    /// entry has exactly this address; else networks are scanned from 0.
    network: Option<usize>,
}

impl<'a> Sources<'a> {
    /// The one entry a packet from here can belong to whatever it carries, so
    /// that a packet dropped before its NAS-Identifier is read (framing) is
    /// counted under that NAS, and the usual packet is placed without reading
    /// it; `None` when the NAS-Identifier decides. Always what
    /// [`Sources::pick`] would choose when it is `Some`.
    pub fn only(&self) -> Option<&'a NasEntry> {
        match self.host {
            [one] if one.identifier.is_none() => Some(one),
            [] => {
                let n = self.table.networks.get(self.network?)?;
                (n.identifier.is_none()).then_some(n)
            }
            _ => None,
        }
    }

    /// The most specific entry that answers to `identifier`.
    pub fn pick(&self, identifier: Option<&[u8]>) -> Option<&'a NasEntry> {
        if let Some(e) = self.host.iter().find(|e| e.answers_to(identifier)) {
            return Some(e);
        }
        let from = self.network.unwrap_or(0);
        let ip = self.ip;
        self.table.networks[from..]
            .iter()
            .find(|n| n.address.contains(ip) && n.answers_to(identifier))
            .or_else(|| {
                // `nas add` gives every such entry an identifier: None never
                // matches one.
                identifier?;
                self.table.any.iter().find(|n| n.answers_to(identifier))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Secret;

    fn nas(id: i64, name: &str, addr: &str) -> Nas {
        Nas {
            id,
            name: name.into(),
            address: addr.parse().unwrap(),
            secret: Secret::new("s"),
            require_message_authenticator: true,
            coa_port: 3799,
            coa_address: None,
            site: None,
            identifier: None,
            tenant_id: crate::model::DEFAULT_TENANT,
            dynamic: None,
            created_at: 0,
            previous_secret: None,
            previous_secret_until: None,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let t = NasTable::new(
            vec![
                nas(1, "all-10", "10.0.0.0/8"),
                nas(2, "one", "10.1.2.3"),
                nas(3, "sub", "10.1.0.0/16"),
                nas(4, "v6", "2001:db8::1"),
            ],
            1,
        );
        let lookup = |ip: &str| t.lookup(ip.parse().unwrap(), Some(b"MikroTik"));
        assert_eq!(lookup("10.1.2.3").unwrap().name, "one");
        assert_eq!(lookup("10.1.9.9").unwrap().name, "sub");
        assert_eq!(lookup("10.9.9.9").unwrap().name, "all-10");
        assert_eq!(lookup("::ffff:10.1.2.3").unwrap().name, "one");
        assert_eq!(lookup("2001:db8::1").unwrap().name, "v6");
        assert!(lookup("192.0.2.1").is_none());
        assert!(t.sources("192.0.2.1".parse().unwrap()).is_none());
        assert_eq!(t.len(), 4);
        assert_eq!(t.by_id(3).unwrap().name, "sub");
    }

    fn identified(id: i64, name: &str, addr: &str, identifier: &str) -> Nas {
        Nas {
            identifier: Some(identifier.into()),
            ..nas(id, name, addr)
        }
    }

    #[test]
    fn shared_address_is_told_apart_by_nas_identifier() {
        let t = NasTable::new(
            vec![
                identified(1, "north", "192.0.2.1", "north-gw"),
                identified(2, "south", "192.0.2.1", "south-gw"),
                identified(3, "vpn-a", "10.8.0.0/24", "a"),
                nas(4, "vpn-rest", "10.8.0.0/16"),
                nas(5, "alone", "192.0.2.9"),
            ],
            1,
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let name = |s: &str, id: Option<&[u8]>| t.lookup(ip(s), id).map(|e| e.name.clone());
        assert_eq!(
            name("192.0.2.1", Some(b"north-gw")).as_deref(),
            Some("north")
        );
        assert_eq!(
            name("192.0.2.1", Some(b"south-gw")).as_deref(),
            Some("south")
        );
        // Exact bytes: neither case nor a missing identifier matches.
        assert_eq!(name("192.0.2.1", Some(b"North-gw")), None);
        assert_eq!(name("192.0.2.1", None), None);
        // A shared address names no NAS before its identifier is read.
        assert!(t.sources(ip("192.0.2.1")).unwrap().only().is_none());
        // A network: its identified entry, else a less specific one.
        assert_eq!(name("10.8.0.7", Some(b"a")).as_deref(), Some("vpn-a"));
        assert_eq!(name("10.8.0.7", Some(b"b")).as_deref(), Some("vpn-rest"));
        assert_eq!(name("10.8.1.7", None).as_deref(), Some("vpn-rest"));
        // One entry without identifier takes every packet from its address.
        assert_eq!(name("192.0.2.9", None).as_deref(), Some("alone"));
        assert_eq!(name("192.0.2.9", Some(b"x")).as_deref(), Some("alone"));
        assert_eq!(
            t.sources(ip("192.0.2.9")).unwrap().only().unwrap().name,
            "alone"
        );
        // `only` agrees with `pick` wherever it answers.
        for addr in ["192.0.2.1", "192.0.2.9", "10.8.0.7", "10.8.1.7"] {
            let src = t.sources(ip(addr)).unwrap();
            if let Some(one) = src.only() {
                for id in [None, Some(&b"a"[..]), Some(b"north-gw")] {
                    assert_eq!(src.pick(id).unwrap().name, one.name, "{addr}");
                }
            }
        }
        assert_eq!(t.len(), 5);
        assert_eq!(t.by_id(2).unwrap().name, "south");
    }

    #[test]
    fn radsec_entries_are_found_by_certificate_only() {
        let mut by_cn = nas(1, "cafe", "0.0.0.0/0");
        by_cn.dynamic = Some(DynamicAddress::RadSec(CertIdentity::name("Cafe").unwrap()));
        let mut by_fp = nas(2, "pinned", "0.0.0.0/0");
        let fp = "0f".repeat(32);
        by_fp.dynamic = Some(DynamicAddress::RadSec(CertIdentity::sha256(&fp).unwrap()));
        let t = NasTable::new(vec![by_cn, by_fp, nas(3, "udp", "192.0.2.9")], 1);
        let cert = |cn: Option<&str>, dns: &[&str], sha: &str| CertificateNames {
            common_name: cn.map(String::from),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            sha256: sha.into(),
        };
        let name = |c: &CertificateNames| t.by_certificate(c).map(|e| e.name.clone());
        assert_eq!(
            name(&cert(Some("CAFE"), &[], "00")).as_deref(),
            Some("cafe")
        );
        assert_eq!(
            name(&cert(None, &["x", "cafe"], "00")).as_deref(),
            Some("cafe")
        );
        // The fingerprint wins over the names.
        assert_eq!(
            name(&cert(Some("cafe"), &[], &fp)).as_deref(),
            Some("pinned")
        );
        assert_eq!(name(&cert(Some("other"), &["udp"], "00")), None);
        // No address matches a RadSec entry, not even the placeholder network.
        assert!(t.sources("203.0.113.1".parse().unwrap()).is_none());
        assert!(t.has_radsec());
        assert_eq!(t.len(), 3);
        assert_eq!(t.by_id(2).unwrap().name, "pinned");
    }

    #[test]
    fn host_names_and_any_source() {
        let mut ddns = nas(1, "ddns", "0.0.0.0/0");
        ddns.dynamic = Some(DynamicAddress::Host("r1.example".into()));
        let mut roaming = identified(2, "roaming", "0.0.0.0/0", "roamer");
        roaming.dynamic = Some(DynamicAddress::Any);
        let fixed = nas(3, "fixed", "192.0.2.9");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let t = NasTable::new(vec![ddns, roaming, fixed], 1);
        assert_eq!(t.host_names(), vec!["r1.example".to_string()]);
        // Not resolved yet: the name matches nothing.
        assert!(t.lookup(ip("198.51.100.1"), None).is_none());
        let mut r = Resolved::new();
        r.insert("r1.example".into(), vec![ip("198.51.100.1")]);
        let t = t.re_resolved(r);
        assert_eq!(t.lookup(ip("198.51.100.1"), None).unwrap().name, "ddns");
        // Any source, by identifier only; never without one.
        assert_eq!(
            t.lookup(ip("203.0.113.5"), Some(b"roamer")).unwrap().name,
            "roaming"
        );
        assert!(t.lookup(ip("203.0.113.5"), Some(b"other")).is_none());
        assert!(t.lookup(ip("203.0.113.5"), None).is_none());
        assert!(t.sources(ip("203.0.113.5")).unwrap().only().is_none());
        // A fixed address is still itself.
        assert_eq!(t.lookup(ip("192.0.2.9"), None).unwrap().name, "fixed");
        // A failed resolution keeps the previous address.
        let t = t.re_resolved(Resolved::new());
        assert_eq!(t.lookup(ip("198.51.100.1"), None).unwrap().name, "ddns");
        // A new one moves it.
        let mut r = Resolved::new();
        r.insert("r1.example".into(), vec![ip("198.51.100.2")]);
        let t = t.re_resolved(r);
        assert!(t.lookup(ip("198.51.100.1"), None).is_none());
        assert_eq!(t.lookup(ip("198.51.100.2"), None).unwrap().name, "ddns");
        assert_eq!(t.len(), 3);
    }
}
