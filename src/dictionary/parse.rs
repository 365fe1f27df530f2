//! The FreeRADIUS dictionary file format: one definition a line, `#` to the
//! end of a line is a comment, fields separated by blanks.

use std::path::{Path, PathBuf};

use super::{embedded, AttrDef, AttrType, Dictionary, DictionaryError, ParseErrorKind, VendorDef};

/// Where a file came from, which decides how its `$INCLUDE`s resolve.
enum Base {
    /// A file on disk (or `load_str` text named like one): includes are
    /// relative to this directory.
    Dir(PathBuf),
    /// One of the embedded files: includes name other embedded files.
    Embedded,
}

/// One file being read.
struct Unit {
    /// How errors name the file.
    label: String,
    /// Identity for include-loop detection (canonical path, or embedded name).
    key: String,
    text: String,
    base: Base,
}

/// State shared across a file and everything it includes.
struct Loader<'d> {
    dict: &'d mut Dictionary,
    /// Keys of the files currently open, outermost first.
    open: Vec<String>,
}

pub(super) fn load_fs_root(
    dict: &mut Dictionary,
    path: &Path,
    text: String,
) -> Result<(), DictionaryError> {
    let unit = Unit {
        label: path.display().to_string(),
        key: fs_key(path),
        text,
        base: Base::Dir(parent_dir(path)),
    };
    Loader {
        dict,
        open: Vec::new(),
    }
    .read(unit)
}

pub(super) fn load_embedded_root(dict: &mut Dictionary, name: &str) -> Result<(), DictionaryError> {
    let text = embedded::get(name).ok_or_else(|| DictionaryError::Parse {
        file: name.to_owned(),
        line: 0,
        kind: ParseErrorKind::IncludeNotFound {
            path: name.to_owned(),
            reason: "no such embedded dictionary".to_owned(),
        },
    })?;
    let unit = Unit {
        label: name.to_owned(),
        key: embedded_key(name),
        text: text.to_owned(),
        base: Base::Embedded,
    };
    Loader {
        dict,
        open: Vec::new(),
    }
    .read(unit)
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn fs_key(path: &Path) -> String {
    // Canonical so that "a/../b" and a symlink name the same file.
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn embedded_key(name: &str) -> String {
    format!("embedded:{name}")
}

/// An error for the current line.
fn at(unit: &Unit, line: usize, kind: ParseErrorKind) -> DictionaryError {
    DictionaryError::Parse {
        file: unit.label.clone(),
        line,
        kind,
    }
}

impl Loader<'_> {
    fn read(&mut self, unit: Unit) -> Result<(), DictionaryError> {
        self.open.push(unit.key.clone());
        let result = self.read_lines(&unit);
        self.open.pop();
        result
    }

    fn read_lines(&mut self, unit: &Unit) -> Result<(), DictionaryError> {
        // FreeRADIUS scopes BEGIN-VENDOR to one file: (vendor id, name, line).
        let mut block: Option<(u32, String, usize)> = None;
        for (index, raw) in unit.text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("");
            let fields: Vec<&str> = content.split_whitespace().collect();
            let Some((&keyword, args)) = fields.split_first() else {
                continue;
            };
            let vendor = block.as_ref().map_or(0, |b| b.0);
            match keyword {
                "ATTRIBUTE" => {
                    let def = self
                        .parse_attribute(args, vendor)
                        .map_err(|k| at(unit, line, k))?;
                    self.dict.add_attr(def).map_err(|k| at(unit, line, k))?;
                }
                "VALUE" => {
                    let [attr, name, number] =
                        exact::<3>("VALUE", "attribute, name and number", args)
                            .map_err(|k| at(unit, line, k))?;
                    let number =
                        parse_number(number, "value number").map_err(|k| at(unit, line, k))?;
                    self.dict
                        .add_value(attr, name, number)
                        .map_err(|k| at(unit, line, k))?;
                }
                "VENDOR" => {
                    let def = parse_vendor(args).map_err(|k| at(unit, line, k))?;
                    self.dict.add_vendor(def).map_err(|k| at(unit, line, k))?;
                }
                "BEGIN-VENDOR" => {
                    let [name] = exact::<1>("BEGIN-VENDOR", "a vendor name", args)
                        .map_err(|k| at(unit, line, k))?;
                    if let Some((_, open, open_line)) = &block {
                        return Err(at(
                            unit,
                            line,
                            ParseErrorKind::UnbalancedVendor(format!(
                                "BEGIN-VENDOR {name} inside BEGIN-VENDOR {open} (line {open_line})"
                            )),
                        ));
                    }
                    let id = self.dict.vendor_by_name(name).ok_or_else(|| {
                        at(unit, line, ParseErrorKind::UnknownVendor(name.to_owned()))
                    })?;
                    block = Some((id, name.to_owned(), line));
                }
                "END-VENDOR" => {
                    let [name] = exact::<1>("END-VENDOR", "a vendor name", args)
                        .map_err(|k| at(unit, line, k))?;
                    let problem = match &block {
                        Some((_, open, _)) if open.eq_ignore_ascii_case(name) => None,
                        Some((_, open, open_line)) => Some(format!(
                            "END-VENDOR {name} closes BEGIN-VENDOR {open} (line {open_line})"
                        )),
                        None => Some(format!("END-VENDOR {name} without BEGIN-VENDOR")),
                    };
                    if let Some(problem) = problem {
                        return Err(at(unit, line, ParseErrorKind::UnbalancedVendor(problem)));
                    }
                    block = None;
                }
                "$INCLUDE" | "$INCLUDE-" => {
                    let [target] = exact::<1>("$INCLUDE", "a file name", args)
                        .map_err(|k| at(unit, line, k))?;
                    let optional = keyword == "$INCLUDE-";
                    match self.resolve(unit, target) {
                        Ok(child) => {
                            if self.open.contains(&child.key) {
                                return Err(at(
                                    unit,
                                    line,
                                    ParseErrorKind::IncludeLoop(child.label),
                                ));
                            }
                            self.read(child)?;
                        }
                        // `$INCLUDE-` is FreeRADIUS's "include if present".
                        Err(_) if optional => {}
                        Err(kind) => return Err(at(unit, line, kind)),
                    }
                }
                other => {
                    return Err(at(
                        unit,
                        line,
                        ParseErrorKind::UnknownKeyword(other.to_owned()),
                    ));
                }
            }
        }
        if let Some((_, name, open_line)) = block {
            return Err(at(
                unit,
                open_line,
                ParseErrorKind::UnbalancedVendor(format!(
                    "BEGIN-VENDOR {name} has no END-VENDOR before the end of the file"
                )),
            ));
        }
        Ok(())
    }

    fn resolve(&self, unit: &Unit, target: &str) -> Result<Unit, ParseErrorKind> {
        match &unit.base {
            Base::Dir(dir) => {
                let path = dir.join(target);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ParseErrorKind::IncludeNotFound {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    }
                })?;
                Ok(Unit {
                    label: path.display().to_string(),
                    key: fs_key(&path),
                    text,
                    base: Base::Dir(parent_dir(&path)),
                })
            }
            Base::Embedded => {
                let name = target.trim_start_matches("./");
                let text = embedded::get(name).ok_or_else(|| ParseErrorKind::IncludeNotFound {
                    path: target.to_owned(),
                    reason: "no such embedded dictionary".to_owned(),
                })?;
                Ok(Unit {
                    label: name.to_owned(),
                    key: embedded_key(name),
                    text: text.to_owned(),
                    base: Base::Embedded,
                })
            }
        }
    }

    fn parse_attribute(&self, args: &[&str], vendor: u32) -> Result<AttrDef, ParseErrorKind> {
        let (name, number, typ, flags) = match args {
            [name, number, typ] => (*name, *number, *typ, None),
            [name, number, typ, flags] => (*name, *number, *typ, Some(*flags)),
            [_, _, _, _, extra, ..] => return Err(ParseErrorKind::ExtraField((*extra).to_owned())),
            _ => {
                return Err(ParseErrorKind::MissingField {
                    keyword: "ATTRIBUTE",
                    expected: "name, number and type",
                })
            }
        };
        let code = parse_number(number, "attribute number")?;
        let max_code: u64 = if vendor == 0 {
            u8::MAX.into()
        } else {
            match self.dict.vendor(vendor).map_or(1, |v| v.type_size) {
                1 => u8::MAX.into(),
                2 => u16::MAX.into(),
                _ => u32::MAX.into(),
            }
        };
        // RFC 2865 §5: standard attribute 0 does not exist.
        let min_code = u64::from(vendor == 0);
        if code < min_code || code > max_code {
            return Err(ParseErrorKind::BadNumber {
                what: "attribute number (out of range)",
                text: number.to_owned(),
            });
        }
        let typ = AttrType::from_dictionary_name(typ)
            .ok_or_else(|| ParseErrorKind::UnknownType(typ.to_owned()))?;
        let mut def = AttrDef {
            name: name.to_owned(),
            vendor,
            code: code as u32,
            typ,
            encrypt: 0,
            has_tag: false,
            concat: false,
        };
        for flag in flags.into_iter().flat_map(|f| f.split(',')) {
            match flag.split_once('=') {
                Some(("encrypt", method)) => {
                    def.encrypt = match method.parse::<u8>() {
                        Ok(m @ 0..=3) => m,
                        _ => {
                            return Err(ParseErrorKind::BadNumber {
                                what: "encrypt method (0-3)",
                                text: method.to_owned(),
                            })
                        }
                    }
                }
                Some(_) => return Err(ParseErrorKind::UnknownFlag(flag.to_owned())),
                None => match flag {
                    "has_tag" => def.has_tag = true,
                    "concat" => def.concat = true,
                    // FreeRADIUS flags that change nothing this server does.
                    "array" | "virtual" | "internal" | "secret" => {}
                    _ => return Err(ParseErrorKind::UnknownFlag(flag.to_owned())),
                },
            }
        }
        Ok(def)
    }
}

fn parse_vendor(args: &[&str]) -> Result<VendorDef, ParseErrorKind> {
    let (name, number, format) = match args {
        [name, number] => (*name, *number, None),
        [name, number, format] => (*name, *number, Some(*format)),
        [_, _, _, extra, ..] => return Err(ParseErrorKind::ExtraField((*extra).to_owned())),
        _ => {
            return Err(ParseErrorKind::MissingField {
                keyword: "VENDOR",
                expected: "name and number",
            })
        }
    };
    let id = parse_number(number, "vendor number")?;
    let id = u32::try_from(id).map_err(|_| ParseErrorKind::BadNumber {
        what: "vendor number",
        text: number.to_owned(),
    })?;
    // RFC 2865 §5.26 recommends one octet type, one octet length.
    let (mut type_size, mut length_size) = (1, 1);
    if let Some(format) = format {
        let bad = || ParseErrorKind::BadNumber {
            what: "vendor format (format=T,L with T in 1,2,4 and L in 0,1,2)",
            text: format.to_owned(),
        };
        let spec = format.strip_prefix("format=").ok_or_else(bad)?;
        let mut parts = spec.split(',');
        type_size = match parts.next() {
            Some("1") => 1,
            Some("2") => 2,
            Some("4") => 4,
            _ => return Err(bad()),
        };
        length_size = match parts.next() {
            Some("0") => 0,
            Some("1") => 1,
            Some("2") => 2,
            _ => return Err(bad()),
        };
        // An optional third part ("c", continuation flag) is accepted.
        match parts.next() {
            None | Some("c") => {}
            Some(_) => return Err(bad()),
        }
        if parts.next().is_some() {
            return Err(bad());
        }
    }
    Ok(VendorDef {
        name: name.to_owned(),
        id,
        type_size,
        length_size,
    })
}

/// Exactly `N` fields, or a MissingField / ExtraField error.
fn exact<'a, const N: usize>(
    keyword: &'static str,
    expected: &'static str,
    args: &[&'a str],
) -> Result<[&'a str; N], ParseErrorKind> {
    if let Some(extra) = args.get(N) {
        return Err(ParseErrorKind::ExtraField((*extra).to_owned()));
    }
    args.try_into()
        .map_err(|_| ParseErrorKind::MissingField { keyword, expected })
}

/// Decimal, or hexadecimal with a `0x` prefix (as FreeRADIUS accepts).
fn parse_number(text: &str, what: &'static str) -> Result<u64, ParseErrorKind> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse::<u64>(),
    };
    parsed.map_err(|_| ParseErrorKind::BadNumber {
        what,
        text: text.to_owned(),
    })
}
