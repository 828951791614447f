#!/bin/sh
# The power of one lab machine, for its BMC (ipmi_sim): scripts/lab.sh installs this file as
# chassis.sh in the machine's directory, beside qemu.cmd (its QEMU command, one argument a line:
# scripts/lib/qemu.sh). ipmi_sim runs it as `get power|boot` and `set power 0|1`, `set boot DEV`,
# `set reset 1`, `set shutdown 1`.
D="$(dirname "$0")"
running() { [ -f "$D/qemu.pid" ] && kill -0 "$(cat "$D/qemu.pid")" 2>/dev/null; }
qemu() {
    set --
    while IFS= read -r arg; do set -- "$@" "$arg"; done <"$D/qemu.cmd"
    "$@"
}
start() { running || qemu >>"$D/qemu.log" 2>&1; }
stop() {
    if running; then
        pid="$(cat "$D/qemu.pid")"; kill "$pid"
        i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    fi
    rm -f "$D/qemu.pid"
}
echo "$(date -u +%FT%TZ) $*" >>"$D/chassis.log"
op="$1"; shift
case "$op" in
get)
    for p in "$@"; do
        case "$p" in
        power) if running; then echo power:1; else echo power:0; fi ;;
        boot) echo "boot:$(cat "$D/boot" 2>/dev/null || echo none)" ;;
        *) echo "unknown parameter $p"; exit 1 ;;
        esac
    done ;;
set)
    while [ $# -ge 2 ]; do
        case "$1" in
        power) if [ "$2" = 1 ]; then start; else stop; fi ;;
        boot) echo "$2" >"$D/boot" ;;
        reset) if [ "$2" = 1 ]; then stop; start; fi ;;
        shutdown) stop ;;
        *) echo "unknown parameter $1"; exit 1 ;;
        esac
        shift 2
    done ;;
*) echo "unknown operation $op"; exit 1 ;;
esac
