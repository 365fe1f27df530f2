//! FreeRADIUS-format dictionaries: attribute names ⇄ numbers ⇄ types.
//!
//! The files in `dictionaries/` are embedded in the binary ([`Dictionary::builtin`]);
//! operators can load more at start-up ([`Dictionary::load_file`]). The format is
//! FreeRADIUS's, so ordinary vendor files written for FreeRADIUS load as is;
//! RFC 6929 extended attributes (`241.1` numbers), `BEGIN-TLV`, `FLAGS` and
//! `PROTOCOL` are not supported and are reported as errors:
//!
//! ```text
//! VENDOR        Mikrotik 14988 [format=1,1]
//! BEGIN-VENDOR  Mikrotik
//! ATTRIBUTE     Mikrotik-Rate-Limit 8 string [flags]
//! END-VENDOR    Mikrotik
//! VALUE         Acct-Status-Type Interim-Update 3
//! $INCLUDE      dictionary.rfc2865
//! ```
//!
//! Lookups are hash-map based. When two names share one number (aliases), the
//! first definition loaded is the one used for printing; every name resolves.

mod embedded;
mod error;
mod format;
mod parse;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

pub use error::{DictionaryError, ParseErrorKind};
pub use format::FormattedValue;

/// The data type of an attribute value (RFC 8044 names the wire formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrType {
    /// Text, 1-253 octets; UTF-8 by convention (RFC 8044 §3.5).
    String,
    /// Opaque octets (RFC 8044 §3.6).
    Octets,
    /// IPv4 address, 4 octets (RFC 8044 §3.8).
    IpAddr,
    /// IPv6 address, 16 octets (RFC 8044 §3.9).
    Ipv6Addr,
    /// Reserved octet, prefix length, prefix octets (RFC 3162 §2.3, RFC 8044 §3.10).
    Ipv6Prefix,
    /// Unsigned 32-bit integer, network order (RFC 8044 §3.1).
    Integer,
    /// Unsigned 64-bit integer, network order (RFC 8044 §3.2).
    Integer64,
    /// Seconds since 1970-01-01 UTC, 32 bits (RFC 8044 §3.3).
    Date,
    /// One unsigned octet (FreeRADIUS extension).
    Byte,
    /// Unsigned 16-bit integer (FreeRADIUS extension).
    Short,
    /// Ethernet MAC address, 6 octets (FreeRADIUS extension).
    Ether,
    /// IPv6 interface identifier, 8 octets (RFC 3162 §2.2, RFC 8044 §3.7).
    Ifid,
}

impl AttrType {
    /// Parse a dictionary type name. FreeRADIUS types this server has no use
    /// for (`signed`, `combo-ip`, `tlv`, `vsa`, `abinary`, ...) load as
    /// [`AttrType::Octets`] so that vendor files still load; a length suffix
    /// such as `octets[16]` is accepted and ignored.
    pub fn from_dictionary_name(name: &str) -> Option<AttrType> {
        let base = match name.find('[') {
            Some(open) => {
                let inner = name[open + 1..].strip_suffix(']')?;
                inner.parse::<u16>().ok()?;
                &name[..open]
            }
            None => name,
        };
        Some(match base.to_ascii_lowercase().as_str() {
            "string" => AttrType::String,
            "octets" => AttrType::Octets,
            "ipaddr" => AttrType::IpAddr,
            "ipv6addr" => AttrType::Ipv6Addr,
            "ipv6prefix" => AttrType::Ipv6Prefix,
            "integer" => AttrType::Integer,
            "integer64" => AttrType::Integer64,
            "date" => AttrType::Date,
            "byte" => AttrType::Byte,
            "short" => AttrType::Short,
            "ether" => AttrType::Ether,
            "ifid" => AttrType::Ifid,
            "signed" | "combo-ip" | "tlv" | "vsa" | "abinary" | "ipv4prefix" | "extended"
            | "long-extended" | "evs" => AttrType::Octets,
            _ => return None,
        })
    }

    /// The dictionary name of the type.
    pub fn dictionary_name(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Octets => "octets",
            AttrType::IpAddr => "ipaddr",
            AttrType::Ipv6Addr => "ipv6addr",
            AttrType::Ipv6Prefix => "ipv6prefix",
            AttrType::Integer => "integer",
            AttrType::Integer64 => "integer64",
            AttrType::Date => "date",
            AttrType::Byte => "byte",
            AttrType::Short => "short",
            AttrType::Ether => "ether",
            AttrType::Ifid => "ifid",
        }
    }

    /// Largest number a VALUE may give for this type, or `None` when the type
    /// has no named values.
    pub fn max_enum_value(self) -> Option<u64> {
        match self {
            AttrType::Byte => Some(u8::MAX.into()),
            AttrType::Short => Some(u16::MAX.into()),
            AttrType::Integer => Some(u32::MAX.into()),
            AttrType::Integer64 => Some(u64::MAX),
            _ => None,
        }
    }

    /// The exact value length the type requires, if it is fixed.
    pub fn fixed_len(self) -> Option<usize> {
        match self {
            AttrType::IpAddr | AttrType::Integer | AttrType::Date => Some(4),
            AttrType::Ipv6Addr => Some(16),
            AttrType::Integer64 | AttrType::Ifid => Some(8),
            AttrType::Byte => Some(1),
            AttrType::Short => Some(2),
            AttrType::Ether => Some(6),
            AttrType::String | AttrType::Octets | AttrType::Ipv6Prefix => None,
        }
    }
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dictionary_name())
    }
}

/// One attribute definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrDef {
    /// The name as written in the dictionary.
    pub name: String,
    /// SMI enterprise number of the vendor; 0 for standard attributes.
    pub vendor: u32,
    /// Attribute number (the vendor's sub-attribute number for VSAs).
    pub code: u32,
    /// Value type.
    pub typ: AttrType,
    /// FreeRADIUS `encrypt=` method: 0 none, 1 User-Password hiding
    /// (RFC 2865 §5.2), 2 Tunnel-Password (RFC 2868 §3.5), 3 Ascend secret.
    pub encrypt: u8,
    /// The value carries an RFC 2868 §3 tag octet.
    pub has_tag: bool,
    /// Long values are split over consecutive attributes (RFC 3579 §3.1, EAP-Message).
    pub concat: bool,
}

impl fmt::Display for AttrDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.vendor == 0 {
            write!(f, "{} ({} {})", self.name, self.code, self.typ)
        } else {
            write!(
                f,
                "{} (vendor {} attribute {} {})",
                self.name, self.vendor, self.code, self.typ
            )
        }
    }
}

/// One vendor (VENDOR line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorDef {
    /// Name as written.
    pub name: String,
    /// SMI enterprise number.
    pub id: u32,
    /// Octets in a sub-attribute's type field (1, 2 or 4; RFC 2865 §5.26 suggests 1).
    pub type_size: u8,
    /// Octets in a sub-attribute's length field (0, 1 or 2).
    pub length_size: u8,
}

/// Named values of one attribute.
#[derive(Debug, Clone, Default)]
struct ValueSet {
    /// number → first name defined for it.
    by_number: HashMap<u64, String>,
    /// lower-cased name → number.
    by_name: HashMap<String, u64>,
    /// Definition order, for listing.
    order: Vec<(String, u64)>,
}

/// A set of attribute, vendor and value definitions.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    /// Every ATTRIBUTE line accepted, aliases included, in load order.
    attrs: Vec<AttrDef>,
    /// (vendor, code) → index of the first definition of that number.
    by_code: HashMap<(u32, u32), usize>,
    /// lower-cased name → index; names are case-insensitive in FreeRADIUS.
    by_name: HashMap<String, usize>,
    /// Every VENDOR line accepted.
    vendors: Vec<VendorDef>,
    /// vendor number → index of its first name.
    vendor_by_id: HashMap<u32, usize>,
    /// lower-cased vendor name → index.
    vendor_by_name: HashMap<String, usize>,
    /// (vendor, code) → named values; keyed by number so aliases share them.
    values: HashMap<(u32, u32), ValueSet>,
}

static BUILTIN: OnceLock<Dictionary> = OnceLock::new();

impl Dictionary {
    /// The embedded dictionaries, parsed on first use.
    ///
    /// Panics only if the embedded files are broken, which a unit test rules out.
    pub fn builtin() -> &'static Dictionary {
        BUILTIN.get_or_init(|| {
            let mut dict = Dictionary::empty();
            dict.load_embedded(embedded::ROOT)
                .unwrap_or_else(|e| panic!("embedded dictionaries are broken: {e}"));
            dict
        })
    }

    /// A dictionary with no definitions.
    pub fn empty() -> Dictionary {
        Dictionary::default()
    }

    /// An owned copy of [`Dictionary::builtin`], to extend with operator files.
    pub fn with_builtin() -> Dictionary {
        Dictionary::builtin().clone()
    }

    /// Load a dictionary file; `$INCLUDE` paths resolve relative to the
    /// including file's directory. On error nothing from the file is kept.
    pub fn load_file(&mut self, path: &Path) -> Result<(), DictionaryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DictionaryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.transaction(|dict| parse::load_fs_root(dict, path, text))
    }

    /// Load dictionary text. `name` labels errors; a relative `$INCLUDE`
    /// resolves against `name`'s directory as if `name` were a path.
    /// On error nothing from the text is kept.
    pub fn load_str(&mut self, name: &str, text: &str) -> Result<(), DictionaryError> {
        self.transaction(|dict| parse::load_fs_root(dict, Path::new(name), text.to_owned()))
    }

    fn load_embedded(&mut self, name: &str) -> Result<(), DictionaryError> {
        self.transaction(|dict| parse::load_embedded_root(dict, name))
    }

    /// Run a load against a copy so that a failed load leaves `self` untouched.
    fn transaction(
        &mut self,
        load: impl FnOnce(&mut Dictionary) -> Result<(), DictionaryError>,
    ) -> Result<(), DictionaryError> {
        let mut staged = self.clone();
        load(&mut staged)?;
        *self = staged;
        Ok(())
    }

    /// The attribute with this number (the first name defined for it).
    pub fn attr(&self, vendor: u32, code: u32) -> Option<&AttrDef> {
        self.by_code.get(&(vendor, code)).map(|&i| &self.attrs[i])
    }

    /// The attribute with this name, ignoring ASCII case.
    pub fn attr_by_name(&self, name: &str) -> Option<&AttrDef> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.attrs[i])
    }

    /// Every attribute definition, aliases included, in load order.
    pub fn attrs(&self) -> impl Iterator<Item = &AttrDef> {
        self.attrs.iter()
    }

    /// The vendor's name.
    pub fn vendor_name(&self, vendor: u32) -> Option<&str> {
        self.vendor(vendor).map(|v| v.name.as_str())
    }

    /// The vendor's number, by name, ignoring ASCII case.
    pub fn vendor_by_name(&self, name: &str) -> Option<u32> {
        self.vendor_by_name
            .get(&name.to_ascii_lowercase())
            .map(|&i| self.vendors[i].id)
    }

    /// The vendor's definition, including its VSA field sizes.
    pub fn vendor(&self, vendor: u32) -> Option<&VendorDef> {
        self.vendor_by_id.get(&vendor).map(|&i| &self.vendors[i])
    }

    /// The name of a numeric value of an attribute (VALUE line).
    pub fn value_name(&self, vendor: u32, code: u32, value: u64) -> Option<&str> {
        self.values
            .get(&(vendor, code))?
            .by_number
            .get(&value)
            .map(String::as_str)
    }

    /// The number of a named value of an attribute, ignoring ASCII case.
    pub fn value_by_name(&self, vendor: u32, code: u32, name: &str) -> Option<u64> {
        self.values
            .get(&(vendor, code))?
            .by_name
            .get(&name.to_ascii_lowercase())
            .copied()
    }

    /// Every named value of an attribute, in load order.
    pub fn values(&self, vendor: u32, code: u32) -> impl Iterator<Item = (&str, u64)> {
        self.values
            .get(&(vendor, code))
            .into_iter()
            .flat_map(|set| set.order.iter().map(|(name, n)| (name.as_str(), *n)))
    }

    // ---- mutation, used by the parser ----

    fn add_vendor(&mut self, def: VendorDef) -> Result<(), ParseErrorKind> {
        let key = def.name.to_ascii_lowercase();
        if let Some(&i) = self.vendor_by_name.get(&key) {
            let existing = &self.vendors[i];
            if existing.id != def.id {
                return Err(ParseErrorKind::ConflictingVendor {
                    name: def.name,
                    existing: existing.id,
                });
            }
            return Ok(());
        }
        let index = self.vendors.len();
        self.vendor_by_id.entry(def.id).or_insert(index);
        self.vendor_by_name.insert(key, index);
        self.vendors.push(def);
        Ok(())
    }

    fn add_attr(&mut self, def: AttrDef) -> Result<(), ParseErrorKind> {
        let key = def.name.to_ascii_lowercase();
        if let Some(&i) = self.by_name.get(&key) {
            let existing = &self.attrs[i];
            if (existing.vendor, existing.code, existing.typ) != (def.vendor, def.code, def.typ) {
                return Err(ParseErrorKind::ConflictingAttribute {
                    name: def.name,
                    existing: existing.to_string(),
                });
            }
            // Loading the same definition twice (e.g. a file included from two
            // places) is harmless.
            return Ok(());
        }
        let index = self.attrs.len();
        self.by_code.entry((def.vendor, def.code)).or_insert(index);
        self.by_name.insert(key, index);
        self.attrs.push(def);
        Ok(())
    }

    fn add_value(&mut self, attr: &str, name: &str, number: u64) -> Result<(), ParseErrorKind> {
        let def = self
            .attr_by_name(attr)
            .ok_or_else(|| ParseErrorKind::UnknownAttribute(attr.to_owned()))?;
        let max = def
            .typ
            .max_enum_value()
            .ok_or_else(|| ParseErrorKind::ValueForNonInteger {
                attr: def.name.clone(),
                typ: def.typ.dictionary_name(),
            })?;
        if number > max {
            return Err(ParseErrorKind::BadNumber {
                what: "value (out of range for the attribute's type)",
                text: number.to_string(),
            });
        }
        let set = self.values.entry((def.vendor, def.code)).or_default();
        let key = name.to_ascii_lowercase();
        if let Some(&existing) = set.by_name.get(&key) {
            if existing != number {
                return Err(ParseErrorKind::ConflictingValue {
                    attr: attr.to_owned(),
                    name: name.to_owned(),
                    existing,
                });
            }
            return Ok(());
        }
        set.by_name.insert(key, number);
        set.by_number
            .entry(number)
            .or_insert_with(|| name.to_owned());
        set.order.push((name.to_owned(), number));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
