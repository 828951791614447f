# shellcheck shell=bash
# Real DHCP peers the DHCP tests (tests/dhcp*.rs) and scripts/bench-dhcp.sh talk to:
#   udhcpc (busybox) and dhclient (isc-dhcp-client) as clients, dhcrelay (isc-dhcp-relay) as a
#   relay agent, dnsmasq (dnsmasq-base) as the site's DHCP server beside proxy mode, and for the
#   benchmark perfdhcp (kea-admin) plus kea-dhcp4 (kea-dhcp4-server) as a peer to measure against.
#   iproute2 gives `ip netns`, veth and macvlan.
# Sourced as root on a fresh Debian 12 machine after `apt-get update`. Idempotent: installs only
# what is missing. Packages that ship a daemon (isc-dhcp-relay, kea-dhcp4-server) must not start
# it on the host: a policy-rc.d that exits 101 keeps invoke-rc.d from starting anything during the
# install, and the units are stopped and disabled afterwards in case systemd started them anyway.

dhcp_deps_missing=()
for dhcp_dep in udhcpc:udhcpc dhclient:isc-dhcp-client dnsmasq:dnsmasq-base \
    dhcrelay:isc-dhcp-relay perfdhcp:kea-admin kea-dhcp4:kea-dhcp4-server ip:iproute2; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "${dhcp_dep%%:*}" >/dev/null 2>&1 ||
        dhcp_deps_missing+=("${dhcp_dep#*:}")
done

if ((${#dhcp_deps_missing[@]})); then
    echo "dhcp deps: installing ${dhcp_deps_missing[*]}"
    dhcp_deps_policy_rc=/usr/sbin/policy-rc.d
    dhcp_deps_had_policy=0
    [[ -e $dhcp_deps_policy_rc ]] && dhcp_deps_had_policy=1
    if ((dhcp_deps_had_policy == 0)); then
        printf '#!/bin/sh\nexit 101\n' >"$dhcp_deps_policy_rc"
        chmod 755 "$dhcp_deps_policy_rc"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${dhcp_deps_missing[@]}"
    dhcp_deps_rc=$?
    if ((dhcp_deps_had_policy == 0)); then
        rm -f "$dhcp_deps_policy_rc"
    fi
    if command -v systemctl >/dev/null 2>&1; then
        for dhcp_unit in isc-dhcp-relay kea-dhcp4-server kea-ctrl-agent kea-dhcp6-server kea-dhcp-ddns-server; do
            systemctl disable --now "$dhcp_unit" >/dev/null 2>&1 || true
        done
    fi
    # Without systemd (containers) the SysV scripts may still have been started by hand: stop them.
    for dhcp_unit in isc-dhcp-relay kea-dhcp4-server kea-ctrl-agent; do
        [[ -x /etc/init.d/$dhcp_unit ]] && /etc/init.d/$dhcp_unit stop >/dev/null 2>&1
    done
    if ((dhcp_deps_rc != 0)); then
        echo "dhcp deps: apt-get install failed (exit $dhcp_deps_rc)" >&2
    fi
fi
unset dhcp_dep dhcp_deps_missing dhcp_deps_policy_rc dhcp_deps_had_policy dhcp_deps_rc dhcp_unit
true
