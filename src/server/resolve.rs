//! Resolving the host names of NAS entries (`--address HOST`, e.g. a MikroTik
//! IP Cloud DDNS name): at start, every `nas_resolve_interval`, and — rate
//! limited — when a packet arrives from an unknown source (the router's
//! address may just have changed).
//!
//! Names are resolved by the system resolver (`getaddrinfo`, so `/etc/hosts`
//! and the configured DNS servers), except those listed in the hosts-format
//! file named by `RRNET_HOSTS_FILE`, when that variable is set: lines of
//! `ADDRESS NAME [NAME…]`, `#` comments. The file is read again at every
//! resolution, so rewriting it moves a router at once; it is how tests move a
//! router without DNS, and lets an operator pin a name without touching
//! `/etc/hosts`. It only adds answers for names it lists.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// The environment variable naming an extra hosts-format file.
pub const HOSTS_FILE_ENV: &str = "RRNET_HOSTS_FILE";

/// How long one name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Addresses of each name that resolved; a name that failed is absent.
pub type Resolved = HashMap<String, Vec<IpAddr>>;

/// Resolve `names` (lower case, as stored).
pub async fn resolve(names: &[String]) -> Resolved {
    let pinned = match std::env::var_os(HOSTS_FILE_ENV) {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => parse_hosts(&text),
            Err(e) => {
                tracing::warn!(file = %path.to_string_lossy(), error = %e, "cannot read the NAS hosts file");
                HashMap::new()
            }
        },
        None => HashMap::new(),
    };
    let mut out = Resolved::new();
    // Names are resolved concurrently: a fleet of DDNS routers must not wait
    // for one slow answer after another (lookup_host runs on tokio's blocking
    // pool, which bounds the threads).
    let mut lookups = tokio::task::JoinSet::new();
    for name in names {
        if let Some(ips) = pinned.get(name) {
            out.insert(name.clone(), ips.clone());
            continue;
        }
        let name = name.clone();
        lookups.spawn(async move {
            let lookup = async {
                tokio::net::lookup_host((name.as_str(), 0))
                    .await
                    .map(|addrs| {
                        addrs
                            .map(|a| crate::model::canonical_ip(a.ip()))
                            .collect::<Vec<IpAddr>>()
                    })
            };
            let result = tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await;
            (name, result)
        });
    }
    while let Some(done) = lookups.join_next().await {
        let Ok((name, result)) = done else { continue };
        match result {
            Ok(Ok(mut ips)) => {
                ips.sort_unstable();
                ips.dedup();
                if !ips.is_empty() {
                    out.insert(name, ips);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(host = name.as_str(), error = %e, "NAS host name does not resolve")
            }
            Err(_) => tracing::warn!(host = name.as_str(), "NAS host name: resolution timed out"),
        }
    }
    out
}

/// `ADDRESS NAME [NAME…]` lines; names lower-cased, later lines add addresses.
fn parse_hosts(text: &str) -> Resolved {
    let mut out = Resolved::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        for name in words {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let ips = out.entry(name).or_default();
            if !ips.contains(&ip) {
                ips.push(crate::model::canonical_ip(ip));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_lines() {
        let r = parse_hosts(
            "# routers\n127.0.0.3 Router.Test. other.test\n\nnot-an-ip x.test\n::1 router.test # v6\n",
        );
        assert_eq!(
            r["router.test"],
            vec![
                "127.0.0.3".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(r["other.test"].len(), 1);
        assert!(!r.contains_key("x.test"));
    }

    #[tokio::test]
    async fn localhost_resolves_without_the_network() {
        let r = resolve(&["localhost".to_string()]).await;
        assert!(r["localhost"].iter().any(|ip| ip.is_loopback()), "{r:?}");
    }
}
