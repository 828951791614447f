#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need on a fresh Debian machine, then checks
# formatting and lints and runs every test. Each scripts/deps.d/*.sh snippet installs one room's
# test tools (Debian packages, Python virtualenvs); it is sourced as root after `apt-get update`.
set -euo pipefail
cd "$(dirname "$0")/.."

export RACKBOX_TOOLS="${RACKBOX_TOOLS:-/opt/rackbox-tools}"
shopt -s nullglob
deps=(scripts/deps.d/*.sh)
if [ "${#deps[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: installing test tools needs root (apt-get); run as root or with sudo" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  for f in "${deps[@]}"; do
    echo "== deps: $f"
    # shellcheck source=/dev/null
    source "$f"
  done
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets 2>&1 | tee target/test-output.txt
# Print the runner's totals on one closing line.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' target/test-output.txt
