//! The NAS table in memory: source address → NAS, longest prefix wins.
//! Reloaded from storage when `nas_generation` changes; never queried per packet.

use std::net::IpAddr;
use std::sync::Arc;

use crate::model::{canonical_ip, Nas};

#[derive(Debug, Default)]
pub struct NasTable {
    /// Sorted by prefix length, longest first, so the first match is the most specific.
    entries: Vec<Arc<Nas>>,
    /// Storage generation this table was loaded at.
    pub generation: i64,
}

impl NasTable {
    pub fn new(mut nas: Vec<Nas>, generation: i64) -> Self {
        nas.sort_by_key(|n| std::cmp::Reverse(n.address.prefix));
        NasTable {
            entries: nas.into_iter().map(Arc::new).collect(),
            generation,
        }
    }

    /// The most specific NAS whose address or network contains `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<Nas>> {
        let ip = canonical_ip(ip);
        self.entries.iter().find(|n| n.address.contains(ip))
    }

    pub fn by_id(&self, id: i64) -> Option<&Arc<Nas>> {
        self.entries.iter().find(|n| n.id == id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|n| n.name.as_str())
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
            site: None,
            created_at: 0,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let t = NasTable::new(
            vec![
                nas(1, "all-10", "10.0.0.0/8"),
                nas(2, "one", "10.1.2.3"),
                nas(3, "sub", "10.1.0.0/16"),
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
        assert!(t.lookup("192.0.2.1".parse().unwrap()).is_none());
    }
}
