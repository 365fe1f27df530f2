//! Malformed-packet corpus: every case has an asserted outcome. Framing errors
//! drop the packet; value errors leave it decodable with the attribute invalid.

use rrnet_radius::proto::{
    attr, unhide_password, verify_chap, Code, DecodeError, Packet, PacketBuilder,
};

/// A header with the given code and attribute bytes; Length covers them.
fn packet(code: u8, attrs: &[u8]) -> Vec<u8> {
    let len = (20 + attrs.len()) as u16;
    let mut v = vec![code, 7];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0x11; 16]);
    v.extend_from_slice(attrs);
    v
}

#[test]
fn shorter_than_header() {
    for n in 0..20 {
        let v = vec![1u8; n];
        assert_eq!(Packet::decode(&v).unwrap_err(), DecodeError::TooShort(n));
    }
}

#[test]
fn length_field_below_20() {
    let mut v = packet(1, &[]);
    v[3] = 19;
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::LengthTooSmall { length: 19 }
    );
    v[3] = 0;
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::LengthTooSmall { length: 0 }
    );
}

#[test]
fn length_field_beyond_datagram() {
    let mut v = packet(1, &[1, 3, b'a']);
    v[3] = 30;
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::Truncated {
            length: 30,
            datagram: 23
        }
    );
}

#[test]
fn longer_than_4096() {
    let mut v = packet(1, &[]);
    v.resize(4097, 0);
    v[2..4].copy_from_slice(&4097u16.to_be_bytes());
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::LengthTooLarge { length: 4097 }
    );
    // A 4096-byte packet of valid attributes is fine.
    let mut attrs = Vec::new();
    while attrs.len() + 20 + 255 <= 4096 {
        attrs.push(18);
        attrs.push(255);
        attrs.extend_from_slice(&[b'x'; 253]);
    }
    let rest = 4096 - 20 - attrs.len();
    attrs.push(18);
    attrs.push(rest as u8);
    attrs.extend(std::iter::repeat_n(b'y', rest - 2));
    let v = packet(1, &attrs);
    assert_eq!(v.len(), 4096);
    assert!(Packet::decode(&v).is_ok());
}

#[test]
fn attribute_length_0_or_1() {
    for l in [0u8, 1] {
        let v = packet(1, &[1, l, b'a', b'b']);
        assert_eq!(
            Packet::decode(&v).unwrap_err(),
            DecodeError::AttributeTooShort {
                offset: 20,
                length: l
            }
        );
    }
}

#[test]
fn attribute_overrun() {
    let v = packet(1, &[1, 6, b'a', b'b']);
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::AttributeOverrun {
            offset: 20,
            length: 6
        }
    );
    // A lone type byte at the end.
    let v = packet(1, &[1, 3, b'a', 5]);
    assert!(matches!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::AttributeOverrun { offset: 23, .. }
    ));
}

#[test]
fn vsa_framing() {
    // Vendor-Specific with no room for the vendor id.
    let v = packet(1, &[26, 5, 0, 0, 58]);
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::VsaTooShort { offset: 20 }
    );
    // Vendor sub-attribute length < 2.
    let v = packet(1, &[26, 9, 0, 0, 0x3a, 0x8c, 8, 1, b'x']);
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::VsaBadFraming { offset: 20 }
    );
    // Vendor sub-attribute overruns the VSA.
    let v = packet(1, &[26, 9, 0, 0, 0x3a, 0x8c, 8, 5, b'x']);
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::VsaBadFraming { offset: 20 }
    );
    // A vendor id and nothing else.
    let v = packet(1, &[26, 6, 0, 0, 0x3a, 0x8c]);
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::VsaBadFraming { offset: 20 }
    );
    // Well-formed MikroTik VSA decodes.
    let v = packet(1, &[26, 12, 0, 0, 0x3a, 0x8c, 8, 6, b'1', b'M', b'/', b'2']);
    let p = Packet::decode(&v).unwrap();
    assert_eq!(p.vsa(14988, 8), Some(&b"1M/2"[..]));
}

#[test]
fn two_message_authenticators() {
    let mut attrs = vec![80, 18];
    attrs.extend_from_slice(&[0; 16]);
    attrs.extend_from_slice(&[80, 18]);
    attrs.extend_from_slice(&[0; 16]);
    let v = packet(1, &attrs);
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::DuplicateMessageAuthenticator
    );
}

#[test]
fn message_authenticator_wrong_length() {
    let mut attrs = vec![80, 17];
    attrs.extend_from_slice(&[0; 15]);
    let v = packet(1, &attrs);
    assert_eq!(
        Packet::decode(&v).unwrap_err(),
        DecodeError::MessageAuthenticatorLength(17)
    );
}

#[test]
fn user_password_bad_length_is_a_value_error() {
    // 15 bytes: not a multiple of 16. The packet decodes; the attribute is invalid.
    let mut attrs = vec![2, 17];
    attrs.extend_from_slice(&[9; 15]);
    let v = packet(1, &attrs);
    let p = Packet::decode(&v).expect("value errors keep the packet");
    let err = unhide_password(
        p.attr(attr::USER_PASSWORD).unwrap(),
        b"s",
        p.authenticator(),
    )
    .unwrap_err();
    assert_eq!(err.attr, attr::USER_PASSWORD);
    // 144 bytes: over 128.
    let mut attrs = vec![2, 146];
    attrs.extend_from_slice(&[9; 144]);
    let v = packet(1, &attrs);
    let p = Packet::decode(&v).unwrap();
    assert!(unhide_password(
        p.attr(attr::USER_PASSWORD).unwrap(),
        b"s",
        p.authenticator()
    )
    .is_err());
}

#[test]
fn chap_password_wrong_length_never_matches() {
    let mut attrs = vec![3, 18];
    attrs.extend_from_slice(&[1; 16]);
    let v = packet(1, &attrs);
    let p = Packet::decode(&v).expect("value errors keep the packet");
    let chap = p.attr(attr::CHAP_PASSWORD).unwrap();
    assert_eq!(chap.len(), 16);
    assert!(!verify_chap(chap, p.authenticator(), b"anything"));
}

#[test]
fn unknown_code() {
    for code in [0u8, 6, 10, 14, 39, 46, 255] {
        let v = packet(code, &[]);
        assert_eq!(
            Packet::decode(&v).unwrap_err(),
            DecodeError::UnknownCode(code)
        );
    }
}

#[test]
fn integer_with_wrong_length_is_a_value_error() {
    let v = packet(1, &[5, 5, 0, 0, 3]);
    let p = Packet::decode(&v).unwrap();
    assert!(p.attr_u32(attr::NAS_PORT).is_err());
    let v = packet(1, &[1, 4, 0xff, 0xfe]);
    let p = Packet::decode(&v).unwrap();
    assert!(p.attr_str(attr::USER_NAME).is_err());
}

#[test]
fn builder_refuses_oversize() {
    let mut b = PacketBuilder::new(Code::AccessAccept, 1);
    assert!(b.add(18, &[0; 254]).is_err());
    for _ in 0..15 {
        b.add(18, &[0; 253]).unwrap();
    }
    assert!(b.add(18, &[0; 253]).is_err());
}
