//! The NAS table in memory: source address → NAS, longest prefix wins.
//! Reloaded from storage when `nas_generation` changes; never queried per packet.
//!
//! Single-address entries (the common case: one router, one address) sit in a
//! hash map, so a fleet of thousands of routers costs one lookup per packet;
//! network entries (VPN subnets) are scanned, most specific first, only when no
//! single-address entry matches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::handler::Signer;
use crate::metrics::{Metrics, NasCounters};
use crate::model::{canonical_ip, Nas, Secret};
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

#[derive(Debug, Default)]
pub struct NasTable {
    /// Entries that are one address (/32, /128).
    hosts: HashMap<IpAddr, NasEntry>,
    /// Network entries, longest prefix first.
    networks: Vec<NasEntry>,
    /// Storage generation this table was loaded at.
    pub generation: i64,
}

fn is_host(nas: &Nas) -> bool {
    nas.address.prefix == if nas.address.addr.is_ipv4() { 32 } else { 128 }
}

impl NasTable {
    pub fn new(nas: Vec<Nas>, generation: i64) -> Self {
        let mut hosts = HashMap::new();
        let mut networks = Vec::new();
        for n in nas {
            if is_host(&n) {
                hosts.insert(n.address.addr, NasEntry::new(n));
            } else {
                networks.push(NasEntry::new(n));
            }
        }
        networks.sort_by_key(|n| std::cmp::Reverse(n.address.prefix));
        NasTable {
            hosts,
            networks,
            generation,
        }
    }

    /// Attach each entry to its series in `metrics` (created at zero if new).
    pub fn count_with(mut self, metrics: &Metrics) -> Self {
        for entry in self.hosts.values_mut().chain(self.networks.iter_mut()) {
            entry.counters = Arc::new(metrics.nas_counters(&entry.nas.name));
        }
        self
    }

    /// The most specific NAS whose address or network contains `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&NasEntry> {
        let ip = canonical_ip(ip);
        self.hosts
            .get(&ip)
            .or_else(|| self.networks.iter().find(|n| n.address.contains(ip)))
    }

    pub fn by_id(&self, id: i64) -> Option<&NasEntry> {
        self.iter().find(|n| n.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &NasEntry> {
        self.hosts.values().chain(self.networks.iter())
    }

    pub fn len(&self) -> usize {
        self.hosts.len() + self.networks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|n| n.name.as_str())
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
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()).unwrap().name, "one");
        assert_eq!(t.lookup("10.1.9.9".parse().unwrap()).unwrap().name, "sub");
        assert_eq!(
            t.lookup("10.9.9.9".parse().unwrap()).unwrap().name,
            "all-10"
        );
        assert_eq!(
            t.lookup("::ffff:10.1.2.3".parse().unwrap()).unwrap().name,
            "one"
        );
        assert_eq!(t.lookup("2001:db8::1".parse().unwrap()).unwrap().name, "v6");
        assert!(t.lookup("192.0.2.1".parse().unwrap()).is_none());
        assert_eq!(t.len(), 4);
        assert_eq!(t.by_id(3).unwrap().name, "sub");
    }
}
