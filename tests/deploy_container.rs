//! deploy/container: no container engine runs in CI, so these check what can be
//! checked without one — compose.yaml and the Grafana provisioning files parse and
//! are wired to files that exist, the Dockerfile is multi-stage, runs as a non-root
//! user and copies only paths that exist, and its HEALTHCHECK command, run here
//! against the real server, passes while the server is up and fails when it is not.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, TestDb};
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn container(file: &str) -> PathBuf {
    root().join("deploy/container").join(file)
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn compose_file_is_wired_to_the_deploy_directory() {
    let c = yaml(&container("compose.yaml"));
    let services = c["services"].as_mapping().expect("services");
    for s in ["rrnet-radius", "postgres", "prometheus", "grafana"] {
        assert!(services.contains_key(s), "no service {s}");
    }
    let rr = &c["services"]["rrnet-radius"];
    let dockerfile = rr["build"]["dockerfile"].as_str().unwrap();
    let context = container(rr["build"]["context"].as_str().unwrap());
    assert!(context.join(dockerfile).exists(), "{dockerfile} not found");
    let env = &rr["environment"];
    assert!(env["RRNET_DATABASE_URL"]
        .as_str()
        .unwrap()
        .starts_with("postgres://"));
    assert_eq!(env["RRNET_METRICS_LISTEN"].as_str(), Some("0.0.0.0:9812"));
    let ports: Vec<&str> = rr["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(ports.contains(&"1812:1812/udp") && ports.contains(&"1813:1813/udp"));

    // Bind mounts: files of this directory must exist; the monitoring files come
    // from deploy/prometheus and deploy/grafana by these exact paths.
    let mut outside = Vec::new();
    for (name, svc) in services {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with("./") {
                assert!(container(src).exists(), "{name:?}: {src} missing");
            } else if src.starts_with("../") {
                outside.push(src.to_string());
            }
        }
    }
    outside.sort();
    assert_eq!(
        outside,
        [
            "../grafana/rrnet-radius.json",
            "../prometheus/alerts.yml",
            "../prometheus/prometheus.yml"
        ]
    );
    // Secrets come from the environment, never from the file.
    let text = std::fs::read_to_string(container("compose.yaml")).unwrap();
    assert!(text.contains("${RRNET_DB_PASSWORD:?"));
}

#[test]
fn grafana_provisioning_parses() {
    let ds = yaml(&container(
        "grafana/provisioning/datasources/prometheus.yaml",
    ));
    assert_eq!(
        ds["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    let db = yaml(&container(
        "grafana/provisioning/dashboards/rrnet-radius.yaml",
    ));
    let path = db["providers"][0]["options"]["path"].as_str().unwrap();
    let compose = std::fs::read_to_string(container("compose.yaml")).unwrap();
    assert!(
        compose.contains(&format!("../grafana/rrnet-radius.json:{path}/")),
        "the dashboard is not mounted where the provider looks ({path})"
    );
}

fn dockerfile() -> String {
    std::fs::read_to_string(container("Dockerfile")).unwrap()
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_copies_existing_paths() {
    let d = dockerfile();
    let lines: Vec<&str> = d
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert!(lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2);
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    assert!(lines.iter().any(|l| l.starts_with("HEALTHCHECK ")));
    for l in &lines {
        if let Some(rest) = l.strip_prefix("COPY ") {
            if rest.starts_with("--from") {
                continue;
            }
            let parts: Vec<&str> = rest.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(
                    root().join(src).exists(),
                    "COPY {src}: not in the repository"
                );
            }
        }
    }
}

/// The HEALTHCHECK's exec-form command, with the metrics port replaced.
fn healthcheck(port: u16) -> Vec<String> {
    let d = dockerfile().replace("\\\n", "");
    let line = d
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .unwrap()
        .to_string();
    let json = &line[line.find("CMD [").unwrap() + 4..];
    let argv: Vec<String> = serde_json::from_str(json).expect("exec-form CMD");
    argv.into_iter()
        .map(|a| a.replace("9812", &port.to_string()))
        .collect()
}

fn run(argv: &[String]) -> bool {
    Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .unwrap()
        .success()
}

#[test]
fn healthcheck_passes_against_the_running_server() {
    let db = TestDb::sqlite();
    let server = Server::start(&db);
    let port = server.metrics.port();
    assert!(
        run(&healthcheck(port)),
        "health check failed on a healthy server"
    );
    drop(server);
    assert!(
        !run(&healthcheck(port)),
        "health check passed with the server stopped"
    );
}
