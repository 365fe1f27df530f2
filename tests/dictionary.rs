//! The dictionary loader against its embedded files, real files on disk, and
//! FreeRADIUS's own dictionaries as an independent statement of the facts.

mod common;

use std::fs;
use std::path::Path;

use rrnet_radius::dictionary::{AttrType, Dictionary, DictionaryError, ParseErrorKind};

const MIKROTIK: u32 = 14988;
const WISPR: u32 = 14122;

#[test]
fn spot_checks() {
    let d = Dictionary::builtin();
    let check = |name: &str, vendor: u32, code: u32, typ: AttrType| {
        let def = d
            .attr_by_name(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            (def.vendor, def.code, def.typ),
            (vendor, code, typ),
            "{name}"
        );
        assert_eq!(d.attr(vendor, code).unwrap().code, code);
    };
    check("User-Name", 0, 1, AttrType::String);
    check("User-Password", 0, 2, AttrType::String);
    check("CHAP-Challenge", 0, 60, AttrType::Octets);
    check("NAS-Port-Type", 0, 61, AttrType::Integer);
    check("Acct-Input-Gigawords", 0, 52, AttrType::Integer);
    check("Acct-Output-Gigawords", 0, 53, AttrType::Integer);
    check("Event-Timestamp", 0, 55, AttrType::Date);
    check("EAP-Message", 0, 79, AttrType::Octets);
    check("Message-Authenticator", 0, 80, AttrType::Octets);
    check("Acct-Interim-Interval", 0, 85, AttrType::Integer);
    check("NAS-Port-Id", 0, 87, AttrType::String);
    check("Framed-Pool", 0, 88, AttrType::String);
    check("NAS-IPv6-Address", 0, 95, AttrType::Ipv6Addr);
    check("Framed-Interface-Id", 0, 96, AttrType::Ifid);
    check("Framed-IPv6-Prefix", 0, 97, AttrType::Ipv6Prefix);
    check("Error-Cause", 0, 101, AttrType::Integer);
    check("Mikrotik-Rate-Limit", MIKROTIK, 8, AttrType::String);
    check("Mikrotik-Host-IP", MIKROTIK, 10, AttrType::IpAddr);
    check("Mikrotik-Total-Limit", MIKROTIK, 17, AttrType::Integer);
    check(
        "Mikrotik-Total-Limit-Gigawords",
        MIKROTIK,
        18,
        AttrType::Integer,
    );
    check("Mikrotik-Address-List", MIKROTIK, 19, AttrType::String);
    check("Mikrotik-Switching-Filter", MIKROTIK, 30, AttrType::String);
    check("WISPr-Location-Name", WISPR, 2, AttrType::String);
    check("WISPr-Bandwidth-Max-Down", WISPR, 8, AttrType::Integer);
    check(
        "WISPr-Billing-Class-Of-Service",
        WISPR,
        11,
        AttrType::String,
    );

    assert_eq!(d.vendor_name(MIKROTIK), Some("Mikrotik"));
    assert_eq!(d.vendor_by_name("WISPr"), Some(WISPR));
    assert_eq!(d.value_by_name(0, 40, "Interim-Update"), Some(3));
    assert_eq!(d.value_by_name(0, 40, "Accounting-Off"), Some(8));
    assert_eq!(d.value_name(0, 61, 19), Some("Wireless-802.11"));
    assert_eq!(d.value_name(0, 61, 15), Some("Ethernet"));
    assert_eq!(d.value_name(0, 6, 1), Some("Login-User"));
    assert_eq!(d.value_name(0, 6, 17), Some("Authorize-Only"));
    assert_eq!(d.value_name(0, 29, 1), Some("RADIUS-Request"));
    assert_eq!(d.value_name(0, 49, 1), Some("User-Request"));
    assert_eq!(d.value_name(0, 49, 11), Some("NAS-Reboot"));
    assert_eq!(
        d.value_name(0, 49, 22),
        Some("Port-Administratively-Disabled")
    );
    assert_eq!(d.value_name(0, 101, 503), Some("Session-Context-Not-Found"));
    assert_eq!(d.value_name(MIKROTIK, 6, 4), Some("TKIP"));
    // Nothing in the shipped set is 64-bit: RFC 2869 splits counters in two.
    assert!(d.attrs().all(|a| a.typ != AttrType::Integer64));
}

#[test]
fn acct_terminate_cause_has_every_value_1_to_22() {
    let d = Dictionary::builtin();
    for n in 1..=22 {
        assert!(d.value_name(0, 49, n).is_some(), "Acct-Terminate-Cause {n}");
    }
}

#[test]
fn extra_file_extends_builtin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dictionary.local");
    fs::write(
        &path,
        "VENDOR Acme 99999\nBEGIN-VENDOR Acme\nATTRIBUTE Acme-Quota 1 integer64\nEND-VENDOR Acme\n",
    )
    .unwrap();
    let mut d = Dictionary::with_builtin();
    d.load_file(&path).unwrap();
    assert_eq!(d.attr(99999, 1).unwrap().typ, AttrType::Integer64);
    assert!(d.attr_by_name("User-Name").is_some());
    // The shared builtin copy is untouched.
    assert!(Dictionary::builtin().attr(99999, 1).is_none());
}

#[test]
fn include_is_relative_to_the_including_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("vendors");
    fs::create_dir(&sub).unwrap();
    fs::write(
        dir.path().join("dictionary"),
        "# top\n$INCLUDE vendors/dictionary.acme\n",
    )
    .unwrap();
    // "dictionary.acme.values" sits next to dictionary.acme, not next to the top file.
    fs::write(
        sub.join("dictionary.acme"),
        "ATTRIBUTE Acme-Mode 200 integer\n$INCLUDE dictionary.acme.values\n",
    )
    .unwrap();
    fs::write(
        sub.join("dictionary.acme.values"),
        "VALUE Acme-Mode Fast 2\n",
    )
    .unwrap();

    let mut d = Dictionary::empty();
    d.load_file(&dir.path().join("dictionary")).unwrap();
    assert_eq!(d.value_by_name(0, 200, "fast"), Some(2));

    // The same file included twice (not recursively) is fine.
    fs::write(
        dir.path().join("twice"),
        "$INCLUDE vendors/dictionary.acme\n$INCLUDE vendors/dictionary.acme\n",
    )
    .unwrap();
    Dictionary::empty()
        .load_file(&dir.path().join("twice"))
        .unwrap();
}

#[test]
fn missing_include_names_the_including_line() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("dictionary");
    fs::write(&top, "ATTRIBUTE A 1 string\n\n$INCLUDE nope.dict\n").unwrap();
    let err = Dictionary::empty().load_file(&top).unwrap_err();
    let (file, line) = err.location().unwrap();
    assert_eq!((Path::new(file), line), (top.as_path(), 3));
    assert!(
        matches!(err.kind(), Some(ParseErrorKind::IncludeNotFound { path, .. }) if path.ends_with("nope.dict")),
        "{err}"
    );

    // `$INCLUDE-` is optional.
    fs::write(&top, "$INCLUDE- nope.dict\nATTRIBUTE A 1 string\n").unwrap();
    let mut d = Dictionary::empty();
    d.load_file(&top).unwrap();
    assert!(d.attr_by_name("A").is_some());
}

#[test]
fn include_loop_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.dict");
    let b = dir.path().join("b.dict");
    fs::write(&a, "ATTRIBUTE A 1 string\n$INCLUDE b.dict\n").unwrap();
    fs::write(
        &b,
        "ATTRIBUTE B 2 string\n\n# back to a, through another spelling\n$INCLUDE ./a.dict\n",
    )
    .unwrap();
    let err = Dictionary::empty().load_file(&a).unwrap_err();
    let (file, line) = err.location().unwrap();
    assert_eq!((Path::new(file), line), (b.as_path(), 4), "{err}");
    assert!(
        matches!(err.kind(), Some(ParseErrorKind::IncludeLoop(_))),
        "{err}"
    );

    // A file including itself.
    fs::write(&a, "$INCLUDE a.dict\n").unwrap();
    let err = Dictionary::empty().load_file(&a).unwrap_err();
    assert!(
        matches!(err.kind(), Some(ParseErrorKind::IncludeLoop(_))),
        "{err}"
    );
}

#[test]
fn errors_in_included_files_name_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("dictionary");
    let inner = dir.path().join("inner");
    fs::write(&top, "$INCLUDE inner\n").unwrap();
    fs::write(&inner, "ATTRIBUTE A 1 string\nVALUE B X 1\n").unwrap();
    let err = Dictionary::empty().load_file(&top).unwrap_err();
    assert_eq!(err.location(), Some((inner.to_str().unwrap(), 2)));
    assert_eq!(
        err.kind(),
        Some(&ParseErrorKind::UnknownAttribute("B".into()))
    );
    assert_eq!(
        err.to_string(),
        format!("{}:2: VALUE for unknown attribute \"B\"", inner.display())
    );
}

#[test]
fn unreadable_top_level_file() {
    let err = Dictionary::empty()
        .load_file(Path::new("/nonexistent/dictionary"))
        .unwrap_err();
    assert!(matches!(err, DictionaryError::Read { .. }), "{err}");
}

#[test]
fn format_value_through_the_builtin_set() {
    let d = Dictionary::builtin();
    let port_type = d.attr_by_name("NAS-Port-Type").unwrap();
    assert_eq!(
        d.format_value(port_type, &[0, 0, 0, 19]).text,
        "Wireless-802.11"
    );
    let host = d.attr_by_name("Mikrotik-Host-IP").unwrap();
    assert_eq!(
        d.format_value(host, &[192, 168, 88, 10]).text,
        "192.168.88.10"
    );
    let ts = d.attr_by_name("Event-Timestamp").unwrap();
    assert_eq!(
        d.format_value(ts, &1_764_314_460u32.to_be_bytes()).text,
        "2025-11-28T07:21:00Z"
    );
    let prefix = d.attr_by_name("Framed-IPv6-Prefix").unwrap();
    let v = d.format_value(prefix, &[0, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 1]);
    assert_eq!((v.text.as_str(), v.valid), ("2001:db8:1::/48", true));
}

/// FreeRADIUS's dictionaries, loaded with our loader, must agree with ours on
/// the number and type of every attribute both define, and on the number of
/// every named value both define.
#[test]
fn agrees_with_freeradius_dictionaries() {
    let dir = Path::new("/usr/share/freeradius");
    if !common::have_prerequisite(
        dir.join("dictionary.rfc2865").exists(),
        "FreeRADIUS dictionaries",
        "/usr/share/freeradius/dictionary.rfc2865 not found (Debian package freeradius-common)",
    ) {
        return;
    }
    let mut theirs = Dictionary::empty();
    for file in [
        "dictionary.rfc2865",
        "dictionary.rfc2866",
        "dictionary.rfc2869",
        "dictionary.rfc3162",
        "dictionary.mikrotik",
        "dictionary.wispr",
    ] {
        let path = dir.join(file);
        if path.exists() {
            theirs
                .load_file(&path)
                .unwrap_or_else(|e| panic!("loading FreeRADIUS {file}: {e}"));
        } else {
            common::skip(
                common::Lacks::Tool,
                &format!("{} not found, not cross-checked", path.display()),
            );
        }
    }

    let ours = Dictionary::builtin();
    let mut compared = 0;
    let mut problems = Vec::new();
    for def in ours.attrs() {
        let Some(other) = theirs.attr_by_name(&def.name) else {
            continue;
        };
        compared += 1;
        if (def.vendor, def.code, def.typ) != (other.vendor, other.code, other.typ) {
            problems.push(format!("ours {def} vs theirs {other}"));
        }
        if def.encrypt != other.encrypt {
            problems.push(format!(
                "{}: encrypt {} vs {}",
                def.name, def.encrypt, other.encrypt
            ));
        }
        for (name, number) in ours.values(def.vendor, def.code) {
            if let Some(their_number) = theirs.value_by_name(other.vendor, other.code, name) {
                if their_number != number {
                    problems.push(format!(
                        "VALUE {} {name}: ours {number}, theirs {their_number}",
                        def.name
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "disagreements:\n{}",
        problems.join("\n")
    );
    assert!(compared >= 90, "only {compared} attributes in common");
    eprintln!("cross-checked {compared} attributes against FreeRADIUS");
}
