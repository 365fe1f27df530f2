//! Turning an authenticated packet into wire-neutral facts (the request
//! handler builds the replies, `handler::reply`). No I/O here.

use std::net::IpAddr;

use crate::model::normalize_mac;
use crate::policy::{
    acct_status, chap_credential, event_time, terminate_cause_name, AccessFacts, Credential,
};
use crate::proto::{attr, unhide_password, Packet};
use crate::store::{AcctRecord, AcctStatus};

use super::DropReason;

/// The credential an Access-Request carries. A User-Password whose value is
/// malformed is treated as absent (RFC 6929 §2.8).
pub fn credential(p: &Packet<'_>, secret: &[u8]) -> Credential {
    if let Some(hidden) = p.attr(attr::USER_PASSWORD) {
        return match unhide_password(hidden, secret, p.authenticator()) {
            Ok(pw) => Credential::Pap(pw.as_bytes().to_vec()),
            Err(_) => Credential::Missing,
        };
    }
    if let Some(chap) = p.attr(attr::CHAP_PASSWORD) {
        // RFC 2865 §2.2: without CHAP-Challenge the Request Authenticator is the challenge.
        let challenge = p
            .attr(attr::CHAP_CHALLENGE)
            .unwrap_or(&p.authenticator()[..]);
        return chap_credential(chap, challenge);
    }
    Credential::Missing
}

/// A text attribute the request depends on. One that is not UTF-8 or holds a
/// NUL byte could not be stored as text by any database: the request is
/// refused here (a counted `invalid_text` drop) rather than failing in storage.
fn clean_text<'a>(p: &Packet<'a>, typ: u8) -> Result<Option<&'a str>, (DropReason, &'static str)> {
    match p.attr_str(typ) {
        Ok(Some(s)) if s.contains('\0') => Err((DropReason::InvalidText, text_name(typ, true))),
        Ok(v) => Ok(v),
        Err(_) => Err((DropReason::InvalidText, text_name(typ, false))),
    }
}

fn text_name(typ: u8, nul: bool) -> &'static str {
    match (typ, nul) {
        (attr::USER_NAME, true) => "User-Name contains a NUL byte",
        (attr::USER_NAME, false) => "User-Name is not UTF-8",
        (attr::ACCT_SESSION_ID, true) => "Acct-Session-Id contains a NUL byte",
        (attr::ACCT_SESSION_ID, false) => "Acct-Session-Id is not UTF-8",
        (attr::CALLING_STATION_ID, true) => "Calling-Station-Id contains a NUL byte",
        (attr::CALLING_STATION_ID, false) => "Calling-Station-Id is not UTF-8",
        (attr::NAS_IDENTIFIER, true) => "NAS-Identifier contains a NUL byte",
        (attr::NAS_IDENTIFIER, false) => "NAS-Identifier is not UTF-8",
        (_, true) => "a text attribute contains a NUL byte",
        (_, false) => "a text attribute is not UTF-8",
    }
}

fn text(p: &Packet<'_>, typ: u8) -> Result<Option<String>, (DropReason, &'static str)> {
    Ok(clean_text(p, typ)?.map(str::to_owned))
}

fn mac(p: &Packet<'_>) -> Result<Option<String>, (DropReason, &'static str)> {
    Ok(clean_text(p, attr::CALLING_STATION_ID)?.and_then(normalize_mac))
}

fn framed_ip(p: &Packet<'_>) -> Option<String> {
    p.attr_ipv4(attr::FRAMED_IP_ADDRESS)
        .ok()
        .flatten()
        .map(|ip| ip.to_string())
}

/// Which router of `nas` sent `p` ([`crate::model::Nas::router_key`]).
fn router(
    p: &Packet<'_>,
    nas: &crate::model::Nas,
    source: IpAddr,
) -> Result<String, (DropReason, &'static str)> {
    Ok(nas.router_key(clean_text(p, attr::NAS_IDENTIFIER)?, Some(source)))
}

/// Facts of an Access-Request from a known, authenticated NAS.
/// `secret` is the one the request was verified with (it un-hides User-Password).
pub fn access_facts(
    p: &Packet<'_>,
    nas: &crate::model::Nas,
    source: IpAddr,
    secret: &[u8],
) -> Result<AccessFacts, (DropReason, &'static str)> {
    let username = match clean_text(p, attr::USER_NAME)? {
        Some(u) if !u.is_empty() => u.to_owned(),
        _ => return Err((DropReason::MissingUserName, "Access-Request")),
    };
    Ok(AccessFacts {
        nas_id: nas.id,
        router: router(p, nas, source)?,
        nas_name: nas.name.clone(),
        nas_site: nas.site.clone(),
        tenant_id: nas.tenant_id,
        username,
        credential: credential(p, secret),
        mac: mac(p)?,
        acct_session_id: text(p, attr::ACCT_SESSION_ID)?.filter(|s| !s.is_empty()),
        framed_ip: framed_ip(p),
    })
}

/// Reasons an Accounting-Request cannot be stored; it is dropped and counted.
pub fn acct_record(
    p: &Packet<'_>,
    nas: &crate::model::Nas,
    source: IpAddr,
    received_at: i64,
) -> Result<AcctRecord, (DropReason, &'static str)> {
    let malformed = |why| (DropReason::Malformed, why);
    let status = match p.attr_u32(attr::ACCT_STATUS_TYPE) {
        Ok(Some(v)) => acct_status(v).ok_or(malformed("unsupported Acct-Status-Type"))?,
        _ => return Err(malformed("missing or malformed Acct-Status-Type")),
    };
    let acct_session_id = text(p, attr::ACCT_SESSION_ID)?.unwrap_or_default();
    if acct_session_id.is_empty()
        && !matches!(status, AcctStatus::AccountingOn | AcctStatus::AccountingOff)
    {
        return Err(malformed("missing Acct-Session-Id"));
    }
    let u32_or_0 = |t| p.attr_u32(t).ok().flatten().unwrap_or(0);
    let octets = |low, high| u64::from(u32_or_0(high)) << 32 | u64::from(u32_or_0(low));
    let terminate_cause = p
        .attr_u32(attr::ACCT_TERMINATE_CAUSE)
        .ok()
        .flatten()
        .map(terminate_cause_name);
    Ok(AcctRecord {
        nas_id: nas.id,
        router: router(p, nas, source)?,
        tenant_id: nas.tenant_id,
        status,
        acct_session_id,
        username: text(p, attr::USER_NAME)?.unwrap_or_default(),
        mac: mac(p)?,
        framed_ip: framed_ip(p),
        session_time: u64::from(u32_or_0(attr::ACCT_SESSION_TIME)),
        input_octets: octets(attr::ACCT_INPUT_OCTETS, attr::ACCT_INPUT_GIGAWORDS),
        output_octets: octets(attr::ACCT_OUTPUT_OCTETS, attr::ACCT_OUTPUT_GIGAWORDS),
        terminate_cause,
        class_voucher_id: p
            .attr(attr::CLASS)
            .and_then(crate::policy::voucher_id_from_class),
        received_at,
        event_at: event_time(
            received_at,
            p.attr_u32(attr::ACCT_DELAY_TIME).ok().flatten(),
            p.attr_u32(attr::EVENT_TIMESTAMP).ok().flatten(),
        ),
    })
}
