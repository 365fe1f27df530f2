//! `bench/compare --smoke` end to end: every row starts, takes a couple of
//! seconds of load from rrnet-loadgen (closed loop, open loop at half of it,
//! and the mixed hotspot profile on a second, fresh server), stops, and the
//! closed-loop, open-loop and mixed tables and the goal checks print with no
//! errors, rejects or bad replies. Speed is not asserted here; the
//! point is that the benchmark keeps working. Skipped (see `common::skip`)
//! without FreeRADIUS or python3 unless RRNET_REQUIRE_TOOLS=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{have_tool, skip, Lacks};

const ROW_TITLES: [&str; 7] = [
    "trivial signing responder (rrnet-ceiling), the ceiling",
    "rrnet-radius, SQLite",
    "rrnet-radius, PostgreSQL",
    "FreeRADIUS rlm_sql + SQLite",
    "FreeRADIUS rlm_sql + PostgreSQL",
    "FreeRADIUS files (RAM, no quotas; no-op accounting)",
    "FreeRADIUS → rlm_rest → rrnet-radius shim (SQLite)",
];

#[test]
fn compare_smoke_prints_the_table() {
    if !have_tool("python3", &["--version"]) || !have_tool("freeradius", &["-v"]) {
        return;
    }
    // Cargo builds every binary of the package for integration tests; the
    // script takes them from the same directory.
    let bins: PathBuf = Path::new(env!("CARGO_BIN_EXE_rrnet-loadgen"))
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("compare.json");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/compare"))
        .arg("--smoke")
        .arg("--json")
        .arg(&json)
        .env("RRNET_BENCH_BIN_DIR", &bins)
        .output()
        .expect("run bench/compare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(out.status.success(), "bench/compare --smoke failed\n{all}");

    assert!(stdout.contains("| target | auth req/s |"), "{all}");
    assert!(stdout.contains("| target | auth asked /s |"), "{all}");
    assert!(stdout.contains("| target | req/s | p50 ms |"), "{all}");
    for title in ROW_TITLES {
        let lines: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("| {title} |")))
            .collect();
        let line = *lines
            .first()
            .unwrap_or_else(|| panic!("no row {title:?}\n{all}"));
        if !line.contains("skipped:") {
            // Closed loop, open loop and mixed: one line each.
            assert_eq!(lines.len(), 3, "{title}: {lines:?}\n{all}");
        }
        assert!(!line.contains("ERROR"), "{line}\n{all}");
        if line.contains("skipped:") {
            // Only the PostgreSQL rows may be missing, and only when the
            // environment says PostgreSQL is optional.
            let pg = title.contains("PostgreSQL");
            let required = std::env::var("RRNET_REQUIRE_TOOLS").as_deref() == Ok("1")
                || std::env::var("RRNET_REQUIRE_POSTGRES").as_deref() == Ok("1");
            assert!(pg && !required, "row skipped: {line}\n{all}");
            skip(Lacks::Postgres, &format!("bench/compare row: {line}"));
        }
    }
    assert!(!stdout.contains("Problems:"), "{all}");
    assert!(stdout.contains("Ratios"), "{all}");
    assert!(
        stdout.contains("Open loop at half of each row's own"),
        "{all}"
    );
    assert!(stdout.contains("Mixed hotspot profile"), "{all}");
    assert!(stdout.contains("Goals:"), "{all}");
    for goal in [
        "2.5× rlm_sql+SQLite",
        "≥ FreeRADIUS files",
        "10× rlm_sql+SQLite",
        "p99 < 1 ms",
        "peak RSS",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("- ") && l.contains(goal))
            .unwrap_or_else(|| panic!("no goal {goal:?}\n{all}"));
        assert!(
            line.ends_with("(met)") || line.ends_with("(NOT met)"),
            "{line}\n{all}"
        );
    }

    // The JSON has every row, each either measured or skipped with a reason.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = report["rows"].as_object().unwrap();
    assert_eq!(rows.len(), ROW_TITLES.len(), "{report}");
    for (name, row) in rows {
        if row.get("skipped").is_some() {
            continue;
        }
        for kind in ["auth", "acct", "auth_half", "acct_half", "mixed"] {
            let r = &row[kind];
            assert!(r["replies"].as_u64().unwrap() > 0, "{name} {kind}: {r}");
            assert_eq!(r["bad_replies"], 0, "{name} {kind}: {r}");
            assert_eq!(r["rejects"], 0, "{name} {kind}: {r}");
        }
        let mixed = &row["mixed"];
        for kind in ["auth", "acct"] {
            assert!(
                mixed[kind]["replies"].as_u64().unwrap() > 0,
                "{name} mixed {kind}: {mixed}"
            );
        }
        assert_eq!(mixed["fresh"]["exhausted"], 0, "{name}: {mixed}");
    }
    assert!(!report["goals"].as_array().unwrap().is_empty(), "{report}");
}
