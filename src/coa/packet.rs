//! Disconnect-Request and CoA-Request packets and the answers to them
//! (RFC 5176), built and checked with the codec in [`crate::proto`]. Pure: no
//! sockets, no clock.

use std::net::Ipv4Addr;

use crate::policy::ReplyAttribute;
use crate::proto::{attr, verify_response, Code, Packet, PacketBuilder, ResponseError};

/// Error-Cause (RFC 5176 §3.5).
pub const ERROR_CAUSE: u8 = 101;

/// Which request: end the session, or change it in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoaKind {
    /// Disconnect-Request (RFC 5176 §2.1): the NAS ends the session.
    Disconnect,
    /// CoA-Request (RFC 5176 §2.2): the NAS applies new attributes to the session.
    Coa,
}

impl CoaKind {
    /// Label for metrics, logs and the queue table.
    pub fn label(self) -> &'static str {
        match self {
            CoaKind::Disconnect => "disconnect",
            CoaKind::Coa => "coa",
        }
    }

    pub fn parse(s: &str) -> Option<CoaKind> {
        match s {
            "disconnect" => Some(CoaKind::Disconnect),
            "coa" => Some(CoaKind::Coa),
            _ => None,
        }
    }

    fn request_code(self) -> Code {
        match self {
            CoaKind::Disconnect => Code::DisconnectRequest,
            CoaKind::Coa => Code::CoaRequest,
        }
    }

    fn answer_codes(self) -> (Code, Code) {
        match self {
            CoaKind::Disconnect => (Code::DisconnectAck, Code::DisconnectNak),
            CoaKind::Coa => (Code::CoaAck, Code::CoaNak),
        }
    }
}

/// The attributes that identify a session to the NAS (RFC 5176 §3). RouterOS
/// looks a hotspot session up by User-Name, Acct-Session-Id and
/// Framed-IP-Address; Calling-Station-Id narrows it to the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionIdent {
    pub username: String,
    pub acct_session_id: String,
    pub framed_ip: Option<Ipv4Addr>,
    /// Calling-Station-Id as stored (normalised `AA:BB:CC:DD:EE:FF`).
    pub mac: Option<String>,
}

/// Why a request could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildRequestError {
    #[error("the session has no User-Name or Acct-Session-Id to identify it")]
    NoIdentity,
    #[error("{0}")]
    Codec(#[from] crate::proto::BuildError),
}

/// A Disconnect-Request or CoA-Request: identifying attributes, then
/// `changes` (CoA only), then Message-Authenticator, signed with `secret`.
/// The Request Authenticator is MD5 over the packet with a zero authenticator
/// and the secret (RFC 5176 §2.3, as for Accounting-Request); the
/// Message-Authenticator is computed over the packet with a zero
/// authenticator first (RFC 5176 §3.4).
pub fn build_request(
    kind: CoaKind,
    identifier: u8,
    session: &SessionIdent,
    changes: &[ReplyAttribute],
    secret: &[u8],
) -> Result<Vec<u8>, BuildRequestError> {
    if session.username.is_empty() || session.acct_session_id.is_empty() {
        return Err(BuildRequestError::NoIdentity);
    }
    let mut b = PacketBuilder::new(kind.request_code(), identifier);
    b.add_str(attr::USER_NAME, &session.username)?;
    b.add_str(attr::ACCT_SESSION_ID, &session.acct_session_id)?;
    if let Some(ip) = session.framed_ip {
        b.add(attr::FRAMED_IP_ADDRESS, &ip.octets())?;
    }
    if let Some(mac) = &session.mac {
        b.add_str(attr::CALLING_STATION_ID, mac)?;
    }
    if kind == CoaKind::Coa {
        for a in changes {
            add_change(&mut b, a)?;
        }
    }
    b.reserve_message_authenticator();
    Ok(b.finish_accounting_request(secret))
}

/// A change a CoA-Request carries. Only what a hotspot session can change in
/// place is sent; anything else in `changes` is left out.
fn add_change(b: &mut PacketBuilder, a: &ReplyAttribute) -> Result<(), crate::proto::BuildError> {
    use crate::proto::attr::mikrotik as mt;
    match a {
        ReplyAttribute::SessionTimeout(v) => b.add_u32(attr::SESSION_TIMEOUT, *v).map(|_| ()),
        ReplyAttribute::IdleTimeout(v) => b.add_u32(attr::IDLE_TIMEOUT, *v).map(|_| ()),
        ReplyAttribute::MikrotikRateLimit(s) => b
            .add_vsa(mt::VENDOR_ID, mt::RATE_LIMIT, s.as_bytes())
            .map(|_| ()),
        _ => Ok(()),
    }
}

/// What the NAS answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoaAnswer {
    /// Disconnect-ACK / CoA-ACK.
    Ack,
    /// Disconnect-NAK / CoA-NAK, with its Error-Cause when it had a readable one.
    Nak(Option<u32>),
}

/// Why a datagram received on the request's socket is not its answer. Each is
/// counted and logged, and the client keeps waiting for a real answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadAnswer {
    #[error("malformed: {0}")]
    Malformed(crate::proto::DecodeError),
    #[error("answer to another request (Identifier {0})")]
    OtherIdentifier(u8),
    #[error("unexpected code {0}")]
    UnexpectedCode(&'static str),
    #[error("Response Authenticator does not verify")]
    BadResponseAuthenticator,
    #[error("Message-Authenticator does not verify")]
    BadMessageAuthenticator,
}

impl BadAnswer {
    /// Bounded label for the drop metric.
    pub fn label(&self) -> &'static str {
        match self {
            BadAnswer::Malformed(_) => "malformed",
            BadAnswer::OtherIdentifier(_) => "other_identifier",
            BadAnswer::UnexpectedCode(_) => "unexpected_code",
            BadAnswer::BadResponseAuthenticator => "bad_authenticator",
            BadAnswer::BadMessageAuthenticator => "bad_message_authenticator",
        }
    }
}

/// Check `datagram` as the answer to `request` (the bytes sent): same
/// Identifier, an ACK or NAK of the request's kind, a Response Authenticator
/// made with the request's authenticator and `secret`, and a valid
/// Message-Authenticator when it has one (RFC 5176 §3.4; over the request's
/// authenticator or, as FreeRADIUS signs it, a zero one). Comparisons are in
/// constant time (in `proto`).
pub fn read_answer(
    datagram: &[u8],
    kind: CoaKind,
    request: &[u8],
    secret: &[u8],
) -> Result<CoaAnswer, BadAnswer> {
    let p = Packet::decode(datagram).map_err(BadAnswer::Malformed)?;
    // The request was built here: it decodes.
    let req = Packet::decode(request).map_err(BadAnswer::Malformed)?;
    if p.identifier() != req.identifier() {
        return Err(BadAnswer::OtherIdentifier(p.identifier()));
    }
    let (ack, nak) = kind.answer_codes();
    if p.code() != ack && p.code() != nak {
        return Err(BadAnswer::UnexpectedCode(p.code().name()));
    }
    match verify_response(datagram, req.authenticator(), secret, false) {
        Ok(_) => {}
        Err(ResponseError::Malformed(e)) => return Err(BadAnswer::Malformed(e)),
        Err(ResponseError::BadMessageAuthenticator) => {
            return Err(BadAnswer::BadMessageAuthenticator)
        }
        Err(
            ResponseError::BadResponseAuthenticator | ResponseError::MissingMessageAuthenticator,
        ) => return Err(BadAnswer::BadResponseAuthenticator),
    }
    if p.code() == ack {
        Ok(CoaAnswer::Ack)
    } else {
        Ok(CoaAnswer::Nak(p.attr_u32(ERROR_CAUSE).ok().flatten()))
    }
}

/// The name of an Error-Cause value (RFC 5176 §3.5), for logs, metrics and
/// `session list`. Values outside the RFC's list are `other`, so the metric
/// label stays bounded.
pub fn error_cause_name(cause: u32) -> &'static str {
    match cause {
        201 => "Residual-Session-Context-Removed",
        202 => "Invalid-EAP-Packet",
        401 => "Unsupported-Attribute",
        402 => "Missing-Attribute",
        403 => "NAS-Identification-Mismatch",
        404 => "Invalid-Request",
        405 => "Unsupported-Service",
        406 => "Unsupported-Extension",
        407 => "Invalid-Attribute-Value",
        501 => "Administratively-Prohibited",
        502 => "Request-Not-Routable",
        503 => "Session-Context-Not-Found",
        504 => "Session-Context-Not-Removable",
        505 => "Other-Proxy-Processing-Error",
        506 => "Resources-Unavailable",
        507 => "Request-Initiated",
        508 => "Multiple-Session-Selection-Unsupported",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        accounting_request_authenticator, response_authenticator, verify_request_authenticator,
    };

    const SECRET: &[u8] = b"coa-secret-123";

    fn session() -> SessionIdent {
        SessionIdent {
            username: "VOUCHER1".into(),
            acct_session_id: "81000001".into(),
            framed_ip: Some(Ipv4Addr::new(10, 5, 50, 7)),
            mac: Some("AA:BB:CC:DD:EE:01".into()),
        }
    }

    /// An answer as a NAS would sign it (Message-Authenticator over the
    /// request's authenticator when `ma`).
    fn answer(request: &[u8], code: Code, cause: Option<u32>, ma: bool, secret: &[u8]) -> Vec<u8> {
        let req = Packet::decode(request).unwrap();
        let mut b = PacketBuilder::new(code, req.identifier());
        if ma {
            b.reserve_message_authenticator();
        }
        if let Some(c) = cause {
            b.add_u32(ERROR_CAUSE, c).unwrap();
        }
        b.finish_response(req.authenticator(), secret)
    }

    #[test]
    fn disconnect_request_is_signed_and_identifies_the_session() {
        let bytes = build_request(CoaKind::Disconnect, 7, &session(), &[], SECRET).unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.code(), Code::DisconnectRequest);
        assert_eq!(p.identifier(), 7);
        assert!(verify_request_authenticator(&p, SECRET));
        assert!(!verify_request_authenticator(&p, b"other-secret"));
        assert_eq!(p.verify_request_message_authenticator(SECRET), Some(true));
        assert_eq!(
            p.verify_request_message_authenticator(b"wrong"),
            Some(false)
        );
        assert_eq!(p.attr_str(attr::USER_NAME).unwrap(), Some("VOUCHER1"));
        assert_eq!(p.attr_str(attr::ACCT_SESSION_ID).unwrap(), Some("81000001"));
        assert_eq!(
            p.attr_ipv4(attr::FRAMED_IP_ADDRESS).unwrap(),
            Some(Ipv4Addr::new(10, 5, 50, 7))
        );
        assert_eq!(
            p.attr_str(attr::CALLING_STATION_ID).unwrap(),
            Some("AA:BB:CC:DD:EE:01")
        );
        // The authenticator is the one RFC 5176 §2.3 defines.
        assert_eq!(
            &accounting_request_authenticator(&bytes, SECRET),
            p.authenticator()
        );
        // A Disconnect carries no changes.
        let with = build_request(
            CoaKind::Disconnect,
            7,
            &session(),
            &[ReplyAttribute::SessionTimeout(5)],
            SECRET,
        )
        .unwrap();
        assert_eq!(with, bytes);
    }

    #[test]
    fn coa_request_carries_rate_and_timeout() {
        let changes = [
            ReplyAttribute::MikrotikRateLimit("256k/256k".into()),
            ReplyAttribute::SessionTimeout(1200),
            ReplyAttribute::Class("ignored".into()),
        ];
        let bytes = build_request(CoaKind::Coa, 9, &session(), &changes, SECRET).unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.code(), Code::CoaRequest);
        assert!(verify_request_authenticator(&p, SECRET));
        assert_eq!(p.verify_request_message_authenticator(SECRET), Some(true));
        assert_eq!(
            p.vsa(attr::mikrotik::VENDOR_ID, attr::mikrotik::RATE_LIMIT),
            Some(&b"256k/256k"[..])
        );
        assert_eq!(p.attr_u32(attr::SESSION_TIMEOUT).unwrap(), Some(1200));
        assert_eq!(p.attr(attr::CLASS), None);
    }

    #[test]
    fn a_session_without_identity_is_refused() {
        let mut s = session();
        s.acct_session_id.clear();
        assert_eq!(
            build_request(CoaKind::Disconnect, 1, &s, &[], SECRET),
            Err(BuildRequestError::NoIdentity)
        );
    }

    #[test]
    fn answers_are_verified() {
        let req = build_request(CoaKind::Disconnect, 3, &session(), &[], SECRET).unwrap();
        let ack = answer(&req, Code::DisconnectAck, None, true, SECRET);
        assert_eq!(
            read_answer(&ack, CoaKind::Disconnect, &req, SECRET),
            Ok(CoaAnswer::Ack)
        );
        // Without Message-Authenticator (RouterOS may omit it) the Response
        // Authenticator alone is checked.
        let plain = answer(&req, Code::DisconnectAck, None, false, SECRET);
        assert_eq!(
            read_answer(&plain, CoaKind::Disconnect, &req, SECRET),
            Ok(CoaAnswer::Ack)
        );
        let nak = answer(&req, Code::DisconnectNak, Some(503), true, SECRET);
        assert_eq!(
            read_answer(&nak, CoaKind::Disconnect, &req, SECRET),
            Ok(CoaAnswer::Nak(Some(503)))
        );
        assert_eq!(error_cause_name(503), "Session-Context-Not-Found");
        assert_eq!(error_cause_name(9999), "other");
        // Wrong secret: the Response Authenticator fails.
        let forged = answer(&req, Code::DisconnectAck, None, false, b"not-the-secret");
        assert_eq!(
            read_answer(&forged, CoaKind::Disconnect, &req, SECRET),
            Err(BadAnswer::BadResponseAuthenticator)
        );
        // A CoA-ACK does not answer a Disconnect-Request.
        let coa_ack = answer(&req, Code::CoaAck, None, true, SECRET);
        assert!(matches!(
            read_answer(&coa_ack, CoaKind::Disconnect, &req, SECRET),
            Err(BadAnswer::UnexpectedCode(_))
        ));
        // Another Identifier.
        let mut other = ack.clone();
        other[1] ^= 1;
        assert_eq!(
            read_answer(&other, CoaKind::Disconnect, &req, SECRET),
            Err(BadAnswer::OtherIdentifier(2))
        );
        // A tampered Message-Authenticator with a correct Response Authenticator.
        let mut bad_ma = ack.clone();
        bad_ma[22] ^= 0xff;
        let req_p = Packet::decode(&req).unwrap();
        let ra = response_authenticator(&bad_ma, req_p.authenticator(), SECRET);
        bad_ma[4..20].copy_from_slice(&ra);
        assert_eq!(
            read_answer(&bad_ma, CoaKind::Disconnect, &req, SECRET),
            Err(BadAnswer::BadMessageAuthenticator)
        );
        // Garbage never panics.
        for junk in [&b""[..], &[41u8, 3, 0, 10][..], &[0xffu8; 40][..]] {
            assert!(read_answer(junk, CoaKind::Disconnect, &req, SECRET).is_err());
        }
    }
}
