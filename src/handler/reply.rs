//! Decisions into RADIUS reply packets, signed with the secret the request was
//! made with. Every Access-Accept/Reject and Status-Server reply carries
//! Message-Authenticator as its first attribute (RFC 3579 §3.2; RouterOS 7.15+
//! drops replies without it). No I/O here.

use crate::policy::{AccessDecision, ReplyAttribute};
use crate::proto::{attr, Code, MacKey, Packet, PacketBuilder, RequestEcho};

/// Encode one reply attribute. Values come from plans the operator wrote; an
/// over-long string is cut rather than failing the whole reply. `false` when
/// the packet had no room left for it.
fn add_reply_attribute(b: &mut PacketBuilder, a: &ReplyAttribute) -> bool {
    use crate::proto::attr::mikrotik as mt;
    fn cut(s: &str, max: usize) -> &[u8] {
        &s.as_bytes()[..s.len().min(max)]
    }
    let added = match a {
        ReplyAttribute::SessionTimeout(v) => b.add_u32(attr::SESSION_TIMEOUT, *v),
        ReplyAttribute::IdleTimeout(v) => b.add_u32(attr::IDLE_TIMEOUT, *v),
        ReplyAttribute::AcctInterimInterval(v) => b.add_u32(attr::ACCT_INTERIM_INTERVAL, *v),
        ReplyAttribute::Class(s) => b.add(attr::CLASS, cut(s, 253)),
        ReplyAttribute::MikrotikRateLimit(s) => {
            b.add_vsa(mt::VENDOR_ID, mt::RATE_LIMIT, cut(s, 247))
        }
        ReplyAttribute::MikrotikTotalLimit(v) => b.add_vsa_u32(mt::VENDOR_ID, mt::TOTAL_LIMIT, *v),
        ReplyAttribute::MikrotikTotalLimitGigawords(v) => {
            b.add_vsa_u32(mt::VENDOR_ID, mt::TOTAL_LIMIT_GIGAWORDS, *v)
        }
        ReplyAttribute::MikrotikGroup(s) => b.add_vsa(mt::VENDOR_ID, mt::GROUP, cut(s, 247)),
        ReplyAttribute::MikrotikAddressList(s) => {
            b.add_vsa(mt::VENDOR_ID, mt::ADDRESS_LIST, cut(s, 247))
        }
    };
    added.is_ok()
}

/// An Access reply that could not carry everything it must: the request's
/// Proxy-State copies left no room. The request gets no reply.
#[derive(Debug)]
pub struct ReplyTooLong {
    /// The buffer, for reuse.
    pub buf: Vec<u8>,
}

/// Access-Accept or Access-Reject for `request`, Message-Authenticator first.
/// Never an Access-Accept without one of its attributes (a lost limit would be
/// a gift) nor a Reject without its Reply-Message: [`ReplyTooLong`] instead.
pub fn access_reply(
    buf: Vec<u8>,
    request: &RequestEcho,
    decision: &AccessDecision,
    secret: &[u8],
    key: &MacKey,
) -> Result<Vec<u8>, ReplyTooLong> {
    let code = match decision {
        AccessDecision::Accept(_) => Code::AccessAccept,
        AccessDecision::Reject(_) => Code::AccessReject,
    };
    let mut b = PacketBuilder::reply_to(buf, request, code);
    let complete = match decision {
        AccessDecision::Accept(grant) => grant.reply.iter().all(|a| add_reply_attribute(&mut b, a)),
        AccessDecision::Reject(reason) => b.add_str(attr::REPLY_MESSAGE, reason.message()).is_ok(),
    };
    let packet = b.finish_response_keyed(request.authenticator(), secret, key);
    if complete {
        Ok(packet)
    } else {
        Err(ReplyTooLong { buf: packet })
    }
}

/// Reply to Status-Server (RFC 5997 §3): Access-Accept on the authentication
/// port, Accounting-Response on the accounting port.
pub fn status_reply(
    buf: Vec<u8>,
    request: &Packet<'_>,
    accounting: bool,
    secret: &[u8],
    key: &MacKey,
) -> Vec<u8> {
    let code = if accounting {
        Code::AccountingResponse
    } else {
        Code::AccessAccept
    };
    PacketBuilder::reply(buf, request, code).finish_response_keyed(
        request.authenticator(),
        secret,
        key,
    )
}

/// Accounting-Response (RFC 2866 §4.2). No Message-Authenticator: RFC 2866 has
/// none, FreeRADIUS would compute it over a zero vector and RFC 5176 §3.4 over the
/// request's, so leaving it out is the only choice every client verifies.
pub fn accounting_reply(buf: Vec<u8>, request: &RequestEcho, secret: &[u8]) -> Vec<u8> {
    PacketBuilder::reply_plain_to(buf, request, Code::AccountingResponse)
        .finish_response(request.authenticator(), secret)
}
