# shellcheck shell=bash
# Debian packages for the scripts' and the tests' tools, installed as root by the snippets in
# scripts/deps.d/ (sourced by scripts/test.sh and scripts/lab.sh).
#
#   apt_install PKG...   `apt-get update` once per shell (only when something is to be installed,
#                        so a machine that has everything asks no registry), then installs PKG...
#                        without recommends and without starting any daemon a package ships: a
#                        policy-rc.d that exits 101 keeps invoke-rc.d from starting it on the host.
#   apt_update           `apt-get update`, unless this shell did it already.
#   apt_refresh          makes the next apt_update update again (after a source was added).

apt_updated="${apt_updated:-0}"

apt_refresh() { apt_updated=0; }

apt_update() {
    [ "$apt_updated" = 1 ] && return 0
    apt-get update -qq -o DPkg::Lock::Timeout=600 || return 1
    apt_updated=1
}

apt_install() {
    [ "$#" -gt 0 ] || return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "apt: installing $* needs root (apt-get); run as root or with sudo" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_update || return 1
    local policy=/usr/sbin/policy-rc.d had_policy=0 rc=0
    [ -e "$policy" ] && had_policy=1
    if [ "$had_policy" = 0 ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
    fi
    echo "apt: installing $*"
    apt-get install -y --no-install-recommends --allow-downgrades -o DPkg::Lock::Timeout=600 "$@" || rc=$?
    [ "$had_policy" = 0 ] && rm -f "$policy"
    if [ "$rc" -ne 0 ]; then
        echo "apt: apt-get install $* failed (exit $rc)" >&2
    fi
    return "$rc"
}
