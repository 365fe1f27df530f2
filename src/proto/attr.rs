//! Attribute numbers the server reads or writes. The full name tables live in
//! `dictionaries/`; these constants are what the code itself depends on.

// RFC 2865 §5
pub const USER_NAME: u8 = 1;
pub const USER_PASSWORD: u8 = 2;
pub const CHAP_PASSWORD: u8 = 3;
pub const NAS_IP_ADDRESS: u8 = 4;
pub const NAS_PORT: u8 = 5;
pub const SERVICE_TYPE: u8 = 6;
pub const FRAMED_IP_ADDRESS: u8 = 8;
pub const REPLY_MESSAGE: u8 = 18;
pub const STATE: u8 = 24;
pub const CLASS: u8 = 25;
pub const VENDOR_SPECIFIC: u8 = 26;
pub const SESSION_TIMEOUT: u8 = 27;
pub const IDLE_TIMEOUT: u8 = 28;
pub const CALLED_STATION_ID: u8 = 30;
pub const CALLING_STATION_ID: u8 = 31;
pub const NAS_IDENTIFIER: u8 = 32;
pub const PROXY_STATE: u8 = 33;
// RFC 2866 §5
pub const ACCT_STATUS_TYPE: u8 = 40;
pub const ACCT_DELAY_TIME: u8 = 41;
pub const ACCT_INPUT_OCTETS: u8 = 42;
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
pub const ACCT_SESSION_ID: u8 = 44;
pub const ACCT_SESSION_TIME: u8 = 46;
pub const ACCT_TERMINATE_CAUSE: u8 = 49;
// RFC 2869 §5
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
pub const EVENT_TIMESTAMP: u8 = 55;
pub const CHAP_CHALLENGE: u8 = 60;
pub const NAS_PORT_TYPE: u8 = 61;
pub const PORT_LIMIT: u8 = 62;
pub const MESSAGE_AUTHENTICATOR: u8 = 80;
pub const ACCT_INTERIM_INTERVAL: u8 = 85;
pub const NAS_PORT_ID: u8 = 87;

/// Acct-Status-Type values (RFC 2866 §5.1).
pub mod acct_status {
    pub const START: u32 = 1;
    pub const STOP: u32 = 2;
    pub const INTERIM_UPDATE: u32 = 3;
    pub const ACCOUNTING_ON: u32 = 7;
    pub const ACCOUNTING_OFF: u32 = 8;
}

/// MikroTik vendor attributes (vendor 14988).
pub mod mikrotik {
    pub const VENDOR_ID: u32 = 14988;
    pub const RECV_LIMIT: u8 = 1;
    pub const XMIT_LIMIT: u8 = 2;
    pub const GROUP: u8 = 3;
    pub const RATE_LIMIT: u8 = 8;
    pub const HOST_IP: u8 = 10;
    pub const RECV_LIMIT_GIGAWORDS: u8 = 14;
    pub const XMIT_LIMIT_GIGAWORDS: u8 = 15;
    pub const TOTAL_LIMIT: u8 = 17;
    pub const TOTAL_LIMIT_GIGAWORDS: u8 = 18;
    pub const ADDRESS_LIST: u8 = 19;
}

/// WISPr vendor id.
pub const WISPR_VENDOR_ID: u32 = 14122;
