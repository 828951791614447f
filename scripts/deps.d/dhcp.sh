# shellcheck shell=bash
# Real DHCP peers the DHCP tests (tests/dhcp*.rs) and scripts/bench-dhcp.sh talk to:
#   udhcpc (busybox) and dhclient (isc-dhcp-client) as clients, dhcrelay (isc-dhcp-relay) as a
#   relay agent, dnsmasq (dnsmasq-base) as the site's DHCP server beside proxy mode, and for the
#   benchmark perfdhcp (kea-admin) plus kea-dhcp4 (kea-dhcp4-server) as a peer to measure against.
#   iproute2 gives `ip netns`, veth and macvlan.
# Sourced as root on a fresh Debian 12 machine with scripts/lib/apt.sh. Idempotent: installs only
# what is missing. Packages that ship a daemon (isc-dhcp-relay, kea-dhcp4-server) must not start
# it on the host: apt_install keeps invoke-rc.d from starting anything, and the units are stopped
# and disabled afterwards in case systemd started them anyway.

dhcp_deps_missing=()
for dhcp_dep in udhcpc:udhcpc dhclient:isc-dhcp-client dnsmasq:dnsmasq-base \
    dhcrelay:isc-dhcp-relay perfdhcp:kea-admin kea-dhcp4:kea-dhcp4-server ip:iproute2; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "${dhcp_dep%%:*}" >/dev/null 2>&1 ||
        dhcp_deps_missing+=("${dhcp_dep#*:}")
done

if ((${#dhcp_deps_missing[@]})); then
    apt_install "${dhcp_deps_missing[@]}" || return 1 2>/dev/null || exit 1
    if command -v systemctl >/dev/null 2>&1; then
        for dhcp_unit in isc-dhcp-relay kea-dhcp4-server kea-ctrl-agent kea-dhcp6-server kea-dhcp-ddns-server; do
            systemctl disable --now "$dhcp_unit" >/dev/null 2>&1 || true
        done
    fi
    # Without systemd (containers) the SysV scripts may still have been started by hand: stop them.
    for dhcp_unit in isc-dhcp-relay kea-dhcp4-server kea-ctrl-agent; do
        if [[ -x /etc/init.d/$dhcp_unit ]]; then /etc/init.d/$dhcp_unit stop >/dev/null 2>&1 || true; fi
    done
fi
unset dhcp_dep dhcp_deps_missing dhcp_unit
