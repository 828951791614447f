#!/usr/bin/env bash
# DHCP throughput, side by side: rackbox, kea-dhcp4 (memfile) and dnsmasq, each measured with
# perfdhcp (kea-admin) doing full DORA 4-way exchanges, inside network namespaces this script
# creates and deletes. Same core budget for each: the server runs pinned to SERVER_CPUS (default
# core 0), perfdhcp to CLIENT_CPUS (default core 1). For each server the offered rate climbs
# through RATES (exchanges/s, each run SECONDS_PER_RUN seconds) until more than 2.5% of the
# exchanges are dropped; the table shows the highest rate it kept up with under 2.5% drops.
# Bounded: at most one run per rate per server. Also says for each server whether a lease is
# fsynced to disk before its ACK leaves (what a crash can lose).
#
#   sudo scripts/bench-dhcp.sh            # builds target/release/rackbox if needed
#   RACKBOX_BIN=target/debug/rackbox SECONDS_PER_RUN=3 RATES="500 1000" sudo -E scripts/bench-dhcp.sh
#
# Needs root and the tools of scripts/deps.d/dhcp.sh. Addresses: 192.0.2.0/24 only.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
run_secs=${SECONDS_PER_RUN:-5}
rates=${RATES:-"1000 2000 4000 6000 8000 12000 16000 24000 32000"}
server_cpus=${SERVER_CPUS:-0}
client_cpus=${CLIENT_CPUS:-1}
clients=${CLIENTS:-200}
bin=${RACKBOX_BIN:-$here/target/release/rackbox}

for tool in ip perfdhcp kea-dhcp4 dnsmasq curl taskset; do
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
# One run at RATE: "measured exchanges/s|drops|sent" (DISCOVERs sent, for the drop ratio).
measure_at() {
    local name="$1" rate="$2" out measured drops sent
    out=$(timeout $((run_secs + 30)) ip netns exec "$ns-cli" taskset -c "$client_cpus" \
        perfdhcp -4 -l eth0 -r "$rate" -R "$clients" -p "$run_secs" 192.0.2.1 2>&1 || true)
    echo "$out" >"$dir/perfdhcp-$name-$rate.log"
    measured=$(awk '/^Rate:/ {print $2; exit}' <<<"$out")
    drops=$(awk '/^drops:/ {print $2; exit}' <<<"$out")
    sent=$(awk '/^sent packets:/ {print $3; exit}' <<<"$out")
    echo "${measured:-0}|${drops:-0}|${sent:-0}"
}

# Climbs through the rates; answers "best rate|its drops|drop %|offered rate" for the highest
# run under 2.5% drops.
measure() {
    local name="$1" best="0|0|0|-" r result measured drops sent pct
    for r in $rates; do
        result=$(measure_at "$name" "$r")
        IFS='|' read -r measured drops sent <<<"$result"
        pct=$(awk -v d="$drops" -v s="$sent" 'BEGIN { if (s > 0) printf "%.2f", 100 * d / s; else print "100" }')
        echo "  $name at $r/s: $measured exchanges/s, $drops drops of $sent ($pct%)" >&2
        if awk -v p="$pct" 'BEGIN { exit !(p < 2.5) }'; then
            best="$measured|$drops|$pct|$r"
        else
            break
        fi
    done
    echo "$best"
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
ip netns exec "$ns-srv" taskset -c "$server_cpus" "$bin" serve --config "$dir/rackbox.toml" 2>"$dir/rackbox.log" &
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
KEA_LOCKFILE_DIR=$dir KEA_PIDFILE_DIR=$dir ip netns exec "$ns-srv" taskset -c "$server_cpus" kea-dhcp4 -c "$dir/kea.json" >"$dir/kea.out" 2>&1 &
sleep 2
rows+=("kea-dhcp4 (memfile)|$(measure kea)|no: memfile appends to a CSV without fsync")
stop_server

# dnsmasq
ip netns exec "$ns-srv" taskset -c "$server_cpus" dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=eth0 --bind-interfaces \
    --dhcp-range=192.0.2.10,192.0.2.250,10m --dhcp-authoritative --no-ping \
    --dhcp-leasefile="$dir/dnsmasq.leases" --pid-file="$dir/dnsmasq.pid" >"$dir/dnsmasq.log" 2>&1 &
sleep 1
rows+=("dnsmasq (--no-ping)|$(measure dnsmasq)|no: the lease file is rewritten after replying, without fsync")
stop_server

printf '\nperfdhcp: DORA exchanges, %s clients, %s s per rate, server on CPU %s, perfdhcp on CPU %s\n' \
    "$clients" "$run_secs" "$server_cpus" "$client_cpus"
printf 'highest offered rate each server kept up with at under 2.5%% drops:\n\n'
printf '%-22s | %-12s | %-18s | %-14s | %s\n' server "offered /s" "4-way exchanges/s" "drops" "lease fsynced before ACK?"
printf '%s\n' "-----------------------+--------------+--------------------+----------------+---------------------------"
for row in "${rows[@]}"; do
    IFS='|' read -r name r d pct offered note <<<"$row"
    printf '%-22s | %-12s | %-18s | %-14s | %s\n' "$name" "$offered" "$r" "$d ($pct%)" "$note"
done
