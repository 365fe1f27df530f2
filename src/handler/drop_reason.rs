//! Why a datagram got no reply. Every drop is counted under one of these labels.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Source address matches no NAS.
    UnknownNas,
    /// Source address is shared by NAS entries told apart by NAS-Identifier,
    /// and the packet's NAS-Identifier (or its absence) names none of them.
    UnknownNasIdentifier,
    /// Framing error (RFC 2865 §3, RFC 6929 §2.8).
    Malformed,
    /// A response code, or a request code this port does not serve.
    UnexpectedCode,
    /// Accounting/CoA Request Authenticator does not verify (wrong secret?).
    BadAuthenticator,
    /// Message-Authenticator present but wrong (wrong secret, or forgery).
    BadMessageAuthenticator,
    /// Message-Authenticator absent where required (BlastRADIUS, CVE-2024-3596).
    MissingMessageAuthenticator,
    /// Retransmission of a request still being worked on (RFC 5080 §2.2.2).
    DuplicateInProgress,
    /// Work queue full; the NAS will retry.
    Overload,
    /// Storage failed; no reply so the NAS retries (accounting is never acknowledged unstored).
    StorageError,
    /// Access-Request without a User-Name.
    MissingUserName,
    /// A text attribute the request depends on (User-Name, Acct-Session-Id,
    /// Calling-Station-Id) holds a NUL byte or is not UTF-8: no database could
    /// store it as text, so it never reaches one.
    InvalidText,
    /// The reply would not fit in a packet with everything it must carry (the
    /// request's Proxy-State copies fill it): no reply rather than an
    /// Access-Accept missing its limits.
    ReplyTooLong,
    /// The per-NAS budget of requests in flight is used up: one NAS cannot
    /// take every slot of the queue (the NAS retries).
    NasBusy,
}

impl DropReason {
    pub const ALL: [DropReason; 14] = [
        DropReason::UnknownNas,
        DropReason::UnknownNasIdentifier,
        DropReason::Malformed,
        DropReason::UnexpectedCode,
        DropReason::BadAuthenticator,
        DropReason::BadMessageAuthenticator,
        DropReason::MissingMessageAuthenticator,
        DropReason::DuplicateInProgress,
        DropReason::Overload,
        DropReason::StorageError,
        DropReason::MissingUserName,
        DropReason::InvalidText,
        DropReason::ReplyTooLong,
        DropReason::NasBusy,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::UnknownNas => "unknown_nas",
            DropReason::UnknownNasIdentifier => "unknown_nas_identifier",
            DropReason::Malformed => "malformed",
            DropReason::UnexpectedCode => "unexpected_code",
            DropReason::BadAuthenticator => "bad_authenticator",
            DropReason::BadMessageAuthenticator => "bad_message_authenticator",
            DropReason::MissingMessageAuthenticator => "missing_message_authenticator",
            DropReason::DuplicateInProgress => "duplicate_in_progress",
            DropReason::Overload => "overload",
            DropReason::StorageError => "storage_error",
            DropReason::MissingUserName => "missing_user_name",
            DropReason::InvalidText => "invalid_text",
            DropReason::ReplyTooLong => "reply_too_long",
            DropReason::NasBusy => "nas_busy",
        }
    }
}
