# Installs what the TFTP tests and benchmark need: the tftp-hpa client, curl (TFTP
# support) and tftpd-hpa's in.tftpd for the side-by-side benchmark.
# Sourced as root on a fresh Debian 12 machine after `apt-get update`. Idempotent.

tftp_deps_missing=()
command -v tftp >/dev/null 2>&1 || tftp_deps_missing+=(tftp-hpa)
command -v curl >/dev/null 2>&1 || tftp_deps_missing+=(curl)
command -v in.tftpd >/dev/null 2>&1 || tftp_deps_missing+=(tftpd-hpa)

if ((${#tftp_deps_missing[@]})); then
    # policy-rc.d exit 101 keeps the package from starting its daemon on port 69 of
    # every address; the benchmark runs its own in.tftpd on 127.0.0.1.
    tftp_deps_policy_rc=/usr/sbin/policy-rc.d
    tftp_deps_had_policy=0
    [[ -e $tftp_deps_policy_rc ]] && tftp_deps_had_policy=1
    if ((tftp_deps_had_policy == 0)); then
        printf '#!/bin/sh\nexit 101\n' >"$tftp_deps_policy_rc"
        chmod 755 "$tftp_deps_policy_rc"
    fi
    tftp_deps_status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${tftp_deps_missing[@]}" || tftp_deps_status=$?
    if ((tftp_deps_had_policy == 0)); then
        rm -f "$tftp_deps_policy_rc"
    fi
    unset tftp_deps_policy_rc tftp_deps_had_policy
    if ((tftp_deps_status != 0)); then
        echo "deps.d/tftp.sh: apt-get install ${tftp_deps_missing[*]} failed" >&2
        unset tftp_deps_missing
        return "$tftp_deps_status"
    fi
    unset tftp_deps_status
fi
unset tftp_deps_missing

# Whatever started it (a package script, an earlier install), the packaged daemon must
# not hold port 69: stop and disable it. Harmless when it is absent or not running.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now tftpd-hpa >/dev/null 2>&1 || true
fi
if [[ -x /etc/init.d/tftpd-hpa ]]; then
    /etc/init.d/tftpd-hpa stop >/dev/null 2>&1 || true
    command -v update-rc.d >/dev/null 2>&1 && update-rc.d tftpd-hpa disable >/dev/null 2>&1 || true
fi
