//! Skipped tests must show in the summary of `./test.sh`: `common::skip` records
//! each skip in a file, and `./test.sh --report-skips DIR` lists the records and
//! fails when RRNET_REQUIRE_POSTGRES=1 or RRNET_REQUIRE_TOOLS=1 forbids one.
//!
//! `probe` skips only when RRNET_TEST_SKIP_PROBE=1; the other tests run it in a
//! child process of this test binary, with their own record directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const UNREACHABLE_PG: &str = "postgres://nobody:probe-pw@127.0.0.1:1/none";

/// With RRNET_TEST_SKIP_PROBE=1: a missing tool, then an unreachable PostgreSQL.
/// Otherwise it does nothing.
#[test]
fn probe() {
    if std::env::var("RRNET_TEST_SKIP_PROBE").as_deref() != Ok("1") {
        return;
    }
    assert!(!have_tool("rrnet-no-such-tool", &["--version"]));
    assert!(TestDb::postgres().is_none());
}

/// Run `probe` with records going to `dir` and the given RRNET_REQUIRE_* settings.
fn run_probe(dir: &Path, require: &[&str]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "probe", "--nocapture"])
        .env("RRNET_TEST_SKIP_PROBE", "1")
        .env("RRNET_TEST_SKIP_DIR", dir)
        .env("RRNET_TEST_POSTGRES_URL", UNREACHABLE_PG)
        .env_remove("RRNET_REQUIRE_POSTGRES")
        .env_remove("RRNET_REQUIRE_TOOLS");
    for var in require {
        cmd.env(var, "1");
    }
    cmd.output().unwrap()
}

/// Every record in `dir`, sorted.
fn records(dir: &Path) -> Vec<String> {
    let mut all: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "skip"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    all.sort();
    all
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn skips_are_recorded_with_test_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_probe(dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let recs = records(dir.path());
    assert_eq!(recs.len(), 2, "{recs:?}\n{}", text(&out));
    let (pg, tool) = (&recs[0], &recs[1]);
    assert!(
        pg.starts_with(
            "postgres\tskip_report probe\tPostgreSQL not reachable at postgres://…@127.0.0.1:1/none ("
        ),
        "{pg:?}"
    );
    assert!(pg.ends_with('\n') && pg.lines().count() == 1, "{pg:?}");
    assert!(!pg.contains("probe-pw"), "no password in records: {pg:?}");
    assert_eq!(
        tool,
        "tool\tskip_report probe\trrnet-no-such-tool is not installed\n"
    );
    // `cargo test` shows the skip as it happens.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SKIPPED: skip_report probe: rrnet-no-such-tool is not installed"),
        "{stderr}"
    );
}

#[test]
fn a_required_prerequisite_fails_the_test_instead() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_probe(dir.path(), &["RRNET_REQUIRE_TOOLS"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("RRNET_REQUIRE_TOOLS=1 forbids skipping this test"),
        "{}",
        text(&out)
    );
    assert_eq!(records(dir.path()), Vec::<String>::new());

    let out = run_probe(dir.path(), &["RRNET_REQUIRE_POSTGRES"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("RRNET_REQUIRE_POSTGRES=1 forbids skipping this test"),
        "{}",
        text(&out)
    );
    let recs = records(dir.path());
    assert_eq!(recs.len(), 1, "only the tool skip is recorded: {recs:?}");
    assert!(recs[0].starts_with("tool\t"), "{recs:?}");
}

fn report(dir: &Path, require: &[&str]) -> Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .arg("--report-skips")
        .arg(dir)
        .env_remove("RRNET_REQUIRE_POSTGRES")
        .env_remove("RRNET_REQUIRE_TOOLS");
    for var in require {
        cmd.env(var, "1");
    }
    cmd.output().unwrap()
}

#[test]
fn test_sh_lists_every_skip() {
    let dir = tempfile::tempdir().unwrap();
    let out = report(
        dir.path(),
        &["RRNET_REQUIRE_POSTGRES", "RRNET_REQUIRE_TOOLS"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0 tests skipped\n");

    assert!(run_probe(dir.path(), &[]).status.success());
    std::fs::write(
        dir.path().join("other.skip"),
        "tool\tdeploy_prometheus rules_pass_promtool\tpromtool is not installed\n",
    )
    .unwrap();
    let out = report(dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("2 tests SKIPPED"), "{stdout}");
    for line in [
        "  rrnet-no-such-tool is not installed (1 test):\n      skip_report probe\n",
        "  promtool is not installed (1 test):\n      deploy_prometheus rules_pass_promtool\n",
        "  PostgreSQL not reachable at postgres://…@127.0.0.1:1/none (",
    ] {
        assert!(stdout.contains(line), "{line:?} in\n{stdout}");
    }

    // Skips that CI forbids fail the run, whichever kind.
    for require in ["RRNET_REQUIRE_POSTGRES", "RRNET_REQUIRE_TOOLS"] {
        let out = report(dir.path(), &[require]);
        assert_eq!(out.status.code(), Some(1), "{require}: {}", text(&out));
        assert!(text(&out).contains("forbidden"), "{}", text(&out));
    }
}
