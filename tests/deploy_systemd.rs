//! deploy/systemd: `systemd-analyze verify` accepts the unit without a single
//! complaint about it, its hardening scores as "OK" in `systemd-analyze security`,
//! and the environment file example names only variables the program knows.
//! Needs `systemd-analyze` (Debian package `systemd`); SKIPPED without it unless
//! RRNET_REQUIRE_TOOLS=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{have_tool, BIN};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/systemd")
        .join(file)
}

/// The unit with ExecStart pointing at the binary under test: verify checks that
/// the executable exists, and /usr/local/bin/rrnet-radius does not here.
fn unit_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(deploy("rrnet-radius.service")).unwrap();
    let exec = "ExecStart=/usr/local/bin/rrnet-radius serve";
    assert!(text.contains(exec), "the unit should run {exec}");
    let path = dir.join("rrnet-radius.service");
    std::fs::write(&path, text.replace(exec, &format!("ExecStart={BIN} serve"))).unwrap();
    path
}

#[test]
fn unit_has_the_hardening_the_guide_promises() {
    let text = std::fs::read_to_string(deploy("rrnet-radius.service")).unwrap();
    for line in [
        "User=rrnet-radius",
        "StateDirectory=rrnet-radius",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "Environment=RRNET_DATABASE_URL=sqlite:///var/lib/rrnet-radius/rrnet-radius.db",
    ] {
        assert!(text.contains(line), "unit lacks {line:?}");
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if !have_tool("systemd-analyze", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values, and also reports on other
    // units installed on the machine: only lines about this file count.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(unit.to_str().unwrap()) || l.contains("rrnet-radius.service"))
        .collect();
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    assert!(
        ours.is_empty(),
        "systemd-analyze verify complains:\n{}",
        ours.join("\n")
    );

    // Offline security scoring exists since systemd 252.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match all
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for rrnet-radius.service: "))
    {
        Some((_, rest)) => {
            let score: f64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            assert!(score <= 2.0, "exposure {score} (want ≤ 2.0):\n{all}");
        }
        None => {
            common::skip(
                common::Lacks::Tool,
                "systemd-analyze security --offline=yes not supported here (systemd 252 or later \
                 has it); exposure score not checked",
            );
        }
    }
}

#[test]
fn env_example_names_only_known_variables() {
    let text = std::fs::read_to_string(deploy("rrnet-radius.env.example")).unwrap();
    // Known = read by the code, or documented in the README's settings table.
    let mut sources =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                sources.push_str(&std::fs::read_to_string(p).unwrap());
            }
        }
    }
    let mut names = 0;
    for line in text.lines() {
        let l = line.trim_start_matches('#');
        if let Some((name, _)) = l.split_once('=') {
            if name.starts_with("RRNET_") && !name.contains(' ') {
                names += 1;
                assert!(
                    sources.contains(&format!("\"{name}\""))
                        || sources.contains(&format!("`{name}`")),
                    "{name} is neither read in src/ nor documented in README.md"
                );
            }
        }
    }
    assert!(names >= 8, "expected the example to cover the settings");
}
