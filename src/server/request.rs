//! Turning an authenticated packet into wire-neutral facts, and decisions back
//! into reply packets. No I/O here.

use crate::model::normalize_mac;
use crate::policy::{
    acct_status, chap_credential, terminate_cause_name, AccessDecision, AccessFacts, Credential,
    ReplyAttribute,
};
use crate::proto::{attr, unhide_password, Code, MacKey, Packet, PacketBuilder, RequestEcho};
use crate::store::{AcctRecord, AcctStatus};

use super::drop_reason::DropReason;

/// The credential an Access-Request carries. A User-Password whose value is
/// malformed is treated as absent (RFC 6929 §2.8).
pub fn credential(p: &Packet<'_>, secret: &[u8]) -> Credential {
    if let Some(hidden) = p.attr(attr::USER_PASSWORD) {
        return match unhide_password(hidden, secret, p.authenticator()) {
            Ok(pw) => Credential::Pap(pw.as_bytes().to_vec()),
            Err(_) => Credential::Missing,
        };
    }
    if let Some(chap) = p.attr(attr::CHAP_PASSWORD) {
        // RFC 2865 §2.2: without CHAP-Challenge the Request Authenticator is the challenge.
        let challenge = p
            .attr(attr::CHAP_CHALLENGE)
            .unwrap_or(&p.authenticator()[..]);
        return chap_credential(chap, challenge);
    }
    Credential::Missing
}

fn text(p: &Packet<'_>, typ: u8) -> Option<String> {
    p.attr_str(typ).ok().flatten().map(str::to_owned)
}

fn mac(p: &Packet<'_>) -> Option<String> {
    p.attr_str(attr::CALLING_STATION_ID)
        .ok()
        .flatten()
        .and_then(normalize_mac)
}

fn framed_ip(p: &Packet<'_>) -> Option<String> {
    p.attr_ipv4(attr::FRAMED_IP_ADDRESS)
        .ok()
        .flatten()
        .map(|ip| ip.to_string())
}

/// Facts of an Access-Request from a known, authenticated NAS.
/// `secret` is the one the request was verified with (it un-hides User-Password).
pub fn access_facts(
    p: &Packet<'_>,
    nas: &crate::model::Nas,
    secret: &[u8],
) -> Result<AccessFacts, DropReason> {
    let username = match p.attr_str(attr::USER_NAME) {
        Ok(Some(u)) if !u.is_empty() => u.to_owned(),
        _ => return Err(DropReason::MissingUserName),
    };
    Ok(AccessFacts {
        nas_id: nas.id,
        nas_name: nas.name.clone(),
        nas_site: nas.site.clone(),
        username,
        credential: credential(p, secret),
        mac: mac(p),
        acct_session_id: text(p, attr::ACCT_SESSION_ID).filter(|s| !s.is_empty()),
        framed_ip: framed_ip(p),
    })
}

/// Reasons an Accounting-Request cannot be stored; it is dropped and counted.
pub fn acct_record(
    p: &Packet<'_>,
    nas_id: i64,
    received_at: i64,
) -> Result<AcctRecord, &'static str> {
    let status = match p.attr_u32(attr::ACCT_STATUS_TYPE) {
        Ok(Some(v)) => acct_status(v).ok_or("unsupported Acct-Status-Type")?,
        _ => return Err("missing or malformed Acct-Status-Type"),
    };
    let acct_session_id = text(p, attr::ACCT_SESSION_ID).unwrap_or_default();
    if acct_session_id.is_empty()
        && !matches!(status, AcctStatus::AccountingOn | AcctStatus::AccountingOff)
    {
        return Err("missing Acct-Session-Id");
    }
    let u32_or_0 = |t| p.attr_u32(t).ok().flatten().unwrap_or(0);
    let octets = |low, high| u64::from(u32_or_0(high)) << 32 | u64::from(u32_or_0(low));
    let terminate_cause = p
        .attr_u32(attr::ACCT_TERMINATE_CAUSE)
        .ok()
        .flatten()
        .map(terminate_cause_name);
    Ok(AcctRecord {
        nas_id,
        status,
        acct_session_id,
        username: text(p, attr::USER_NAME).unwrap_or_default(),
        mac: mac(p),
        framed_ip: framed_ip(p),
        session_time: u64::from(u32_or_0(attr::ACCT_SESSION_TIME)),
        input_octets: octets(attr::ACCT_INPUT_OCTETS, attr::ACCT_INPUT_GIGAWORDS),
        output_octets: octets(attr::ACCT_OUTPUT_OCTETS, attr::ACCT_OUTPUT_GIGAWORDS),
        terminate_cause,
        class_voucher_id: p
            .attr(attr::CLASS)
            .and_then(crate::policy::voucher_id_from_class),
        received_at,
    })
}

/// Encode one reply attribute. Values come from plans the operator wrote; an
/// over-long string is cut rather than failing the whole reply.
fn add_reply_attribute(b: &mut PacketBuilder, a: &ReplyAttribute) {
    use crate::proto::attr::mikrotik as mt;
    fn cut(s: &str, max: usize) -> &[u8] {
        &s.as_bytes()[..s.len().min(max)]
    }
    let _ = match a {
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
}

/// Access-Accept or Access-Reject for `request`, Message-Authenticator first.
pub fn access_reply(
    buf: Vec<u8>,
    request: &RequestEcho,
    decision: &AccessDecision,
    secret: &[u8],
    key: &MacKey,
) -> Vec<u8> {
    let code = match decision {
        AccessDecision::Accept(_) => Code::AccessAccept,
        AccessDecision::Reject(_) => Code::AccessReject,
    };
    let mut b = PacketBuilder::reply_to(buf, request, code);
    match decision {
        AccessDecision::Accept(grant) => {
            for a in &grant.reply {
                add_reply_attribute(&mut b, a);
            }
        }
        AccessDecision::Reject(reason) => {
            let _ = b.add_str(attr::REPLY_MESSAGE, reason.message());
        }
    }
    b.finish_response_keyed(request.authenticator(), secret, key)
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

/// RFC 2866 §5.5 suggests an 8-hex-digit Acct-Session-Id whose first two digits
/// count reboots (RouterOS follows it). Returns that reboot counter.
pub fn boot_prefix(acct_session_id: &str) -> Option<&str> {
    if acct_session_id.len() == 8 && acct_session_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(&acct_session_id[..2])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_prefixes() {
        assert_eq!(boot_prefix("81a00005"), Some("81"));
        assert_eq!(boot_prefix("81A0000Z"), None);
        assert_eq!(boot_prefix("81a0000"), None);
        assert_eq!(boot_prefix("auth-123"), None);
    }
}
