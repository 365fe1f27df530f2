//! What a reply needs from its request, kept once the request's bytes are gone.
//!
//! A reply carries the request's Identifier (RFC 2865 §3), is signed with its
//! Request Authenticator (§3, RFC 3579 §3.2) and repeats its Proxy-State
//! attributes in order (§5.33). The server decides a request after the datagram
//! buffer has been reused, so it keeps these — taken from the one decode of the
//! request — rather than a copy of the request to decode again.

use super::attr;
use super::packet::Packet;

/// The parts of a request its reply is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestEcho {
    identifier: u8,
    authenticator: [u8; 16],
    /// The request's Proxy-State attributes, whole (type, length, value), in
    /// order. Empty — and not allocated — for the usual request from a NAS,
    /// which carries none: only proxies add them.
    proxy_state: Vec<u8>,
}

impl RequestEcho {
    /// Take what the reply to `request` needs.
    pub fn of(request: &Packet<'_>) -> Self {
        let mut proxy_state = Vec::new();
        for a in request.attributes().filter(|a| a.typ == attr::PROXY_STATE) {
            // A value is at most 253 bytes (the attribute decoded), so the length fits.
            proxy_state.extend_from_slice(&[attr::PROXY_STATE, (a.value.len() + 2) as u8]);
            proxy_state.extend_from_slice(a.value);
        }
        RequestEcho {
            identifier: request.identifier(),
            authenticator: *request.authenticator(),
            proxy_state,
        }
    }

    pub fn identifier(&self) -> u8 {
        self.identifier
    }

    pub fn authenticator(&self) -> &[u8; 16] {
        &self.authenticator
    }

    /// The values of the request's Proxy-State attributes, in order.
    pub fn proxy_states(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest = self.proxy_state.as_slice();
        std::iter::from_fn(move || {
            // Written by `of`: every length is the whole attribute's, at least 2.
            let len = usize::from(*rest.get(1)?);
            let (attribute, next) = rest.split_at(len);
            rest = next;
            Some(&attribute[2..])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Code, PacketBuilder};

    fn request(proxy_states: &[&[u8]]) -> Vec<u8> {
        let mut b = PacketBuilder::new(Code::AccessRequest, 42);
        b.add_str(attr::USER_NAME, "bob").unwrap();
        for v in proxy_states {
            b.add(attr::PROXY_STATE, v).unwrap();
            b.add_u32(attr::NAS_PORT, 7).unwrap();
        }
        b.finish_access_request(&[9; 16], b"secret")
    }

    #[test]
    fn replies_from_the_echo_equal_replies_from_the_request() {
        for states in [&[][..], &[&b"a"[..]], &[&b"first"[..], &[0u8; 253][..]]] {
            let bytes = request(states);
            let packet = Packet::decode(&bytes).unwrap();
            let echo = RequestEcho::of(&packet);
            assert_eq!(echo.identifier(), 42);
            assert_eq!(echo.authenticator(), &[9; 16]);
            assert_eq!(echo.proxy_states().collect::<Vec<_>>(), states);
            let direct = PacketBuilder::reply(Vec::new(), &packet, Code::AccessAccept)
                .finish_response(packet.authenticator(), b"secret");
            let echoed = PacketBuilder::reply_to(Vec::new(), &echo, Code::AccessAccept)
                .finish_response(echo.authenticator(), b"secret");
            assert_eq!(direct, echoed);
            let direct = PacketBuilder::reply_plain(Vec::new(), &packet, Code::AccountingResponse)
                .finish_response(packet.authenticator(), b"secret");
            let echoed = PacketBuilder::reply_plain_to(Vec::new(), &echo, Code::AccountingResponse)
                .finish_response(echo.authenticator(), b"secret");
            assert_eq!(direct, echoed);
        }
    }
}
