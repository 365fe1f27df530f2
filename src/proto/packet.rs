use std::net::Ipv4Addr;

use super::attr;
use super::code::Code;
use super::error::{DecodeError, InvalidAttribute};
use super::{ATTRIBUTES_OFFSET, AUTHENTICATOR_OFFSET, MAX_PACKET_LEN, MIN_PACKET_LEN};

/// A decoded packet that borrows the datagram. Framing was checked once in
/// [`Packet::decode`], so iterating attributes cannot fail and allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// The packet bytes, cut to the Length field (bytes past it are ignored, RFC 2865 §3).
    bytes: &'a [u8],
    code: Code,
    /// Offset of the Message-Authenticator attribute's header, if present.
    message_authenticator_at: Option<usize>,
}

impl<'a> Packet<'a> {
    /// Check framing and return a view. Errors here mean "drop the packet".
    pub fn decode(datagram: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        if datagram.len() < MIN_PACKET_LEN {
            return Err(DecodeError::TooShort(datagram.len()));
        }
        let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
        if length < MIN_PACKET_LEN {
            return Err(DecodeError::LengthTooSmall { length });
        }
        if length > MAX_PACKET_LEN {
            return Err(DecodeError::LengthTooLarge { length });
        }
        if length > datagram.len() {
            return Err(DecodeError::Truncated {
                length,
                datagram: datagram.len(),
            });
        }
        let bytes = &datagram[..length];
        let code = Code::from_u8(bytes[0]).ok_or(DecodeError::UnknownCode(bytes[0]))?;

        let mut message_authenticator_at = None;
        let mut pos = ATTRIBUTES_OFFSET;
        while pos < length {
            if pos + 2 > length {
                // A lone type byte with no length byte.
                return Err(DecodeError::AttributeOverrun {
                    offset: pos,
                    length: 0,
                });
            }
            let typ = bytes[pos];
            let alen = bytes[pos + 1];
            if alen < 2 {
                return Err(DecodeError::AttributeTooShort {
                    offset: pos,
                    length: alen,
                });
            }
            let end = pos + usize::from(alen);
            if end > length {
                return Err(DecodeError::AttributeOverrun {
                    offset: pos,
                    length: alen,
                });
            }
            match typ {
                attr::MESSAGE_AUTHENTICATOR => {
                    if alen != 18 {
                        return Err(DecodeError::MessageAuthenticatorLength(alen));
                    }
                    if message_authenticator_at.is_some() {
                        return Err(DecodeError::DuplicateMessageAuthenticator);
                    }
                    message_authenticator_at = Some(pos);
                }
                attr::VENDOR_SPECIFIC => check_vsa_framing(&bytes[pos + 2..end], pos)?,
                _ => {}
            }
            pos = end;
        }
        Ok(Packet {
            bytes,
            code,
            message_authenticator_at,
        })
    }

    pub fn code(&self) -> Code {
        self.code
    }
    pub fn identifier(&self) -> u8 {
        self.bytes[1]
    }
    /// The whole packet, cut to its Length field.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn authenticator(&self) -> &'a [u8; 16] {
        self.bytes[AUTHENTICATOR_OFFSET..AUTHENTICATOR_OFFSET + 16]
            .try_into()
            .expect("header length checked in decode")
    }
    /// Offset of the Message-Authenticator attribute header, if the packet has one.
    pub fn message_authenticator_offset(&self) -> Option<usize> {
        self.message_authenticator_at
    }
    pub fn has_message_authenticator(&self) -> bool {
        self.message_authenticator_at.is_some()
    }

    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            bytes: self.bytes,
            pos: ATTRIBUTES_OFFSET,
        }
    }

    /// First attribute of type `typ`.
    pub fn attr(&self, typ: u8) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.typ == typ).map(|a| a.value)
    }

    /// First vendor attribute `(vendor, typ)`.
    pub fn vsa(&self, vendor: u32, typ: u8) -> Option<&'a [u8]> {
        self.attributes()
            .filter_map(|a| a.vendor_attributes())
            .filter(|v| v.vendor() == vendor)
            .flatten()
            .find(|v| v.typ == typ)
            .map(|v| v.value)
    }

    /// A text attribute. Non-UTF-8 is a value error.
    pub fn attr_str(&self, typ: u8) -> Result<Option<&'a str>, InvalidAttribute> {
        match self.attr(typ) {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .map(Some)
                .map_err(|_| InvalidAttribute {
                    attr: typ,
                    why: "not UTF-8 text",
                }),
        }
    }

    /// A 32-bit integer attribute (RFC 2865 §5: exactly 4 bytes).
    pub fn attr_u32(&self, typ: u8) -> Result<Option<u32>, InvalidAttribute> {
        match self.attr(typ) {
            None => Ok(None),
            Some(v) => be_u32(v).map(Some).ok_or(InvalidAttribute {
                attr: typ,
                why: "integer is not 4 bytes",
            }),
        }
    }

    /// An IPv4 address attribute (exactly 4 bytes).
    pub fn attr_ipv4(&self, typ: u8) -> Result<Option<Ipv4Addr>, InvalidAttribute> {
        match self.attr(typ) {
            None => Ok(None),
            Some(v) => be_u32(v)
                .map(|n| Some(Ipv4Addr::from(n)))
                .ok_or(InvalidAttribute {
                    attr: typ,
                    why: "address is not 4 bytes",
                }),
        }
    }

    /// Number of attributes of type `typ` (for cardinality rules).
    pub fn count(&self, typ: u8) -> usize {
        self.attributes().filter(|a| a.typ == typ).count()
    }
}

pub(crate) fn be_u32(v: &[u8]) -> Option<u32> {
    let arr: [u8; 4] = v.try_into().ok()?;
    Some(u32::from_be_bytes(arr))
}

/// RFC 2865 §5.26 "suggested format": vendor id (4 bytes) then sub-attributes of
/// 1-byte type, 1-byte length (≥ 2). Every vendor this server deals with uses it.
fn check_vsa_framing(value: &[u8], offset: usize) -> Result<(), DecodeError> {
    if value.len() < 4 {
        return Err(DecodeError::VsaTooShort { offset });
    }
    let mut rest = &value[4..];
    if rest.is_empty() {
        return Err(DecodeError::VsaBadFraming { offset });
    }
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(DecodeError::VsaBadFraming { offset });
        }
        let l = usize::from(rest[1]);
        if l < 2 || l > rest.len() {
            return Err(DecodeError::VsaBadFraming { offset });
        }
        rest = &rest[l..];
    }
    Ok(())
}

/// One attribute as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub typ: u8,
    pub value: &'a [u8],
    /// Offset of this attribute's header within the packet.
    pub offset: usize,
}

impl<'a> Attribute<'a> {
    /// For a Vendor-Specific attribute: its vendor id and sub-attributes.
    pub fn vendor_attributes(&self) -> Option<VendorAttributes<'a>> {
        if self.typ != attr::VENDOR_SPECIFIC || self.value.len() < 4 {
            return None;
        }
        Some(VendorAttributes {
            vendor: u32::from_be_bytes([
                self.value[0],
                self.value[1],
                self.value[2],
                self.value[3],
            ]),
            rest: &self.value[4..],
        })
    }
}

/// Iterator over a packet's attributes; framing was checked at decode.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;
    fn next(&mut self) -> Option<Attribute<'a>> {
        if self.pos + 2 > self.bytes.len() {
            return None;
        }
        let typ = self.bytes[self.pos];
        let len = usize::from(self.bytes[self.pos + 1]);
        let end = self.pos + len;
        if len < 2 || end > self.bytes.len() {
            // Unreachable for a decoded packet; stop rather than panic.
            self.pos = self.bytes.len();
            return None;
        }
        let a = Attribute {
            typ,
            value: &self.bytes[self.pos + 2..end],
            offset: self.pos,
        };
        self.pos = end;
        Some(a)
    }
}

/// One sub-attribute of a Vendor-Specific attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VendorAttribute<'a> {
    pub vendor: u32,
    pub typ: u8,
    pub value: &'a [u8],
}

/// Iterator over a Vendor-Specific attribute's sub-attributes.
#[derive(Clone, Debug)]
pub struct VendorAttributes<'a> {
    vendor: u32,
    rest: &'a [u8],
}

impl<'a> VendorAttributes<'a> {
    pub fn vendor(&self) -> u32 {
        self.vendor
    }
}

impl<'a> Iterator for VendorAttributes<'a> {
    type Item = VendorAttribute<'a>;
    fn next(&mut self) -> Option<VendorAttribute<'a>> {
        if self.rest.len() < 2 {
            return None;
        }
        let len = usize::from(self.rest[1]);
        if len < 2 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let v = VendorAttribute {
            vendor: self.vendor,
            typ: self.rest[0],
            value: &self.rest[2..len],
        };
        self.rest = &self.rest[len..];
        Some(v)
    }
}
