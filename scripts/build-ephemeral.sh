#!/usr/bin/env bash
# Builds the ephemeral environment a machine boots to be commissioned, tested, deployed, erased or
# rescued: `vmlinuz` (Debian's kernel) and `initrd.img` (busybox-static, the NIC and storage
# modules, dropbear for rescue mode's SSH with the shared libraries it needs, and the static
# rackbox binary, whose /init starts `rackbox agent`).
#
#   scripts/build-ephemeral.sh [OUTPUT_DIR]        (default: target/ephemeral)
#
# Only Debian packages are downloaded (`apt-get download`, unpacked with `dpkg -x`); nothing else
# comes from outside. The work is cached in OUTPUT_DIR/cache: packages already downloaded are not
# fetched again, and when the inputs (this script, the rackbox binary, the package versions, the
# module list) are unchanged the outputs are left as they are.
#
# Environment:
#   RACKBOX_EPHEMERAL_KERNEL  kernel package (default linux-image-amd64: the generic kernel, which
#                             has the drivers of real servers; linux-image-cloud-amd64 is smaller
#                             but lacks most physical NIC and storage drivers)
#   RACKBOX_AGENT_BIN         use this static rackbox binary instead of building one with
#                             scripts/build-static.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
script="$repo/scripts/build-ephemeral.sh"

out="${1:-target/ephemeral}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache="$out/cache"
mkdir -p "$cache/debs"
kernel_meta="${RACKBOX_EPHEMERAL_KERNEL:-linux-image-amd64}"

# Modules the ramdisk loads (with their dependencies), in this order: virtual and common
# server NICs, storage controllers, the IPMI system interface so the inventory sees a BMC, and
# USB host controllers with the USB NIC drivers BMCs present their Redfish host interface as
# (CDC Ethernet, RNDIS, NCM).
# There is no modprobe for the kernel to call, so crypto implementations that modules ask
# for by name (the CRCs of T10 protection information used by nvme and sd) come first.
# Drivers that need firmware files for every card (bnx2x, most wireless) are left out: the
# ramdisk ships no firmware.
modules=(
  crc64_rocksoft_generic crct10dif_generic
  failover net_failover virtio_pci virtio_net virtio_blk virtio_scsi
  e1000 e1000e igb ixgbe i40e tg3
  ahci ata_piix nvme sd_mod sr_mod
  ipmi_si ipmi_devintf
  xhci_pci ehci_pci usbnet cdc_ether rndis_host cdc_ncm
)

log() { echo "build-ephemeral: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=scripts/lib/debian.sh
. "$repo/scripts/lib/debian.sh"

for tool in apt-get apt-cache dpkg cpio gzip xz sha256sum readelf; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/deps.d/agent.sh installs the tools)"
done

# 1. The static rackbox binary. Cargo is its own cache: a second run is quick.
if [ -n "${RACKBOX_AGENT_BIN:-}" ]; then
  bin="$RACKBOX_AGENT_BIN"
else
  scripts/build-static.sh >&2
  bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/rackbox"
fi
[ -x "$bin" ] || die "no rackbox binary at $bin"

# 2. Which package versions apt would download now. The kernel metapackage depends on one
#    versioned image package; that is the one to fetch.
kernel_pkg=$(resolve_kernel_package "$kernel_meta")
kernel_deb=$(fetch "$kernel_pkg")
busybox_deb=$(fetch busybox-static)
# Rescue mode's SSH server: Debian's dropbear (dynamically linked) and the packages holding the
# libraries it loads, so the ramdisk never depends on the build host's libraries.
ssh_pkgs=(dropbear-bin libc6 libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g)
ssh_debs=()
for p in "${ssh_pkgs[@]}"; do
  ssh_debs+=("$(fetch "$p")")
done

# 3. Unchanged inputs: nothing to do.
inputs=$(
  {
    sha256sum "$script" "$repo/scripts/lib/debian.sh" "$bin"
    basename "$kernel_deb"
    basename "$busybox_deb"
    for d in "${ssh_debs[@]}"; do basename "$d"; done
    echo "${modules[*]}"
  } | sha256sum | cut -d' ' -f1
)
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs" ]; then
  log "up to date: $out/vmlinuz $out/initrd.img"
  exit 0
fi

# 4. Unpack the packages (each version once).
kernel_dir=$(unpack "$kernel_deb")
busybox_dir=$(unpack "$busybox_deb")
kernel_of "$kernel_dir" "$kernel_deb"
[ -x "$busybox_dir/bin/busybox" ] || die "no bin/busybox in $busybox_deb"
ssh_dirs=()
for d in "${ssh_debs[@]}"; do
  ssh_dirs+=("$(unpack "$d")")
done

# 5. The initramfs tree.
tree="$cache/tree"
rm -rf "$tree"
mkdir -p "$tree"/{bin,dev,proc,sys,tmp,run,etc,lib/modules}
cp "$busybox_dir/bin/busybox" "$tree/bin/busybox"
cp "$bin" "$tree/bin/rackbox"
chmod 755 "$tree/bin/busybox" "$tree/bin/rackbox"

# dropbear and dropbearkey with the closure of their shared libraries (DT_NEEDED, read with
# readelf), each found in the unpacked packages, and the dynamic loader at its ELF path.
find_lib() {
  local name=$1 d f
  for d in "${ssh_dirs[@]}"; do
    for f in "$d/lib/x86_64-linux-gnu/$name" "$d/usr/lib/x86_64-linux-gnu/$name"; do
      [ -e "$f" ] && { echo "$f"; return 0; }
    done
  done
  return 1
}
declare -A copied_lib=()
copy_libs() {
  local elf=$1 lib src
  for lib in $(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p'); do
    [ -n "${copied_lib[$lib]:-}" ] && continue
    copied_lib[$lib]=1
    src=$(find_lib "$lib") || die "$lib (needed by ${elf##*/}) is in none of: ${ssh_pkgs[*]}"
    cp -L "$src" "$tree/lib/x86_64-linux-gnu/$lib"
    copy_libs "$src"
  done
}
mkdir -p "$tree/lib/x86_64-linux-gnu" "$tree/lib64" "$tree/etc/dropbear" "$tree/root"
chmod 700 "$tree/root"
for b in usr/sbin/dropbear usr/bin/dropbearkey; do
  src=""
  for d in "${ssh_dirs[@]}"; do
    [ -x "$d/$b" ] && src="$d/$b"
  done
  [ -n "$src" ] || die "no $b in dropbear-bin"
  cp "$src" "$tree/bin/${b##*/}"
  chmod 755 "$tree/bin/${b##*/}"
  copy_libs "$src"
done
interp=$(readelf -l "$tree/bin/dropbear" | sed -n 's/.*interpreter: \(.*\)\]/\1/p')
[ "$interp" = /lib64/ld-linux-x86-64.so.2 ] || die "unexpected ELF interpreter $interp"
loader=$(find_lib ld-linux-x86-64.so.2) || die "no dynamic loader in libc6"
cp -L "$loader" "$tree/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$tree/lib64/ld-linux-x86-64.so.2"
# root logs in with a key only ('*' is no password; '!' would be a locked account, which
# dropbear refuses), and its shell is busybox's.
echo 'root:*:0:0:root:/root:/bin/sh' >"$tree/etc/passwd"
echo 'root:x:0:' >"$tree/etc/group"
echo /bin/sh >"$tree/etc/shells"
echo "rackbox ephemeral environment (kernel $kver)" >"$tree/etc/rackbox-ephemeral"

# The modules, dependencies first, and their load order (scripts/lib/debian.sh).
install_modules "$tree" "${modules[@]}"

cat >"$tree/etc/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc calls this with the lease in the environment: configure the interface and route.
case "$1" in
deconfig)
  ifconfig "$interface" 0.0.0.0 up
  ;;
bound | renew)
  ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
  if [ -n "$router" ]; then
    while route del default gw 0.0.0.0 dev "$interface" 2>/dev/null; do :; done
    for r in $router; do
      route add default gw "$r" dev "$interface"
      break
    done
  fi
  ;;
esac
exit 0
EOF
chmod 755 "$tree/etc/udhcpc.script"

# For the Redfish host interface (src/agent/redfish_host.rs), whose BMC may hand out the host
# side's address by DHCP: the address only, never a route, and the server's address (the
# Redfish service, when the record says it is discovered by DHCP) left for the agent.
cat >"$tree/etc/udhcpc-hostif.script" <<'EOF'
#!/bin/sh
case "$1" in
deconfig)
  ifconfig "$interface" 0.0.0.0 up
  ;;
bound | renew)
  ifconfig "$interface" "$ip" netmask "${subnet:-255.255.0.0}" up
  echo "${serverid:-}" >"/run/hostif-$interface.server"
  ;;
esac
exit 0
EOF
chmod 755 "$tree/etc/udhcpc-hostif.script"

cat >"$tree/init" <<'EOF'
#!/bin/busybox sh
# rackbox ephemeral environment: mount the kernel's filesystems, load drivers, get an address
# with DHCP, then become `rackbox agent` (PID 1), which does what the appliance asks and powers
# the machine off or reboots it.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
[ -d /sys/firmware/efi/efivars ] && mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
echo "rackbox: loading drivers"
while read -r m; do
  insmod "/lib/modules/$m.ko" 2>/dev/null
done </etc/modules.order
# Let drivers that probe asynchronously (NVMe, SCSI scans) show their disks.
sleep 2

cmdline=" $(cat /proc/cmdline) "
case "$cmdline" in
*" rackbox.inventory_only=1 "* | *" rackbox.inventory_only "*) inventory_only=1 ;;
*) inventory_only=0 ;;
esac
# The boot interface (BOOTIF=01-aa-bb-..) first, then the others, until one gets a lease.
bootmac=$(echo "$cmdline" | sed -n 's/.* BOOTIF=01-\([0-9a-fA-F-]*\) .*/\1/p' | tr 'A-F-' 'a-f:')
ip link set lo up
if [ "$inventory_only" = 0 ]; then
  ifaces=""
  for d in /sys/class/net/*; do
    i=${d##*/}
    [ "$i" = lo ] && continue
    [ -e "$d/device" ] || continue
    ip link set "$i" up
    if [ -n "$bootmac" ] && [ "$(cat "$d/address")" = "$bootmac" ]; then
      ifaces="$i $ifaces"
    else
      ifaces="$ifaces $i"
    fi
  done
  for i in $ifaces; do
    echo "rackbox: DHCP on $i"
    udhcpc -i "$i" -n -t 5 -T 3 -A 5 -S -s /etc/udhcpc.script && break
  done
fi
echo "rackbox: starting the agent"
exec /bin/rackbox agent
EOF
chmod 755 "$tree/init"

# 6. Pack: newc cpio, sorted and with fixed times so the same inputs give the same bytes.
find "$tree" -exec touch -h -d @0 {} +
(cd "$tree" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
  gzip -9 -n >"$out/initrd.img.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
cp "$vmlinuz" "$out/vmlinuz"
echo "$inputs" >"$out/.inputs"
log "kernel $kver, ${#order[@]} modules, dropbear with ${#copied_lib[@]} libraries, initrd $(($(stat -c %s "$out/initrd.img") / 1024 / 1024)) MiB"
log "built $out/vmlinuz $out/initrd.img"
