//! `deploy/prometheus/` and `deploy/grafana/`: the scrape config and alert rules
//! are valid, the alert unit tests pass, every dashboard query is valid PromQL,
//! and every metric the rules and the dashboard read is one the server exports.
//! The promtool checks need `promtool` (Debian package `prometheus`) and are
//! SKIPPED without it unless RRNET_REQUIRE_TOOLS=1.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::have_tool;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus")
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(deploy_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_config_rules_and_alert_tests() {
    if !have_tool("promtool", &["--version"]) {
        return;
    }
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
}

#[test]
fn alert_rules_read_only_exported_metrics() {
    let rules = std::fs::read_to_string(deploy_dir().join("alerts.yml")).unwrap();
    let known = common_metrics::exported_names();
    let used = common_metrics::metric_names_in(&rules);
    assert!(used.len() >= 6, "{used:?}");
    for name in used {
        assert!(
            known.contains(&name) || name == "up",
            "alerts.yml uses {name}, which the server does not export"
        );
    }
}

fn dashboard() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/rrnet-radius.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("dashboard is JSON")
}

/// Every PromQL expression of the dashboard: panel targets and variable queries.
fn dashboard_queries(d: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("target has expr").to_string());
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

#[test]
fn dashboard_reads_only_exported_metrics() {
    let d = dashboard();
    let known = common_metrics::exported_names();
    let queries = dashboard_queries(&d);
    assert!(queries.len() >= 20);
    let mut used = std::collections::BTreeSet::new();
    for q in &queries {
        let names = common_metrics::metric_names_in(q);
        assert!(
            !names.is_empty() || q.contains("up{"),
            "query reads no metric: {q}"
        );
        used.extend(names);
    }
    for name in &used {
        assert!(
            known.contains(name),
            "the dashboard uses {name}, which the server does not export"
        );
    }
    // What the operator asked to see.
    for needed in [
        "rrnet_radius_requests_total",
        "rrnet_radius_rejects_total",
        "rrnet_radius_drops_total",
        "rrnet_radius_request_duration_seconds_bucket",
        "rrnet_radius_storage_duration_seconds_bucket",
        "rrnet_radius_open_sessions",
        "rrnet_radius_vouchers_activated_total",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard has no panel on {needed}"
        );
    }
    // Panel ids are unique and every panel reads the selected data source.
    let mut ids = std::collections::BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
}

/// The dashboard's queries, with Grafana's variables filled in, pass
/// `promtool check rules` as recording rules: a syntax error fails here, not
/// on the operator's screen.
#[test]
fn dashboard_queries_are_valid_promql() {
    if !have_tool("promtool", &["--version"]) {
        return;
    }
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in dashboard_queries(&dashboard()).iter().enumerate() {
        if q.starts_with("label_values(") {
            continue; // a Grafana function, not PromQL
        }
        let q = q
            .replace("$__rate_interval", "1m")
            .replace("$__range", "6h")
            .replace("$instance", ".*")
            .replace("$nas", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&q).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard_rules.yml");
    std::fs::write(&file, rules).unwrap();
    promtool(&["check", "rules", file.to_str().unwrap()]);
}

/// Metric names the server exports, and metric names a text mentions.
mod common_metrics {
    use std::collections::BTreeSet;

    /// Every sample name in the registry's exposition, with every labelled
    /// family touched once so that it is rendered.
    pub fn exported_names() -> BTreeSet<String> {
        let m = rrnet_radius::metrics::Metrics::new();
        m.requests.with_label_values(&["t", "n", "r"]).inc();
        m.rejects.with_label_values(&["n", "r"]).inc();
        m.drops.with_label_values(&["n", "r"]).inc();
        m.duplicates_answered.with_label_values(&["n"]).inc();
        m.request_duration.with_label_values(&["t"]).observe(0.001);
        m.storage_duration.with_label_values(&["o"]).observe(0.001);
        m.accounting_batch_size.observe(1.0);
        m.open_sessions.with_label_values(&["n"]).set(1);
        m.vouchers_activated.inc();
        m.sessions_closed.with_label_values(&["c"]).inc();
        m.http_requests.with_label_values(&["r", "200"]).inc();
        m.storage_errors.with_label_values(&["o"]).inc();
        m.nas_last_seen.with_label_values(&["n"]).set(1);
        let coa = rrnet_radius::coa::CoaMetrics::register(&m.registry);
        coa.requests.with_label_values(&["n", "k", "r", "c"]).inc();
        coa.bad_answers.with_label_values(&["n", "r"]).inc();
        let webhooks = rrnet_radius::events::WebhookMetrics::register(&m.registry);
        webhooks.deliveries.with_label_values(&["r"]).inc();
        webhooks.backlog.set(1);
        m.render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_owned)
            .collect()
    }

    /// Words that look like metric names of this server or of the process collector.
    pub fn metric_names_in(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let rest = &text[i..];
            let starts_word =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            if starts_word && (rest.starts_with("rrnet_radius_") || rest.starts_with("process_")) {
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                out.insert(rest[..len].to_string());
                i += len;
            } else {
                i += 1;
            }
        }
        out
    }
}
