//! RFC 2865 §7 example packets, decoded and checked byte for byte.

use rrnet_radius::proto::{
    attr, response_authenticator, unhide_password, Code, Packet, PacketBuilder,
};

fn hex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    hex::decode(clean).unwrap()
}

const SECRET: &[u8] = b"xyzzy5461";

// RFC 2865 §7.1: User Telnet to Specified Host.
const ACCESS_REQUEST: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
    98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f
    78 2a 0a ee 04 06 c0 a8 01 10 05 06 00 00 00 03";
const ACCESS_ACCEPT: &str = "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
    9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03";
// RFC 2865 §7.2: Framed User Authenticating with CHAP.
const CHAP_REQUEST: &str = "01 01 00 47 2a ee 86 f0 8d 0d 55 96 9c a5 97 8e
    0d 33 67 a2 01 08 66 6c 6f 70 73 79 03 13 16 e9 75 57 c3 16 18 58 95 f2
    93 ff 63 44 07 72 75 04 06 c0 a8 01 10 05 06 00 00 00 14 06 06 00 00 00
    02 07 06 00 00 00 01";

#[test]
fn rfc2865_7_1_access_request() {
    let bytes = hex(ACCESS_REQUEST);
    let p = Packet::decode(&bytes).unwrap();
    assert_eq!(p.code(), Code::AccessRequest);
    assert_eq!(p.identifier(), 0);
    assert_eq!(p.len(), 56);
    assert_eq!(p.attributes().count(), 4);
    assert_eq!(p.attr_str(attr::USER_NAME).unwrap(), Some("nemo"));
    assert_eq!(
        p.attr_ipv4(attr::NAS_IP_ADDRESS).unwrap(),
        Some("192.168.1.16".parse().unwrap())
    );
    assert_eq!(p.attr_u32(attr::NAS_PORT).unwrap(), Some(3));
    let pw = unhide_password(
        p.attr(attr::USER_PASSWORD).unwrap(),
        SECRET,
        p.authenticator(),
    )
    .unwrap();
    assert_eq!(pw.as_bytes(), b"arctangent");
    assert!(!p.has_message_authenticator());
}

#[test]
fn rfc2865_7_1_access_accept_authenticator() {
    let req = hex(ACCESS_REQUEST);
    let req = Packet::decode(&req).unwrap();
    let accept = hex(ACCESS_ACCEPT);
    let p = Packet::decode(&accept).unwrap();
    assert_eq!(p.code(), Code::AccessAccept);
    assert_eq!(p.attr_u32(attr::SERVICE_TYPE).unwrap(), Some(1));
    // The Response Authenticator in the RFC verifies against the request.
    let ra = response_authenticator(&accept, req.authenticator(), SECRET);
    assert_eq!(&ra, p.authenticator());
    // Building the same reply (without Message-Authenticator) gives the same bytes.
    let mut b = PacketBuilder::new(Code::AccessAccept, 0);
    b.add_u32(attr::SERVICE_TYPE, 1).unwrap();
    b.add_u32(15, 0).unwrap(); // Login-Service = Telnet
    b.add(14, &[192, 168, 1, 3]).unwrap(); // Login-IP-Host
    assert_eq!(b.finish_response(req.authenticator(), SECRET), accept);
}

#[test]
fn rfc2865_7_2_chap_request() {
    let bytes = hex(CHAP_REQUEST);
    let p = Packet::decode(&bytes).unwrap();
    assert_eq!(p.identifier(), 1);
    assert_eq!(p.attr_str(attr::USER_NAME).unwrap(), Some("flopsy"));
    let chap = p.attr(attr::CHAP_PASSWORD).unwrap();
    assert_eq!(chap.len(), 17);
    assert_eq!(chap[0], 0x16);
    assert_eq!(p.attr_u32(attr::NAS_PORT).unwrap(), Some(20));
    assert_eq!(p.attr_u32(attr::SERVICE_TYPE).unwrap(), Some(2));
    assert_eq!(p.attr_u32(7).unwrap(), Some(1)); // Framed-Protocol = PPP
    assert_eq!(p.attr(attr::CHAP_CHALLENGE), None); // challenge = Request Authenticator
}

#[test]
fn trailing_bytes_past_length_are_ignored() {
    let mut bytes = hex(ACCESS_REQUEST);
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    let p = Packet::decode(&bytes).unwrap();
    assert_eq!(p.len(), 56);
    assert_eq!(p.attributes().count(), 4);
}
