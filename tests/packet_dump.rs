//! `packet_dump`: RFC 2865 §7.1, packets built by our own builder, unknown
//! attributes, and a packet built by pyrad (an independent implementation).

mod common;

use std::path::Path;
use std::process::Command;

use rrnet_radius::dictionary::Dictionary;
use rrnet_radius::packet_dump::{dump, parse_hex, DumpedAttribute, PacketDump};
use rrnet_radius::proto::attr::{self, mikrotik};
use rrnet_radius::proto::{Code, DecodeError, PacketBuilder};
use serde_json::json;

const RFC_SECRET: &[u8] = b"xyzzy5461";
// RFC 2865 §7.1: User Telnet to Specified Host.
const RFC_7_1: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb 98 f4 22 7a 01 06 6e 65 \
     6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8 01 10 05 06 00 00 00 03";

fn find<'a>(d: &'a PacketDump, name: &str) -> &'a DumpedAttribute {
    d.attributes
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("{name} missing from\n{}", d.to_text()))
}

#[test]
fn rfc2865_7_1_with_secret() {
    let bytes = parse_hex(RFC_7_1).unwrap();
    let d = dump(&bytes, Dictionary::builtin(), Some(RFC_SECRET)).unwrap();
    assert_eq!(d.code, Code::AccessRequest);
    assert_eq!((d.identifier, d.length), (0, 56));
    let text = d.to_text();
    assert!(
        text.starts_with("Access-Request Id 0 Length 56\n"),
        "{text}"
    );
    assert!(
        text.contains("Authenticator 0x0f403f9473978057bd83d5cb98f4227a\n"),
        "{text}"
    );
    for line in [
        "\tUser-Name = \"nemo\"\n",
        "\tUser-Password = \"arctangent\"\n",
        "\tNAS-IP-Address = 192.168.1.16\n",
        "\tNAS-Port = 3\n",
        "Request Authenticator: random nonce",
        "Message-Authenticator: absent",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let names: Vec<&str> = d.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["User-Name", "User-Password", "NAS-IP-Address", "NAS-Port"]
    );

    let j = d.to_json();
    assert_eq!(j["code"], "Access-Request");
    assert_eq!(j["code_number"], 1);
    assert_eq!(j["identifier"], 0);
    assert_eq!(j["length"], 56);
    assert_eq!(j["authenticator"], "0f403f9473978057bd83d5cb98f4227a");
    assert_eq!(
        j["attributes"][0],
        json!({"name":"User-Name","vendor":0,"type":1,"value":"nemo","valid":true})
    );
    assert_eq!(j["attributes"][1]["value"], "arctangent");
    assert_eq!(j["attributes"][2]["value"], "192.168.1.16");
    assert_eq!(j["attributes"][3]["value"], 3);
    assert_eq!(j["checks"]["request_authenticator"], json!(null));
    assert_eq!(j["checks"]["message_authenticator"], json!(null));
}

#[test]
fn rfc2865_7_1_without_secret_keeps_password_hidden() {
    let bytes = parse_hex(RFC_7_1).unwrap();
    let d = dump(&bytes, Dictionary::builtin(), None).unwrap();
    let pw = find(&d, "User-Password");
    assert_eq!(pw.text, "0x0dbe708d93d413ce3196e43f782a0aee");
    assert!(pw.note.as_deref().unwrap().contains("give the secret"));
    assert!(!d.to_text().contains("arctangent"));
}

fn accounting_request(secret: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::new(Code::AccountingRequest, 9);
    b.reserve_message_authenticator();
    b.add_str(attr::USER_NAME, "7K2QX9").unwrap();
    b.add_u32(attr::ACCT_STATUS_TYPE, attr::acct_status::INTERIM_UPDATE)
        .unwrap();
    b.add_str(attr::ACCT_SESSION_ID, "81a0000c").unwrap();
    b.add_u32(attr::ACCT_SESSION_TIME, 600).unwrap();
    b.add_u32(attr::NAS_PORT_TYPE, 19).unwrap();
    b.add_vsa(mikrotik::VENDOR_ID, mikrotik::RATE_LIMIT, b"2M/2M")
        .unwrap();
    b.add_vsa_u32(mikrotik::VENDOR_ID, mikrotik::TOTAL_LIMIT, 1_000_000)
        .unwrap();
    b.add_vsa(mikrotik::VENDOR_ID, mikrotik::HOST_IP, &[10, 5, 50, 23])
        .unwrap();
    b.finish_accounting_request(secret)
}

#[test]
fn accounting_request_names_vsas_and_enums_and_verifies() {
    let bytes = accounting_request(b"s3cret");
    let d = dump(&bytes, Dictionary::builtin(), Some(b"s3cret")).unwrap();
    let text = d.to_text();
    assert!(
        text.starts_with("Accounting-Request Id 9 Length "),
        "{text}"
    );
    for line in [
        "\tAcct-Status-Type = Interim-Update\n",
        "\tAcct-Session-Id = \"81a0000c\"\n",
        "\tAcct-Session-Time = 600\n",
        "\tNAS-Port-Type = Wireless-802.11\n",
        "\tMikrotik-Rate-Limit = \"2M/2M\"\n",
        "\tMikrotik-Total-Limit = 1000000\n",
        "\tMikrotik-Host-IP = 10.5.50.23\n",
        "Request Authenticator: verifies\n",
        "Message-Authenticator: verifies\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let rl = find(&d, "Mikrotik-Rate-Limit");
    assert_eq!((rl.vendor, rl.number), (14988, 8));
    let j = d.to_json();
    assert_eq!(j["checks"]["request_authenticator"], json!(true));
    assert_eq!(j["checks"]["message_authenticator"], json!(true));
    let status = j["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Acct-Status-Type")
        .unwrap();
    assert_eq!(status["value"], "Interim-Update");

    let wrong = dump(&bytes, Dictionary::builtin(), Some(b"not-it")).unwrap();
    let j = wrong.to_json();
    assert_eq!(j["checks"]["request_authenticator"], json!(false));
    assert_eq!(j["checks"]["message_authenticator"], json!(false));
    assert!(wrong
        .to_text()
        .contains("Request Authenticator: DOES NOT VERIFY"));

    let no_secret = dump(&bytes, Dictionary::builtin(), None).unwrap();
    assert_eq!(
        no_secret.to_json()["checks"],
        json!({
            "request_authenticator": null,
            "message_authenticator": null,
            "request_authenticator_detail": "not checked: no secret given",
            "message_authenticator_detail": "not checked: no secret given",
        })
    );
}

#[test]
fn unknown_and_invalid_attributes() {
    let mut b = PacketBuilder::new(Code::AccessRequest, 3);
    b.add(230, &[0xde, 0xad]).unwrap();
    b.add_vsa(mikrotik::VENDOR_ID, 99, &[1, 2, 3]).unwrap();
    b.add_vsa(4_242_424, 1, b"x").unwrap();
    // NAS-Port is an integer: 2 octets is a value error, not a framing error.
    b.add(attr::NAS_PORT, &[0, 7]).unwrap();
    b.add(attr::CHAP_PASSWORD, &[1; 5]).unwrap();
    b.add(attr::USER_NAME, b"tab\there").unwrap();
    let bytes = b.finish_access_request(&[5; 16], b"k");
    let d = dump(&bytes, Dictionary::builtin(), Some(b"k")).unwrap();
    let text = d.to_text();
    for line in [
        "\tAttr-230 = 0xdead\n",
        "\tVendor-14988-Attr-99 = 0x010203\n",
        "\tVendor-4242424-Attr-1 = 0x78\n",
        "\tNAS-Port = 0x0007  # invalid: integer needs 4 octets, got 2\n",
        "\tCHAP-Password = 0x0101010101  # invalid: CHAP-Password needs 17 octets, got 5\n",
        "\tUser-Name = 0x7461620968657265\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let port = find(&d, "NAS-Port");
    assert!(!port.valid);
    assert_eq!(
        d.to_json()["attributes"][1],
        json!({"name":"Vendor-14988-Attr-99","vendor":14988,"type":99,"value":"0x010203","valid":true})
    );
    assert!(find(&d, "Attr-230").valid);
}

#[test]
fn chap_password_is_shown_as_ident_and_response() {
    let mut b = PacketBuilder::new(Code::AccessRequest, 3);
    let mut chap = vec![0x2a];
    chap.extend_from_slice(&[0xab; 16]);
    b.add(attr::CHAP_PASSWORD, &chap).unwrap();
    let bytes = b.finish_access_request(&[5; 16], b"k");
    let d = dump(&bytes, Dictionary::builtin(), Some(b"k")).unwrap();
    let c = find(&d, "CHAP-Password");
    assert_eq!(c.text, format!("0x2a{}", "ab".repeat(16)));
    assert_eq!(
        c.note.as_deref(),
        Some(format!("CHAP ident 42, response 0x{}", "ab".repeat(16)).as_str())
    );
}

#[test]
fn response_checks_say_the_request_is_needed() {
    let req_bytes = parse_hex(RFC_7_1).unwrap();
    let req = rrnet_radius::proto::Packet::decode(&req_bytes).unwrap();
    let mut b = PacketBuilder::reply(Vec::new(), &req, Code::AccessAccept);
    b.add_u32(attr::SESSION_TIMEOUT, 3600).unwrap();
    let reply = b.finish_response(req.authenticator(), RFC_SECRET);
    let d = dump(&reply, Dictionary::builtin(), Some(RFC_SECRET)).unwrap();
    let text = d.to_text();
    assert!(text.contains("\tSession-Timeout = 3600\n"), "{text}");
    assert!(
        text.contains("Message-Authenticator: cannot verify a response without its request"),
        "{text}"
    );
    assert_eq!(d.to_json()["checks"]["message_authenticator"], json!(null));
}

#[test]
fn framing_errors_are_returned() {
    let mut bytes = parse_hex(RFC_7_1).unwrap();
    bytes[21] = 1; // User-Name length below the minimum of 2
    assert!(matches!(
        dump(&bytes, Dictionary::builtin(), None),
        Err(DecodeError::AttributeTooShort { .. })
    ));
}

// ---- pyrad: an independent encoder ----

const PYRAD_SECRET: &str = "testing123";

/// Builds an Access-Request with pyrad and prints it as hex.
const PYRAD_SCRIPT: &str = r#"
import sys
from pyrad.dictionary import Dictionary
from pyrad.packet import AuthPacket, AccessRequest
d = Dictionary(sys.argv[1])
p = AuthPacket(code=AccessRequest, id=42, secret=sys.argv[2].encode(), dict=d)
p["User-Name"] = "voucher-7K2Q"
p["User-Password"] = p.PwCrypt("s3cr3t-pw")
p["NAS-IP-Address"] = "10.5.0.1"
p["NAS-Port-Type"] = "Wireless-802.11"
p["Called-Station-Id"] = "hotspot1"
p["Mikrotik-Rate-Limit"] = "2M/4M"
p["Mikrotik-Total-Limit"] = 1073741824
p["Mikrotik-Group"] = "hotspot-1d"
p.add_message_authenticator()
print(p.RequestPacket().hex())
"#;

fn skip_or_fail(why: &str) {
    common::skip(
        common::Lacks::Tool,
        &format!("pyrad differential test: {why}"),
    );
}

/// pyrad's hex, or `None` when python3 / pyrad ≥ 2.5 is unavailable.
fn pyrad_access_request() -> Option<String> {
    let dict = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dictionary.pyrad");
    let out = match Command::new("python3")
        .arg("-c")
        .arg(PYRAD_SCRIPT)
        .arg(&dict)
        .arg(PYRAD_SECRET)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            skip_or_fail(&format!("python3 not runnable: {e}"));
            return None;
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Tell "pyrad missing or too old" (add_message_authenticator appeared
        // in 2.5) from a broken script, which must always fail.
        if stderr.contains("No module named 'pyrad'")
            || stderr.contains("has no attribute 'add_message_authenticator'")
        {
            let last = stderr.trim().lines().last().unwrap_or_default();
            skip_or_fail(&format!("pyrad >= 2.5 not importable ({last})"));
            return None;
        }
        panic!("pyrad script failed: {stderr}");
    }
    Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

#[test]
fn decodes_a_pyrad_access_request() {
    let Some(hex) = pyrad_access_request() else {
        return;
    };
    println!("pyrad Access-Request: {hex}");
    let bytes = parse_hex(&hex).unwrap();
    let d = dump(&bytes, Dictionary::builtin(), Some(PYRAD_SECRET.as_bytes())).unwrap();
    let text = d.to_text();
    println!("{text}");
    assert_eq!(d.code, Code::AccessRequest);
    assert_eq!(d.identifier, 42);
    // pyrad puts Message-Authenticator first (BlastRADIUS mitigation).
    assert_eq!(d.attributes[0].name, "Message-Authenticator");
    for line in [
        "\tUser-Name = \"voucher-7K2Q\"\n",
        "\tUser-Password = \"s3cr3t-pw\"\n",
        "\tNAS-IP-Address = 10.5.0.1\n",
        "\tNAS-Port-Type = Wireless-802.11\n",
        "\tCalled-Station-Id = \"hotspot1\"\n",
        "\tMikrotik-Rate-Limit = \"2M/4M\"\n",
        "\tMikrotik-Total-Limit = 1073741824\n",
        "\tMikrotik-Group = \"hotspot-1d\"\n",
        "Message-Authenticator: verifies\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert_eq!(find(&d, "Mikrotik-Total-Limit").vendor, 14988);
    assert_eq!(d.to_json()["checks"]["message_authenticator"], json!(true));
    let wrong = dump(&bytes, Dictionary::builtin(), Some(b"testing124")).unwrap();
    assert_eq!(
        wrong.to_json()["checks"]["message_authenticator"],
        json!(false)
    );

    decode_with_binary_if_available(&hex);
}

/// The `packet decode` subcommand belongs to the CLI; when the binary has it,
/// its output must agree with the library's.
fn decode_with_binary_if_available(hex: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_rrnet-radius"))
        .args(["packet", "decode", "--secret", PYRAD_SECRET, hex])
        .output()
        .expect("the crate's own binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "packet decode failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Access-Request"), "{stdout}");
    for want in [
        "Mikrotik-Rate-Limit = \"2M/4M\"",
        "Mikrotik-Total-Limit = 1073741824",
        "Mikrotik-Group = \"hotspot-1d\"",
        "User-Name = \"voucher-7K2Q\"",
        "User-Password = \"s3cr3t-pw\"",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
}
