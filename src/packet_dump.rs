//! A dictionary-named dump of one RADIUS packet, as a sniffer would print it
//! (`rrnet-radius packet decode`).
//!
//! This is an operator tool for their own captures: given the shared secret it
//! shows User-Password in clear and says whether the authenticators verify.
//! The server never calls it on live traffic, so nothing here ever reaches a log.
//!
//! The text form follows radclient / radsniff (`\tUser-Name = "bob"`, one
//! attribute a line, strings quoted, named integers by their VALUE name), so
//! output can be compared with FreeRADIUS tools side by side.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::dictionary::{AttrDef, AttrType, Dictionary};
use crate::proto::{
    attr, unhide_password, verify_request_authenticator, Attribute, Code, DecodeError, Packet,
};

/// Everything `dump` found in one packet.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketDump {
    /// Packet type.
    pub code: Code,
    /// Identifier octet, which pairs replies with requests.
    pub identifier: u8,
    /// The Length field (bytes past it were ignored, RFC 2865 §3).
    pub length: usize,
    /// Request or Response Authenticator, as sent.
    pub authenticator: [u8; 16],
    /// Attributes in wire order; a Vendor-Specific attribute contributes one
    /// entry per sub-attribute.
    pub attributes: Vec<DumpedAttribute>,
    /// What could be verified with the secret given.
    pub checks: Checks,
}

/// One attribute (or one vendor sub-attribute) rendered for people.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpedAttribute {
    /// Dictionary name, or `Attr-N` / `Vendor-V-Attr-N` when the dictionary has none.
    pub name: String,
    /// SMI vendor number; 0 for standard attributes.
    pub vendor: u32,
    /// Attribute number (the vendor's sub-attribute number for VSAs).
    pub number: u8,
    /// Value as printed after `=`: strings quoted, everything else bare.
    pub text: String,
    /// Value for JSON: numbers bare, named integers and strings as strings,
    /// octets as `"0x…"`.
    pub json: Value,
    /// False when the value does not fit its type (wrong length, bad
    /// encoding); the packet itself is still well-framed (RFC 6929 §2.8).
    pub valid: bool,
    /// Why the value is invalid or not shown in clear, or a decoding aid.
    pub note: Option<String>,
}

/// Outcome of one authenticator check: `verified` is `None` when the check
/// could not be or need not be made, and `detail` says why in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `Some(true)` verified, `Some(false)` failed, `None` not checked.
    pub verified: Option<bool>,
    /// One line for the text dump.
    pub detail: &'static str,
}

/// Authenticator checks made with the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    /// Request Authenticator of Accounting / CoA / Disconnect requests
    /// (RFC 2866 §3, RFC 5176 §2.3).
    pub request_authenticator: Check,
    /// Message-Authenticator (RFC 3579 §3.2, RFC 5176 §3.4).
    pub message_authenticator: Check,
}

/// Decode `bytes` and name everything in it with `dict`. With `secret`,
/// User-Password is un-hidden and the authenticators are checked.
///
/// A framing error is returned as is: such a packet would be dropped, and
/// there is no trustworthy attribute list to show.
pub fn dump(
    bytes: &[u8],
    dict: &Dictionary,
    secret: Option<&[u8]>,
) -> Result<PacketDump, DecodeError> {
    let packet = Packet::decode(bytes)?;
    let mut attributes = Vec::new();
    for a in packet.attributes() {
        dump_attribute(&packet, a, dict, secret, &mut attributes);
    }
    Ok(PacketDump {
        code: packet.code(),
        identifier: packet.identifier(),
        length: packet.len(),
        authenticator: *packet.authenticator(),
        attributes,
        checks: checks(&packet, secret),
    })
}

fn checks(packet: &Packet<'_>, secret: Option<&[u8]>) -> Checks {
    let code = packet.code();
    let request_authenticator = if !code.is_request() {
        Check {
            verified: None,
            detail: "cannot verify a response without its request",
        }
    } else if !code.has_computed_request_authenticator() {
        Check {
            verified: None,
            detail: "random nonce in this packet type; nothing to verify",
        }
    } else {
        match secret {
            None => Check {
                verified: None,
                detail: "not checked: no secret given",
            },
            Some(s) if verify_request_authenticator(packet, s) => Check {
                verified: Some(true),
                detail: "verifies",
            },
            Some(_) => Check {
                verified: Some(false),
                detail: "DOES NOT VERIFY (wrong secret, or the packet was altered)",
            },
        }
    };
    let message_authenticator = if !packet.has_message_authenticator() {
        Check {
            verified: None,
            detail: "absent",
        }
    } else if !code.is_request() {
        Check {
            verified: None,
            detail: "cannot verify a response without its request",
        }
    } else {
        match secret.and_then(|s| packet.verify_request_message_authenticator(s)) {
            None => Check {
                verified: None,
                detail: "not checked: no secret given",
            },
            Some(true) => Check {
                verified: Some(true),
                detail: "verifies",
            },
            Some(false) => Check {
                verified: Some(false),
                detail: "DOES NOT VERIFY (wrong secret, or the packet was altered)",
            },
        }
    };
    Checks {
        request_authenticator,
        message_authenticator,
    }
}

fn dump_attribute(
    packet: &Packet<'_>,
    a: Attribute<'_>,
    dict: &Dictionary,
    secret: Option<&[u8]>,
    out: &mut Vec<DumpedAttribute>,
) {
    if a.typ == attr::VENDOR_SPECIFIC {
        if let Some(vsas) = a.vendor_attributes() {
            let vendor = vsas.vendor();
            // Decode checked the RFC 2865 §5.26 one-octet type / one-octet length
            // layout; a vendor declared with another layout would be split wrongly,
            // so show its payload whole instead of guessing.
            let standard_layout = match dict.vendor(vendor) {
                Some(v) => v.type_size == 1 && v.length_size == 1,
                None => true,
            };
            if standard_layout {
                for v in vsas {
                    let def = dict.attr(vendor, u32::from(v.typ));
                    out.push(render(packet, vendor, v.typ, def, v.value, dict, secret));
                }
                return;
            }
            let mut d = render(packet, 0, a.typ, dict.attr(0, 26), a.value, dict, secret);
            d.note = Some(format!(
                "vendor {vendor} does not use the one-octet type/length layout; shown undecoded"
            ));
            out.push(d);
            return;
        }
    }
    let def = dict.attr(0, u32::from(a.typ));
    out.push(render(packet, 0, a.typ, def, a.value, dict, secret));
}

fn unknown_name(vendor: u32, number: u8) -> String {
    if vendor == 0 {
        format!("Attr-{number}")
    } else {
        format!("Vendor-{vendor}-Attr-{number}")
    }
}

fn hex_value(value: &[u8]) -> String {
    format!("0x{}", hex::encode(value))
}

/// Printable text, or `None` when the octets must be shown as hex.
fn printable(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.chars().any(char::is_control))
}

/// A double-quoted string with `"` and `\` escaped, as radclient prints it.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

fn octets(
    name: String,
    vendor: u32,
    number: u8,
    value: &[u8],
    valid: bool,
    note: Option<String>,
) -> DumpedAttribute {
    let text = hex_value(value);
    DumpedAttribute {
        name,
        vendor,
        number,
        json: Value::String(text.clone()),
        text,
        valid,
        note,
    }
}

fn render(
    packet: &Packet<'_>,
    vendor: u32,
    number: u8,
    def: Option<&AttrDef>,
    value: &[u8],
    dict: &Dictionary,
    secret: Option<&[u8]>,
) -> DumpedAttribute {
    let Some(def) = def else {
        return octets(
            unknown_name(vendor, number),
            vendor,
            number,
            value,
            true,
            None,
        );
    };
    let name = def.name.clone();
    if def.encrypt == 1 {
        return render_hidden_password(packet, name, vendor, number, value, secret);
    }
    if def.encrypt != 0 {
        return octets(
            name,
            vendor,
            number,
            value,
            true,
            Some(format!("encrypted (method {}); not decoded", def.encrypt)),
        );
    }
    if vendor == 0 && number == attr::CHAP_PASSWORD {
        // RFC 2865 §5.3: one octet CHAP Ident, then the 16-octet response.
        return if value.len() == 17 {
            octets(
                name,
                vendor,
                number,
                value,
                true,
                Some(format!(
                    "CHAP ident {}, response {}",
                    value[0],
                    hex_value(&value[1..])
                )),
            )
        } else {
            octets(
                name,
                vendor,
                number,
                value,
                false,
                Some(format!(
                    "invalid: CHAP-Password needs 17 octets, got {}",
                    value.len()
                )),
            )
        };
    }
    if def.typ == AttrType::String {
        // Strings are quoted so a value that looks like hex or a number is not
        // mistaken for one; unprintable strings fall back to hex, unquoted.
        return match printable(value) {
            Some(s) => DumpedAttribute {
                name,
                vendor,
                number,
                text: quoted(s),
                json: Value::String(s.to_owned()),
                valid: true,
                note: None,
            },
            None => octets(name, vendor, number, value, true, None),
        };
    }
    let f = dict.format_value(def, value);
    let note = (!f.valid).then(|| match def.typ.fixed_len() {
        Some(want) => format!(
            "invalid: {} needs {} octets, got {}",
            def.typ,
            want,
            value.len()
        ),
        None => format!("invalid: not a well-formed {}", def.typ),
    });
    DumpedAttribute {
        name,
        vendor,
        number,
        text: f.text,
        json: f.json,
        valid: f.valid,
        note,
    }
}

/// User-Password (RFC 2865 §5.2) is hidden with the Access-Request's own
/// authenticator, so it can only be recovered from an Access-Request.
fn render_hidden_password(
    packet: &Packet<'_>,
    name: String,
    vendor: u32,
    number: u8,
    value: &[u8],
    secret: Option<&[u8]>,
) -> DumpedAttribute {
    let Some(secret) = secret else {
        return octets(
            name,
            vendor,
            number,
            value,
            true,
            Some("hidden: give the secret to show it".to_owned()),
        );
    };
    if packet.code() != Code::AccessRequest {
        return octets(
            name,
            vendor,
            number,
            value,
            true,
            Some("hidden: only an Access-Request's password can be recovered".to_owned()),
        );
    }
    match unhide_password(value, secret, packet.authenticator()) {
        Ok(pw) => match printable(pw.as_bytes()) {
            Some(s) => DumpedAttribute {
                name,
                vendor,
                number,
                text: quoted(s),
                json: Value::String(s.to_owned()),
                valid: true,
                note: None,
            },
            // A wrong secret un-hides to noise; show it as hex and say what
            // that usually means.
            None => octets(
                name,
                vendor,
                number,
                pw.as_bytes(),
                true,
                Some("un-hidden value is not text: is the secret right?".to_owned()),
            ),
        },
        Err(e) => octets(
            name,
            vendor,
            number,
            value,
            false,
            Some(format!("invalid: {}", e.why)),
        ),
    }
}

impl PacketDump {
    /// radclient-style text: a header line, the authenticator, one tab-indented
    /// attribute a line, then the checks.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} Id {} Length {}",
            self.code.name(),
            self.identifier,
            self.length
        );
        let _ = writeln!(s, "Authenticator {}", hex_value(&self.authenticator));
        for a in &self.attributes {
            let _ = write!(s, "\t{} = {}", a.name, a.text);
            if let Some(note) = &a.note {
                let _ = write!(s, "  # {note}");
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "Request Authenticator: {}",
            self.checks.request_authenticator.detail
        );
        let _ = writeln!(
            s,
            "Message-Authenticator: {}",
            self.checks.message_authenticator.detail
        );
        s
    }

    /// JSON for scripts: `code`, `code_number`, `identifier`, `length`,
    /// `authenticator` (hex), `attributes` (`name`, `vendor`, `type`, `value`,
    /// `valid`, and `note` when there is one) and `checks` (`true` / `false` /
    /// `null` when not checked, plus a `…_detail` sentence each).
    pub fn to_json(&self) -> Value {
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|a| {
                let mut m = Map::new();
                m.insert("name".into(), Value::from(a.name.as_str()));
                m.insert("vendor".into(), Value::from(a.vendor));
                m.insert("type".into(), Value::from(a.number));
                m.insert("value".into(), a.json.clone());
                m.insert("valid".into(), Value::from(a.valid));
                if let Some(note) = &a.note {
                    m.insert("note".into(), Value::from(note.as_str()));
                }
                Value::Object(m)
            })
            .collect();
        json!({
            "code": self.code.name(),
            "code_number": self.code.as_u8(),
            "identifier": self.identifier,
            "length": self.length,
            "authenticator": hex::encode(self.authenticator),
            "attributes": attributes,
            "checks": {
                "request_authenticator": self.checks.request_authenticator.verified,
                "message_authenticator": self.checks.message_authenticator.verified,
                "request_authenticator_detail": self.checks.request_authenticator.detail,
                "message_authenticator_detail": self.checks.message_authenticator.detail,
            },
        })
    }
}

/// Parse a packet typed or pasted as hex: whitespace, newlines and colons
/// between digits are ignored, and one leading `0x` is allowed, so output of
/// `xxd -p`, `tcpdump -X` hex columns and Wireshark "copy as hex stream" work.
pub fn parse_hex(input: &str) -> Result<Vec<u8>, String> {
    let trimmed = input.trim_start();
    let skipped = input.len() - trimmed.len();
    let (body, offset) = match trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
    {
        Some(rest) => (rest, skipped + 2),
        None => (trimmed, skipped),
    };
    let mut out = Vec::with_capacity(body.len() / 2);
    let mut high: Option<u8> = None;
    for (i, c) in body.char_indices() {
        if c.is_whitespace() || c == ':' {
            continue;
        }
        let Some(nibble) = c.to_digit(16) else {
            let at = offset + i;
            let line = input[..at].matches('\n').count() + 1;
            let column = input[..at]
                .rsplit('\n')
                .next()
                .map_or(0, |l| l.chars().count())
                + 1;
            return Err(format!(
                "invalid character {c:?} at line {line}, column {column} (byte {at}): expected hex digits 0-9, a-f"
            ));
        };
        let nibble = nibble as u8;
        match high.take() {
            None => high = Some(nibble),
            Some(h) => out.push(h << 4 | nibble),
        }
    }
    if high.is_some() {
        return Err(format!(
            "odd number of hex digits ({}): every byte needs two",
            out.len() * 2 + 1
        ));
    }
    if out.is_empty() {
        return Err("no hex digits found".to_owned());
    }
    Ok(out)
}

/// The fuzz body shared by `fuzz/fuzz_targets/decode.rs` (cargo-fuzz) and the
/// stable-toolchain smoke fuzzer in `tests/fuzz_smoke.rs`: every reader of
/// untrusted packet bytes must return, never panic.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    const SECRET: &[u8] = b"fuzz-secret";
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_hex(text);
    }
    let Ok(packet) = Packet::decode(data) else {
        return;
    };
    let mut seen = 0usize;
    for a in packet.attributes() {
        seen += a.value.len();
        if let Some(vsas) = a.vendor_attributes() {
            for v in vsas {
                seen += v.value.len();
            }
        }
        if a.typ == attr::USER_PASSWORD {
            let _ = unhide_password(a.value, SECRET, packet.authenticator());
        }
    }
    std::hint::black_box(seen);
    let _ = packet.attr_str(attr::USER_NAME);
    let _ = packet.attr_u32(attr::NAS_PORT);
    let _ = packet.attr_ipv4(attr::NAS_IP_ADDRESS);
    let _ = packet.vsa(crate::proto::attr::mikrotik::VENDOR_ID, 8);
    let _ = packet.verify_request_message_authenticator(SECRET);
    let _ = verify_request_authenticator(&packet, SECRET);
    let dict = Dictionary::builtin();
    for secret in [None, Some(SECRET)] {
        let d = dump(data, dict, secret).expect("decode succeeded above");
        assert_eq!(d.length, packet.len());
        let _ = d.to_text();
        let _ = d.to_json().to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_hex_accepts_common_layouts() {
        assert_eq!(parse_hex("0x01ff").unwrap(), vec![1, 255]);
        assert_eq!(parse_hex("  0X01 FF\n").unwrap(), vec![1, 255]);
        assert_eq!(parse_hex("01:ff:A0").unwrap(), vec![1, 255, 0xa0]);
        assert_eq!(parse_hex("01 02\n03\t04\r\n").unwrap(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn parse_hex_says_what_is_wrong() {
        let e = parse_hex("01 0g").unwrap_err();
        assert!(e.contains("'g'") && e.contains("column 5"), "{e}");
        let e = parse_hex("01\n2z").unwrap_err();
        assert!(e.contains("'z'") && e.contains("line 2, column 2"), "{e}");
        let e = parse_hex("0x012").unwrap_err();
        assert!(e.contains("odd number of hex digits (3)"), "{e}");
        assert!(parse_hex("  ").unwrap_err().contains("no hex digits"));
        // A second 0x is not a prefix any more.
        assert!(parse_hex("0x01 0x02").unwrap_err().contains("'x'"));
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
