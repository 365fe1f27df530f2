//! Ending and changing sessions on the router: Disconnect-Request and
//! CoA-Request (RFC 5176), sent by the server when a voucher ends — revoked,
//! quota used up — or changes (a plan edited, a voucher moved, fair use).
//!
//! - `packet.rs` builds the requests and checks the answers with the codec in
//!   [`crate::proto`] (no second codec): Request Authenticator as for
//!   Accounting-Request (RFC 5176 §2.3), Message-Authenticator on every request
//!   (§3.4), Response Authenticator and Message-Authenticator of the answer
//!   verified in constant time, Error-Cause read and named (§3.5). Pure.
//! - `client.rs` sends one request and waits for its answer: retransmission
//!   after 1, 2 and 4 s (the same packet each time), an Identifier space per
//!   CoA address, a bound on requests in flight. A datagram that is not the
//!   answer (forged, malformed, another Identifier) is counted and ignored.
//! - `worker.rs` is the server's side: it polls the `coa_requests` table,
//!   which the CLI and the server write in the same transaction as the change
//!   that calls for a request, sends them and records each outcome on the
//!   session (`session list`), in a metric and in one log line.
//!
//! Where a request goes: the NAS's `coa_address` when set, else its address
//! when that is one host, else the address of the session's router when the
//! entry is a network and that address lies in it ([`session_router`]), else the
//! source of the NAS's latest authenticated packet ([`LastSources`]), on its
//! `coa_port`.

mod client;
mod metrics;
mod packet;
mod worker;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

pub use client::{CoaClient, Exchange, Outcome, DEFAULT_MAX_IN_FLIGHT, DEFAULT_SCHEDULE};
pub use metrics::CoaMetrics;
pub use packet::{
    build_request, error_cause_name, read_answer, BadAnswer, BuildRequestError, CoaAnswer, CoaKind,
    SessionIdent, ERROR_CAUSE,
};
pub use worker::{CoaWorker, POLL_INTERVAL};

use crate::model::{Nas, Session};

/// The source address of each NAS's latest authenticated request (Access- or
/// Accounting-Request, noted by the request handler), for NAS
/// entries that are a network (a CIDR) and have no `coa_address`: the only way
/// to know which router of the network holds a session. One entry per such
/// NAS (bounded by the NAS table). std Mutex: never held across an await.
#[derive(Default, Debug)]
pub struct LastSources(Mutex<HashMap<i64, IpAddr>>);

impl LastSources {
    /// Note that `nas` sent an authenticated request from `source`.
    pub fn note(&self, nas: &Nas, source: IpAddr) {
        if nas.coa_address.is_some() || nas.address.addr.is_ipv4() && nas.address.prefix == 32 {
            return;
        }
        if nas.address.addr.is_ipv6() && nas.address.prefix == 128 {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(nas.id, crate::model::canonical_ip(source));
    }

    pub fn get(&self, nas_id: i64) -> Option<IpAddr> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&nas_id).copied()
    }
}

/// Where CoA/Disconnect requests for `nas` go: its `coa_address`, else its
/// address when it is one host, else `last_source`. `None`: nowhere known.
pub fn coa_target(nas: &Nas, last_source: Option<IpAddr>) -> Option<SocketAddr> {
    let single = match nas.address.addr {
        IpAddr::V4(_) => nas.address.prefix == 32,
        IpAddr::V6(_) => nas.address.prefix == 128,
    };
    let ip = nas
        .coa_address
        .or(single.then_some(nas.address.addr))
        .or(last_source)?;
    Some(SocketAddr::new(ip, nas.coa_port))
}

/// The address of the router `session` is on, when `nas` is a network entry
/// and the address its router key names lies in that network. The key is built
/// from the NAS-Identifier a router sends, which may itself contain `@…`: only
/// an address inside the entry's own network is believed, so a router cannot
/// steer CoA requests anywhere else.
pub fn session_router(nas: &Nas, session: &Session) -> Option<IpAddr> {
    if nas.dynamic.is_some() || nas.address.is_host() {
        return None;
    }
    session
        .router_address()
        .filter(|ip| nas.address.contains(*ip))
}

/// The identifying attributes of a stored session.
pub fn session_ident(s: &Session) -> SessionIdent {
    SessionIdent {
        username: s.username.clone(),
        acct_session_id: s.acct_session_id.clone(),
        framed_ip: s.framed_ip.as_deref().and_then(|ip| ip.parse().ok()),
        mac: s.mac.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Secret;

    fn nas(address: &str, coa_address: Option<&str>) -> Nas {
        Nas {
            id: 1,
            name: "n".into(),
            address: address.parse().unwrap(),
            secret: Secret::new("s"),
            require_message_authenticator: true,
            coa_port: 3799,
            coa_address: coa_address.map(|a| a.parse().unwrap()),
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
    fn session_router_is_believed_only_inside_the_network() {
        let session = |router: &str| Session {
            id: 1,
            nas_id: 1,
            nas_name: "n".into(),
            acct_session_id: "81000001".into(),
            username: "u".into(),
            voucher_id: None,
            mac: None,
            framed_ip: None,
            state: crate::model::SessionState::Open,
            authorized_at: None,
            started_at: None,
            updated_at: 0,
            stopped_at: None,
            session_time: 0,
            input_octets: 0,
            output_octets: 0,
            terminate_cause: None,
            interim_interval: None,
            disconnect_requested_at: None,
            coa_result: None,
            router: router.into(),
        };
        let net = nas("10.8.0.0/24", None);
        assert_eq!(
            session_router(&net, &session("MikroTik@10.8.0.7")),
            Some("10.8.0.7".parse().unwrap())
        );
        // An identity that names an address outside the network is not believed.
        assert_eq!(
            session_router(&net, &session("x@192.0.2.66@10.8.0.7")),
            Some("10.8.0.7".parse().unwrap())
        );
        assert_eq!(session_router(&net, &session("MikroTik@192.0.2.66")), None);
        // A single-host entry's router key is its identity alone.
        assert_eq!(
            session_router(&nas("192.0.2.1", None), &session("gw@198.51.100.9")),
            None
        );
        assert_eq!(session_router(&net, &session("")), None);
    }

    #[test]
    fn targets() {
        let seen: Option<IpAddr> = Some("10.8.0.9".parse().unwrap());
        assert_eq!(
            coa_target(&nas("192.0.2.1", None), seen),
            Some("192.0.2.1:3799".parse().unwrap())
        );
        assert_eq!(
            coa_target(&nas("10.8.0.0/24", None), seen),
            Some("10.8.0.9:3799".parse().unwrap())
        );
        assert_eq!(coa_target(&nas("10.8.0.0/24", None), None), None);
        assert_eq!(
            coa_target(&nas("10.8.0.0/24", Some("10.8.0.1")), seen),
            Some("10.8.0.1:3799".parse().unwrap())
        );
        let sources = LastSources::default();
        sources.note(&nas("192.0.2.1", None), "192.0.2.1".parse().unwrap());
        assert_eq!(sources.get(1), None, "a single host needs no note");
        sources.note(
            &nas("10.8.0.0/24", None),
            "::ffff:10.8.0.7".parse().unwrap(),
        );
        assert_eq!(sources.get(1), Some("10.8.0.7".parse().unwrap()));
    }
}
