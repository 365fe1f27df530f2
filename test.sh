#!/usr/bin/env bash
# The project's test command (see README). Runs every test suite, then the
# property test that decodes arbitrary bytes with 1,000,000 cases in release mode,
# then lists the tests that were skipped because PostgreSQL or a tool was missing.
#
# A skipped test passes, so the runners count it as passed (and cargo-nextest
# hides the output of passing tests). Each skip therefore writes a record file
# (`skip()` in tests/common/mod.rs) to $RRNET_TEST_SKIP_DIR, by default
# target/test-skips, which this script empties first and summarises last. The run
# fails if a test skipped although RRNET_REQUIRE_POSTGRES=1 or
# RRNET_REQUIRE_TOOLS=1 forbids it.
#
# `./test.sh --report-skips DIR` prints only that summary for the records in DIR.
set -euo pipefail
cd "$(dirname "$0")"

# Print the skips recorded in directory $1, one `KIND<TAB>TEST<TAB>REASON` line
# per *.skip file, grouped by reason. Returns 1 if a record's kind is forbidden
# by RRNET_REQUIRE_POSTGRES=1 (kind postgres) or RRNET_REQUIRE_TOOLS=1 (kind tool).
report_skips() {
  local dir=$1 records
  records=$(find "$dir" -maxdepth 1 -name '*.skip' -type f -exec cat {} + 2>/dev/null \
    | sort -u | sort -t$'\t' -k3,3 -k2,2)
  if [ -z "$records" ]; then
    echo "0 tests skipped"
    return 0
  fi
  REQUIRE_POSTGRES=${RRNET_REQUIRE_POSTGRES:-} REQUIRE_TOOLS=${RRNET_REQUIRE_TOOLS:-} \
    awk -F'\t' '
      {
        if (!($2 in seen)) { seen[$2] = 1; tests++ }
        if (!($3 in count)) order[++reasons] = $3
        count[$3]++
        list[$3] = list[$3] "      " $2 "\n"
        if (($1 == "postgres" && ENVIRON["REQUIRE_POSTGRES"] == "1") ||
            ($1 == "tool" && ENVIRON["REQUIRE_TOOLS"] == "1")) forbidden++
      }
      END {
        printf "%d test%s SKIPPED (counted as passed above, but not run here):\n",
          tests, tests == 1 ? "" : "s"
        for (i = 1; i <= reasons; i++) {
          r = order[i]
          printf "  %s (%d test%s):\n%s", r, count[r], count[r] == 1 ? "" : "s", list[r]
        }
        print "README.md lists what the tests need (PostgreSQL, tools and their Debian packages)."
        if (forbidden) {
          printf "FAILED: %d of these skip%s forbidden by RRNET_REQUIRE_POSTGRES=1 or RRNET_REQUIRE_TOOLS=1\n",
            forbidden, forbidden == 1 ? " is" : "s are"
          exit 1
        }
      }' <<<"$records"
}

if [ "${1:-}" = --report-skips ]; then
  report_skips "${2:?usage: ./test.sh --report-skips DIR}"
  exit
fi

skip_dir=${RRNET_TEST_SKIP_DIR:-${CARGO_TARGET_DIR:-target}/test-skips}
case $skip_dir in
  /*) ;;
  *) skip_dir=$PWD/$skip_dir ;;
esac
export RRNET_TEST_SKIP_DIR=$skip_dir
mkdir -p "$skip_dir"
find "$skip_dir" -maxdepth 1 -name '*.skip' -type f -delete

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast || status=$?
else
  cargo test --workspace --no-fail-fast || status=$?
fi
PROPTEST_CASES=1000000 cargo test --release --test proto_props -- decode_never_panics || status=$?

echo
report_skips "$skip_dir" || { [ "$status" -ne 0 ] || status=1; }
exit "$status"
