#!/usr/bin/env bash
# DHCP throughput, side by side: rackbox, kea-dhcp4 (memfile) and dnsmasq, each measured with
# perfdhcp (kea-admin) doing full DORA 4-way exchanges, inside network namespaces this script
# creates and deletes. Bounded: each run lasts SECONDS seconds. Prints a table, and says for each
# server whether a lease is fsynced to disk before its ACK leaves (what a crash can lose).
#
#   sudo scripts/bench-dhcp.sh            # builds target/release/rackbox if needed
#   RACKBOX_BIN=target/debug/rackbox SECONDS_PER_RUN=5 RATE=1000 sudo -E scripts/bench-dhcp.sh
#
# Needs root and the tools of scripts/deps.d/dhcp.sh. Addresses: 192.0.2.0/24 only.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
run_secs=${SECONDS_PER_RUN:-10}
rate=${RATE:-2000}
clients=${CLIENTS:-200}
bin=${RACKBOX_BIN:-$here/target/release/rackbox}

for tool in ip perfdhcp kea-dhcp4 dnsmasq curl; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null ||
        { echo "missing $tool: run scripts/deps.d/dhcp.sh" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "run as root (network namespaces)" >&2; exit 2; }
if [[ ! -x $bin ]]; then
    (cd "$here" && cargo build --release --bin rackbox)
fi

ns=rbx-dhcp-bench-$$
dir=$(mktemp -d)
cleanup() {
    for n in "$ns-srv" "$ns-cli" "$ns-sw"; do
        for pid in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$n" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT

ip netns add "$ns-sw"; ip netns add "$ns-srv"; ip netns add "$ns-cli"
ip -n "$ns-sw" link add br0 type bridge
ip -n "$ns-sw" link set br0 type bridge forward_delay 0 stp_state 0
ip -n "$ns-sw" link set br0 up
ip -n "$ns-sw" link add p0 type veth peer name eth0 netns "$ns-srv"
ip -n "$ns-sw" link add p1 type veth peer name eth0 netns "$ns-cli"
for p in p0 p1; do ip -n "$ns-sw" link set "$p" master br0; ip -n "$ns-sw" link set "$p" up; done
for n in srv cli; do ip -n "$ns-$n" link set lo up; ip -n "$ns-$n" link set eth0 up; done
ip -n "$ns-srv" addr add 192.0.2.1/24 dev eth0
ip -n "$ns-cli" addr add 192.0.2.2/24 dev eth0

# perfdhcp acts as a relay (giaddr = 192.0.2.2): every server answers it on port 67.
measure() {
    local out
    out=$(timeout $((run_secs + 30)) ip netns exec "$ns-cli" perfdhcp -4 -l eth0 -r "$rate" -R "$clients" \
        -p "$run_secs" 192.0.2.1 2>&1 || true)
    echo "$out" >"$dir/perfdhcp-$1.log"
    local measured drops
    measured=$(awk '/^Rate:/ {print $2; exit}' <<<"$out")
    drops=$(awk '/^drops:/ {print $2; exit}' <<<"$out")
    echo "${measured:-?}|${drops:-?}"
}

stop_server() {
    for pid in $(ip netns pids "$ns-srv"); do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in $(ip netns pids "$ns-srv"); do kill -9 "$pid" 2>/dev/null || true; done
}

wait_log() { # file pattern
    for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "server did not start; log:" >&2; cat "$1" >&2; return 1
}

declare -a rows

# rackbox
echo "bench-password" >"$dir/pw"
cat >"$dir/rackbox.toml" <<TOML
state_dir = "$dir/rackbox-state"
[http]
listen = "127.0.0.1:5240"
[auth]
admin_password_file = "$dir/pw"
[log]
target = "stderr"
level = "warn"
[[boot.interfaces]]
name = "eth0"
mode = "managed"
[[boot.interfaces.subnets]]
cidr = "192.0.2.0/24"
dynamic_ranges = [{ start = "192.0.2.10", end = "192.0.2.250" }]
lease_time_secs = 600
TOML
ip netns exec "$ns-srv" "$bin" serve --config "$dir/rackbox.toml" 2>"$dir/rackbox.log" &
for _ in $(seq 1 100); do ip netns exec "$ns-srv" curl -sf http://127.0.0.1:5240/healthz >/dev/null && break; sleep 0.1; done
rows+=("rackbox|$(measure rackbox)|yes: redb Durability::Immediate commit (group commit) before the ACK")
stop_server

# kea-dhcp4, memfile
cat >"$dir/kea.json" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": ["eth0"] },
  "lease-database": { "type": "memfile", "persist": true, "name": "$dir/kea-leases4.csv", "lfc-interval": 0 },
  "valid-lifetime": 600,
  "subnet4": [ { "id": 1, "subnet": "192.0.2.0/24", "pools": [ { "pool": "192.0.2.10 - 192.0.2.250" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$dir/kea.log" } ], "severity": "WARN" } ]
} }
JSON
KEA_LOCKFILE_DIR=$dir KEA_PIDFILE_DIR=$dir ip netns exec "$ns-srv" kea-dhcp4 -c "$dir/kea.json" >"$dir/kea.out" 2>&1 &
sleep 2
rows+=("kea-dhcp4 (memfile)|$(measure kea)|no: memfile appends to a CSV without fsync")
stop_server

# dnsmasq
ip netns exec "$ns-srv" dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=eth0 --bind-interfaces \
    --dhcp-range=192.0.2.10,192.0.2.250,10m --dhcp-authoritative --no-ping \
    --dhcp-leasefile="$dir/dnsmasq.leases" --pid-file="$dir/dnsmasq.pid" >"$dir/dnsmasq.log" 2>&1 &
sleep 1
rows+=("dnsmasq (--no-ping)|$(measure dnsmasq)|no: the lease file is rewritten after replying, without fsync")
stop_server

printf '\nperfdhcp: %s s per server, rate limit %s/s, %s clients, DORA exchanges\n\n' "$run_secs" "$rate" "$clients"
printf '%-22s | %-18s | %-6s | %s\n' server "4-way exchanges/s" drops "lease fsynced before ACK?"
printf '%s\n' "-----------------------+--------------------+--------+---------------------------"
for row in "${rows[@]}"; do
    IFS='|' read -r name r d note <<<"$row"
    printf '%-22s | %-18s | %-6s | %s\n' "$name" "$r" "$d" "$note"
done
