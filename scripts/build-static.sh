#!/usr/bin/env bash
# Builds the release binary as a static (static-pie, glibc) executable for x86_64, as the appliance
# ships it: no shared libraries, no name-service lookups, rustls (ring) for TLS.
# Output: ${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/rackbox
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" cargo build --release --locked --target "$target"
bin="${CARGO_TARGET_DIR:-target}/$target/release/rackbox"
if ldd "$bin" 2>&1 | grep -q "=>"; then
  echo "build-static.sh: $bin links shared libraries:" >&2
  ldd "$bin" >&2
  exit 1
fi
size=$(stat -c %s "$bin")
echo "static binary: $bin ($((size / 1024 / 1024)) MiB, $size bytes)"
file "$bin" 2>/dev/null || true
