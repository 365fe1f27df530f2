/// A framing error: the packet cannot be parsed safely and is dropped
/// (RFC 2865 §3, RFC 6929 §2.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is shorter than the 20-byte header")]
    TooShort(usize),
    #[error("Length field {length} is below the 20-byte minimum")]
    LengthTooSmall { length: usize },
    #[error("Length field {length} exceeds the 4096-byte maximum")]
    LengthTooLarge { length: usize },
    #[error("Length field {length} exceeds the {datagram} bytes received")]
    Truncated { length: usize, datagram: usize },
    #[error("unknown packet code {0}")]
    UnknownCode(u8),
    #[error("attribute at offset {offset} has length {length} (minimum is 2)")]
    AttributeTooShort { offset: usize, length: u8 },
    #[error("attribute at offset {offset} with length {length} runs past the end of the packet")]
    AttributeOverrun { offset: usize, length: u8 },
    #[error("Vendor-Specific attribute at offset {offset} is too short for a vendor id")]
    VsaTooShort { offset: usize },
    #[error("Vendor-Specific attribute at offset {offset} has a sub-attribute with bad length")]
    VsaBadFraming { offset: usize },
    #[error("more than one Message-Authenticator")]
    DuplicateMessageAuthenticator,
    #[error("Message-Authenticator has length {0}, not 18")]
    MessageAuthenticatorLength(u8),
}

impl DecodeError {
    /// Bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::TooShort(_)
            | DecodeError::LengthTooSmall { .. }
            | DecodeError::LengthTooLarge { .. }
            | DecodeError::Truncated { .. } => "bad_length",
            DecodeError::UnknownCode(_) => "unknown_code",
            DecodeError::AttributeTooShort { .. } | DecodeError::AttributeOverrun { .. } => {
                "bad_attribute_framing"
            }
            DecodeError::VsaTooShort { .. } | DecodeError::VsaBadFraming { .. } => {
                "bad_vsa_framing"
            }
            DecodeError::DuplicateMessageAuthenticator
            | DecodeError::MessageAuthenticatorLength(_) => "bad_message_authenticator",
        }
    }
}

/// A value error: one attribute's value is malformed. The packet is kept and the
/// attribute is treated as invalid (RFC 6929 §2.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("attribute {attr} has a malformed value: {why}")]
pub struct InvalidAttribute {
    /// Attribute type (for VSAs, the vendor type).
    pub attr: u8,
    pub why: &'static str,
}

/// Errors building a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("attribute {attr} value of {len} bytes exceeds the 253-byte maximum")]
    ValueTooLong { attr: u8, len: usize },
    #[error("packet would exceed 4096 bytes")]
    PacketTooLong,
    #[error("password of {0} bytes exceeds the 128-byte maximum")]
    PasswordTooLong(usize),
}
