#!/usr/bin/env bash
# Imports the iPXE boot loaders Debian ships (package `ipxe`, /usr/lib/ipxe/) into rackbox as boot
# resources (kind bootloader, arch amd64), where its TFTP server serves them to PXE firmware:
#   undionly.kpxe  legacy BIOS PXE (the [boot] bios_loader default)
#   snponly.efi    UEFI PXE, using the firmware's own network driver (the uefi_loader default)
#   ipxe.efi       UEFI PXE with iPXE's own drivers (for firmware whose SNP is broken)
#
# Usage: scripts/import-bootloaders.sh [URL [TOKEN]]
#   URL and TOKEN default to RACKBOX_URL and RACKBOX_TOKEN (else the CLI's saved login).
#   RACKBOX_BIN: the rackbox binary (default: target/release, then target/debug, then PATH).
#   IPXE_DIR: where the loaders are (default /usr/lib/ipxe).
# Running it again replaces each loader with the same bytes: harmless.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ge 1 ]; then export RACKBOX_URL="$1"; fi
if [ $# -ge 2 ]; then export RACKBOX_TOKEN="$2"; fi
if [ $# -gt 2 ]; then
    echo "usage: $0 [URL [TOKEN]]" >&2
    exit 2
fi

bin="${RACKBOX_BIN:-}"
if [ -z "$bin" ]; then
    for candidate in "${CARGO_TARGET_DIR:-target}/release/rackbox" "${CARGO_TARGET_DIR:-target}/debug/rackbox"; do
        if [ -x "$candidate" ]; then bin="$candidate"; break; fi
    done
fi
if [ -z "$bin" ]; then bin="$(command -v rackbox || true)"; fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "import-bootloaders: no rackbox binary: run 'cargo build --release' or set RACKBOX_BIN" >&2
    exit 1
fi

dir="${IPXE_DIR:-/usr/lib/ipxe}"
for loader in undionly.kpxe snponly.efi ipxe.efi; do
    if [ ! -f "$dir/$loader" ]; then
        echo "import-bootloaders: $dir/$loader is missing: install the Debian package ipxe (scripts/deps.d/netboot.sh)" >&2
        exit 1
    fi
done
for loader in undionly.kpxe snponly.efi ipxe.efi; do
    sha="$(sha256sum "$dir/$loader" | cut -d' ' -f1)"
    "$bin" boot-resource import --kind bootloader --replace --sha256 "$sha" amd64 "$loader" "$dir/$loader"
done
