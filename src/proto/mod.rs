//! RADIUS wire format: decode, encode, authenticators, password hiding, CHAP and
//! the duplicate-request cache (RFC 2865, 2866, 2869, 3579, 5080, 5176, 5997, 6929).
//!
//! This module is sans-I/O: no sockets, no tokio, no database, no clock reads.
//! Time comes in as an argument; bytes come in and go out as plain values.

pub mod attr;
mod authenticator;
mod builder;
mod chap;
mod code;
mod dedup;
mod echo;
mod error;
mod packet;
mod password;

pub use authenticator::{
    accounting_request_authenticator, message_authenticator, message_authenticator_keyed,
    response_authenticator, verify_request_authenticator, verify_response, MacKey, ResponseError,
};
pub use builder::PacketBuilder;
pub use chap::{chap_response, verify_chap};
pub use code::Code;
pub use dedup::{DedupKey, DuplicateCache, Seen};
pub use echo::RequestEcho;
pub use error::{BuildError, DecodeError, InvalidAttribute};
pub use packet::{Attribute, Attributes, Packet, VendorAttribute, VendorAttributes};
pub use password::{hide_password, unhide_password, Password};

/// Smallest valid packet: the 20-byte header (RFC 2865 §3).
pub const MIN_PACKET_LEN: usize = 20;
/// Largest valid packet (RFC 2865 §3).
pub const MAX_PACKET_LEN: usize = 4096;
/// Offset of the 16-byte authenticator in the header.
pub const AUTHENTICATOR_OFFSET: usize = 4;
/// Offset of the first attribute.
pub const ATTRIBUTES_OFFSET: usize = 20;

/// Constant-time byte comparison (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
