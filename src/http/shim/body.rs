//! rlm_rest request bodies, `body = json` and `body = post`, into attribute
//! values. No I/O.
//!
//! JSON (what FreeRADIUS 3.2 writes, see `tests/fixtures/rlm_rest/`):
//! `{"User-Name":{"type":"string","value":["bob"]},"NAS-Port":{"type":"integer","value":[7]}}`
//! — integers bare, named integers as their quoted name (`"Stop"`), octets as
//! `"0x…"`, 64-bit integers as strings. A bare value or a bare array instead of
//! the `{"type","value"}` object is accepted too, for hand-written requests.
//!
//! rlm_rest escapes every byte of a non-ASCII UTF-8 sequence on its own
//! (`ö` is sent as `\u00C3\u00B6`), so in a JSON string an escape in
//! `\u0080`–`\u00ff` stands for that one byte; other non-ASCII text must be sent
//! as raw UTF-8. Without this a voucher password with an accent would never match.
//!
//! Form (`body = post`): `User-Name=bob&Acct-Status-Type=Stop`, percent-encoded.
//!
//! Values are kept as bytes; the typed getters read them the way FreeRADIUS
//! prints them, and resolve value names with the built-in dictionary.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::dictionary::Dictionary;

/// Why a body was refused; the text is the one-line 400 reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidBody(pub String);

fn invalid(msg: impl Into<String>) -> InvalidBody {
    InvalidBody(msg.into())
}

/// The attributes of one request, by name (case-insensitive, as in FreeRADIUS).
#[derive(Debug, Default, Clone)]
pub struct RestAttributes {
    /// lower-cased name → values in the order sent.
    values: HashMap<String, Vec<Vec<u8>>>,
}

/// Code points that stand for the bytes 0x80–0xff of a `\u0080`–`\u00ff` escape
/// after [`mark_byte_escapes`]: a private-use block no dictionary value uses.
const BYTE_MARK_BASE: u32 = 0xF700;

impl RestAttributes {
    /// Parse an rlm_rest `body = json` request.
    pub fn from_json(raw: &[u8]) -> Result<Self, InvalidBody> {
        let marked = mark_byte_escapes(raw);
        let top: serde_json::Value = serde_json::from_slice(&marked)
            .map_err(|e| invalid(format!("body is not valid JSON: {e}")))?;
        let serde_json::Value::Object(top) = top else {
            return Err(invalid("body must be a JSON object of attributes"));
        };
        let mut attrs = RestAttributes::default();
        for (name, entry) in top {
            let value = match entry {
                serde_json::Value::Object(mut o) => o
                    .remove("value")
                    .ok_or_else(|| invalid(format!("attribute {name}: no \"value\"")))?,
                other => other,
            };
            let list = match value {
                serde_json::Value::Array(list) => list,
                scalar => vec![scalar],
            };
            let slot = attrs.values.entry(name.to_ascii_lowercase()).or_default();
            for v in list {
                slot.push(json_scalar(&name, v)?);
            }
        }
        Ok(attrs)
    }

    /// Parse an rlm_rest `body = post` (application/x-www-form-urlencoded) request.
    pub fn from_form(raw: &[u8]) -> Result<Self, InvalidBody> {
        let mut attrs = RestAttributes::default();
        for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let name = String::from_utf8(percent_decode(k)?)
                .map_err(|_| invalid("form field name is not UTF-8"))?;
            let value = percent_decode(v)?;
            attrs
                .values
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push(value);
        }
        Ok(attrs)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The first value's bytes, as sent.
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.values
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first())
            .map(Vec::as_slice)
    }

    /// A text attribute; it must be UTF-8.
    pub fn text(&self, name: &str) -> Result<Option<String>, InvalidBody> {
        self.bytes(name)
            .map(|b| {
                // No database keeps a NUL in text: refused here, not by storage.
                if b.contains(&0) {
                    return Err(invalid(format!("{name} contains a NUL byte")));
                }
                String::from_utf8(b.to_vec()).map_err(|_| invalid(format!("{name} is not UTF-8")))
            })
            .transpose()
    }

    /// An octets attribute, which FreeRADIUS prints as `0x` and hex.
    pub fn octets(&self, name: &str) -> Result<Option<Vec<u8>>, InvalidBody> {
        self.bytes(name)
            .map(|b| {
                let hex_digits = b
                    .strip_prefix(b"0x")
                    .or_else(|| b.strip_prefix(b"0X"))
                    .ok_or_else(|| invalid(format!("{name} must be octets written as 0x…")))?;
                hex::decode(hex_digits).map_err(|_| invalid(format!("{name}: bad hex octets")))
            })
            .transpose()
    }

    /// An integer attribute: a number (bare or quoted, 64-bit as a string) or
    /// the name of one of the attribute's values in the dictionary (`"Stop"`).
    pub fn integer(&self, name: &str) -> Result<Option<u64>, InvalidBody> {
        let Some(raw) = self.bytes(name) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(raw).map_err(|_| invalid(format!("{name} is not UTF-8")))?;
        if let Ok(n) = text.trim().parse::<u64>() {
            return Ok(Some(n));
        }
        let dict = Dictionary::builtin();
        dict.attr_by_name(name)
            .and_then(|def| dict.value_by_name(def.vendor, def.code, text))
            .map(Some)
            .ok_or_else(|| {
                invalid(format!(
                    "{name}: {text:?} is neither a number nor a value name of {name}"
                ))
            })
    }

    /// A 32-bit integer attribute.
    pub fn integer32(&self, name: &str) -> Result<Option<u32>, InvalidBody> {
        self.integer(name)?
            .map(|n| u32::try_from(n).map_err(|_| invalid(format!("{name}: {n} exceeds 32 bits"))))
            .transpose()
    }

    /// An IPv4 or IPv6 address attribute.
    pub fn ip(&self, name: &str) -> Result<Option<IpAddr>, InvalidBody> {
        self.text(name)?
            .map(|t| {
                t.parse()
                    .map_err(|_| invalid(format!("{name}: {t:?} is not an IP address")))
            })
            .transpose()
    }
}

/// One element of a `value` array as bytes.
fn json_scalar(name: &str, v: serde_json::Value) -> Result<Vec<u8>, InvalidBody> {
    match v {
        serde_json::Value::String(s) => Ok(unmark_byte_escapes(&s)),
        serde_json::Value::Number(n) => Ok(n.to_string().into_bytes()),
        _ => Err(invalid(format!(
            "attribute {name}: values must be strings or numbers"
        ))),
    }
}

/// Rewrite `\u0080`–`\u00ff` escapes to private-use code points so that, after
/// JSON decoding, they can be told apart from the same characters sent as UTF-8.
/// Backslash pairs are copied whole, so `\\u00C3` (a literal backslash) is left alone.
fn mark_byte_escapes(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let esc = &raw[i..raw.len().min(i + 6)];
        let is_byte_escape = esc.len() == 6
            && esc[1] == b'u'
            && esc[2] == b'0'
            && esc[3] == b'0'
            && matches!(esc[4], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
            && esc[5].is_ascii_hexdigit();
        if is_byte_escape {
            out.extend_from_slice(b"\\uF7");
            out.extend_from_slice(&esc[4..6]);
            i += 6;
        } else {
            out.extend_from_slice(&raw[i..raw.len().min(i + 2)]);
            i += 2;
        }
    }
    out
}

/// The bytes of a decoded JSON string, turning marked code points back into bytes.
fn unmark_byte_escapes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        let cp = u32::from(c);
        if (BYTE_MARK_BASE + 0x80..=BYTE_MARK_BASE + 0xff).contains(&cp) {
            out.push((cp - BYTE_MARK_BASE) as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

/// application/x-www-form-urlencoded decoding: `+` is a space, `%XX` a byte.
fn percent_decode(s: &[u8]) -> Result<Vec<u8>, InvalidBody> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid("bad percent escape in form body"))?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let a = RestAttributes::from_json(
            br#"{"User-Name":{"type":"string","value":["bob"]},
                "NAS-Port":{"type":"integer","value":[2149580801]},
                "Acct-Status-Type":{"type":"integer","value":["Interim-Update"]},
                "Acct-Input-Octets":{"type":"integer64","value":["8589934592"]},
                "Class":{"type":"octets","value":["0x72726e65743a76313a31"]},
                "Called-Station-Id":"bare",
                "Reply-Message":["a","b"],
                "Framed-IP-Address":{"type":"ipaddr","value":["10.5.50.10"]},
                "Path":{"type":"string","value":["a\/b"]}}"#,
        )
        .unwrap();
        assert_eq!(a.text("user-name").unwrap().as_deref(), Some("bob"));
        assert_eq!(a.integer("NAS-Port").unwrap(), Some(2149580801));
        assert_eq!(a.integer("Acct-Status-Type").unwrap(), Some(3));
        assert_eq!(a.integer("Acct-Input-Octets").unwrap(), Some(1 << 33));
        assert_eq!(a.octets("Class").unwrap().unwrap(), b"rrnet:v1:1");
        assert_eq!(
            a.text("Called-Station-Id").unwrap().as_deref(),
            Some("bare")
        );
        assert_eq!(a.text("Reply-Message").unwrap().as_deref(), Some("a"));
        assert_eq!(
            a.ip("Framed-IP-Address").unwrap(),
            Some("10.5.50.10".parse().unwrap())
        );
        assert_eq!(a.text("Path").unwrap().as_deref(), Some("a/b"));
        assert_eq!(a.text("Missing").unwrap(), None);
    }

    #[test]
    fn rlm_rest_byte_escapes_are_bytes() {
        // rlm_rest's rendering of "wö": each UTF-8 byte escaped on its own.
        let a = RestAttributes::from_json(
            br#"{"User-Password":{"type":"string","value":["w\u00C3\u00B6"]}}"#,
        )
        .unwrap();
        assert_eq!(a.bytes("User-Password").unwrap(), "wö".as_bytes());
        // Raw UTF-8 stays what it is; so do escapes above U+00FF and escaped backslashes.
        let a = RestAttributes::from_json(
            "{\"A\":\"wö\",\"B\":\"\\u20ac\",\"C\":\"\\\\u00C3\"}".as_bytes(),
        )
        .unwrap();
        assert_eq!(a.bytes("A").unwrap(), "wö".as_bytes());
        assert_eq!(a.bytes("B").unwrap(), "€".as_bytes());
        assert_eq!(a.bytes("C").unwrap(), br"\u00C3");
    }

    #[test]
    fn bad_json_bodies() {
        for (body, why) in [
            (&b"not json"[..], "not valid JSON"),
            (b"[1,2]", "JSON object"),
            (br#"{"User-Name":{"type":"string"}}"#, "no \"value\""),
            (br#"{"User-Name":{"value":[true]}}"#, "strings or numbers"),
            (
                br#"{"User-Name":{"value":[{"x":1}]}}"#,
                "strings or numbers",
            ),
        ] {
            let e = RestAttributes::from_json(body).unwrap_err();
            assert!(
                e.0.contains(why),
                "{e} for {}",
                String::from_utf8_lossy(body)
            );
            assert!(!e.0.contains('\n'));
        }
        let a = RestAttributes::from_json(br#"{"Acct-Status-Type":"Sometimes","Class":"zz","Framed-IP-Address":"x","NAS-Port":"99999999999"}"#).unwrap();
        assert!(a.integer("Acct-Status-Type").is_err());
        assert!(a.octets("Class").is_err());
        assert!(a.ip("Framed-IP-Address").is_err());
        assert!(a.integer32("NAS-Port").is_err());
    }

    #[test]
    fn form_bodies() {
        let a = RestAttributes::from_form(
            b"User-Name=VOUCHER1&User-Password=pa%22ss%2Fw%C3%B6%25rd&Reply-Message=a+b&Empty=&&Acct-Status-Type=Stop",
        )
        .unwrap();
        assert_eq!(a.text("User-Name").unwrap().as_deref(), Some("VOUCHER1"));
        assert_eq!(a.bytes("User-Password").unwrap(), "pa\"ss/wö%rd".as_bytes());
        assert_eq!(a.text("Reply-Message").unwrap().as_deref(), Some("a b"));
        assert_eq!(a.bytes("Empty").unwrap(), b"");
        assert_eq!(a.integer("Acct-Status-Type").unwrap(), Some(2));
        assert!(RestAttributes::from_form(b"User-Name=%zz").is_err());
        assert!(RestAttributes::from_form(b"User-Name=%4").is_err());
    }
}
