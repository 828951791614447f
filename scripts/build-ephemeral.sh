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
# server NICs, storage controllers, and the IPMI system interface so the inventory sees a BMC.
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
)

log() { echo "build-ephemeral: $*" >&2; }
die() { log "$*"; exit 1; }

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
resolve_kernel() {
  apt-cache depends "$kernel_meta" 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
kernel_pkg=$(resolve_kernel || true)
if [ -z "$kernel_pkg" ] && [ "$(id -u)" -eq 0 ]; then
  log "apt lists do not know $kernel_meta: apt-get update"
  apt-get update -qq
  kernel_pkg=$(resolve_kernel || true)
fi
[ -n "$kernel_pkg" ] || die "cannot resolve $kernel_meta to a kernel package (apt-get update?)"

# Downloads a package into the cache unless that version is there; prints the .deb path.
fetch() {
  local pkg=$1 version arch file
  version=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
  [ -n "$version" ] && [ "$version" != "(none)" ] || die "no candidate version of $pkg"
  arch=$(apt-cache show "$pkg=$version" | awk '/^Architecture:/ { print $2; exit }')
  # apt-get download names files pkg_version_arch.deb with ':' escaped as %3a.
  file="$cache/debs/${pkg}_${version//:/%3a}_${arch}.deb"
  if [ ! -s "$file" ]; then
    log "downloading $pkg $version"
    # As root, apt would drop to the _apt user, which cannot write here: keep root.
    (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$version" >&2)
  fi
  [ -s "$file" ] || die "apt-get download $pkg did not produce $file"
  echo "$file"
}
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
    sha256sum "$script" "$bin"
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
unpack() {
  local deb=$1 dir
  dir="$cache/unpacked/$(basename "$deb" .deb)"
  if [ ! -e "$dir/.done" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    dpkg -x "$deb" "$dir"
    touch "$dir/.done"
  fi
  echo "$dir"
}
kernel_dir=$(unpack "$kernel_deb")
busybox_dir=$(unpack "$busybox_deb")
vmlinuz=$(ls "$kernel_dir"/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $kernel_deb"
kver=${vmlinuz##*/vmlinuz-}
moddir="$kernel_dir/lib/modules/$kver"
[ -d "$moddir/kernel" ] || die "no kernel modules in $moddir"
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

# Module closure in load order (dependencies first). Debian's package has no modules.dep (its
# postinst runs depmod), so each module's dependencies are read from its own .modinfo section,
# the NUL-separated "depends=a,b" string. Names compare with '-' and '_' as equal, as modprobe
# does. Built-in modules need no loading.
declare -A path_of=() seen=()
while IFS= read -r path; do
  name=${path##*/}
  name=${name%%.ko*}
  path_of[${name//-/_}]=$path
done < <(cd "$moddir" && find kernel -name '*.ko*')
modinfo_depends() {
  local f="$moddir/${path_of[$1]}"
  case "$f" in
    *.ko.xz) xz -dc "$f" ;;
    *.ko.zst) zstd -qdc "$f" ;;
    *.ko.gz) gzip -dc "$f" ;;
    *) cat "$f" ;;
  esac | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1 | tr ',' ' '
}
builtin=" $(sed -e 's#.*/##' -e 's/\.ko.*//' -e 's/-/_/g' "$moddir/modules.builtin" 2>/dev/null | tr '\n' ' ') "
order=()
visit() {
  local m=${1//-/_} d
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  [ -n "${path_of[$m]:-}" ] || return 0
  for d in $(modinfo_depends "$m"); do
    visit "$d"
  done
  order+=("$m")
}
for m in "${modules[@]}"; do
  mn=${m//-/_}
  if [ -n "${path_of[$mn]:-}" ]; then
    visit "$mn"
  elif [[ $builtin == *" $mn "* ]]; then
    log "module $m is built into the kernel"
  else
    log "warning: module $m is not in $kver; skipped"
  fi
done
: >"$tree/etc/modules.order"
for m in "${order[@]}"; do
  src="$moddir/${path_of[$m]}"
  case "$src" in
    *.ko.xz) xz -dc "$src" >"$tree/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$src" >"$tree/lib/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$src" >"$tree/lib/modules/$m.ko" ;;
    *) cp "$src" "$tree/lib/modules/$m.ko" ;;
  esac
  echo "$m" >>"$tree/etc/modules.order"
done

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
