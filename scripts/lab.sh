#!/usr/bin/env bash
# A virtual rack on this machine: rackbox and N QEMU machines, each behind its own IPMI BMC.
#
#   scripts/lab.sh up [N] [--enlist M]
#                           build what is missing, start the rack, add N machines by their BMCs
#                           (default 2: odd ones SeaBIOS, even ones OVMF UEFI); they start
#                           commissioning. M more machines (default 0) are unknown to rackbox:
#                           they are switched on through their BMCs, PXE-boot and are enlisted.
#   scripts/lab.sh status   what runs, the machines as rackbox sees them
#   scripts/lab.sh power NAME on|off|cycle|status
#                           a machine's power through its BMC (ipmitool), as a rack operator would
#   scripts/lab.sh restart  restart rackbox (after a rebuild, or after it was killed)
#   scripts/lab.sh down     stop everything `up` started and remove the namespace
#   scripts/lab.sh clean    (when down) remove lab-state/ but its built ramdisks: a fresh rack
#
# Environment: LAB_STATE (./lab-state), LAB_NS (rbx-lab), LAB_API_PORT (5240), LAB_ACCEL (tcg),
# LAB_BIN (a rackbox binary to use instead of building the static one), LAB_EPHEMERAL and
# LAB_TESTOS (directories the ephemeral environment and the test OS are built and cached in;
# default under LAB_STATE), LAB_LOG_LEVEL (rackbox's log filter, default info), LAB_START=0 (add the machines but start nothing: no commissioning,
# no power-on; tests and benchmarks drive them one at a time).
#
# Everything of the boot network lives in the network namespace rbx-lab: the bridge br0 at
# 192.0.2.1/24 (TEST-NET-1), rackbox with managed DHCP and TFTP on it, one tap device per
# machine, and the BMCs (ipmi_sim), each on the namespace's 127.0.0.1:623N (how the lab adds
# machine N) and on its own address 192.0.2.(200+N):623, which it also reports in-band, so BMC
# discovery during commissioning finds an address rackbox reaches. Nothing is attached to the
# host's interfaces; the only thing on the host's side is a socat that forwards
# 127.0.0.1:5240 (LAB_API_PORT) into the namespace, so the API and the CLI work from the host.
# State, logs, disks and serial consoles are under ./lab-state/ (LAB_STATE); `down` leaves no
# process, namespace, mount or file outside it.
#
# Power: each BMC is ipmi_sim with a chassis-control program (scripts/lab/chassis.sh) that starts
# the machine's QEMU (scripts/lib/qemu.sh) on "power on" and stops it on "power off", and keeps
# the boot device rackbox sets (one-time PXE).
# QEMU is also attached to its BMC as an external BMC (ipmi-bmc-extern + isa-ipmi-kcs), so the
# guest sees a KCS IPMI interface as a real server does. The NIC is always the first boot entry
# and the disk the second: machines network-boot first, as MAAS expects, and rackbox tells a
# Deployed machine to boot its disk.
#
# The ephemeral environment: scripts/build-ephemeral.sh OUTDIR (making OUTDIR/vmlinuz and
# OUTDIR/initrd.img) when it exists, else the test ramdisk of scripts/build-test-ramdisk.sh,
# which prints RACKBOX-TEST-RAMDISK-BOOTED and its command line and powers off: machines then
# stay Commissioning until the timeout, since no agent reports.
#
# Needs root. `up` installs what it needs and is missing (QEMU, OVMF, iPXE, ipmi_sim, the build
# tools: scripts/deps.d/{qemu,netboot,agent,testos}.sh), then builds what is missing. QEMU runs
# under TCG when there is no KVM: a boot takes a minute or more.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
# shellcheck source=scripts/lib/qemu.sh
source scripts/lib/qemu.sh

NS="${LAB_NS:-rbx-lab}"
STATE="$(realpath -m "${LAB_STATE:-lab-state}")"
RUN="$STATE/run"
API_PORT="${LAB_API_PORT:-5240}"
API="http://127.0.0.1:$API_PORT"
INNER_API="http://192.0.2.1:5240"
BMC_USER=admin
BMC_PASS=lab-bmc-secret
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
# The static binary the appliance ships (scripts/build-static.sh): the same file runs the daemon
# and, inside the ephemeral ramdisk, the agent.
BIN="${LAB_BIN:-${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/release/rackbox}"
EPHEMERAL="$(realpath -m "${LAB_EPHEMERAL:-$STATE/ephemeral}")"
TESTOS_DIR="$(realpath -m "${LAB_TESTOS:-$STATE/test-os}")"
START="${LAB_START:-1}"
# QEMU's accelerator: TCG by default, since /dev/kvm can be there and still not work (nested
# virtualization); LAB_ACCEL=kvm where it does. Under TCG a boot takes a minute or more.
ACCEL="${LAB_ACCEL:-tcg}"
# How long `up` waits for rackbox to serve (seconds).
START_LIMIT=60

say() { echo "lab: $*"; }
die() {
    echo "lab: $*" >&2
    exit 1
}
netns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS"; }
in_ns() { ip netns exec "$NS" "$@"; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (it creates a network namespace and tap devices)"; }

# Installs what the rack needs and is missing (the deps.d snippets the test command uses too):
# QEMU, the firmware and BMC simulator, and the tools that build the ramdisk and the test OS.
# On a machine that has them it asks no registry. cargo comes with the machine.
install_tools() {
    command -v cargo >/dev/null 2>&1 || die "cargo is missing: rackbox is built with the machine's Rust toolchain"
    # shellcheck source=scripts/lib/deps.sh
    source scripts/lib/deps.sh
    deps_install qemu netboot agent testos lab >&2 || die "installing the rack's tools failed (see above)"
}

# --- down ------------------------------------------------------------------------------------

# Stops one recorded process (and its process group, which `up` made its own with setsid):
# SIGTERM, then SIGKILL after LIMIT tenths of a second (default 50).
stop_pid() {
    local name="$1" limit="${2:-50}" pid
    pid="$(pid_of "$name")"
    if alive "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 "$limit"); do
            alive "$pid" || break
            sleep 0.1
        done
        alive "$pid" && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
    fi
    rm -f "$RUN/$name.pid"
}

do_down() {
    local d pid
    # The API forward on the host first: nothing new reaches the namespace.
    stop_pid socat
    # Machines: their QEMU (daemonized by the BMC's chassis program), then the BMCs.
    for d in "$STATE"/machines/*/; do
        [ -d "$d" ] || continue
        pid="$(cat "$d/qemu.pid" 2>/dev/null || true)"
        if alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 30); do
                alive "$pid" || break
                sleep 0.1
            done
        fi
        rm -f "$d/qemu.pid"
    done
    for f in "$RUN"/bmc-*.pid; do
        [ -e "$f" ] || continue
        stop_pid "$(basename "$f" .pid)"
    done
    # rackbox: SIGTERM lets it finish requests and commit what it acknowledged (30 s at most).
    stop_pid rackbox 300
    # Anything still inside the namespace was started by the lab (it is the lab's namespace).
    if netns_exists; then
        for pid in $(ip netns pids "$NS" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        for _ in $(seq 1 50); do
            [ -z "$(ip netns pids "$NS" 2>/dev/null)" ] && break
            sleep 0.1
        done
        ip netns del "$NS"
    fi
    rm -rf "$RUN"
}

cmd_down() {
    need_root
    if ! netns_exists && [ ! -d "$RUN" ]; then
        say "the lab is not up"
        return 0
    fi
    do_down
    say "down: processes stopped, namespace $NS removed; state and logs kept in $STATE"
}

# --- up --------------------------------------------------------------------------------------

build() {
    if [ -z "${LAB_BIN:-}" ]; then
        say "building the static release binary (scripts/build-static.sh)"
        scripts/build-static.sh >/dev/null
    fi
    [ -x "$BIN" ] || die "no rackbox binary at $BIN (CARGO_TARGET_DIR? LAB_BIN?)"
    if [ -x scripts/build-ephemeral.sh ]; then
        say "building the ephemeral environment (scripts/build-ephemeral.sh $EPHEMERAL)"
        RACKBOX_AGENT_BIN="$BIN" scripts/build-ephemeral.sh "$EPHEMERAL" ||
            say "scripts/build-ephemeral.sh failed: using the test ramdisk instead"
    fi
    if [ -s "$EPHEMERAL/vmlinuz" ] && [ -s "$EPHEMERAL/initrd.img" ]; then
        KERNEL="$EPHEMERAL/vmlinuz"
        INITRD="$EPHEMERAL/initrd.img"
    else
        scripts/build-test-ramdisk.sh "$STATE/test-ramdisk"
        KERNEL="$STATE/test-ramdisk/vmlinuz"
        INITRD="$STATE/test-ramdisk/initrd.img"
    fi
    # A small OS to deploy: boots on BIOS and UEFI, prints its seed's hostname and SSH keys on the
    # serial console and reports in (scripts/build-test-os.sh; cached).
    TESTOS=""
    if [ -x scripts/build-test-os.sh ]; then
        say "building the test OS (scripts/build-test-os.sh $TESTOS_DIR)"
        if scripts/build-test-os.sh "$TESTOS_DIR"; then
            TESTOS="$TESTOS_DIR/testos.raw.gz"
        else
            say "scripts/build-test-os.sh failed: no image to deploy is imported"
        fi
    fi
}

make_network() {
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip -n "$NS" link add br0 type bridge
    ip -n "$NS" link set br0 type bridge forward_delay 0 stp_state 0
    ip -n "$NS" addr add 192.0.2.1/24 dev br0
    ip -n "$NS" link set br0 up
    # A plain switch even where br_netfilter is loaded (the setting is per namespace).
    in_ns sysctl -q -w net.bridge.bridge-nf-call-iptables=0 2>/dev/null || true
}

write_config() {
    mkdir -p "$STATE/rackbox"
    cat >"$STATE/rackbox.toml" <<EOF
# Written by scripts/lab.sh: rackbox in the namespace $NS.
state_dir = "$STATE/rackbox"

[http]
listen = "0.0.0.0:5240"
public_url = "$INNER_API"

[log]
target = "stderr"
level = "${LAB_LOG_LEVEL:-info}"

[power]
poll_interval_secs = 30

[[boot.interfaces]]
name = "br0"
mode = "managed"

[[boot.interfaces.subnets]]
cidr = "192.0.2.0/24"
dynamic_ranges = [{ start = "192.0.2.100", end = "192.0.2.199" }]

[tftp]
listen = "192.0.2.1:69"
EOF
}

start_rackbox() {
    # `ip netns exec` and setsid exec (no fork): $! is rackbox itself, leader of its own process
    # group, so `down` can stop it by its id.
    ip netns exec "$NS" setsid "$BIN" serve --config "$STATE/rackbox.toml" \
        >>"$STATE/rackbox.log" 2>&1 </dev/null &
    echo $! >"$RUN/rackbox.pid"
    local i
    for i in $(seq 1 $((START_LIMIT * 10))); do
        if in_ns curl -sf -o /dev/null "$INNER_API/healthz"; then
            return 0
        fi
        alive "$(pid_of rackbox)" || die "rackbox exited at start; see $STATE/rackbox.log"
        sleep 0.1
    done
    die "rackbox did not serve within ${START_LIMIT}s; see $STATE/rackbox.log"
}

start_forward() {
    # One socat on the host's loopback; each connection is carried into the namespace by a
    # socat started there. Nothing else is on the host's side.
    setsid socat "TCP-LISTEN:$API_PORT,bind=127.0.0.1,fork,reuseaddr" \
        "EXEC:ip netns exec $NS socat STDIO TCP\\:192.0.2.1\\:5240" \
        >>"$STATE/socat.log" 2>&1 </dev/null &
    echo $! >"$RUN/socat.pid"
    local i
    for i in $(seq 1 100); do
        curl -sf -o /dev/null "$API/healthz" && return 0
        sleep 0.1
    done
    die "the API forward on 127.0.0.1:$API_PORT does not answer; see $STATE/socat.log"
}

# Logs in as admin with the CLI (its saved URL and token stay in the lab's own $STATE/cli, not
# the host user's ~/.config) and makes the admin token the lab's commands and tests use.
login() {
    local pw="$STATE/rackbox/initial-admin-password" answer
    [ -s "$pw" ] || die "no $pw: was $STATE/rackbox made by another run? (remove $STATE to start afresh)"
    XDG_CONFIG_HOME="$STATE/cli" "$BIN" --url "$API" login --password-file "$pw" >/dev/null ||
        die "cannot log in as admin"
    answer="$(XDG_CONFIG_HOME="$STATE/cli" "$BIN" --url "$API" --json token create --name lab)" ||
        die "cannot create the lab's admin token"
    TOKEN="$(jq -r '.token // empty' <<<"$answer")"
    [ -n "$TOKEN" ] || die "no token in the answer to 'rackbox token create'"
    (umask 077 && printf '%s\n' "$TOKEN" >"$STATE/admin-token")
    export RACKBOX_URL="$API" RACKBOX_TOKEN="$TOKEN"
}

import_boot_resources() {
    RACKBOX_BIN="$BIN" scripts/import-bootloaders.sh >/dev/null
    "$BIN" boot-resource import --kind kernel --replace amd64 vmlinuz "$KERNEL" >/dev/null
    "$BIN" boot-resource import --kind initrd --replace amd64 initrd.img "$INITRD" >/dev/null
    say "boot resources imported: undionly.kpxe snponly.efi ipxe.efi vmlinuz initrd.img (amd64)"
    if [ -n "${TESTOS:-}" ] && ! "$BIN" image show testos >/dev/null 2>&1; then
        "$BIN" image import testos "$TESTOS" --os debian --release bookworm --arch amd64 \
            --title "rackbox test OS" --default >/dev/null
        say "image imported: testos (the default debian/amd64 image to deploy)"
    fi
}

# The BMC's chassis-control program (scripts/lab/chassis.sh) in machine directory D, and the QEMU
# command it runs (scripts/lib/qemu.sh).
install_chassis() {
    local d="$1"
    shift
    lab_qemu_command "$@" >"$d/qemu.cmd"
    install -m 755 scripts/lab/chassis.sh "$d/chassis.sh"
}

# Machine i's name, firmware, MAC, directory and ports.
machine_vars() {
    local i="$1"
    name="node$i"
    if [ $((i % 2)) -eq 1 ]; then firmware=bios; else firmware=uefi; fi
    mac="$(printf '52:54:00:1a:00:%02x' "$i")"
    d="$STATE/machines/$name"
    bmc_port=$((6230 + i))
    vm_port=$((9000 + i))
    if [ "$firmware" = uefi ]; then boot_type=efi; else boot_type=legacy; fi
}

# Machine i's disk, tap device and BMC (powered off). Made before rackbox starts, so that its
# first power-state poll finds the BMCs answering.
make_machine() {
    local i="$1" firmware name mac d bmc_port vm_port boot_type bmc_ip bmc_mac
    machine_vars "$i"
    # Two LAN channels: 1 on the namespace's 127.0.0.1:$bmc_port (how the lab adds the machine),
    # 2 on the BMC's own address on the boot network, 192.0.2.200+i:623 (outside the DHCP range
    # .100-.199), which is also what channel 2 reports in-band (Get LAN Configuration
    # Parameters, through its lan_config_program): the BMC that commissioning discovers from
    # inside the machine is one rackbox reaches. (ipmi_sim takes one address per channel.)
    bmc_ip="192.0.2.$((200 + i))"
    bmc_mac="$(printf '52:54:00:1b:00:%02x' "$i")"
    mkdir -p "$d/bmc-state"
    ip -n "$NS" addr add "$bmc_ip/32" dev br0
    [ -e "$d/disk.raw" ] || truncate -s 4G "$d/disk.raw"
    ip -n "$NS" tuntap add "tap$i" mode tap
    ip -n "$NS" link set "tap$i" master br0
    ip -n "$NS" link set "tap$i" up

    if [ "$firmware" = uefi ]; then
        [ -e "$d/OVMF_VARS.fd" ] || cp "$OVMF_VARS" "$d/OVMF_VARS.fd"
    fi
    install_chassis "$d" "$name" "$d" "tap$i" "$mac" "$vm_port" "$firmware" "$ACCEL"
    # ipmi_sim runs it as `lan-control.sh lan0 get NAME...` (scripts/lab/lan-control.sh); it
    # reports the address and MAC in bmc-lan.
    printf '%s\n' "$bmc_ip" "$bmc_mac" >"$d/bmc-lan"
    install -m 755 scripts/lab/lan-control.sh "$d/lan-control.sh"
    cat >"$d/lan.conf" <<EOF
name "$name"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 $bmc_port
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin md5 straight
    guid $(printf 'a1b2c3d4e5f60718293a4b5c6d7e%04x' "$i")
  endlan
  startlan 2
    addr $bmc_ip 623
    lan_config_program "$d/lan-control.sh lan0"
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin md5 straight
    guid $(printf 'a1b2c3d4e5f60718293a4b5c6d7f%04x' "$i")
  endlan
  serial 15 127.0.0.1 $vm_port codec VM
  chassis_control "$d/chassis.sh"
  user 2 true "$BMC_USER" "$BMC_PASS" admin 10 md5 straight
EOF
    printf '%s\n' 'mc_setbmc 0x20' \
        'mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr' \
        'sel_enable 0x20 1000 0x0a' 'mc_enable 0x20' >"$d/emu.cmds"
    ip netns exec "$NS" setsid ipmi_sim -c "$d/lan.conf" -f "$d/emu.cmds" -s "$d/bmc-state" -n \
        >>"$d/ipmi_sim.log" 2>&1 </dev/null &
    echo $! >"$RUN/bmc-$name.pid"
    local up=0
    for _ in $(seq 1 50); do
        if in_ns ipmitool -I lanplus -H 127.0.0.1 -p "$bmc_port" -U "$BMC_USER" -P "$BMC_PASS" \
            -C 3 -N 1 -R 1 chassis power status >/dev/null 2>&1; then
            up=1
            break
        fi
        sleep 0.2
    done
    [ "$up" = 1 ] || die "the BMC of $name does not answer on 127.0.0.1:$bmc_port; see $d/ipmi_sim.log"
}

# Adds machine i to rackbox by its BMC and MAC, which starts its commissioning.
register_machine() {
    local i="$1" firmware name mac d bmc_port vm_port boot_type
    machine_vars "$i"
    # Kept from an earlier `up` (the state survives `down`): left as it is.
    local known
    known="$("$BIN" --json machine list --mac "$mac" | jq '.items | length')" ||
        die "cannot ask rackbox whether it knows $name ($mac)"
    if [ "$known" != 0 ]; then
        say "$name: already known to rackbox (state kept from an earlier run); power it with 'rackbox machine commission' or the BMC"
        return 0
    fi
    # Adding a machine with a power driver starts commissioning: one-time PXE, power on
    # (unless LAB_START=0).
    local commission=--commission
    [ "$START" = 0 ] && commission=--no-commission
    "$BIN" machine add "$commission" --hostname "$name" --mac "$mac" --power-type ipmi \
        --power-param power_address=127.0.0.1 --power-param "power_port=$bmc_port" \
        --power-param "power_user=$BMC_USER" --power-param "power_pass=$BMC_PASS" \
        --power-param "power_boot_type=$boot_type" >/dev/null
    say "$name: $firmware, MAC $mac, BMC 127.0.0.1:$bmc_port (in $NS), serial log $d/serial.log"
}

up_exit() {
    if [ "${UP_DONE:-0}" != 1 ]; then
        echo "lab: up failed; taking down what it started (logs stay in $STATE)" >&2
        do_down
    fi
}

# Switches machine i on through its BMC with a one-time network boot: rackbox does not know it
# and enlists it.
enlist_machine() {
    local i="$1" firmware name mac d bmc_port vm_port boot_type
    machine_vars "$i"
    if [ "$START" = 0 ]; then
        say "$name: $firmware, MAC $mac, unknown to rackbox; 'scripts/lab.sh power $name on' to enlist it"
        return 0
    fi
    bmc "$i" chassis bootdev pxe >/dev/null
    bmc "$i" chassis power on >/dev/null
    say "$name: $firmware, MAC $mac, unknown to rackbox: switched on to be enlisted"
}

# ipmitool against machine i's BMC, inside the namespace.
bmc() {
    local i="$1" firmware name mac d bmc_port vm_port boot_type
    shift
    machine_vars "$i"
    in_ns ipmitool -I lanplus -H 127.0.0.1 -p "$bmc_port" -U "$BMC_USER" -P "$BMC_PASS" -C 3 "$@"
}

cmd_up() {
    local n="${LAB_MACHINES:-2}" enlist=0
    while [ $# -gt 0 ]; do
        case "$1" in
        --enlist)
            [ $# -ge 2 ] || die "--enlist needs a number"
            enlist="$2"
            shift 2
            ;;
        *)
            n="$1"
            shift
            ;;
        esac
    done
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 0 ] && [ "$n" -le 50 ] || die "N must be 0 to 50 machines"
    [[ "$enlist" =~ ^[0-9]+$ ]] && [ $((n + enlist)) -le 50 ] || die "--enlist M: at most 50 machines in all"
    need_root
    if netns_exists || [ -d "$RUN" ]; then
        die "the lab is up already (or was not taken down): see 'scripts/lab.sh status', or 'scripts/lab.sh down' first"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$API_PORT") 2>/dev/null; then
        die "127.0.0.1:$API_PORT is taken on this host (another rackbox?); stop it or set LAB_API_PORT"
    fi
    install_tools
    mkdir -p "$STATE"
    build
    mkdir -p "$RUN"
    # From here on, a failure or an interrupt takes down what was started.
    UP_DONE=0
    trap 'up_exit' EXIT
    trap 'exit 1' INT TERM
    make_network
    local i
    for i in $(seq 1 $((n + enlist))); do
        make_machine "$i"
    done
    write_config
    start_rackbox
    start_forward
    login
    import_boot_resources
    for i in $(seq 1 "$n"); do
        register_machine "$i"
    done
    for i in $(seq $((n + 1)) $((n + enlist))); do
        enlist_machine "$i"
    done
    UP_DONE=1
    cat <<EOF

lab: up. rackbox serves the boot network 192.0.2.0/24 in namespace $NS.
  API:             $API   (inside the namespace: $INNER_API)
  admin password:  $STATE/rackbox/initial-admin-password
  CLI:             export RACKBOX_URL=$API RACKBOX_TOKEN=\$(cat $STATE/admin-token)
                   $BIN machine list
  serial consoles: tail -f $STATE/machines/node*/serial.log
  rackbox log:     tail -f $STATE/rackbox.log
  status / stop:   scripts/lab.sh status   /   scripts/lab.sh down
EOF
}

# --- status ----------------------------------------------------------------------------------

cmd_status() {
    if ! netns_exists && [ ! -d "$RUN" ]; then
        say "down (no namespace $NS)"
        return 0
    fi
    local state
    netns_exists && state="namespace $NS exists" || state="namespace $NS MISSING"
    say "$state"
    for name in rackbox socat; do
        if alive "$(pid_of $name)"; then say "$name: running (pid $(pid_of $name))"; else say "$name: NOT running"; fi
    done
    local d name pid power
    for d in "$STATE"/machines/*; do
        [ -d "$d" ] || continue
        name="$(basename "$d")"
        pid="$(cat "$d/qemu.pid" 2>/dev/null || true)"
        if alive "$pid"; then power="on (QEMU pid $pid)"; else power=off; fi
        if alive "$(pid_of "bmc-$name")"; then
            say "$name: BMC running, power $power, boot device $(cat "$d/boot" 2>/dev/null || echo none); serial $d/serial.log"
        else
            say "$name: BMC NOT running, power $power"
        fi
    done
    if [ -s "$STATE/admin-token" ] && alive "$(pid_of socat)"; then
        RACKBOX_URL="$API" RACKBOX_TOKEN="$(cat "$STATE/admin-token")" "$BIN" machine list || true
    fi
}

cmd_power() {
    local name="${1:-}" op="${2:-}" i
    [[ "$name" =~ ^node([0-9]+)$ ]] || die "usage: $0 power NAME on|off|cycle|status (NAME: node1, node2, ...)"
    i="${BASH_REMATCH[1]}"
    [ -d "$STATE/machines/$name" ] && netns_exists || die "no machine $name in a running lab"
    case "$op" in
    on) bmc "$i" chassis power on ;;
    off) bmc "$i" chassis power off ;;
    cycle) bmc "$i" chassis power cycle ;;
    status) bmc "$i" chassis power status ;;
    *) die "usage: $0 power NAME on|off|cycle|status" ;;
    esac
}

cmd_restart() {
    need_root
    netns_exists && [ -d "$RUN" ] || die "the lab is not up"
    stop_pid rackbox 300
    start_rackbox
    say "rackbox restarted (pid $(pid_of rackbox)); log $STATE/rackbox.log"
}

cmd_clean() {
    if netns_exists || [ -d "$RUN" ]; then
        die "the lab is up: 'scripts/lab.sh down' first"
    fi
    [ -d "$STATE" ] || return 0
    find "$STATE" -mindepth 1 -maxdepth 1 ! -name test-ramdisk ! -name ephemeral -exec rm -rf {} +
    say "removed the rack's state, disks and logs from $STATE (built ramdisks kept)"
}

case "${1:-}" in
up)
    shift
    cmd_up "$@"
    ;;
down) cmd_down ;;
clean) cmd_clean ;;
status) cmd_status ;;
power)
    shift
    cmd_power "$@"
    ;;
restart) cmd_restart ;;
*)
    echo "usage: $0 up [N] [--enlist M] | status | power NAME on|off|cycle|status | restart | down | clean" >&2
    exit 2
    ;;
esac
