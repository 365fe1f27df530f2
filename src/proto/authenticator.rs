//! Request/Response Authenticators (RFC 2865 §3, RFC 2866 §3, RFC 5176 §2.3) and
//! Message-Authenticator (RFC 3579 §3.2, RFC 5176 §3.4). All computations feed the
//! packet to the hash in pieces, so nothing is copied or allocated.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

use super::code::Code;
use super::packet::Packet;
use super::{ct_eq, ATTRIBUTES_OFFSET, AUTHENTICATOR_OFFSET};

type HmacMd5 = Hmac<Md5>;

const ZERO16: [u8; 16] = [0; 16];

/// MD5(Code ‖ Identifier ‖ Length ‖ `auth` ‖ Attributes ‖ Secret): the Response
/// Authenticator when `auth` is the request's authenticator, and the accounting/CoA
/// Request Authenticator when `auth` is all zeros. The authenticator field inside
/// `packet` is ignored.
fn md5_authenticator(packet: &[u8], auth: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(&packet[..AUTHENTICATOR_OFFSET]);
    h.update(auth);
    h.update(&packet[ATTRIBUTES_OFFSET..]);
    h.update(secret);
    h.finalize().into()
}

/// Response Authenticator of a reply (RFC 2865 §3).
pub fn response_authenticator(
    reply: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
) -> [u8; 16] {
    md5_authenticator(reply, request_authenticator, secret)
}

/// Request Authenticator of an Accounting-Request (RFC 2866 §3) or a
/// CoA/Disconnect-Request (RFC 5176 §2.3): computed with a zero authenticator field.
pub fn accounting_request_authenticator(packet: &[u8], secret: &[u8]) -> [u8; 16] {
    md5_authenticator(packet, &ZERO16, secret)
}

/// Check the Request Authenticator of an Accounting-Request or CoA/Disconnect-Request.
pub fn verify_request_authenticator(packet: &Packet<'_>, secret: &[u8]) -> bool {
    let expected = accounting_request_authenticator(packet.bytes(), secret);
    ct_eq(&expected, packet.authenticator())
}

/// A shared secret prepared for HMAC-MD5 (RFC 2104): the two key pads are hashed
/// once, when the NAS table is loaded, instead of for every packet — two of the
/// five or so MD5 blocks each Message-Authenticator costs.
#[derive(Clone)]
pub struct MacKey(HmacMd5);

impl MacKey {
    pub fn new(secret: &[u8]) -> Self {
        MacKey(<HmacMd5 as Mac>::new_from_slice(secret).expect("HMAC takes any key length"))
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(****)")
    }
}

/// HMAC-MD5 over the packet with `auth` in the authenticator field and the
/// Message-Authenticator value (at `ma_offset`, the attribute header) zeroed.
pub fn message_authenticator(
    packet: &[u8],
    auth: &[u8; 16],
    ma_offset: usize,
    secret: &[u8],
) -> [u8; 16] {
    message_authenticator_keyed(packet, auth, ma_offset, &MacKey::new(secret))
}

/// [`message_authenticator`] with a prepared key.
pub fn message_authenticator_keyed(
    packet: &[u8],
    auth: &[u8; 16],
    ma_offset: usize,
    key: &MacKey,
) -> [u8; 16] {
    let mut mac = key.0.clone();
    mac.update(&packet[..AUTHENTICATOR_OFFSET]);
    mac.update(auth);
    mac.update(&packet[ATTRIBUTES_OFFSET..ma_offset + 2]);
    mac.update(&ZERO16);
    mac.update(&packet[ma_offset + 18..]);
    mac.finalize().into_bytes().into()
}

impl<'a> Packet<'a> {
    /// Verify the Message-Authenticator of a request: `None` when there is none,
    /// `Some(valid)` otherwise. Access-Request and Status-Server use their own
    /// authenticator (RFC 3579 §3.2, RFC 5997 §3); Accounting, CoA and Disconnect
    /// requests use 16 zero octets (RFC 5176 §3.4).
    pub fn verify_request_message_authenticator(&self, secret: &[u8]) -> Option<bool> {
        self.verify_request_message_authenticator_keyed(&MacKey::new(secret))
    }

    /// [`Packet::verify_request_message_authenticator`] with a prepared key.
    pub fn verify_request_message_authenticator_keyed(&self, key: &MacKey) -> Option<bool> {
        let at = self.message_authenticator_offset()?;
        let auth = if self.code().has_computed_request_authenticator() {
            &ZERO16
        } else {
            self.authenticator()
        };
        let expected = message_authenticator_keyed(self.bytes(), auth, at, key);
        Some(ct_eq(&expected, &self.bytes()[at + 2..at + 18]))
    }
}

/// Why a response failed verification (used by clients: tests, the load generator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed response: {0}")]
    Malformed(#[from] super::error::DecodeError),
    #[error("Response Authenticator does not verify")]
    BadResponseAuthenticator,
    #[error("Message-Authenticator does not verify")]
    BadMessageAuthenticator,
    #[error("Message-Authenticator missing")]
    MissingMessageAuthenticator,
}

/// Verify a response against the request it answers: the Response Authenticator,
/// and the Message-Authenticator (computed with the request authenticator,
/// RFC 3579 §3.2). With `require_ma`, a response without one fails.
pub fn verify_response(
    response: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
    require_ma: bool,
) -> Result<Code, ResponseError> {
    let p = Packet::decode(response)?;
    let expected = response_authenticator(p.bytes(), request_authenticator, secret);
    if !ct_eq(&expected, p.authenticator()) {
        return Err(ResponseError::BadResponseAuthenticator);
    }
    match p.message_authenticator_offset() {
        Some(at) => {
            let got = &p.bytes()[at + 2..at + 18];
            let ma = message_authenticator(p.bytes(), request_authenticator, at, secret);
            // Accounting/CoA/Disconnect responses: FreeRADIUS signs them over a
            // zero vector, RFC 5176 §3.4 over the request's; accept either.
            let zero_ok = matches!(
                p.code(),
                Code::AccountingResponse
                    | Code::CoaAck
                    | Code::CoaNak
                    | Code::DisconnectAck
                    | Code::DisconnectNak
            ) && ct_eq(&message_authenticator(p.bytes(), &ZERO16, at, secret), got);
            if !ct_eq(&ma, got) && !zero_ok {
                return Err(ResponseError::BadMessageAuthenticator);
            }
        }
        None if require_ma => return Err(ResponseError::MissingMessageAuthenticator),
        None => {}
    }
    Ok(p.code())
}
