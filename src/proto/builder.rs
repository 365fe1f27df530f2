//! Building packets: requests (for clients, tests and the load generator) and the
//! server's replies.

use super::attr;
use super::authenticator::{
    accounting_request_authenticator, message_authenticator_keyed, response_authenticator, MacKey,
};
use super::code::Code;
use super::echo::RequestEcho;
use super::error::BuildError;
use super::packet::Packet;
use super::password::hide_password;
use super::{ATTRIBUTES_OFFSET, AUTHENTICATOR_OFFSET, MAX_PACKET_LEN};

/// Writes a packet into a buffer that can be reused across packets.
#[derive(Debug)]
pub struct PacketBuilder {
    buf: Vec<u8>,
    /// Offset of the reserved Message-Authenticator attribute, if any.
    ma_at: Option<usize>,
}

impl PacketBuilder {
    pub fn new(code: Code, identifier: u8) -> Self {
        Self::with_buffer(Vec::with_capacity(256), code, identifier)
    }

    /// Start a packet in `buf` (cleared first), keeping its allocation.
    pub fn with_buffer(mut buf: Vec<u8>, code: Code, identifier: u8) -> Self {
        buf.clear();
        buf.extend_from_slice(&[code.as_u8(), identifier, 0, 0]);
        buf.extend_from_slice(&[0u8; 16]);
        PacketBuilder { buf, ma_at: None }
    }

    /// Start a reply to `request` with Message-Authenticator reserved as the first
    /// attribute (RFC 3579 §3.2; RouterOS 7.15+ drops replies without it) and the
    /// request's Proxy-State attributes copied (RFC 2865 §5.33).
    pub fn reply(buf: Vec<u8>, request: &Packet<'_>, code: Code) -> Self {
        let proxy_states = request
            .attributes()
            .filter(|a| a.typ == attr::PROXY_STATE)
            .map(|a| a.value);
        Self::start_reply(buf, code, request.identifier(), true, proxy_states)
    }

    /// Start a reply without Message-Authenticator: for Accounting-Response to an
    /// Accounting-Request, where RFC 2866 defines none and implementations differ
    /// on how it would be computed (the Request Authenticator protects it).
    pub fn reply_plain(buf: Vec<u8>, request: &Packet<'_>, code: Code) -> Self {
        let proxy_states = request
            .attributes()
            .filter(|a| a.typ == attr::PROXY_STATE)
            .map(|a| a.value);
        Self::start_reply(buf, code, request.identifier(), false, proxy_states)
    }

    /// [`PacketBuilder::reply`] from what was kept of the request.
    pub fn reply_to(buf: Vec<u8>, request: &RequestEcho, code: Code) -> Self {
        Self::start_reply(
            buf,
            code,
            request.identifier(),
            true,
            request.proxy_states(),
        )
    }

    /// [`PacketBuilder::reply_plain`] from what was kept of the request.
    pub fn reply_plain_to(buf: Vec<u8>, request: &RequestEcho, code: Code) -> Self {
        Self::start_reply(
            buf,
            code,
            request.identifier(),
            false,
            request.proxy_states(),
        )
    }

    fn start_reply<'v>(
        buf: Vec<u8>,
        code: Code,
        identifier: u8,
        message_authenticator: bool,
        proxy_states: impl Iterator<Item = &'v [u8]>,
    ) -> Self {
        let mut b = Self::with_buffer(buf, code, identifier);
        if message_authenticator {
            b.reserve_message_authenticator();
        }
        for value in proxy_states {
            // A value that fit in the request fits here; the request is ≤ 4096 too.
            let _ = b.add(attr::PROXY_STATE, value);
        }
        b
    }

    /// Reserve a Message-Authenticator attribute here; filled in by `finish_*`.
    pub fn reserve_message_authenticator(&mut self) -> &mut Self {
        if self.ma_at.is_none() {
            self.ma_at = Some(self.buf.len());
            self.buf
                .extend_from_slice(&[attr::MESSAGE_AUTHENTICATOR, 18]);
            self.buf.extend_from_slice(&[0u8; 16]);
        }
        self
    }

    fn room(&self, n: usize) -> Result<(), BuildError> {
        if self.buf.len() + n > MAX_PACKET_LEN {
            Err(BuildError::PacketTooLong)
        } else {
            Ok(())
        }
    }

    pub fn add(&mut self, typ: u8, value: &[u8]) -> Result<&mut Self, BuildError> {
        if value.len() > 253 {
            return Err(BuildError::ValueTooLong {
                attr: typ,
                len: value.len(),
            });
        }
        self.room(value.len() + 2)?;
        self.buf.push(typ);
        self.buf.push((value.len() + 2) as u8);
        self.buf.extend_from_slice(value);
        Ok(self)
    }

    pub fn add_u32(&mut self, typ: u8, value: u32) -> Result<&mut Self, BuildError> {
        self.add(typ, &value.to_be_bytes())
    }

    pub fn add_str(&mut self, typ: u8, value: &str) -> Result<&mut Self, BuildError> {
        self.add(typ, value.as_bytes())
    }

    /// A Vendor-Specific attribute with one sub-attribute (RFC 2865 §5.26 format).
    pub fn add_vsa(&mut self, vendor: u32, typ: u8, value: &[u8]) -> Result<&mut Self, BuildError> {
        if value.len() > 247 {
            return Err(BuildError::ValueTooLong {
                attr: typ,
                len: value.len(),
            });
        }
        self.room(value.len() + 8)?;
        self.buf.push(attr::VENDOR_SPECIFIC);
        self.buf.push((value.len() + 8) as u8);
        self.buf.extend_from_slice(&vendor.to_be_bytes());
        self.buf.push(typ);
        self.buf.push((value.len() + 2) as u8);
        self.buf.extend_from_slice(value);
        Ok(self)
    }

    pub fn add_vsa_u32(
        &mut self,
        vendor: u32,
        typ: u8,
        value: u32,
    ) -> Result<&mut Self, BuildError> {
        self.add_vsa(vendor, typ, &value.to_be_bytes())
    }

    /// A hidden User-Password (RFC 2865 §5.2) for an Access-Request that will be
    /// finished with the same `authenticator`.
    pub fn add_user_password(
        &mut self,
        password: &[u8],
        secret: &[u8],
        authenticator: &[u8; 16],
    ) -> Result<&mut Self, BuildError> {
        let mut hidden = Vec::with_capacity(128);
        hide_password(password, secret, authenticator, &mut hidden)?;
        self.add(attr::USER_PASSWORD, &hidden)
    }

    fn set_length(&mut self) {
        let len = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    fn sign_ma(&mut self, auth: &[u8; 16], key: &MacKey) {
        if let Some(at) = self.ma_at {
            let ma = message_authenticator_keyed(&self.buf, auth, at, key);
            self.buf[at + 2..at + 18].copy_from_slice(&ma);
        }
    }

    /// Finish a response: Message-Authenticator (with the request authenticator)
    /// first, then the Response Authenticator over the result (RFC 3579 §3.2).
    pub fn finish_response(self, request_authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        // An HMAC key only when there is a Message-Authenticator to sign: an
        // Accounting-Response has none.
        let key = self.ma_at.map(|_| MacKey::new(secret));
        self.finish_response_with(request_authenticator, secret, key.as_ref())
    }

    /// [`PacketBuilder::finish_response`] with the secret's prepared HMAC key.
    pub fn finish_response_keyed(
        self,
        request_authenticator: &[u8; 16],
        secret: &[u8],
        key: &MacKey,
    ) -> Vec<u8> {
        self.finish_response_with(request_authenticator, secret, Some(key))
    }

    fn finish_response_with(
        mut self,
        request_authenticator: &[u8; 16],
        secret: &[u8],
        key: Option<&MacKey>,
    ) -> Vec<u8> {
        self.set_length();
        if let Some(key) = key {
            self.sign_ma(request_authenticator, key);
        }
        let ra = response_authenticator(&self.buf, request_authenticator, secret);
        self.buf[AUTHENTICATOR_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&ra);
        self.buf
    }

    /// Finish an Access-Request or Status-Server with the given (random) authenticator.
    pub fn finish_access_request(mut self, authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        self.set_length();
        self.buf[AUTHENTICATOR_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(authenticator);
        self.sign_ma(authenticator, &MacKey::new(secret));
        self.buf
    }

    /// Finish an Accounting-Request or CoA/Disconnect-Request: Message-Authenticator
    /// over a zero authenticator (RFC 5176 §3.4), then the Request Authenticator.
    pub fn finish_accounting_request(mut self, secret: &[u8]) -> Vec<u8> {
        self.set_length();
        self.sign_ma(&[0u8; 16], &MacKey::new(secret));
        let ra = accounting_request_authenticator(&self.buf, secret);
        self.buf[AUTHENTICATOR_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&ra);
        self.buf
    }
}
