# shellcheck shell=bash
# Tools the power-control tests (tests/power_*.rs) talk to: a real IPMI BMC
# simulator (ipmi_sim from openipmi) that drives a real QEMU machine (QEMU: qemu.sh), ipmitool
# as an independent second opinion, openssl for a self-signed certificate, and
# sushy-tools' Redfish emulator in a venv.
#
# Sourced by the project test script as root on Debian 12 with scripts/lib/apt.sh and venv.sh.
# Idempotent: installs only what is missing, so a second run takes a second.

power_deps_missing=()
for power_dep in ipmi_sim:openipmi ipmitool:ipmitool openssl:openssl python3:python3; do
    command -v "${power_dep%%:*}" >/dev/null 2>&1 || power_deps_missing+=("${power_dep#*:}")
done
# `python3 -m venv` on Debian needs the ensurepip that python3-venv ships.
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1; then
    power_deps_missing+=(python3-venv)
fi
if [ "${#power_deps_missing[@]}" -gt 0 ]; then
    apt_install "${power_deps_missing[@]}" python3-venv ca-certificates
fi

# sushy-tools 2.2.0 supports Python 3.11 (Debian 12's python3).
venv_install "${RACKBOX_TOOLS:-/opt/rackbox-tools}/venv-sushy" sushy-tools 2.2.0 \
    || { return 1 2>/dev/null || exit 1; }
unset power_dep power_deps_missing
