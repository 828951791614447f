#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need on a fresh Debian machine, then checks
# formatting and lints and runs every test. Each scripts/deps.d/*.sh snippet installs one room's
# test tools (Debian packages, Python virtualenvs) when they are missing (scripts/lib/deps.sh).
#
# Every test binary runs, whatever an earlier one did (--no-fail-fast); the closing lines are the
# time each test file took (for BENCHMARKS.md) and the totals, "N passed, N failed, N skipped",
# printed whatever happened; the exit status is non-zero when anything failed.
# After cargo test, every fuzz target runs on a bounded number of inputs from a fixed seed
# (scripts/fuzz.sh: RACKBOX_FUZZ_RUNS each, default 1000000, and at most RACKBOX_FUZZ_SECONDS,
# default 60), so CI tries the same inputs every time; its summary line "fuzz: N targets,
# N crashes" comes before the totals, and a crash fails the run too.
set -euo pipefail
cd "$(dirname "$0")/.."

export RACKBOX_TOOLS="${RACKBOX_TOOLS:-/opt/rackbox-tools}"
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh
deps_install

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
mkdir -p target
test_rc=0
cargo test --all-targets --no-fail-fast 2>&1 | tee target/test-output.txt || test_rc=$?
echo "== fuzz"
fuzz_rc=0
FUZZ_RUNS="${RACKBOX_FUZZ_RUNS:-1000000}" scripts/fuzz.sh "${RACKBOX_FUZZ_SECONDS:-60}" || fuzz_rc=$?
echo "== time per test binary"
awk '
    /^ *Running / { name = $2; if (name ~ /^unittests$/) name = $3 }
    /^test result:/ { t = $NF; sub(/s$/, "", t); printf "%8.1f s  %s (%d passed, %d failed)\n", t, name, $4, $6 }
' target/test-output.txt | sort -rn
# The runner's totals on one closing line.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' \
    target/test-output.txt
failed="$(awk '/^test result:/ { f += $6 } END { print f + 0 }' target/test-output.txt)"
if [ "$test_rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
    echo "test.sh: cargo test failed (exit $test_rc, $failed failed tests)" >&2
    exit 1
fi
if [ "$fuzz_rc" -ne 0 ]; then
    echo "test.sh: fuzzing failed (scripts/fuzz.sh exit $fuzz_rc; the crash inputs are named above)" >&2
    exit 1
fi
