//! docs/openapi.yaml against the shim: the documented paths, methods and
//! statuses are the implemented ones, and every documented request example,
//! sent to the running shim, gets the documented status and body (a response
//! example answers the request example of the same name).

mod common;
mod shim_support;

use std::collections::BTreeSet;

use rrnet_radius::http::shim::ROUTES;
use serde_json::Value;
use shim_support::*;

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// Follow a local `$ref` such as `#/components/responses/BadRequest`.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .trim_start_matches("#/")
            .split('/')
            .fold(doc, |node, key| &node[key]),
        None => v,
    }
}

#[test]
fn paths_methods_and_statuses_match_the_router() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // The management API's paths are checked by tests/api_openapi.rs.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.starts_with("/api/v1/radius/"))
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    let implemented: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(p, m, _)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(documented, implemented);
    for (path, method, statuses) in ROUTES {
        let doc_statuses: BTreeSet<u16> = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        let ours: BTreeSet<u16> = statuses.iter().copied().collect();
        assert_eq!(doc_statuses, ours, "{method} {path}");
    }
}

/// (status, documented response example or None for "no body") for a request example.
fn expected(doc: &Value, op: &Value, name: &str) -> (u16, Option<(String, Value)>) {
    for (status, resp) in op["responses"].as_object().unwrap() {
        let resp = resolve(doc, resp);
        let listed = resp["x-request-examples"]
            .as_array()
            .is_some_and(|l| l.iter().any(|n| n == name));
        if listed {
            return (status.parse().unwrap(), None);
        }
        if let Some(content) = resp["content"].as_object() {
            for (media, c) in content {
                if let Some(ex) = c["examples"].get(name) {
                    return (
                        status.parse().unwrap(),
                        Some((media.clone(), ex["value"].clone())),
                    );
                }
            }
        }
    }
    panic!("request example {name} has no response example");
}

#[test]
fn documented_examples_get_the_documented_answers() {
    let doc = document();
    let db = common::TestDb::sqlite();
    db.setup_basic();
    db.cli(&[
        "plan",
        "add",
        "--name",
        "hour",
        "--time",
        "1h",
        "--rate-limit",
        "2M/2M",
        "--shared-users",
        "5",
    ]);
    db.cli(&[
        "voucher",
        "add",
        "VOUCHER1",
        "--plan",
        "hour",
        "--password",
        "secretpw",
    ]);
    let (_server, http) = start_shim(&db);

    let mut sent = 0;
    // ROUTES order: authorization before accounting changes the voucher's usage.
    for (path, method, _) in ROUTES {
        let op = &doc["paths"][path][method];
        let content = &op["requestBody"]["content"];
        for (name, ex) in content["application/json"]["examples"].as_object().unwrap() {
            let body = serde_json::to_vec(&ex["value"]).unwrap();
            let r = post_json(http, path, &body);
            let (status, response) = expected(&doc, op, name);
            assert_eq!(r.status, status, "{path} example {name}: {r:?}");
            match response {
                None => assert!(r.body.is_empty(), "{name}: {r:?}"),
                Some((media, value)) if media == "application/json" => {
                    assert_eq!(r.json(), value, "{path} example {name}")
                }
                Some((_, value)) => {
                    assert_eq!(r.body.trim_end(), value.as_str().unwrap(), "{name}")
                }
            }
            sent += 1;
        }
        if let Some(form) = content["application/x-www-form-urlencoded"].get("example") {
            let body: Vec<String> = form
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect();
            let r = post_form(http, path, body.join("&").as_bytes());
            assert_eq!(r.status, 200, "{path} form example: {r:?}");
            sent += 1;
        }
    }
    assert!(sent >= 9, "only {sent} examples found");
}
