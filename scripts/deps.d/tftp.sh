# shellcheck shell=bash
# Installs what the TFTP tests and benchmark need: the tftp-hpa client, curl (TFTP
# support) and tftpd-hpa's in.tftpd for the side-by-side benchmark.
# Sourced as root on a fresh Debian 12 machine with scripts/lib/apt.sh (which keeps the
# package from starting its daemon on port 69 of every address; the benchmark runs its own
# in.tftpd on 127.0.0.1). Idempotent.

tftp_deps_missing=()
command -v tftp >/dev/null 2>&1 || tftp_deps_missing+=(tftp-hpa)
command -v curl >/dev/null 2>&1 || tftp_deps_missing+=(curl)
command -v in.tftpd >/dev/null 2>&1 || tftp_deps_missing+=(tftpd-hpa)
apt_install "${tftp_deps_missing[@]}" || return 1 2>/dev/null || exit 1
unset tftp_deps_missing

# Whatever started it (a package script, an earlier install), the packaged daemon must
# not hold port 69: stop and disable it. Harmless when it is absent or not running.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now tftpd-hpa >/dev/null 2>&1 || true
fi
if [[ -x /etc/init.d/tftpd-hpa ]]; then
    /etc/init.d/tftpd-hpa stop >/dev/null 2>&1 || true
    if command -v update-rc.d >/dev/null 2>&1; then update-rc.d tftpd-hpa disable >/dev/null 2>&1 || true; fi
fi
