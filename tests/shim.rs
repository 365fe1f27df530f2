//! The REST shim over HTTP against the real binary, fed with request bodies
//! captured from FreeRADIUS 3.2 rlm_rest (tests/fixtures/rlm_rest).

mod common;
mod shim_support;

use std::process::Command;

use common::{Client, Cred, Server, TestDb, BIN};
use rrnet_radius::proto::Code;
use shim_support::*;

const AUTH: &str = "/api/v1/radius/auth";
const ACCT: &str = "/api/v1/radius/acct";
const PAP_PASSWORD: &str = "pa\"ss/wö%rd";

fn accept_body() -> serde_json::Value {
    serde_json::json!({
        "reply:Session-Timeout": 3600,
        // The plan sets no interval: the server's default_interim (5m).
        "reply:Acct-Interim-Interval": 300,
        "reply:Mikrotik-Rate-Limit": "2M/2M",
        "reply:Class": "0x72726e65743a76313a31",
        "control:Auth-Type": "Accept",
    })
}

#[test]
fn captured_pap_bodies_are_accepted_and_a_wrong_password_rejected() {
    let db = TestDb::sqlite();
    setup(&db, PAP_PASSWORD);
    let (server, http) = start_shim(&db);

    let r = post_json(http, AUTH, &fixture("auth_pap.json"));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.json(), accept_body());

    let r = post_form(http, AUTH, &fixture("auth_pap.form"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), accept_body());

    let wrong = String::from_utf8(fixture("auth_pap.json"))
        .unwrap()
        .replace("pa\\\"ss", "pa\\\"sx");
    let r = post_json(http, AUTH, wrong.as_bytes());
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        r.json(),
        serde_json::json!({"reply:Reply-Message": "Wrong password for this voucher"})
    );

    // Counted by route and status, and rejects by reason like the UDP server's.
    assert_eq!(
        server.metric(r#"rrnet_radius_http_requests_total{route="auth",status="200"}"#),
        Some(2.0)
    );
    assert_eq!(
        server.metric(r#"rrnet_radius_http_requests_total{route="auth",status="401"}"#),
        Some(1.0)
    );
    assert_eq!(
        server.metric(r#"rrnet_radius_rejects_total{nas="hotspot1",reason="wrong_password"}"#),
        Some(1.0)
    );
}

#[test]
fn captured_chap_bodies_are_verified_by_the_shim() {
    let db = TestDb::sqlite();
    setup(&db, "secretpw");
    let (_server, http) = start_shim(&db);
    for f in ["auth_chap.json", "auth_chap.form"] {
        let r = if f.ends_with(".json") {
            post_json(http, AUTH, &fixture(f))
        } else {
            post_form(http, AUTH, &fixture(f))
        };
        assert_eq!(r.status, 200, "{f}: {r:?}");
        assert_eq!(r.json()["control:Auth-Type"], "Accept");
    }
    // A different challenge (a replay against another request) does not verify.
    let spoiled = String::from_utf8(fixture("auth_chap.json"))
        .unwrap()
        .replace("0x6087ed0a", "0x6087ed0b");
    let r = post_json(http, AUTH, spoiled.as_bytes());
    assert_eq!(r.status, 401, "{r:?}");
}

#[test]
fn bearer_is_checked_first_and_in_every_form() {
    let db = TestDb::sqlite();
    setup(&db, PAP_PASSWORD);
    let (server, http) = start_shim(&db);
    let body = fixture("auth_pap.json");
    for auth in [
        None,
        Some("Bearer wrong-secret-0123456789ab".to_string()),
        Some(format!("Basic {REST_SECRET}")),
        Some(format!("Bearer {REST_SECRET}x")),
    ] {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        for path in [AUTH, ACCT] {
            let r = post(http, path, &headers, &body);
            assert_eq!(r.status, 401, "{auth:?} {path}");
            assert!(r.body.is_empty(), "{r:?}");
            assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        }
    }
    // Before parsing: garbage with a wrong bearer is 401, not 400.
    let r = post(
        http,
        AUTH,
        &[
            ("Content-Type", "text/plain"),
            ("Authorization", "Bearer nope"),
        ],
        b"\xff\xfe",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        server.metric(r#"rrnet_radius_http_requests_total{route="acct",status="401"}"#),
        Some(4.0)
    );
    // Nothing reached storage: no auth event, no session.
    assert!(sessions(&db).is_empty());
}

#[test]
fn bad_requests_get_a_one_line_reason() {
    let db = TestDb::sqlite();
    setup(&db, PAP_PASSWORD);
    let (server, http) = start_shim(&db);
    for (path, body, why) in [
        (AUTH, &b"{not json"[..], "not valid JSON"),
        (AUTH, b"[]", "JSON object"),
        (AUTH, br#"{"User-Name":{"type":"string","value":["x"]}}"#, "FreeRADIUS-Client-IP-Address"),
        (
            AUTH,
            br#"{"FreeRADIUS-Client-IP-Address":"127.0.0.1","User-Password":"x"}"#,
            "User-Name",
        ),
        (
            AUTH,
            br#"{"FreeRADIUS-Client-IP-Address":"127.0.0.1","User-Name":"VOUCHER1","CHAP-Password":"0x00112233445566778899aabbccddeeff00"}"#,
            "CHAP-Challenge",
        ),
        (
            ACCT,
            br#"{"FreeRADIUS-Client-IP-Address":"127.0.0.1","Acct-Status-Type":"Sometimes"}"#,
            "Acct-Status-Type",
        ),
        (
            ACCT,
            br#"{"FreeRADIUS-Client-IP-Address":"127.0.0.1","Acct-Status-Type":"Start"}"#,
            "Acct-Session-Id",
        ),
    ] {
        let r = post_json(http, path, body);
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.body.contains(why), "{why}: {r:?}");
        assert_eq!(r.body.trim_end().lines().count(), 1, "{r:?}");
    }
    let r = post(
        http,
        AUTH,
        &[("Authorization", &bearer()), ("Content-Type", "text/xml")],
        b"<x/>",
    );
    assert_eq!(r.status, 415, "{r:?}");
    let big = vec![b' '; 70 * 1024];
    let r = post_json(http, AUTH, &big);
    assert_eq!(r.status, 413, "{r:?}");
    let r = post(
        http,
        "/api/v1/radius/other",
        &[("Authorization", &bearer())],
        b"",
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        server.metric(r#"rrnet_radius_http_requests_total{route="other",status="404"}"#),
        Some(1.0)
    );
}

#[test]
fn unknown_nas_is_refused_with_a_reason() {
    let db = TestDb::sqlite();
    setup(&db, PAP_PASSWORD);
    let (_server, http) = start_shim(&db);
    let elsewhere = |f: &str| {
        String::from_utf8(fixture(f)).unwrap().replace(
            r#""FreeRADIUS-Client-IP-Address":{"type":"ipaddr","value":["127.0.0.1"]}"#,
            r#""FreeRADIUS-Client-IP-Address":{"type":"ipaddr","value":["192.0.2.9"]}"#,
        )
    };
    let r = post_json(http, AUTH, elsewhere("auth_pap.json").as_bytes());
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.json()["reply:Reply-Message"]
        .as_str()
        .unwrap()
        .contains("not registered"));
    let r = post_json(http, ACCT, elsewhere("acct_start.json").as_bytes());
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("192.0.2.9"), "{r:?}");
}

#[test]
fn a_nas_added_while_running_is_picked_up() {
    let db = TestDb::sqlite();
    setup(&db, PAP_PASSWORD);
    let (_server, http) = start_shim(&db);
    let body = String::from_utf8(fixture("auth_pap.json"))
        .unwrap()
        .replace("\"127.0.0.1\"", "\"198.51.100.7\"");
    assert_eq!(post_json(http, AUTH, body.as_bytes()).status, 401);
    db.cli(&[
        "nas",
        "add",
        "--name",
        "site2",
        "--address",
        "198.51.100.0/24",
        "--secret",
        "another-secret",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = post_json(http, AUTH, body.as_bytes());
        if r.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "NAS never reloaded: {r:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn accounting_is_stored_idempotently_over_one_kept_alive_connection() {
    let db = TestDb::sqlite();
    setup(&db, PAP_PASSWORD);
    let (server, http) = start_shim(&db);
    let mut conn = Conn::open(http);
    let headers = [
        ("Authorization", bearer()),
        ("Content-Type", "application/json".to_string()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        conn.post(AUTH, &headers, &fixture("auth_pap.json")).status,
        200
    );
    for f in [
        "acct_start.json",
        "acct_interim.json",
        "acct_stop.json",
        "acct_stop.json",
    ] {
        let r = conn.post(ACCT, &headers, &fixture(f));
        assert_eq!(r.status, 204, "{f}: {r:?}");
        assert!(r.body.is_empty());
    }
    // The same records as a form, again: still one session, same counters.
    for f in ["acct_start.form", "acct_interim.form", "acct_stop.form"] {
        assert_eq!(post_form(http, ACCT, &fixture(f)).status, 204, "{f}");
    }
    let list = sessions(&db);
    assert_eq!(list.len(), 1, "{list:?}");
    let s = &list[0];
    assert_eq!(s["acct_session_id"], "81a00001");
    assert_eq!(s["state"], "closed");
    assert_eq!(s["session_time"], 120);
    assert_eq!(s["input_octets"], (1u64 << 32) + 4000);
    assert_eq!(s["output_octets"], 5000);
    assert_eq!(s["terminate_cause"], "User-Request");
    assert_eq!(s["voucher_id"], 1);
    assert_eq!(s["mac"], "AA:BB:CC:DD:EE:01");
    let show = db.cli(&["voucher", "show", "VOUCHER1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["used_seconds"], 120, "{v}");
    assert_eq!(v["used_bytes"], (1u64 << 32) + 9000, "{v}");
    assert_eq!(
        server.metric(r#"rrnet_radius_http_requests_total{route="acct",status="204"}"#),
        Some(7.0)
    );
}

/// The shim and UDP go through one request handler: their requests land in the
/// same per-NAS counters, duration histograms and batches.
#[test]
fn shim_and_udp_requests_are_counted_in_the_same_metrics() {
    let db = TestDb::sqlite();
    setup(&db, PAP_PASSWORD);
    let (server, http) = start_shim(&db);
    let mut udp = Client::new();

    // A reject over UDP, an accept over the shim.
    let r = udp
        .login(server.auth, "VOUCHER1", Cred::Pap("wrong"), None)
        .expect("a UDP answer");
    assert_eq!(r.code(), Code::AccessReject);
    assert_eq!(post_json(http, AUTH, &fixture("auth_pap.json")).status, 200);
    // A Start over the shim, an Interim-Update of another session over UDP.
    assert_eq!(
        post_json(http, ACCT, &fixture("acct_start.json")).status,
        204
    );
    let r = udp
        .account(server.acct, 3, "VOUCHER1", "81a00002", None, 60, 10, 20)
        .expect("a UDP answer");
    assert_eq!(r.code(), Code::AccountingResponse);

    let sample = |name: &str| server.metric(name);
    let access = |result: &str| {
        sample(&format!(
            r#"rrnet_radius_requests_total{{nas="hotspot1",result="{result}",type="access_request"}}"#
        ))
    };
    assert_eq!(access("accept"), Some(1.0));
    assert_eq!(access("reject"), Some(1.0));
    assert_eq!(
        sample(r#"rrnet_radius_rejects_total{nas="hotspot1",reason="wrong_password"}"#),
        Some(1.0)
    );
    let accounting = |result: &str| {
        sample(&format!(
            r#"rrnet_radius_requests_total{{nas="hotspot1",result="{result}",type="accounting_request"}}"#
        ))
    };
    assert_eq!(accounting("start"), Some(1.0));
    assert_eq!(accounting("interim_update"), Some(1.0));
    for kind in ["access_request", "accounting_request"] {
        assert_eq!(
            sample(&format!(
                r#"rrnet_radius_request_duration_seconds_count{{type="{kind}"}}"#
            )),
            Some(2.0),
            "{kind}"
        );
    }
    // Both decisions went through authorize_batch, in one or two batches.
    assert_eq!(sample("rrnet_radius_access_batch_size_sum"), Some(2.0));
    let calls = sample(r#"rrnet_radius_storage_duration_seconds_count{op="authorize"}"#).unwrap();
    assert!((1.0..=2.0).contains(&calls), "{calls} authorize calls");
    assert_eq!(sample("rrnet_radius_accounting_batch_size_sum"), Some(2.0));
    assert_eq!(sample("rrnet_radius_vouchers_activated_total"), Some(1.0));
    // Nothing was refused or lost.
    for reason in ["overload", "storage_error"] {
        assert_eq!(
            sample(&format!(
                r#"rrnet_radius_drops_total{{nas="hotspot1",reason="{reason}"}}"#
            )),
            Some(0.0),
            "{reason}"
        );
    }
}

#[test]
fn accounting_answers_5xx_when_storage_fails() {
    let db = TestDb::sqlite();
    setup(&db, PAP_PASSWORD);
    let (server, http) = start_shim(&db);
    assert_eq!(
        post_json(http, ACCT, &fixture("acct_start.json")).status,
        204
    );
    // Break storage under the running server.
    let path = db.url.strip_prefix("sqlite://").unwrap();
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch("DROP TABLE sessions")
        .unwrap();
    let r = post_json(http, ACCT, &fixture("acct_interim.json"));
    assert!(r.status >= 500, "{r:?}");
    assert!(!r.body.contains("sessions"), "internal error leaked: {r:?}");
    // Counted like a UDP request whose storage failed.
    assert_eq!(
        server.metric(r#"rrnet_radius_drops_total{nas="hotspot1",reason="storage_error"}"#),
        Some(1.0)
    );
}

#[test]
fn no_secret_no_shim_and_a_short_secret_refuses_to_start() {
    let db = TestDb::sqlite();
    db.setup_basic();
    let server = Server::start(&db);
    assert!(server.http.is_none(), "shim must stay off without a secret");
    drop(server);

    let out = Command::new(BIN)
        .args([
            "serve",
            "--auth-listen",
            "127.0.0.1:0",
            "--acct-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("RRNET_DATABASE_URL", &db.url)
        .env("RRNET_RADIUS_REST_SECRET", "fifteen-bytes!!")
        .env_remove("RRNET_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16"), "{err}");
    assert!(!err.contains("fifteen-bytes"), "secret printed: {err}");
}

/// Routers behind one address: the shim picks the NAS entry by the body's
/// NAS-Identifier, as the UDP server does by the packet's.
#[test]
fn shared_address_is_told_apart_by_nas_identifier() {
    let db = TestDb::sqlite();
    db.cli(&["plan", "add", "--name", "hour", "--time", "1h"]);
    db.cli(&[
        "voucher",
        "add",
        "VOUCHER1",
        "--plan",
        "hour",
        "--password",
        PAP_PASSWORD,
    ]);
    for (name, identity) in [("north", "north-gw"), ("south", "MikroTik")] {
        db.cli(&[
            "nas",
            "add",
            "--name",
            name,
            "--address",
            "127.0.0.1",
            "--identifier",
            identity,
            "--secret",
            "shared-nat-secret",
        ]);
    }
    let (server, http) = start_shim(&db);
    let as_identity = |f: &str, identity: &str| {
        String::from_utf8(fixture(f)).unwrap().replace(
            r#""NAS-Identifier":{"type":"string","value":["MikroTik"]}"#,
            &format!(r#""NAS-Identifier":{{"type":"string","value":["{identity}"]}}"#),
        )
    };
    // The fixture's own identity ("MikroTik") is south's.
    let r = post_json(http, AUTH, &fixture("auth_pap.json"));
    assert_eq!(r.status, 200, "{r:?}");
    let r = post_json(
        http,
        AUTH,
        as_identity("auth_pap.json", "north-gw").as_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let accepts = |nas: &str| {
        server.metric(&format!(
            "rrnet_radius_requests_total{{nas=\"{nas}\",result=\"accept\",type=\"access_request\"}}"
        ))
    };
    assert_eq!(accepts("south"), Some(1.0));
    assert_eq!(accepts("north"), Some(1.0));
    // An identity no entry at this address has is not a registered hotspot.
    let r = post_json(
        http,
        AUTH,
        as_identity("auth_pap.json", "east-gw").as_bytes(),
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.json()["reply:Reply-Message"]
        .as_str()
        .unwrap()
        .contains("not registered"));
    let r = post_json(
        http,
        ACCT,
        as_identity("acct_start.json", "east-gw").as_bytes(),
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Accounting lands on the entry the identity names.
    let r = post_json(
        http,
        ACCT,
        as_identity("acct_start.json", "north-gw").as_bytes(),
    );
    assert_eq!(r.status, 204, "{r:?}");
    // Both logins left an `authorized` row on their own entry (the fixtures
    // share an Acct-Session-Id); the Start opened north's only.
    let mut rows: Vec<_> = sessions(&db)
        .iter()
        .map(|s| (s["nas_name"].clone(), s["state"].clone()))
        .collect();
    rows.sort_by_key(|r| r.0.to_string());
    assert_eq!(
        rows,
        vec![
            ("north".into(), "open".into()),
            ("south".into(), "authorized".into())
        ]
    );
}
