#!/usr/bin/env bash
# The project's test command (see README). Runs every test suite, then the
# property test that decodes arbitrary bytes with 1,000,000 cases in release mode.
set -euo pipefail
cd "$(dirname "$0")"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
PROPTEST_CASES=1000000 cargo test --release --test proto_props -- decode_never_panics
