//! `rrnet-radius routeros-script` against golden files in tests/golden/.
//! Regenerate them after an intended change with `UPDATE_GOLDEN=1 cargo test --test routeros_script`
//! and review the diff: these files are what operators paste into their routers.

mod common;

use std::path::PathBuf;

use common::TestDb;

/// A secret with every character RouterOS quoting must escape.
const SECRET: &str = "golden\"$ecret\\?-1234";
const KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

fn db() -> TestDb {
    let db = TestDb::sqlite();
    db.cli(&[
        "nas",
        "add",
        "--name",
        "cafe-1",
        "--address",
        "198.51.100.7",
        "--secret",
        SECRET,
    ]);
    db.cli(&[
        "nas",
        "add",
        "--name",
        "cafe-2",
        "--address",
        "10.8.0.2",
        "--secret",
        SECRET,
        "--coa-port",
        "1700",
    ]);
    db
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
            if e != a {
                panic!(
                    "{} differs at line {}:\n expected: {e}\n   actual: {a}\n(UPDATE_GOLDEN=1 regenerates it)",
                    path.display(),
                    i + 1
                );
            }
        }
        panic!(
            "{} differs in length: expected {} lines, got {} (UPDATE_GOLDEN=1 regenerates it)",
            path.display(),
            expected.lines().count(),
            actual.lines().count()
        );
    }
}

const VPN: &[&str] = &[
    "--tier",
    "vpn",
    "--wg-server-endpoint",
    "vpn.example.net:51820",
    "--wg-server-public-key",
    KEY,
    "--wg-address",
    "10.8.0.2/24",
    "--wg-server-address",
    "10.8.0.1",
];

fn script(db: &TestDb, args: &[&str]) -> String {
    let mut all = vec!["routeros-script"];
    all.extend_from_slice(args);
    db.cli(&all)
}

#[test]
fn direct_tier_without_secret() {
    let db = db();
    let out = script(&db, &["--nas", "cafe-1", "--server", "203.0.113.10"]);
    assert!(!out.contains("golden"), "the secret leaked:\n{out}");
    assert!(out.contains("secret=\"PASTE-THE-SHARED-SECRET-HERE\""));
    golden("routeros_direct.rsc", &out);
}

#[test]
fn direct_tier_with_secret_and_secondary() {
    let db = db();
    let out = script(
        &db,
        &[
            "--nas",
            "cafe-1",
            "--server",
            "203.0.113.10",
            "--secondary-server",
            "203.0.113.11",
            "--hotspot-profile",
            "cafe $profile",
            "--show-secret",
        ],
    );
    assert!(
        out.contains(r#"secret="golden\"\$ecret\\\?-1234""#),
        "{out}"
    );
    golden("routeros_direct_show_secret.rsc", &out);
}

#[test]
fn vpn_tier_without_secret() {
    let db = db();
    let mut args = vec!["--nas", "cafe-2"];
    args.extend_from_slice(VPN);
    let out = script(&db, &args);
    assert!(!out.contains("golden"), "the secret leaked:\n{out}");
    assert!(out.contains("src-address=10.8.0.2"));
    golden("routeros_vpn.rsc", &out);
}

#[test]
fn vpn_tier_with_secret_and_secondary() {
    let db = db();
    let mut args = vec![
        "--nas",
        "cafe-2",
        "--show-secret",
        "--secondary-server",
        "10.9.0.1",
        "--timeout",
        "1100ms",
    ];
    args.extend_from_slice(VPN);
    let out = script(&db, &args);
    // The secondary lies outside the tunnel's /24, so it needs a route.
    assert!(out.contains("/ip route add dst-address=10.9.0.1/32 gateway=\"wg-rrnet\""));
    golden("routeros_vpn_show_secret.rsc", &out);
}

fn fails(db: &TestDb, args: &[&str], needle: &str) {
    let mut all = vec!["routeros-script"];
    all.extend_from_slice(args);
    let out = db.cli_output(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(!stderr.contains("golden"), "the secret leaked: {stderr}");
    assert!(out.stdout.is_empty(), "no partial script on error");
}

#[test]
fn missing_or_bad_values_are_clear_errors() {
    let db = db();
    fails(&db, &["--nas", "cafe-1"], "needs --server");
    fails(
        &db,
        &["--nas", "cafe-1", "--server", "radius.example.net"],
        "IP address",
    );
    fails(
        &db,
        &["--nas", "nope", "--server", "203.0.113.10"],
        "not found",
    );
    fails(
        &db,
        &[
            "--nas",
            "cafe-2",
            "--tier",
            "vpn",
            "--wg-address",
            "10.8.0.2/24",
        ],
        "--wg-server-endpoint, --wg-server-public-key, --wg-server-address",
    );
    let mut bad_key: Vec<&str> = vec!["--nas", "cafe-2"];
    bad_key.extend_from_slice(VPN);
    let i = bad_key.iter().position(|a| *a == KEY).unwrap();
    bad_key[i] = "made-up";
    fails(&db, &bad_key, "WireGuard public key");
}

#[test]
fn warns_when_the_nas_address_is_not_the_tunnel_address() {
    let db = db();
    let mut args = vec!["routeros-script", "--nas", "cafe-1"];
    args.extend_from_slice(VPN);
    let out = db.cli_output(&args);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("registered for 198.51.100.7") && stderr.contains("10.8.0.2"),
        "{stderr}"
    );
}

/// An entry with an identifier (routers behind one address) gets the router's
/// identity set to it, quoted for RouterOS; one without leaves the identity be.
#[test]
fn identity_is_set_when_the_entry_has_one() {
    let db = db();
    db.cli(&[
        "nas",
        "add",
        "--name",
        "nat-1",
        "--address",
        "203.0.113.9",
        "--identifier",
        "cafe \"north\"",
        "--secret",
        SECRET,
    ]);
    let with = script(
        &db,
        &[
            "--nas",
            "nat-1",
            "--tier",
            "direct",
            "--server",
            "192.0.2.10",
        ],
    );
    assert!(
        with.contains("/system identity set name=\"cafe \\\"north\\\"\"\n"),
        "{with}"
    );
    let without = script(
        &db,
        &[
            "--nas",
            "cafe-1",
            "--tier",
            "direct",
            "--server",
            "192.0.2.10",
        ],
    );
    assert!(!without.contains("/system identity"), "{without}");
}

/// The radsec tier: the certificate bundle imported and renamed, the CA
/// trusted, `/radius` with protocol=radsec, the client certificate and the
/// fixed secret `radsec` on the one TLS port; the NAS's own secret never appears.
#[test]
fn radsec_tier() {
    let db = db();
    db.cli(&["nas", "add", "--name", "cafe-3", "--radsec-cn", "cafe-3"]);
    let out = db.cli_output(&[
        "routeros-script",
        "--nas",
        "cafe-3",
        "--tier",
        "radsec",
        "--server",
        "203.0.113.10",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PASTE-THE-P12-PASSPHRASE-HERE"), "{stderr}");
    assert!(text.contains(
        "/radius add service=hotspot address=203.0.113.10 protocol=radsec certificate=\"rrnet-radius-cafe-3\" secret=\"radsec\" authentication-port=2083 accounting-port=2083"
    ));
    assert!(text.contains("/certificate import file-name=\"cafe-3.p12\""));
    golden("routeros_radsec.rsc", &text);
    let with = script(
        &db,
        &[
            "--nas",
            "cafe-3",
            "--tier",
            "radsec",
            "--server",
            "203.0.113.10",
            "--secondary-server",
            "203.0.113.11",
            "--p12-passphrase",
            "Pass\"word$1",
        ],
    );
    assert!(with.contains("passphrase=\"Pass\\\"word\\$1\""), "{with}");
    assert_eq!(with.matches("protocol=radsec").count(), 2);
    // A UDP entry has no certificate to log in with.
    fails(
        &db,
        &[
            "--nas",
            "cafe-1",
            "--tier",
            "radsec",
            "--server",
            "203.0.113.10",
        ],
        "not a RadSec entry",
    );
    fails(
        &db,
        &["--nas", "cafe-3", "--tier", "radsec"],
        "needs --server",
    );
}
