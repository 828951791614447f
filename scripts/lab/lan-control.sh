#!/bin/sh
# The LAN configuration one lab machine's BMC reports: scripts/lab.sh installs this file as
# lan-control.sh in the machine's directory, beside bmc-lan (the BMC's address and MAC, one a
# line). ipmi_sim runs it as `lan-control.sh lan0 get NAME...` and it prints NAME:VALUE lines;
# sets are refused (the lab's BMC addresses are fixed).
[ "$2" = get ] || { echo "the lab's BMC LAN settings are fixed"; exit 1; }
shift 2
{ read -r bmc_ip; read -r bmc_mac; } <"$(dirname "$0")/bmc-lan"
for p in "$@"; do
    case "$p" in
    ip_addr) echo "ip_addr:$bmc_ip" ;;
    ip_addr_src) echo "ip_addr_src:static" ;;
    mac_addr) echo "mac_addr:$bmc_mac" ;;
    subnet_mask) echo "subnet_mask:255.255.255.0" ;;
    default_gw_ip_addr) echo "default_gw_ip_addr:192.0.2.1" ;;
    *_mac_addr) echo "$p:00:00:00:00:00:00" ;;
    *) echo "$p:0.0.0.0" ;;
    esac
done
