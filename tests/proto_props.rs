//! Property tests. The case count follows PROPTEST_CASES; CI runs the
//! never-panics property with 1,000,000 cases in release mode.

use proptest::prelude::*;
use rrnet_radius::proto::{
    unhide_password, verify_response, Code, DuplicateCache, Packet, PacketBuilder,
};

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(n)
}

/// A standard attribute other than the ones with framing rules of their own.
fn plain_attr() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (1u8..=255)
        .prop_filter("VSA and Message-Authenticator are built separately", |t| {
            *t != 26 && *t != 80
        })
        .prop_flat_map(|t| (Just(t), proptest::collection::vec(any::<u8>(), 0..=253)))
}

#[derive(Debug, Clone)]
enum Item {
    Plain(u8, Vec<u8>),
    Vsa(u32, u8, Vec<u8>),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        plain_attr().prop_map(|(t, v)| Item::Plain(t, v)),
        (
            any::<u32>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..=247)
        )
            .prop_map(|(vendor, t, v)| Item::Vsa(vendor, t, v)),
    ]
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn encode_decode_round_trip(items in proptest::collection::vec(item(), 0..14), id in any::<u8>(), with_ma in any::<bool>(), secret in proptest::collection::vec(any::<u8>(), 1..32)) {
        let req_auth = [0x5au8; 16];
        let mut b = PacketBuilder::new(Code::AccessAccept, id);
        if with_ma { b.reserve_message_authenticator(); }
        let mut fitted = Vec::new();
        for it in &items {
            let ok = match it {
                Item::Plain(t, v) => b.add(*t, v).is_ok(),
                Item::Vsa(vendor, t, v) => b.add_vsa(*vendor, *t, v).is_ok(),
            };
            if ok { fitted.push(it.clone()); }
        }
        let bytes = b.finish_response(&req_auth, &secret);
        let p = Packet::decode(&bytes).unwrap();
        prop_assert_eq!(p.identifier(), id);
        prop_assert_eq!(p.code(), Code::AccessAccept);
        prop_assert_eq!(p.has_message_authenticator(), with_ma);
        let mut attrs = p.attributes();
        if with_ma {
            let first = attrs.next().unwrap();
            prop_assert_eq!(first.typ, 80);
        }
        for it in &fitted {
            let a = attrs.next().unwrap();
            match it {
                Item::Plain(t, v) => { prop_assert_eq!(a.typ, *t); prop_assert_eq!(a.value, &v[..]); }
                Item::Vsa(vendor, t, v) => {
                    let mut vs = a.vendor_attributes().unwrap();
                    prop_assert_eq!(vs.vendor(), *vendor);
                    let sub = vs.next().unwrap();
                    prop_assert_eq!(sub.typ, *t);
                    prop_assert_eq!(sub.value, &v[..]);
                    prop_assert!(vs.next().is_none());
                }
            }
        }
        prop_assert!(attrs.next().is_none());
        prop_assert!(verify_response(&bytes, &req_auth, &secret, with_ma).is_ok());
    }

    #[test]
    fn password_round_trip(pw in proptest::collection::vec(1u8..=255, 0..=128), secret in proptest::collection::vec(any::<u8>(), 1..40), auth in any::<[u8; 16]>()) {
        let mut b = PacketBuilder::new(Code::AccessRequest, 1);
        b.add_user_password(&pw, &secret, &auth).unwrap();
        let bytes = b.finish_access_request(&auth, &secret);
        let p = Packet::decode(&bytes).unwrap();
        let back = unhide_password(p.attr(2).unwrap(), &secret, p.authenticator()).unwrap();
        prop_assert_eq!(back.as_bytes(), &pw[..]);
    }

    #[test]
    fn request_message_authenticator_verifies(items in proptest::collection::vec(plain_attr(), 0..10), secret in proptest::collection::vec(any::<u8>(), 1..32), auth in any::<[u8; 16]>(), acct in any::<bool>()) {
        let code = if acct { Code::AccountingRequest } else { Code::AccessRequest };
        let mut b = PacketBuilder::new(code, 3);
        b.reserve_message_authenticator();
        for (t, v) in &items { let _ = b.add(*t, v); }
        let bytes = if acct { b.finish_accounting_request(&secret) } else { b.finish_access_request(&auth, &secret) };
        let p = Packet::decode(&bytes).unwrap();
        prop_assert_eq!(p.verify_request_message_authenticator(&secret), Some(true));
        if acct {
            prop_assert!(rrnet_radius::proto::verify_request_authenticator(&p, &secret));
        }
        let mut wrong = secret.clone();
        wrong.push(1);
        prop_assert_eq!(p.verify_request_message_authenticator(&wrong), Some(false));
        // Flip one byte anywhere after the header: the MA must fail (or framing breaks).
        let mut tampered = bytes.clone();
        let i = tampered.len() - 1;
        tampered[i] ^= 0x01;
        if let Ok(tp) = Packet::decode(&tampered) {
            prop_assert_eq!(tp.verify_request_message_authenticator(&secret), Some(false));
        }
    }
}

proptest! {
    #![proptest_config(cases(20000))]

    /// Decoding arbitrary bytes never panics, and everything reachable from a
    /// decoded packet can be walked without panicking.
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), fix_len in any::<bool>()) {
        let mut bytes = bytes;
        if fix_len && bytes.len() >= 20 {
            let l = bytes.len() as u16;
            bytes[2..4].copy_from_slice(&l.to_be_bytes());
            bytes[0] = 1 + bytes[0] % 5;
        }
        if let Ok(p) = Packet::decode(&bytes) {
            for a in p.attributes() {
                if let Some(vs) = a.vendor_attributes() { for v in vs { let _ = v.value.len(); } }
            }
            let _ = p.verify_request_message_authenticator(b"s");
            let _ = p.attr_str(1);
            let _ = p.attr_u32(5);
            if let Some(pw) = p.attr(2) { let _ = unhide_password(pw, b"s", p.authenticator()); }
        }
    }

    #[test]
    fn dedup_cache_never_exceeds_capacity(ops in proptest::collection::vec((any::<u8>(), 0u64..20, any::<bool>()), 0..200)) {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(Duration::from_secs(5), 16);
        for (id, secs, answer) in ops {
            let key = rrnet_radius::proto::DedupKey { source: "127.0.0.1:1".parse().unwrap(), identifier: id % 32, authenticator: [0; 16] };
            let _ = c.check(key, t0 + Duration::from_secs(secs));
            if answer { c.answered(key, vec![id]); }
            prop_assert!(c.len() <= 16);
        }
    }
}
