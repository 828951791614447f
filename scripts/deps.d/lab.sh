# shellcheck shell=bash
# Tools scripts/lab.sh itself uses beside those of the machines it runs (qemu, netboot, agent,
# testos): jq, which reads the JSON the rackbox CLI prints with --json.
#
# Sourced as root on Debian 12 with scripts/lib/apt.sh. Idempotent: a machine that has jq asks
# no registry.

if ! command -v jq >/dev/null 2>&1; then
    apt_install jq
fi
