use std::collections::HashMap;

use super::*;
use crate::model::SessionState;
use crate::policy::{AcctSession, QuotaEnd};

#[test]
fn signature_matches_a_vector_computed_with_python_hmac() {
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test",
    //   b"1700000000.{\"type\":\"voucher.activated\"}", hashlib.sha256).hexdigest())'
    let body = br#"{"type":"voucher.activated"}"#;
    assert_eq!(
        signature("whsec_test", 1_700_000_000, body),
        "t=1700000000,v1=7ae7302210b8d09fc6c06638ba45d7e6276cd6e7cfe372fc7a2275c4fab9ed83"
    );
    // An empty body: the MAC covers "0." alone.
    assert_eq!(
        signature("key", 0, b""),
        "t=0,v1=85841b4efc3cd7776c3c8f9b7cca9e281c550e5d19889d78e9e669c6337f000d"
    );
}

#[test]
fn signature_depends_on_secret_time_and_body() {
    let a = signature("s1", 10, b"x");
    assert_ne!(a, signature("s2", 10, b"x"));
    assert_ne!(a, signature("s1", 11, b"x"));
    assert_ne!(a, signature("s1", 10, b"y"));
}

#[test]
fn cursor_round_trips_and_refuses_junk() {
    let c = EventCursor { order: 7, id: 42 };
    assert_eq!(EventCursor::decode(&c.encode()).unwrap(), c);
    for bad in [
        "",
        "zz",
        "41",
        &hex::encode("v2:1:2"),
        &hex::encode("v1:1"),
        &"a".repeat(200),
    ] {
        assert!(EventCursor::decode(bad).is_err(), "{bad:?}");
    }
    assert!(EventCursor { order: 1, id: 1 } > EventCursor { order: 0, id: 9 });
}

#[test]
fn event_type_lists() {
    assert_eq!(
        EventType::parse_list("voucher.activated, session.stopped,voucher.activated").unwrap(),
        vec![EventType::VoucherActivated, EventType::SessionStopped]
    );
    assert!(EventType::parse_list("voucher.bought").is_err());
    assert!(EventType::parse_list(",").is_err());
    let w = NewWebhook {
        tenant_id: None,
        url: "http://x".into(),
        events: Some(vec![EventType::VoucherUsedUp, EventType::SessionStarted]),
        secret: String::new(),
    };
    assert_eq!(
        w.events_column().as_deref(),
        Some(",voucher.used_up,session.started,")
    );
    assert_eq!(
        events_from_column(w.events_column().as_deref()),
        vec!["voucher.used_up", "session.started"]
    );
}

#[test]
fn urls() {
    assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
    assert!(check_url("https://erp.example.com/hooks/radius?x=1").is_ok());
    for bad in [
        "ftp://example.com/",
        "example.com/hook",
        "http://user:pw@example.com/",
        "http://:80/",
        &format!("http://example.com/{}", "a".repeat(3000)),
    ] {
        assert!(check_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn retry_delay_doubles_to_the_cap_with_jitter() {
    assert_eq!(retry_delay(1, 10, 3600, 0.5), 10);
    assert_eq!(retry_delay(2, 10, 3600, 0.5), 20);
    assert_eq!(retry_delay(4, 10, 3600, 0.5), 80);
    assert_eq!(retry_delay(20, 10, 3600, 0.5), 3600);
    assert_eq!(retry_delay(1000, 10, 3600, 0.5), 3600);
    assert_eq!(retry_delay(1, 10, 3600, 0.0), 8);
    assert_eq!(retry_delay(1, 10, 3600, 1.0), 12);
    assert!(retry_delay(1, 1, 1, 0.0) >= 1);
}

fn row(id: Option<i64>, asid: &str, started: bool, state: SessionState) -> AcctSession {
    AcctSession {
        router: String::new(),
        id,
        nas_id: 1,
        acct_session_id: asid.into(),
        username: "u".into(),
        voucher_id: Some(1),
        mac: None,
        framed_ip: None,
        state,
        started_at: started.then_some(100),
        updated_at: 100,
        stopped_at: None,
        terminate_cause: None,
        session_time: 0,
        input_octets: 0,
        output_octets: 0,
    }
}

#[test]
fn session_events_follow_transitions_only() {
    let before: HashMap<i64, (bool, bool)> = [
        (1, (false, false)), // authorized, not started
        (2, (true, false)),  // open
        (3, (true, false)),  // open
        (4, (true, true)),   // closed
    ]
    .into();
    let rows = [
        row(Some(1), "a", true, SessionState::Open),   // Start
        row(Some(2), "b", true, SessionState::Open),   // Interim
        row(Some(3), "c", true, SessionState::Closed), // Stop
        row(Some(4), "d", true, SessionState::Closed), // a retransmitted Stop
        row(None, "e", true, SessionState::Closed),    // Stop with the Start lost
    ];
    let got: Vec<(&str, EventType)> = session_events(&before, rows.iter())
        .into_iter()
        .map(|(_, _, a, t)| (a, t))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", EventType::SessionStarted),
            ("c", EventType::SessionStopped),
            ("e", EventType::SessionStarted),
            ("e", EventType::SessionStopped),
        ]
    );
}

#[test]
fn used_up_is_the_step_into_disconnect() {
    assert!(used_up(None, Some(QuotaEnd::Disconnect)));
    assert!(used_up(
        Some(QuotaEnd::SlowDown),
        Some(QuotaEnd::Disconnect)
    ));
    assert!(!used_up(
        Some(QuotaEnd::Disconnect),
        Some(QuotaEnd::Disconnect)
    ));
    assert!(!used_up(None, Some(QuotaEnd::SlowDown)));
    assert!(!used_up(None, None));
}

#[test]
fn event_json_shape() {
    let e = EventRecord {
        id: 5,
        tenant_id: 1,
        event_type: "voucher.revoked".into(),
        created_at: 0,
        object: r#"{"code":"ABC","time_left":null}"#.into(),
        order: 0,
    };
    let v = e.to_json();
    assert_eq!(v["type"], "voucher.revoked");
    assert_eq!(v["id"], "evt_5");
    assert_eq!(v["created"], "1970-01-01T00:00:00Z");
    assert_eq!(v["data"]["code"], "ABC");
    assert!(v["data"]["time_left"].is_null());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&e.body()).unwrap(),
        v
    );
}
