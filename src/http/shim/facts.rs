//! rlm_rest attributes into the wire-neutral facts and records the UDP path
//! builds from packets, with the same attribute rules (`policy::attributes`),
//! so both reach the same decision and accounting code. No I/O.

use std::net::IpAddr;

use super::body::{InvalidBody, RestAttributes};
use crate::model::{normalize_mac, Nas};
use crate::policy::{
    acct_status, chap_credential, terminate_cause_name, voucher_id_from_class, AccessFacts,
    Credential,
};
use crate::store::{AcctRecord, AcctStatus};

/// Internal FreeRADIUS attributes the shipped `rrnet_identify` policy sets to the
/// source address of the RADIUS packet. A router cannot send them (they have no
/// wire encoding), so the NAS a request belongs to cannot be claimed by another.
pub const CLIENT_IP_ATTRS: [&str; 2] = [
    "FreeRADIUS-Client-IP-Address",
    "FreeRADIUS-Client-IPv6-Address",
];

/// The address of the router that sent the RADIUS request to FreeRADIUS.
pub fn client_address(a: &RestAttributes) -> Result<IpAddr, InvalidBody> {
    for name in CLIENT_IP_ATTRS {
        if let Some(ip) = a.ip(name)? {
            return Ok(ip);
        }
    }
    Err(InvalidBody(
        "missing FreeRADIUS-Client-IP-Address: the FreeRADIUS site must call the rrnet_identify policy (deploy/freeradius)".into(),
    ))
}

fn mac(a: &RestAttributes) -> Result<Option<String>, InvalidBody> {
    Ok(a.text("Calling-Station-Id")?
        .as_deref()
        .and_then(normalize_mac))
}

fn framed_ip(a: &RestAttributes) -> Result<Option<String>, InvalidBody> {
    Ok(a.ip("Framed-IP-Address")?.map(|ip| ip.to_string()))
}

/// The credential: FreeRADIUS sends User-Password in clear (it has already
/// un-hidden it) and CHAP-Password with its CHAP-Challenge.
fn credential(a: &RestAttributes) -> Result<Credential, InvalidBody> {
    if let Some(pw) = a.bytes("User-Password") {
        // RFC 2865 §5.2 pads with NULs; FreeRADIUS strips them, a hand-made body may not.
        let end = pw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        return Ok(Credential::Pap(pw[..end].to_vec()));
    }
    if let Some(chap) = a.octets("CHAP-Password")? {
        // RFC 2865 §2.2 lets the Request Authenticator be the challenge, but the
        // shim never sees the packet: FreeRADIUS must copy it into CHAP-Challenge.
        let challenge = a.octets("CHAP-Challenge")?.ok_or_else(|| {
            InvalidBody("CHAP-Password without CHAP-Challenge: the FreeRADIUS site must copy the Request Authenticator into CHAP-Challenge (deploy/freeradius)".into())
        })?;
        return Ok(chap_credential(&chap, &challenge));
    }
    Ok(Credential::Missing)
}

/// Which router of `nas` sent the request ([`Nas::router_key`]), from its
/// NAS-Identifier and the source address FreeRADIUS saw.
fn router(a: &RestAttributes, nas: &Nas) -> Result<String, InvalidBody> {
    let source = client_address(a).ok();
    Ok(nas.router_key(a.text("NAS-Identifier")?.as_deref(), source))
}

/// Facts of an authorization request from `nas`.
pub fn access_facts(a: &RestAttributes, nas: &Nas) -> Result<AccessFacts, InvalidBody> {
    let username = a
        .text("User-Name")?
        .filter(|u| !u.is_empty())
        .ok_or_else(|| InvalidBody("missing User-Name".into()))?;
    Ok(AccessFacts {
        nas_id: nas.id,
        router: router(a, nas)?,
        nas_name: nas.name.clone(),
        nas_site: nas.site.clone(),
        tenant_id: nas.tenant_id,
        username,
        credential: credential(a)?,
        mac: mac(a)?,
        acct_session_id: a.text("Acct-Session-Id")?.filter(|s| !s.is_empty()),
        framed_ip: framed_ip(a)?,
    })
}

/// An accounting record from `nas`, with the same rules as the UDP path.
pub fn acct_record(
    a: &RestAttributes,
    nas: &Nas,
    received_at: i64,
) -> Result<AcctRecord, InvalidBody> {
    let status = a
        .integer32("Acct-Status-Type")?
        .ok_or_else(|| InvalidBody("missing Acct-Status-Type".into()))?;
    let status = acct_status(status)
        .ok_or_else(|| InvalidBody(format!("unsupported Acct-Status-Type {status}")))?;
    let acct_session_id = a.text("Acct-Session-Id")?.unwrap_or_default();
    if acct_session_id.is_empty()
        && !matches!(status, AcctStatus::AccountingOn | AcctStatus::AccountingOff)
    {
        return Err(InvalidBody("missing Acct-Session-Id".into()));
    }
    // 64-bit counters arrive as strings, 32-bit ones with a Gigawords companion;
    // either way the total is low + 2^32 × high (RFC 2869 §5.1).
    let octets = |low: &str, high: &str| -> Result<u64, InvalidBody> {
        let low = a.integer(low)?.unwrap_or(0);
        let high = a.integer32(high)?.unwrap_or(0);
        Ok(low.saturating_add(u64::from(high) << 32))
    };
    Ok(AcctRecord {
        nas_id: nas.id,
        router: router(a, nas)?,
        tenant_id: nas.tenant_id,
        status,
        acct_session_id,
        username: a.text("User-Name")?.unwrap_or_default(),
        mac: mac(a)?,
        framed_ip: framed_ip(a)?,
        session_time: a.integer("Acct-Session-Time")?.unwrap_or(0),
        input_octets: octets("Acct-Input-Octets", "Acct-Input-Gigawords")?,
        output_octets: octets("Acct-Output-Octets", "Acct-Output-Gigawords")?,
        terminate_cause: a
            .integer32("Acct-Terminate-Cause")?
            .map(terminate_cause_name),
        class_voucher_id: a
            .octets("Class")?
            .as_deref()
            .and_then(voucher_id_from_class),
        received_at,
        // A value FreeRADIUS prints as a date rather than a number is ignored.
        event_at: crate::policy::event_time(
            received_at,
            a.integer32("Acct-Delay-Time").ok().flatten(),
            a.integer32("Event-Timestamp").ok().flatten(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Secret;
    use crate::policy::credential_matches;
    use proptest::strategy::Strategy;

    fn fixture(name: &str) -> RestAttributes {
        let path = format!(
            "{}/tests/fixtures/rlm_rest/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let raw = std::fs::read(&path).unwrap();
        if name.ends_with(".json") {
            RestAttributes::from_json(&raw).unwrap()
        } else {
            RestAttributes::from_form(&raw).unwrap()
        }
    }

    fn nas() -> Nas {
        Nas {
            id: 4,
            name: "hotspot1".into(),
            address: "127.0.0.1".parse().unwrap(),
            secret: Secret::new("s"),
            require_message_authenticator: true,
            coa_port: 3799,
            coa_address: None,
            site: Some("north".into()),
            identifier: None,
            tenant_id: crate::model::DEFAULT_TENANT,
            dynamic: None,
            created_at: 0,
            previous_secret: None,
            previous_secret_until: None,
        }
    }

    #[test]
    fn captured_pap_requests() {
        for f in ["auth_pap.json", "auth_pap.form"] {
            let a = fixture(f);
            assert_eq!(
                client_address(&a).unwrap(),
                "127.0.0.1".parse::<IpAddr>().unwrap()
            );
            let facts = access_facts(&a, &nas()).unwrap();
            assert_eq!(facts.username, "VOUCHER1", "{f}");
            assert_eq!(facts.nas_site.as_deref(), Some("north"));
            assert!(
                credential_matches(&facts.credential, "pa\"ss/wö%rd".as_bytes()),
                "{f}"
            );
            assert!(
                !credential_matches(&facts.credential, b"pa\"ss/wo%rd"),
                "{f}"
            );
            assert_eq!(facts.mac.as_deref(), Some("AA:BB:CC:DD:EE:01"));
            assert_eq!(facts.acct_session_id.as_deref(), Some("81a00001"));
            assert_eq!(facts.framed_ip.as_deref(), Some("10.5.50.10"));
        }
    }

    #[test]
    fn captured_chap_requests() {
        for f in ["auth_chap.json", "auth_chap.form"] {
            let facts = access_facts(&fixture(f), &nas()).unwrap();
            assert!(matches!(facts.credential, Credential::Chap { .. }), "{f}");
            assert!(credential_matches(&facts.credential, b"secretpw"), "{f}");
            assert!(!credential_matches(&facts.credential, b"secretpx"), "{f}");
        }
    }

    #[test]
    fn captured_accounting_requests() {
        for ext in ["json", "form"] {
            let start = acct_record(&fixture(&format!("acct_start.{ext}")), &nas(), 100).unwrap();
            assert_eq!(start.status, AcctStatus::Start);
            assert_eq!(start.acct_session_id, "81a00001");
            assert_eq!(start.class_voucher_id, Some(1));
            assert_eq!(start.mac.as_deref(), Some("AA:BB:CC:DD:EE:01"));
            let interim =
                acct_record(&fixture(&format!("acct_interim.{ext}")), &nas(), 100).unwrap();
            assert_eq!(interim.status, AcctStatus::InterimUpdate);
            assert_eq!((interim.session_time, interim.input_octets), (60, 4000));
            let stop = acct_record(&fixture(&format!("acct_stop.{ext}")), &nas(), 100).unwrap();
            assert_eq!(stop.status, AcctStatus::Stop);
            assert_eq!(stop.session_time, 120);
            assert_eq!(stop.input_octets, (1 << 32) + 4000);
            assert_eq!(stop.output_octets, 5000);
            assert_eq!(stop.terminate_cause.as_deref(), Some("User-Request"));
            assert_eq!(stop.framed_ip.as_deref(), Some("10.5.50.10"));
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let a = RestAttributes::from_json(br#"{"User-Name":"x"}"#).unwrap();
        assert!(client_address(&a).unwrap_err().0.contains("rrnet_identify"));
        let a = RestAttributes::from_json(br#"{"User-Name":"x","CHAP-Password":"0x01"}"#).unwrap();
        assert!(access_facts(&a, &nas())
            .unwrap_err()
            .0
            .contains("CHAP-Challenge"));
        let a = RestAttributes::from_json(br#"{"User-Password":"x"}"#).unwrap();
        assert!(access_facts(&a, &nas())
            .unwrap_err()
            .0
            .contains("User-Name"));
        let a = RestAttributes::from_json(br#"{"Acct-Status-Type":"Stop"}"#).unwrap();
        assert!(acct_record(&a, &nas(), 0)
            .unwrap_err()
            .0
            .contains("Acct-Session-Id"));
        let a = RestAttributes::from_json(br#"{"Acct-Status-Type":"Accounting-On"}"#).unwrap();
        assert_eq!(
            acct_record(&a, &nas(), 0).unwrap().status,
            AcctStatus::AccountingOn
        );
        let a =
            RestAttributes::from_json(br#"{"Acct-Status-Type":15,"Acct-Session-Id":"x"}"#).unwrap();
        assert!(acct_record(&a, &nas(), 0)
            .unwrap_err()
            .0
            .contains("unsupported"));
    }

    proptest::proptest! {
        /// Whatever a body holds, reading it gives facts or a reason, never a panic.
        #[test]
        fn any_body_gives_facts_or_a_reason(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for a in [RestAttributes::from_json(&raw), RestAttributes::from_form(&raw)]
                .into_iter()
                .flatten()
            {
                let _ = client_address(&a);
                let _ = access_facts(&a, &nas());
                let _ = acct_record(&a, &nas(), 0);
            }
        }

        /// The attributes the shim reads, with values of any JSON type and content.
        #[test]
        fn any_values_of_known_attributes_give_facts_or_a_reason(
            values in proptest::collection::vec(
                (
                    proptest::sample::select(&[
                        "User-Name", "User-Password", "CHAP-Password", "CHAP-Challenge",
                        "Calling-Station-Id", "Framed-IP-Address", "Acct-Session-Id",
                        "Acct-Status-Type", "Acct-Session-Time", "Acct-Input-Octets",
                        "Acct-Input-Gigawords", "Acct-Output-Octets", "Acct-Terminate-Cause",
                        "Class", "FreeRADIUS-Client-IP-Address",
                    ][..]),
                    proptest::prop_oneof![
                        proptest::prelude::any::<i64>().prop_map(serde_json::Value::from),
                        proptest::prelude::any::<f64>().prop_map(serde_json::Value::from),
                        ".{0,40}".prop_map(serde_json::Value::from),
                        "0x[0-9a-fA-F]{0,40}".prop_map(serde_json::Value::from),
                        proptest::prelude::any::<bool>().prop_map(serde_json::Value::from),
                        proptest::strategy::Just(serde_json::Value::Null),
                    ],
                ),
                0..12,
            )
        ) {
            let body: serde_json::Map<String, serde_json::Value> =
                values.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let raw = serde_json::to_vec(&body).unwrap();
            if let Ok(a) = RestAttributes::from_json(&raw) {
                let _ = client_address(&a);
                let _ = access_facts(&a, &nas());
                let _ = acct_record(&a, &nas(), 0);
            }
        }
    }

    #[test]
    fn short_chap_password_is_no_credential() {
        let a = RestAttributes::from_json(
            br#"{"User-Name":"x","CHAP-Password":"0x0102","CHAP-Challenge":"0x00"}"#,
        )
        .unwrap();
        assert!(matches!(
            access_facts(&a, &nas()).unwrap().credential,
            Credential::Missing
        ));
    }
}
