#!/usr/bin/env bash
# Loopback benchmark of rackbox's TFTP server beside tftpd-hpa (in.tftpd run here, on
# 127.0.0.1 and a free port). Prints figures; asserts nothing. Every client run is
# bounded by `timeout`, and both servers stop by themselves.
#
#   scripts/bench-tftp.sh            (needs tftpd-hpa, tftp-hpa, curl: scripts/deps.d/tftp.sh)
#
# Measures a 64 MiB file at blksize 1468 with windowsize 1, 8 and 64 (rackbox's own
# client: tftp-hpa and curl cannot ask for windows; tftpd-hpa answers windowsize 1),
# the same file with curl (blksize 1468) and tftp-hpa (512, no options) against both
# servers, and 100 concurrent transfers of a 1 MiB file.
set -euo pipefail

cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
bench=$target_dir/release/examples/tftp_bench
client_timeout=300

for tool in in.tftpd tftp curl timeout cmp; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bench-tftp: '$tool' is missing; run 'source scripts/deps.d/tftp.sh' as root" >&2
        exit 1
    fi
done

cargo build --release --quiet --example tftp_bench

work=$(mktemp -d)
server_pids=()
cleanup() {
    for pid in "${server_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# in.tftpd drops to the unprivileged 'tftp' user: the root must be world-readable.
root=$work/root
mkdir -p "$root" "$work/out"
chmod 755 "$work" "$root"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$root/boot64.img"
head -c $((1024 * 1024)) /dev/urandom >"$root/ipxe.efi"
chmod 644 "$root"/*

# rackbox, in its own process; it prints its bound address.
timeout 1200 "$bench" serve --root "$root" --max-transfers 128 --max-seconds 1100 \
    >"$work/rackbox.out" 2>"$work/rackbox.err" &
server_pids+=($!)
rackbox_addr=
for _ in $(seq 100); do
    rackbox_addr=$(sed -n 's/^listening //p' "$work/rackbox.out")
    [[ -n $rackbox_addr ]] && break
    sleep 0.1
done
[[ -n $rackbox_addr ]] || { echo "bench-tftp: rackbox did not start" >&2; cat "$work/rackbox.err" >&2; exit 1; }

# tftpd-hpa, same root, same maximum block size.
tftpd_port=$("$bench" free-port)
tftpd_addr=127.0.0.1:$tftpd_port
timeout 1200 in.tftpd -L -s "$root" -a "$tftpd_addr" -B 1468 -u tftp &
server_pids+=($!)
# Ready when it answers: a request for a missing file gets an ERROR back.
for _ in $(seq 50); do
    if timeout 2 "$bench" get --server "$tftpd_addr" --file no-such-file 2>&1 | grep -q "server error"; then
        break
    fi
    sleep 0.1
done

now() { date +%s.%N; }
seconds_since() { awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.3f", end - start }'; }
rate() { awk -v bytes="$1" -v seconds="$2" 'BEGIN { printf "%.1f", bytes / 1048576 / seconds }'; }

# The middle value of its arguments.
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
runs=3

# bench_get ADDR WINDOW -> median "seconds MiB/s window" of $runs downloads
bench_get() {
    local line all=() window=
    for _ in $(seq "$runs"); do
        line=$(timeout "$client_timeout" "$bench" get --server "$1" --file boot64.img --blksize 1468 \
            --windowsize "$2" 2>&1) || { echo "failed: $line"; return; }
        all+=("$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$line")")
        window=$(sed -n 's/.*windowsize=\([0-9]*\).*/\1/p' <<<"$line")
    done
    local seconds
    seconds=$(median "${all[@]}")
    printf '%8.2f s %7s MiB/s (w=%s)' "$seconds" "$(rate $((64 * 1024 * 1024)) "$seconds")" "$window"
}

# bench_tool NAME ADDR -> median "seconds MiB/s" of $runs downloads, each checked byte for byte
bench_tool() {
    local tool=$1 addr=$2 out=$work/out/$1.img started all=()
    for _ in $(seq "$runs"); do
        rm -f "$out"
        started=$(now)
        case $tool in
            curl) timeout "$client_timeout" curl --silent --show-error --tftp-blksize 1468 -o "$out" \
                "tftp://$addr/boot64.img" 2>/dev/null || true ;;
            tftp) timeout "$client_timeout" tftp -m binary "${addr%:*}" "${addr##*:}" -c get boot64.img "$out" \
                >/dev/null 2>&1 || true ;;
        esac
        all+=("$(seconds_since "$started")")
        cmp -s "$out" "$root/boot64.img" || { echo "failed (download differs or missing)"; return; }
    done
    local seconds
    seconds=$(median "${all[@]}")
    printf '%8.2f s %7s MiB/s' "$seconds" "$(rate $((64 * 1024 * 1024)) "$seconds")"
}

# bench_concurrent ADDR WINDOW -> totals for 100 transfers of ipxe.efi
bench_concurrent() {
    local line
    line=$(timeout "$client_timeout" "$bench" concurrent --server "$1" --file ipxe.efi --clients 100 \
        --blksize 1468 --windowsize "$2" 2>/dev/null) || { echo "failed"; return; }
    sed -E 's/.*failures=([0-9]+).*seconds=([0-9.]+) mib_per_s=([0-9.]+) slowest_s=([0-9.]+).*/\2 s total, \3 MiB\/s, slowest \4 s, failures \1/' <<<"$line"
}

echo "TFTP loopback benchmark, $(nproc) cores, median of $runs runs; rackbox $rackbox_addr, tftpd-hpa $tftpd_addr"
echo
printf '%-44s | %-34s | %s\n' "64 MiB file" "rackbox" "tftpd-hpa"
printf '%-44s | %-34s | %s\n' "rackbox client, blksize 1468, windowsize 1" "$(bench_get "$rackbox_addr" 1)" "$(bench_get "$tftpd_addr" 1)"
printf '%-44s | %-34s | %s\n' "rackbox client, blksize 1468, windowsize 8" "$(bench_get "$rackbox_addr" 8)" "$(bench_get "$tftpd_addr" 8) no RFC 7440"
printf '%-44s | %-34s | %s\n' "rackbox client, blksize 1468, windowsize 64" "$(bench_get "$rackbox_addr" 64)" "$(bench_get "$tftpd_addr" 64) no RFC 7440"
printf '%-44s | %-34s | %s\n' "curl, blksize 1468" "$(bench_tool curl "$rackbox_addr")" "$(bench_tool curl "$tftpd_addr")"
printf '%-44s | %-34s | %s\n' "tftp-hpa, blksize 512 (no options)" "$(bench_tool tftp "$rackbox_addr")" "$(bench_tool tftp "$tftpd_addr")"
echo
printf '%-44s | %s\n' "100 concurrent x 1 MiB, blksize 1468" "result"
printf '%-44s | %s\n' "rackbox, windowsize 1" "$(bench_concurrent "$rackbox_addr" 1)"
printf '%-44s | %s\n' "rackbox, windowsize 8" "$(bench_concurrent "$rackbox_addr" 8)"
printf '%-44s | %s\n' "tftpd-hpa, windowsize 1" "$(bench_concurrent "$tftpd_addr" 1)"

# Stop rackbox now so it prints its counters: retransmissions show loss on loopback.
kill "${server_pids[0]}" 2>/dev/null || true
wait "${server_pids[0]}" 2>/dev/null || true
echo
echo "rackbox counters:"
grep -E '^rackbox_tftp_(transfers_total|retransmissions_total|errors_sent_total)' "$work/rackbox.err" | sed 's/^/  /'
