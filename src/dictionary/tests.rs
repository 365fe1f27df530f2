use super::*;

/// Load `text` into a fresh dictionary and return the error's line and kind.
fn load_err(text: &str) -> (String, usize, ParseErrorKind) {
    let mut dict = Dictionary::empty();
    match dict.load_str("test.dict", text) {
        Err(DictionaryError::Parse { file, line, kind }) => (file, line, kind),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn embedded_files_parse() {
    let mut dict = Dictionary::empty();
    dict.load_embedded(embedded::ROOT)
        .expect("embedded dictionaries load");
    // Every embedded file is reachable from the top-level one.
    for (name, _) in embedded::FILES {
        let root = embedded::get(embedded::ROOT).unwrap();
        assert!(
            *name == embedded::ROOT || root.contains(&format!("$INCLUDE {name}")),
            "{name} is embedded but not included"
        );
    }
    assert!(Dictionary::builtin().attr(0, 1).is_some());
}

#[test]
fn lookups_are_case_insensitive() {
    let dict = Dictionary::builtin();
    assert_eq!(dict.attr_by_name("user-name").unwrap().code, 1);
    assert_eq!(dict.vendor_by_name("MIKROTIK"), Some(14988));
    assert_eq!(dict.value_by_name(0, 40, "interim-update"), Some(3));
    assert_eq!(dict.value_name(0, 40, 3), Some("Interim-Update"));
}

#[test]
fn aliases_resolve_but_first_name_prints() {
    let dict = Dictionary::builtin();
    let alias = dict.attr_by_name("Mikrotik_Wireless_VLANIDtype").unwrap();
    assert_eq!((alias.vendor, alias.code), (14988, 27));
    assert_eq!(
        dict.attr(14988, 27).unwrap().name,
        "Mikrotik-Wireless-VLANIDtype"
    );
    // VALUEs hang off the number, so the alias sees them too.
    assert_eq!(dict.value_by_name(14988, 27, "802.1ad"), Some(1));
}

#[test]
fn flags_are_kept() {
    let dict = Dictionary::builtin();
    assert_eq!(dict.attr_by_name("User-Password").unwrap().encrypt, 1);
    assert_eq!(dict.attr_by_name("User-Name").unwrap().encrypt, 0);
    assert!(dict.attr_by_name("EAP-Message").unwrap().concat);
    let mut dict = Dictionary::empty();
    dict.load_str(
        "t",
        "ATTRIBUTE Tunnel-Password 69 string has_tag,encrypt=2\n",
    )
    .unwrap();
    let def = dict.attr_by_name("Tunnel-Password").unwrap();
    assert!(def.has_tag);
    assert_eq!(def.encrypt, 2);
}

#[test]
fn vendor_format_is_parsed() {
    let mut dict = Dictionary::empty();
    dict.load_str(
        "t",
        "VENDOR Wide 9999 format=2,1\nBEGIN-VENDOR Wide\nATTRIBUTE Wide-Big 300 integer64\nEND-VENDOR Wide\n",
    )
    .unwrap();
    let v = dict.vendor(9999).unwrap();
    assert_eq!((v.type_size, v.length_size), (2, 1));
    assert_eq!(dict.attr(9999, 300).unwrap().typ, AttrType::Integer64);
    assert_eq!(dict.vendor(14988), None);
}

#[test]
fn comments_blank_lines_and_hex_numbers() {
    let mut dict = Dictionary::empty();
    dict.load_str(
        "t",
        "# header\n\n   \nATTRIBUTE Foo 0x1a integer # trailing\nVALUE Foo Bar 0x10\n",
    )
    .unwrap();
    assert_eq!(dict.attr_by_name("Foo").unwrap().code, 26);
    assert_eq!(dict.value_by_name(0, 26, "bar"), Some(16));
}

#[test]
fn unknown_type_names_the_line() {
    let (file, line, kind) = load_err("ATTRIBUTE A 1 string\n\nATTRIBUTE B 2 strnig\n");
    assert_eq!((file.as_str(), line), ("test.dict", 3));
    assert_eq!(kind, ParseErrorKind::UnknownType("strnig".into()));
}

#[test]
fn error_display_is_file_colon_line() {
    let mut dict = Dictionary::empty();
    let err = dict
        .load_str("extra.dict", "ATTRIBUTE A x string\n")
        .unwrap_err();
    assert_eq!(err.to_string(), "extra.dict:1: bad attribute number \"x\"");
    assert_eq!(err.location(), Some(("extra.dict", 1)));
}

#[test]
fn bad_numbers() {
    let (_, line, kind) = load_err("\nATTRIBUTE A 256 string\n");
    assert_eq!(line, 2);
    assert!(matches!(kind, ParseErrorKind::BadNumber { .. }), "{kind:?}");
    let (_, _, kind) = load_err("ATTRIBUTE A 0 string\n");
    assert!(matches!(kind, ParseErrorKind::BadNumber { .. }), "{kind:?}");
    let (_, line, kind) = load_err("ATTRIBUTE A 1 byte\nVALUE A Big 256\n");
    assert_eq!(line, 2);
    assert!(matches!(kind, ParseErrorKind::BadNumber { .. }), "{kind:?}");
    let (_, _, kind) = load_err("ATTRIBUTE A 1 integer\nVALUE A Big 4294967296\n");
    assert!(matches!(kind, ParseErrorKind::BadNumber { .. }), "{kind:?}");
    let (_, _, kind) = load_err("VENDOR V 99999999999\n");
    assert!(matches!(kind, ParseErrorKind::BadNumber { .. }), "{kind:?}");
    let (_, _, kind) = load_err("VENDOR V 1 format=3,1\n");
    assert!(matches!(kind, ParseErrorKind::BadNumber { .. }), "{kind:?}");
    let (_, _, kind) = load_err("ATTRIBUTE A 1 string encrypt=9\n");
    assert!(matches!(kind, ParseErrorKind::BadNumber { .. }), "{kind:?}");
    // A one-octet vendor type field cannot hold 256.
    let (_, line, kind) =
        load_err("VENDOR V 7\nBEGIN-VENDOR V\nATTRIBUTE V-A 256 string\nEND-VENDOR V\n");
    assert_eq!(line, 3);
    assert!(matches!(kind, ParseErrorKind::BadNumber { .. }), "{kind:?}");
}

#[test]
fn value_for_unknown_or_non_integer_attribute() {
    let (_, line, kind) = load_err("ATTRIBUTE A 1 string\nVALUE Nope X 1\n");
    assert_eq!(line, 2);
    assert_eq!(kind, ParseErrorKind::UnknownAttribute("Nope".into()));
    let (_, line, kind) = load_err("ATTRIBUTE A 1 string\nVALUE A X 1\n");
    assert_eq!(line, 2);
    assert!(
        matches!(kind, ParseErrorKind::ValueForNonInteger { .. }),
        "{kind:?}"
    );
}

#[test]
fn unbalanced_vendor_blocks() {
    let (_, line, kind) = load_err("VENDOR V 7\nEND-VENDOR V\n");
    assert_eq!(line, 2);
    assert!(matches!(kind, ParseErrorKind::UnbalancedVendor(_)));
    let (_, line, kind) = load_err("VENDOR V 7\nBEGIN-VENDOR V\nATTRIBUTE V-A 1 string\n");
    assert_eq!(line, 2, "points at the unclosed BEGIN-VENDOR");
    assert!(matches!(kind, ParseErrorKind::UnbalancedVendor(_)));
    let (_, line, kind) = load_err("VENDOR V 7\nVENDOR W 8\nBEGIN-VENDOR V\nBEGIN-VENDOR W\n");
    assert_eq!(line, 4);
    assert!(matches!(kind, ParseErrorKind::UnbalancedVendor(_)));
    let (_, line, kind) = load_err("VENDOR V 7\nVENDOR W 8\nBEGIN-VENDOR V\nEND-VENDOR W\n");
    assert_eq!(line, 4);
    assert!(matches!(kind, ParseErrorKind::UnbalancedVendor(_)));
    let (_, line, kind) = load_err("BEGIN-VENDOR Nobody\n");
    assert_eq!(line, 1);
    assert_eq!(kind, ParseErrorKind::UnknownVendor("Nobody".into()));
}

#[test]
fn malformed_lines() {
    let (_, _, kind) = load_err("ATTRIBUTE A 1\n");
    assert!(matches!(kind, ParseErrorKind::MissingField { .. }));
    let (_, _, kind) = load_err("ATTRIBUTE A 1 string has_tag extra\n");
    assert_eq!(kind, ParseErrorKind::ExtraField("extra".into()));
    let (_, _, kind) = load_err("ATTRIBUTE A 1 string bogus\n");
    assert_eq!(kind, ParseErrorKind::UnknownFlag("bogus".into()));
    let (_, _, kind) = load_err("ATRIBUTE A 1 string\n");
    assert_eq!(kind, ParseErrorKind::UnknownKeyword("ATRIBUTE".into()));
    let (_, _, kind) = load_err("ATTRIBUTE A 1 string\nATTRIBUTE A 2 string\n");
    assert!(matches!(kind, ParseErrorKind::ConflictingAttribute { .. }));
    let (_, _, kind) = load_err("ATTRIBUTE A 1 integer\nVALUE A X 1\nVALUE A X 2\n");
    assert!(matches!(kind, ParseErrorKind::ConflictingValue { .. }));
    let (_, _, kind) = load_err("VENDOR V 7\nVENDOR V 8\n");
    assert!(matches!(kind, ParseErrorKind::ConflictingVendor { .. }));
}

#[test]
fn identical_redefinition_is_accepted() {
    let mut dict = Dictionary::with_builtin();
    dict.load_str(
        "again",
        "ATTRIBUTE User-Name 1 string\nVALUE Acct-Status-Type Start 1\nVENDOR Mikrotik 14988\n",
    )
    .unwrap();
}

#[test]
fn embedded_include_not_found() {
    let mut dict = Dictionary::empty();
    let err = dict.load_embedded("no-such-file").unwrap_err();
    assert!(matches!(
        err.kind(),
        Some(ParseErrorKind::IncludeNotFound { .. })
    ));
}

#[test]
fn failed_load_changes_nothing() {
    let mut dict = Dictionary::empty();
    dict.load_str("t", "ATTRIBUTE Kept 1 string\n").unwrap();
    dict.load_str("t", "ATTRIBUTE Dropped 2 string\nATTRIBUTE Bad 3 nope\n")
        .unwrap_err();
    assert!(dict.attr_by_name("Kept").is_some());
    assert!(dict.attr_by_name("Dropped").is_none());
}

fn def(typ: AttrType) -> AttrDef {
    AttrDef {
        name: "Test".into(),
        vendor: 0,
        code: 250,
        typ,
        encrypt: 0,
        has_tag: false,
        concat: false,
    }
}

fn fmt(typ: AttrType, value: &[u8]) -> FormattedValue {
    Dictionary::empty().format_value(&def(typ), value)
}

#[test]
fn format_strings_and_octets() {
    let v = fmt(AttrType::String, b"bob");
    assert_eq!((v.text.as_str(), v.valid), ("bob", true));
    assert_eq!(v.json, serde_json::json!("bob"));
    let v = fmt(AttrType::String, "café".as_bytes());
    assert_eq!(v.text, "café");
    let v = fmt(AttrType::String, b"a\x00b");
    assert_eq!((v.text.as_str(), v.valid), ("0x610062", true));
    let v = fmt(AttrType::String, &[0xff, 0xfe]);
    assert_eq!(v.text, "0xfffe");
    let v = fmt(AttrType::Octets, &[0xde, 0xad]);
    assert_eq!((v.text.as_str(), v.valid), ("0xdead", true));
    assert_eq!(v.json, serde_json::json!("0xdead"));
}

#[test]
fn format_integers() {
    let dict = Dictionary::builtin();
    let status = dict.attr_by_name("Acct-Status-Type").unwrap();
    let v = dict.format_value(status, &[0, 0, 0, 3]);
    assert_eq!((v.text.as_str(), v.valid), ("Interim-Update", true));
    assert_eq!(v.json, serde_json::json!("Interim-Update"));
    let v = dict.format_value(status, &[0, 0, 0, 99]);
    assert_eq!(v.text, "99");
    assert_eq!(v.json, serde_json::json!(99));
    let v = dict.format_value(status, &[0, 0, 3]);
    assert_eq!((v.text.as_str(), v.valid), ("0x000003", false));

    let v = fmt(AttrType::Integer, &[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(v.json, serde_json::json!(4294967295u32));
    let v = fmt(AttrType::Integer64, &[0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(v.text, "4294967296");
    assert_eq!(v.json, serde_json::json!("4294967296"));
    assert!(!fmt(AttrType::Integer64, &[0; 4]).valid);
    assert_eq!(fmt(AttrType::Byte, &[7]).json, serde_json::json!(7));
    assert!(!fmt(AttrType::Byte, &[7, 7]).valid);
    assert_eq!(fmt(AttrType::Short, &[1, 0]).text, "256");
    assert!(!fmt(AttrType::Short, &[1]).valid);
}

#[test]
fn format_addresses() {
    let v = fmt(AttrType::IpAddr, &[10, 0, 0, 1]);
    assert_eq!((v.text.as_str(), v.valid), ("10.0.0.1", true));
    assert!(!fmt(AttrType::IpAddr, &[10, 0, 0]).valid);

    let mut v6 = [0u8; 16];
    v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    v6[15] = 1;
    assert_eq!(fmt(AttrType::Ipv6Addr, &v6).text, "2001:db8::1");
    assert!(!fmt(AttrType::Ipv6Addr, &v6[..15]).valid);

    let v = fmt(AttrType::Ipv6Prefix, &[0, 32, 0x20, 0x01, 0x0d, 0xb8]);
    assert_eq!((v.text.as_str(), v.valid), ("2001:db8::/32", true));
    let mut full = vec![0, 64];
    full.extend_from_slice(&v6);
    assert_eq!(fmt(AttrType::Ipv6Prefix, &full).text, "2001:db8::1/64");
    assert_eq!(fmt(AttrType::Ipv6Prefix, &[0, 0]).text, "::/0");
    // Prefix length beyond 128, too few octets for the length, too short.
    assert!(!fmt(AttrType::Ipv6Prefix, &[0, 129]).valid);
    assert!(!fmt(AttrType::Ipv6Prefix, &[0, 33, 0x20, 0x01, 0x0d, 0xb8]).valid);
    assert!(!fmt(AttrType::Ipv6Prefix, &[0]).valid);
    let mut long = vec![0, 128];
    long.extend_from_slice(&[0; 17]);
    assert!(!fmt(AttrType::Ipv6Prefix, &long).valid);

    let v = fmt(AttrType::Ether, &[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
    assert_eq!(v.text, "aa:bb:cc:dd:ee:ff");
    assert!(!fmt(AttrType::Ether, &[0xaa; 5]).valid);

    let v = fmt(AttrType::Ifid, &[0, 0, 0, 0, 0x12, 0x34, 0xab, 0xcd]);
    assert_eq!(v.text, "0000:0000:1234:abcd");
    assert!(!fmt(AttrType::Ifid, &[0; 7]).valid);
}

#[test]
fn format_dates() {
    // 1_700_000_000 = 2023-11-14T22:13:20Z
    let v = fmt(AttrType::Date, &1_700_000_000u32.to_be_bytes());
    assert_eq!((v.text.as_str(), v.valid), ("2023-11-14T22:13:20Z", true));
    assert_eq!(v.json, serde_json::json!("2023-11-14T22:13:20Z"));
    assert_eq!(fmt(AttrType::Date, &[0; 4]).text, "1970-01-01T00:00:00Z");
    let v = fmt(AttrType::Date, &[1, 2, 3]);
    assert_eq!((v.text.as_str(), v.valid), ("0x010203", false));
}
