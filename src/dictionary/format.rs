//! Rendering attribute values for logs, `packet decode` and the REST shim.

use std::net::{Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, SecondsFormat};
use serde_json::Value;

use super::{AttrDef, AttrType, Dictionary};

/// A value rendered for people (`text`) and for rlm_rest-style JSON (`json`).
#[derive(Debug, Clone, PartialEq)]
pub struct FormattedValue {
    /// Human-readable form, e.g. `Interim-Update`, `10.0.0.1`, `0x00ff`.
    pub text: String,
    /// JSON form: numbers bare, named integers and 64-bit numbers as strings
    /// (JSON consumers lose precision past 2^53), octets as `"0x…"`.
    pub json: Value,
    /// False when the length does not fit the type (RFC 8044 §2: such an
    /// attribute is invalid but the packet is still processed).
    pub valid: bool,
}

impl FormattedValue {
    fn text(text: String) -> FormattedValue {
        FormattedValue {
            json: Value::String(text.clone()),
            text,
            valid: true,
        }
    }

    fn invalid(value: &[u8]) -> FormattedValue {
        FormattedValue {
            valid: false,
            ..FormattedValue::text(hex(value))
        }
    }
}

fn hex(value: &[u8]) -> String {
    format!("0x{}", hex::encode(value))
}

impl Dictionary {
    /// Render a raw attribute value according to its type.
    ///
    /// Strings print as is when they are printable UTF-8, else as hex;
    /// integers print their VALUE name when one exists; a value whose length
    /// is wrong for its type prints as hex with `valid == false`.
    pub fn format_value(&self, def: &AttrDef, value: &[u8]) -> FormattedValue {
        if def.typ.fixed_len().is_some_and(|len| len != value.len()) {
            return FormattedValue::invalid(value);
        }
        match def.typ {
            AttrType::String => match std::str::from_utf8(value) {
                Ok(s) if !s.chars().any(char::is_control) => FormattedValue::text(s.to_owned()),
                _ => FormattedValue::text(hex(value)),
            },
            AttrType::Octets => FormattedValue::text(hex(value)),
            AttrType::IpAddr => {
                let octets: [u8; 4] = value.try_into().expect("length checked");
                FormattedValue::text(Ipv4Addr::from(octets).to_string())
            }
            AttrType::Ipv6Addr => {
                let octets: [u8; 16] = value.try_into().expect("length checked");
                FormattedValue::text(Ipv6Addr::from(octets).to_string())
            }
            AttrType::Ipv6Prefix => match ipv6_prefix(value) {
                Some(text) => FormattedValue::text(text),
                None => FormattedValue::invalid(value),
            },
            AttrType::Byte | AttrType::Short | AttrType::Integer | AttrType::Integer64 => {
                let number = value.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                match self.value_name(def.vendor, def.code, number) {
                    Some(name) => FormattedValue::text(name.to_owned()),
                    None if def.typ == AttrType::Integer64 => {
                        FormattedValue::text(number.to_string())
                    }
                    None => FormattedValue {
                        text: number.to_string(),
                        json: Value::from(number),
                        valid: true,
                    },
                }
            }
            AttrType::Date => {
                let secs = u32::from_be_bytes(value.try_into().expect("length checked"));
                match DateTime::from_timestamp(i64::from(secs), 0) {
                    Some(t) => FormattedValue::text(t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                    None => FormattedValue::invalid(value),
                }
            }
            AttrType::Ether => FormattedValue::text(
                value
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            AttrType::Ifid => FormattedValue::text(
                value
                    .chunks(2)
                    .map(hex::encode)
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
        }
    }
}

/// RFC 3162 §2.3: reserved octet, prefix length (0-128), then as many prefix
/// octets as needed (RFC 8044 §3.10 allows the trailing zero octets to be
/// omitted, so 2-18 octets in all).
fn ipv6_prefix(value: &[u8]) -> Option<String> {
    let (&len, prefix) = value.get(1..)?.split_first()?;
    if len > 128 || prefix.len() > 16 || prefix.len() * 8 < usize::from(len) {
        return None;
    }
    let mut octets = [0u8; 16];
    octets[..prefix.len()].copy_from_slice(prefix);
    Some(format!("{}/{}", Ipv6Addr::from(octets), len))
}
