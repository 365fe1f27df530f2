//! RADIUS attribute values that every transport turns into policy values the
//! same way: the UDP path reads them from packets, the REST shim from rlm_rest
//! bodies. Pure functions, no I/O.

use super::{AcctStatus, Credential};
use crate::proto::attr;

/// The Acct-Status-Type values the server stores (RFC 2866 §5.1); `None` for the rest.
pub fn acct_status(value: u32) -> Option<AcctStatus> {
    match value {
        attr::acct_status::START => Some(AcctStatus::Start),
        attr::acct_status::STOP => Some(AcctStatus::Stop),
        attr::acct_status::INTERIM_UPDATE => Some(AcctStatus::InterimUpdate),
        attr::acct_status::ACCOUNTING_ON => Some(AcctStatus::AccountingOn),
        attr::acct_status::ACCOUNTING_OFF => Some(AcctStatus::AccountingOff),
        _ => None,
    }
}

/// The credential of a CHAP-Password value (ident ‖ 16-byte response, RFC 2865
/// §5.3) against `challenge`. A value of the wrong length counts as absent.
pub fn chap_credential(chap_password: &[u8], challenge: &[u8]) -> Credential {
    let Ok(response) = <[u8; 16]>::try_from(chap_password.get(1..).unwrap_or_default()) else {
        return Credential::Missing;
    };
    Credential::Chap {
        ident: chap_password[0],
        response,
        challenge: challenge.to_vec(),
    }
}

/// Acct-Terminate-Cause as stored: its dictionary name, or the number when unnamed.
pub fn terminate_cause_name(value: u32) -> String {
    crate::dictionary::Dictionary::builtin()
        .value_name(0, u32::from(attr::ACCT_TERMINATE_CAUSE), u64::from(value))
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values() {
        assert_eq!(acct_status(1), Some(AcctStatus::Start));
        assert_eq!(acct_status(3), Some(AcctStatus::InterimUpdate));
        assert_eq!(acct_status(15), None);
        assert_eq!(terminate_cause_name(1), "User-Request");
        assert_eq!(terminate_cause_name(999), "999");
        assert!(matches!(
            chap_credential(&[1; 17], b"c"),
            Credential::Chap { ident: 1, .. }
        ));
        assert!(matches!(
            chap_credential(&[1; 16], b"c"),
            Credential::Missing
        ));
        assert!(matches!(chap_credential(&[], b"c"), Credential::Missing));
    }
}

/// Longest an accounting record is believed to have waited on the router: a
/// larger Acct-Delay-Time, or an Event-Timestamp further back, is taken as
/// this much (a router with a wrong clock must not move a session by years).
pub const MAX_ACCOUNTING_DELAY: i64 = 86_400;

/// When the event an Accounting-Request reports happened, not when it arrived:
/// `received_at` − Acct-Delay-Time (RFC 2866 §5.2), else the Event-Timestamp
/// (RFC 2869 §5.3), else `received_at`. Acct-Delay-Time is preferred because
/// it does not depend on the router's clock (a MikroTik without NTP starts in
/// 1970). Never later than `received_at`, never more than
/// `MAX_ACCOUNTING_DELAY` (one day) before it.
pub fn event_time(received_at: i64, delay: Option<u32>, event_timestamp: Option<u32>) -> i64 {
    let earliest = received_at.saturating_sub(MAX_ACCOUNTING_DELAY);
    match (delay, event_timestamp) {
        (Some(d), _) => received_at.saturating_sub(i64::from(d)).max(earliest),
        (None, Some(t)) => {
            let t = i64::from(t);
            if t < earliest {
                // A clock that is off, not a record a day late.
                received_at
            } else {
                t.min(received_at)
            }
        }
        (None, None) => received_at,
    }
}

#[cfg(test)]
mod event_time_tests {
    use super::*;

    #[test]
    fn delay_and_event_timestamp() {
        let now = 1_800_000_000;
        assert_eq!(event_time(now, None, None), now);
        assert_eq!(event_time(now, Some(90), None), now - 90);
        // Acct-Delay-Time wins over the router's clock.
        assert_eq!(event_time(now, Some(90), Some(5)), now - 90);
        assert_eq!(event_time(now, None, Some((now - 30) as u32)), now - 30);
        // A clock in the future is capped, one in 1970 ignored.
        assert_eq!(event_time(now, None, Some((now + 30) as u32)), now);
        assert_eq!(event_time(now, None, Some(1000)), now);
        // A huge delay is bounded.
        assert_eq!(
            event_time(now, Some(u32::MAX), None),
            now - MAX_ACCOUNTING_DELAY
        );
    }
}
