//! docs/openapi.yaml against the management API: the documented paths,
//! methods and statuses are the router's ([`ROUTES`]); every route answers on
//! the running server; and every answer the running server gives in a day
//! of use (successes and the errors each route documents) has a documented
//! status and matches the documented schema of its media type.

mod api_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use api_support::*;
use common::*;
use rrnet_radius::http::api::ROUTES;
use rrnet_radius::proto::Code;
use serde_json::{json, Value};

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(
            doc,
            r.trim_start_matches("#/")
                .split('/')
                .fold(doc, |node, key| &node[key]),
        ),
        None => v,
    }
}

/// The JSON Schema keywords the document uses: `$ref`, `type` (one or a
/// list), `properties`, `required`, `additionalProperties: false`, `items`,
/// `enum`. Returns what does not match.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(l) => l.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        });
        if !ok {
            errors.push(format!("{at}: {v} is not {types:?}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            errors.push(format!("{at}: {v} not in {allowed:?}"));
        }
    }
    if let (Some(obj), true) = (v.as_object(), schema.get("properties").is_some()) {
        let props = schema["properties"].as_object().unwrap();
        for r in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                errors.push(format!("{at}: missing {r}"));
            }
        }
        for (k, x) in obj {
            match props.get(k) {
                Some(s) => check(doc, s, x, &format!("{at}.{k}"), errors),
                None if schema["additionalProperties"] == json!(false) => {
                    errors.push(format!("{at}: undocumented field {k}"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(schema)) = (v.as_array(), schema.get("items")) {
        for (i, x) in items.iter().enumerate() {
            check(doc, schema, x, &format!("{at}[{i}]"), errors);
        }
    }
}

fn api_paths(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| !p.starts_with("/api/v1/radius/"))
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect()
}

#[test]
fn paths_methods_and_statuses_match_the_router() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let implemented: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(p, m, _)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(api_paths(&doc), implemented);
    for (path, method, statuses) in ROUTES {
        let op = &doc["paths"][path][method];
        let documented: BTreeSet<u16> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        let ours: BTreeSet<u16> = statuses.iter().copied().collect();
        assert_eq!(documented, ours, "{method} {path}");
        assert_eq!(op["security"], json!([{"apiToken": []}]), "{method} {path}");
        // Every error answered by the API itself is a problem document.
        for status in ours
            .iter()
            .filter(|s| **s >= 400 && ![408, 503].contains(*s))
        {
            let r = resolve(&doc, &op["responses"][status.to_string()]);
            assert!(
                r["content"].get("application/problem+json").is_some(),
                "{method} {path} {status}"
            );
        }
    }
}

/// A concrete path for a route template.
fn concrete(template: &str, session: i64) -> String {
    template
        .replace(
            "{name}",
            if template.contains("/nas/") {
                "hotspot1"
            } else {
                "basic"
            },
        )
        .replace("{code}", "V1")
        .replace("{batch}", "b1")
        .replace("{id}", &session.to_string())
}

/// A body each route accepts (its first use).
fn good_body(template: &str, method: &str) -> Option<Value> {
    Some(match (template, method) {
        ("/api/v1/plans", "post") => json!({"name": "extra", "time": "1h", "data": 1000000}),
        ("/api/v1/plans/{name}", "patch") => json!({"rate_limit": "2M/2M"}),
        ("/api/v1/vouchers", "post") => json!({"code": "V2", "plan": "basic"}),
        ("/api/v1/vouchers/{code}/revoke", "post") => json!({"disconnect": false}),
        ("/api/v1/voucher-batches", "post") => {
            json!({"plan": "basic", "count": 2, "batch": "b2"})
        }
        ("/api/v1/nas", "post") => {
            json!({"name": "hotspot2", "address": "10.9.0.0/24", "secret": "second-secret"})
        }
        ("/api/v1/nas/{name}", "patch") => json!({"coa_port": 1700}),
        ("/api/v1/sessions/{id}/disconnect", "post") => json!({}),
        ("/api/v1/webhooks", "post") => {
            json!({"url": "http://127.0.0.1:9/hook", "events": ["voucher.revoked"]})
        }
        _ => return None,
    })
}

#[test]
fn the_running_server_answers_as_documented() {
    let doc = document();
    let db = TestDb::sqlite();
    db.cli(&["tenant", "add", "acme"]);
    let op = add_token(&db, "op", &[]);
    let acme = add_token(&db, "acme", &["--tenant", "acme"]);
    let (server, http) = start(&db);
    let op = Api {
        addr: http,
        token: op,
    };
    let acme = Api {
        addr: http,
        token: acme,
    };
    let mut answers: Vec<(&str, &str, Answer)> = Vec::new();

    // Something of each kind, and a session.
    assert_eq!(
        op.post(
            "/api/v1/nas",
            json!({"name": "hotspot1", "address": "127.0.0.1", "secret": SECRET})
        )
        .status,
        201
    );
    assert_eq!(
        op.post("/api/v1/plans", json!({"name": "basic"})).status,
        201
    );
    assert_eq!(
        op.post(
            "/api/v1/voucher-batches",
            json!({"plan": "basic", "count": 2, "batch": "b1"})
        )
        .status,
        201
    );
    assert_eq!(
        op.post("/api/v1/vouchers", json!({"code": "V1", "plan": "basic"}))
            .status,
        201
    );
    let mut c = Client::new();
    wait_until("login", Duration::from_secs(10), || {
        c.login(
            server.auth,
            "V1",
            Cred::Pap("V1"),
            Some("AA:BB:CC:DD:EE:01"),
        )
        .filter(|r| r.code() == Code::AccessAccept)
    });
    assert!(c
        .account(
            server.acct,
            1,
            "V1",
            "s1",
            Some("AA:BB:CC:DD:EE:01"),
            0,
            0,
            0
        )
        .is_some());
    let session = op.items("/api/v1/sessions")[0]["id"].as_i64().unwrap();

    let auth = format!("Bearer {}", op.token);
    for (template, method, _) in ROUTES {
        let path = concrete(template, session);
        let m = method.to_uppercase();
        // No token: the route exists and is behind the token check.
        answers.push((template, method, request(http, &m, &path, &[], None)));
        // A misspelt query parameter, an unknown tenant, another tenant.
        answers.push((
            template,
            method,
            op.send(&m, &format!("{path}?colour=red"), None),
        ));
        answers.push((
            template,
            method,
            op.send(&m, &format!("{path}?tenant=nobody"), None),
        ));
        answers.push((
            template,
            method,
            acme.send(&m, &format!("{path}?tenant=default"), None),
        ));
        if let Some(body) = good_body(template, method) {
            let big = vec![b' '; 20 * 1024];
            let json_type = [
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ];
            answers.push((
                template,
                method,
                request(http, &m, &path, &json_type, Some(&big)),
            ));
            let text = [
                ("Authorization", auth.as_str()),
                ("Content-Type", "text/plain"),
            ];
            answers.push((
                template,
                method,
                request(http, &m, &path, &text, Some(b"x")),
            ));
            answers.push((template, method, op.send(&m, &path, Some(&body))));
        }
    }
    // The rest of the successes, then conflicts and rule violations.
    for (template, method, _) in ROUTES.iter().filter(|r| r.1 == "get") {
        answers.push((template, method, op.get(&concrete(template, session))));
    }
    for format in ["csv", "html"] {
        let path = format!("/api/v1/voucher-batches/b1?format={format}");
        answers.push(("/api/v1/voucher-batches/{batch}", "get", op.get(&path)));
    }
    answers.push((
        "/api/v1/plans",
        "post",
        op.post("/api/v1/plans", json!({"name": "basic"})),
    ));
    answers.push((
        "/api/v1/plans/{name}",
        "delete",
        op.delete("/api/v1/plans/basic"),
    ));
    answers.push((
        "/api/v1/plans/{name}",
        "delete",
        op.delete("/api/v1/plans/extra"),
    ));
    answers.push((
        "/api/v1/nas",
        "post",
        op.post(
            "/api/v1/nas",
            json!({"name": "clash", "address": "127.0.0.1", "secret": SECRET}),
        ),
    ));
    let key = [("Idempotency-Key", "k1")];
    let batch = json!({"plan": "basic", "count": 1, "batch": "b3"});
    let other = json!({"plan": "basic", "count": 1, "batch": "b4"});
    answers.push((
        "/api/v1/voucher-batches",
        "post",
        op.send_with("POST", "/api/v1/voucher-batches", &key, Some(&batch)),
    ));
    answers.push((
        "/api/v1/voucher-batches",
        "post",
        op.send_with("POST", "/api/v1/voucher-batches", &key, Some(&other)),
    ));
    answers.push((
        "/api/v1/nas/{name}",
        "delete",
        op.delete("/api/v1/nas/hotspot2"),
    ));
    let hooks = op.items("/api/v1/webhooks");
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let hook = format!("/api/v1/webhooks/{}", hooks[0]["id"]);
    answers.push(("/api/v1/webhooks/{id}", "delete", op.delete(&hook)));
    answers.push(("/api/v1/webhooks/{id}", "delete", op.delete(&hook)));
    answers.push((
        "/api/v1/webhooks",
        "post",
        op.post("/api/v1/webhooks", json!({"url": "ftp://example.com/"})),
    ));

    let mut seen: BTreeMap<(&str, &str), BTreeSet<u16>> = BTreeMap::new();
    let mut errors = Vec::new();
    for (template, method, a) in &answers {
        seen.entry((template, method)).or_default().insert(a.status);
        let op_doc = &doc["paths"][*template][*method];
        let Some(resp) = op_doc["responses"].get(a.status.to_string()) else {
            errors.push(format!(
                "{method} {template}: undocumented status {}: {a:?}",
                a.status
            ));
            continue;
        };
        let resp = resolve(&doc, resp);
        let media = a
            .header("content-type")
            .map(|m| m.split(';').next().unwrap().trim().to_string());
        match (media, resp.get("content")) {
            (None, None) => {}
            (Some(m), Some(content)) => match content.get(&m) {
                Some(c) if m.ends_with("json") => check(
                    &doc,
                    &c["schema"],
                    &a.json(),
                    &format!("{method} {template} {}", a.status),
                    &mut errors,
                ),
                Some(_) => {}
                None => errors.push(format!(
                    "{method} {template} {}: undocumented {m}",
                    a.status
                )),
            },
            (m, c) => errors.push(format!(
                "{method} {template} {}: media {m:?} vs {c:?}",
                a.status
            )),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    for (template, method, statuses) in ROUTES {
        let got = &seen[&(*template, *method)];
        let success = statuses.iter().find(|s| **s < 300).unwrap();
        for want in [*success, 400, 401, 403, 404] {
            assert!(
                got.contains(&want),
                "{method} {template}: no {want} seen, got {got:?}"
            );
        }
        if good_body(template, method).is_some() {
            assert!(
                got.contains(&413) && got.contains(&415),
                "{method} {template}: {got:?}"
            );
        }
    }
    assert!(seen[&("/api/v1/plans", "post")].contains(&409));
    assert!(seen[&("/api/v1/plans/{name}", "delete")].contains(&409));
    assert!(seen[&("/api/v1/nas", "post")].contains(&422));
    assert!(seen[&("/api/v1/voucher-batches", "post")].contains(&422));
}
