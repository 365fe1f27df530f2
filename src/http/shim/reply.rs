//! Decisions into rlm_rest response bodies. No I/O.
//!
//! rlm_rest reads `{"reply:Session-Timeout":3600,"control:Auth-Type":"Accept"}`
//! and sets each attribute in the named list. It xlat-expands string values
//! unless told not to, so a string that contains `%` (a plan's address list,
//! say) is sent as `{"value":["…"],"do_xlat":false}`; everything else is flat.

use serde_json::{json, Map, Value};

use crate::policy::{RejectReason, ReplyAttribute};

/// FreeRADIUS dictionary name and JSON value of one reply attribute.
fn attribute(a: &ReplyAttribute) -> (&'static str, Value) {
    match a {
        ReplyAttribute::SessionTimeout(v) => ("Session-Timeout", json!(v)),
        ReplyAttribute::IdleTimeout(v) => ("Idle-Timeout", json!(v)),
        ReplyAttribute::AcctInterimInterval(v) => ("Acct-Interim-Interval", json!(v)),
        // Class is octets in FreeRADIUS; hex is the one spelling it never re-reads.
        ReplyAttribute::Class(s) => ("Class", json!(format!("0x{}", hex::encode(s)))),
        ReplyAttribute::MikrotikRateLimit(s) => ("Mikrotik-Rate-Limit", text(s)),
        ReplyAttribute::MikrotikTotalLimit(v) => ("Mikrotik-Total-Limit", json!(v)),
        ReplyAttribute::MikrotikTotalLimitGigawords(v) => {
            ("Mikrotik-Total-Limit-Gigawords", json!(v))
        }
        ReplyAttribute::MikrotikGroup(s) => ("Mikrotik-Group", text(s)),
        ReplyAttribute::MikrotikAddressList(s) => ("Mikrotik-Address-List", text(s)),
    }
}

fn text(s: &str) -> Value {
    if s.contains('%') {
        json!({ "value": [s], "do_xlat": false })
    } else {
        json!(s)
    }
}

/// 200 body of an accept: the reply attributes and `control:Auth-Type = Accept`,
/// which makes FreeRADIUS accept without an authenticate module.
pub fn accept(reply: &[ReplyAttribute]) -> Value {
    let mut body = Map::new();
    for a in reply {
        let (name, value) = attribute(a);
        body.insert(format!("reply:{name}"), value);
    }
    body.insert("control:Auth-Type".into(), json!("Accept"));
    Value::Object(body)
}

/// 401 body of a reject: the Reply-Message the hotspot login page shows.
pub fn reject(message: &str) -> Value {
    let mut body = Map::new();
    body.insert("reply:Reply-Message".into(), text(message));
    Value::Object(body)
}

/// 401 body of a voucher reject.
pub fn reject_reason(reason: RejectReason) -> Value {
    reject(reason.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_body() {
        let body = accept(&[
            ReplyAttribute::SessionTimeout(3600),
            ReplyAttribute::MikrotikRateLimit("2M/2M".into()),
            ReplyAttribute::MikrotikAddressList("100%-paid".into()),
            ReplyAttribute::MikrotikTotalLimit(5),
            ReplyAttribute::Class("rrnet:v1:1".into()),
        ]);
        assert_eq!(
            body,
            json!({
                "reply:Session-Timeout": 3600,
                "reply:Mikrotik-Rate-Limit": "2M/2M",
                "reply:Mikrotik-Address-List": {"value": ["100%-paid"], "do_xlat": false},
                "reply:Mikrotik-Total-Limit": 5,
                "reply:Class": "0x72726e65743a76313a31",
                "control:Auth-Type": "Accept",
            })
        );
    }

    #[test]
    fn reject_body() {
        assert_eq!(
            reject_reason(RejectReason::WrongPassword),
            json!({"reply:Reply-Message": "Wrong password for this voucher"})
        );
    }
}
