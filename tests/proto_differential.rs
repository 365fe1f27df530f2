//! Differential tests against radius-rs (the `radius` crate), an independent
//! implementation: what it encodes decodes identically here, what we encode it
//! decodes identically, and the authenticators agree.

use proptest::prelude::*;
use radius::core::avp::AVP;
use radius::core::code::Code as RCode;
use radius::core::packet::Packet as RPacket;
use rrnet_radius::proto::{
    accounting_request_authenticator, unhide_password, verify_request_authenticator,
    verify_response, Code, Packet, PacketBuilder,
};

fn attrs() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    proptest::collection::vec(
        (
            (1u8..=255).prop_filter("no VSA/MA/password", |t| ![2u8, 26, 80].contains(t)),
            proptest::collection::vec(any::<u8>(), 0..=60),
        ),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn theirs_decode_here(list in attrs(), secret in proptest::collection::vec(1u8..=255, 1..20)) {
        // Accounting-Request: radius-rs computes the request authenticator.
        let mut rp = RPacket::new(RCode::AccountingRequest, &secret);
        for (t, v) in &list { rp.add(AVP::from_bytes(*t, v)); }
        let bytes = rp.encode().unwrap();
        let p = Packet::decode(&bytes).unwrap();
        prop_assert_eq!(p.code(), Code::AccountingRequest);
        prop_assert_eq!(p.identifier(), rp.get_identifier());
        prop_assert!(verify_request_authenticator(&p, &secret));
        let ours: Vec<(u8, Vec<u8>)> = p.attributes().map(|a| (a.typ, a.value.to_vec())).collect();
        prop_assert_eq!(&ours, &list);

        // Access-Accept in answer to a request: same Response Authenticator.
        let req = RPacket::new(RCode::AccessRequest, &secret);
        let req_bytes = req.encode().unwrap();
        let mut resp = req.make_response_packet(RCode::AccessAccept);
        for (t, v) in &list { resp.add(AVP::from_bytes(*t, v)); }
        let resp_bytes = resp.encode().unwrap();
        let req_auth: [u8; 16] = req_bytes[4..20].try_into().unwrap();
        prop_assert_eq!(verify_response(&resp_bytes, &req_auth, &secret, false), Ok(Code::AccessAccept));
    }

    #[test]
    fn ours_decode_there(list in attrs(), secret in proptest::collection::vec(1u8..=255, 1..20), id in any::<u8>()) {
        let mut b = PacketBuilder::new(Code::AccountingRequest, id);
        for (t, v) in &list { b.add(*t, v).unwrap(); }
        let bytes = b.finish_accounting_request(&secret);
        prop_assert!(RPacket::is_authentic_request(&bytes, &secret));
        let rp = RPacket::decode(&bytes, &secret).unwrap();
        prop_assert_eq!(rp.get_identifier(), id);
        for (t, _) in &list {
            let theirs: Vec<Vec<u8>> = rp.lookup_all(*t).into_iter().map(|a| a.encode_bytes()).collect();
            let ours: Vec<Vec<u8>> = list.iter().filter(|(x, _)| x == t).map(|(_, v)| v.clone()).collect();
            prop_assert_eq!(theirs, ours);
        }
        prop_assert_eq!(&accounting_request_authenticator(&bytes, &secret)[..], &bytes[4..20]);

        // Our reply verifies with their response check.
        let req = RPacket::new(RCode::AccessRequest, &secret);
        let req_bytes = req.encode().unwrap();
        let req_auth: [u8; 16] = req_bytes[4..20].try_into().unwrap();
        let mut r = PacketBuilder::with_buffer(Vec::new(), Code::AccessReject, req.get_identifier());
        r.reserve_message_authenticator();
        for (t, v) in &list { r.add(*t, v).unwrap(); }
        let reply = r.finish_response(&req_auth, &secret);
        prop_assert!(RPacket::is_authentic_response(&reply, &req_bytes, &secret));
    }

    #[test]
    fn user_password_agrees(pw in proptest::collection::vec(1u8..=255, 1..=128), secret in proptest::collection::vec(1u8..=255, 1..20)) {
        let mut rp = RPacket::new(RCode::AccessRequest, &secret);
        radius::core::rfc2865::add_user_password(&mut rp, &pw).unwrap();
        let bytes = rp.encode().unwrap();
        let p = Packet::decode(&bytes).unwrap();
        let ours = unhide_password(p.attr(2).unwrap(), &secret, p.authenticator()).unwrap();
        prop_assert_eq!(ours.as_bytes(), &pw[..]);

        let auth = [0x42u8; 16];
        let mut b = PacketBuilder::new(Code::AccessRequest, 9);
        b.add_user_password(&pw, &secret, &auth).unwrap();
        let bytes = b.finish_access_request(&auth, &secret);
        let rp = RPacket::decode(&bytes, &secret).unwrap();
        let theirs = radius::core::rfc2865::lookup_user_password(&rp).unwrap().unwrap();
        prop_assert_eq!(theirs, pw);
    }
}
