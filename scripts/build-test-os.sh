#!/usr/bin/env bash
# Builds the rackbox test OS: a small deployable disk image that boots on BIOS and on UEFI, reads
# its cloud-init NoCloud seed (the CIDATA partition the agent adds at the disk's end), prints what
# it found on the serial console and reports to the appliance that it booted. It stands in for a
# real OS image in deploy tests: a whole deploy (agent writes image and seed -> machine boots its
# disk -> the OS reports in -> Deployed) in well under a minute of TCG, with no mirror access.
#
#   scripts/build-test-os.sh [OUTPUT_DIR]        (default: target/test-os)
#
# Outputs in OUTPUT_DIR: testos.raw (64 MiB), testos.raw.gz, and testos.raw.sha256 /
# testos.raw.gz.sha256 (`sha256sum` format). Only Debian packages are downloaded (`apt-get
# download`, unpacked with `dpkg -x`): the kernel (as scripts/build-ephemeral.sh),
# busybox-static, grub-pc-bin, grub-efi-amd64-bin and grub-common (for grub-mkimage). No root,
# no loop devices: the image is assembled in a file with sgdisk, mtools and dd. Cached like
# build-ephemeral.sh: packages are fetched once into OUTPUT_DIR/cache, and when the inputs (this
# script, the package versions) are unchanged the outputs are left as they are. The build is
# reproducible: the same inputs give the same bytes (fixed GUIDs, serials and times).
#
# The disk (GPT, 512-byte sectors):
#   1  1 MiB .. 2 MiB   BIOS boot partition: GRUB's i386-pc core.img (boot.img in the MBR's
#                       first 440 bytes points at it, as grub-bios-setup would do)
#   2  2 MiB .. 63 MiB  EFI system partition, FAT16 labelled RBXTESTOS: EFI/BOOT/BOOTX64.EFI
#                       (GRUB x86_64-efi, the removable-media path, so no NVRAM entry is needed),
#                       boot/grub/grub.cfg, boot/vmlinuz, boot/initrd.img, GRUB's modules
#   the last MiB is free: the GPT backup, which the agent moves to the end of the real disk,
#   where it adds the CIDATA seed partition after these two.
# Both GRUBs find the ESP by its label, so the disk's number and the seed partition added later
# do not matter.
#
# What the OS does (its /init, busybox): mount proc/sys/dev; load NIC, disk and FAT drivers;
# find the seed (the filesystem labelled CIDATA/cidata, or the GPT partition named cidata); print
#   RACKBOX-TESTOS firmware=<bios|uefi>
#   RACKBOX-TESTOS hostname=<local-hostname>
#   RACKBOX-TESTOS ssh-key=<key>          (one per key: meta-data public-keys, then any other
#                                          key in a #cloud-config user-data's ssh_authorized_keys)
# DHCP on every NIC; POST {"message": "testos booted as <hostname>"} to the meta-data's
# rackbox-report-url with `Authorization: Bearer <rackbox-report-token>` (busybox wget, retried a
# few times); print `RACKBOX-TESTOS reported` on success (`RACKBOX-TESTOS error: ...` for every
# failure). Then it STAYS UP, idle, like a deployed server: it is switched off from outside (a
# BMC, or the test killing QEMU). It has no sshd and no login: the keys are only printed.
#
# Environment:
#   RACKBOX_TESTOS_KERNEL  kernel package (default linux-image-amd64, as the ephemeral ramdisk)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
script="$repo/scripts/build-test-os.sh"

out="${1:-target/test-os}"
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache="$out/cache"
mkdir -p "$cache/debs"
kernel_meta="${RACKBOX_TESTOS_KERNEL:-linux-image-amd64}"

# Modules the OS loads (with their dependencies), in this order: the CRCs that nvme and sd ask
# for by name (there is no modprobe for the kernel to call), NICs, disk controllers, and FAT with
# the code pages its default mount options name (codepage 437, iocharset utf8).
modules=(
  crc64_rocksoft_generic crct10dif_generic
  failover net_failover virtio_pci virtio_net virtio_blk virtio_scsi
  e1000 e1000e igb ixgbe i40e tg3
  ahci ata_piix nvme sd_mod
  fat vfat nls_cp437 nls_utf8 nls_ascii
)

# GRUB modules built into both core images, so that nothing has to be loaded from the disk to
# reach the kernel (the ESP carries the module directories too, for anything typed by hand).
grub_common_modules=(part_gpt part_msdos fat search search_label configfile normal linux echo
  test serial terminal)
grub_bios_modules=(biosdisk "${grub_common_modules[@]}")
grub_efi_modules=("${grub_common_modules[@]}" efi_gop efi_uga)

log() { echo "build-test-os: $*" >&2; }
die() { log "$*"; exit 1; }
# shellcheck source=scripts/lib/debian.sh
. "$repo/scripts/lib/debian.sh"

for tool in apt-get apt-cache dpkg cpio gzip xz sha256sum sgdisk mformat mmd mcopy dd truncate ldd; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/deps.d/testos.sh installs the tools)"
done

# 1. Which package versions apt would download now.
kernel_pkg=$(resolve_kernel_package "$kernel_meta")
kernel_deb=$(fetch "$kernel_pkg")
busybox_deb=$(fetch busybox-static)
grub_pc_deb=$(fetch grub-pc-bin)
grub_efi_deb=$(fetch grub-efi-amd64-bin)
grub_common_deb=$(fetch grub-common)

# 2. Unchanged inputs: nothing to do.
inputs=$(
  {
    sha256sum "$script" "$repo/scripts/lib/debian.sh"
    for d in "$kernel_deb" "$busybox_deb" "$grub_pc_deb" "$grub_efi_deb" "$grub_common_deb"; do
      basename "$d"
    done
    echo "${modules[*]}"
  } | sha256sum | cut -d' ' -f1
)
outputs=("$out/testos.raw" "$out/testos.raw.gz" "$out/testos.raw.sha256" "$out/testos.raw.gz.sha256")
up_to_date=1
for f in "${outputs[@]}"; do
  [ -s "$f" ] || up_to_date=0
done
if [ "$up_to_date" = 1 ] && [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs" ]; then
  log "up to date: $out/testos.raw $out/testos.raw.gz"
  exit 0
fi

# 3. Unpack the packages (each version once).
kernel_dir=$(unpack "$kernel_deb")
busybox_dir=$(unpack "$busybox_deb")
grub_pc_dir=$(unpack "$grub_pc_deb")/usr/lib/grub/i386-pc
grub_efi_dir=$(unpack "$grub_efi_deb")/usr/lib/grub/x86_64-efi
grub_mkimage=$(unpack "$grub_common_deb")/usr/bin/grub-mkimage
kernel_of "$kernel_dir" "$kernel_deb"
[ -x "$busybox_dir/bin/busybox" ] || die "no bin/busybox in $busybox_deb"
[ -f "$grub_pc_dir/boot.img" ] && [ -f "$grub_pc_dir/diskboot.img" ] || die "no boot.img/diskboot.img in $grub_pc_deb"
[ -f "$grub_efi_dir/kernel.img" ] || die "no x86_64-efi kernel.img in $grub_efi_deb"
[ -x "$grub_mkimage" ] || die "no usr/bin/grub-mkimage in $grub_common_deb"
# grub-mkimage is run from the unpacked package, on the host's libraries (grub-common's own
# dependencies: liblzma, libdevmapper).
if missing=$(ldd "$grub_mkimage" 2>&1 | grep 'not found'); then
  die "grub-mkimage lacks host libraries (scripts/deps.d/testos.sh installs them): $missing"
fi

work="$cache/work"
rm -rf "$work"
mkdir -p "$work"

# 4. The initramfs: busybox, the modules, /init.
tree="$work/initramfs"
mkdir -p "$tree"/{bin,dev,proc,sys,tmp,run,etc,mnt/seed,lib/modules}
cp "$busybox_dir/bin/busybox" "$tree/bin/busybox"
chmod 755 "$tree/bin/busybox"

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

# Reads meta-data (and user-data) of a NoCloud seed and prints `hostname=`, `url=`, `token=` and
# one `key=` per SSH key. rackbox writes every value as a double-quoted YAML string (JSON string
# syntax, see src/agent/seed.rs); plain and single-quoted scalars are read too, so a seed written
# by other tools works. Keys come from meta-data's public-keys, then from a #cloud-config
# user-data's ssh_authorized_keys (block lists only), each key once.
cat >"$tree/etc/seed.awk" <<'EOF'
function unquote(v,    out, i, c) {
  sub(/^[ \t]+/, "", v)
  sub(/[ \t\r]+$/, "", v)
  if (v ~ /^".*"$/) {
    v = substr(v, 2, length(v) - 2)
    out = ""
    for (i = 1; i <= length(v); i++) {
      c = substr(v, i, 1)
      if (c == "\\" && i < length(v)) {
        i++
        c = substr(v, i, 1)
        if (c == "n") c = " "
        else if (c == "t") c = " "
      }
      out = out c
    }
    return out
  }
  if (v ~ /^'.*'$/) {
    v = substr(v, 2, length(v) - 2)
    gsub(/''/, "'", v)
    return v
  }
  sub(/[ \t]+#.*$/, "", v)
  return v
}
function value(line) { return unquote(substr(line, index(line, ":") + 1)) }
function key(k) {
  if (k != "" && !(k in seen)) { seen[k] = 1; print "key=" k }
}
FNR == 1 { list = ""; cloud_config = ($0 ~ /^#cloud-config[ \t\r]*$/) }
# A top-level key ends any list above it.
/^[^ \t#-]/ { list = "" }
FILENAME ~ /meta-data$/ && /^local-hostname:/ { print "hostname=" value($0) }
FILENAME ~ /meta-data$/ && /^rackbox-report-url:/ { print "url=" value($0) }
FILENAME ~ /meta-data$/ && /^rackbox-report-token:/ { print "token=" value($0) }
FILENAME ~ /meta-data$/ && /^public-keys:/ { list = "keys"; next }
FILENAME ~ /user-data$/ && cloud_config && /^ssh_authorized_keys:/ { list = "keys"; next }
list == "keys" && /^[ \t]*- / {
  v = $0
  sub(/^[ \t]*- /, "", v)
  key(unquote(v))
}
EOF

cat >"$tree/init" <<'EOF'
#!/bin/busybox sh
# rackbox test OS (scripts/build-test-os.sh): read the NoCloud seed, say what it holds on the
# console, report to the appliance that this deploy booted, then stay up.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "RACKBOX-TESTOS $*"; }
idle() {
  say "up; idle until switched off"
  while :; do sleep 3600; done
}
if [ -d /sys/firmware/efi ]; then say "firmware=uefi"; else say "firmware=bios"; fi
while read -r m; do
  insmod "/lib/modules/$m.ko" 2>/dev/null
done </etc/modules.order

# The seed: by filesystem label, or by the GPT partition name the agent gives it; disks may
# take a moment to appear after their drivers load.
find_seed() {
  findfs LABEL=CIDATA 2>/dev/null && return 0
  findfs LABEL=cidata 2>/dev/null && return 0
  for u in /sys/class/block/*/uevent; do
    if grep -qix 'PARTNAME=cidata' "$u"; then
      echo "/dev/$(sed -n 's/^DEVNAME=//p' "$u")"
      return 0
    fi
  done
  return 1
}
seed=""
tries=0
while [ "$tries" -lt 30 ]; do
  seed=$(find_seed) && break
  seed=""
  tries=$((tries + 1))
  sleep 1
done
if [ -z "$seed" ]; then
  say "error: no NoCloud seed (no filesystem labelled CIDATA, no partition named cidata)"
  idle
fi
if ! mount -t vfat -o ro "$seed" /mnt/seed; then
  say "error: cannot mount the seed $seed"
  idle
fi
say "seed=$seed"
touch /tmp/empty
meta=/mnt/seed/meta-data
user=/mnt/seed/user-data
[ -f "$meta" ] || meta=/tmp/empty
[ -f "$user" ] || user=/tmp/empty
awk -f /etc/seed.awk "$meta" "$user" >/tmp/seed.txt
hostname=$(sed -n 's/^hostname=//p' /tmp/seed.txt | head -n1)
url=$(sed -n 's/^url=//p' /tmp/seed.txt | head -n1)
token=$(sed -n 's/^token=//p' /tmp/seed.txt | head -n1)
[ -n "$hostname" ] && hostname "$hostname"
say "hostname=$hostname"
sed -n 's/^key=/RACKBOX-TESTOS ssh-key=/p' /tmp/seed.txt

ip link set lo up
for d in /sys/class/net/*; do
  i=${d##*/}
  [ "$i" = lo ] && continue
  [ -e "$d/device" ] || continue
  ip link set "$i" up
  udhcpc -i "$i" -n -t 5 -T 3 -A 5 -S -s /etc/udhcpc.script >/dev/null 2>&1 && say "dhcp=$i" && break
done

if [ -z "$url" ]; then
  say "error: the seed has no rackbox-report-url: not reporting"
  idle
fi
escaped=$(printf '%s' "testos booted as $hostname" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
body="{\"message\": \"$escaped\"}"
attempt=1
while :; do
  if timeout 30 wget -q -O /tmp/report.out --header "Authorization: Bearer $token" \
    --header "Content-Type: application/json" --post-data "$body" "$url" 2>/tmp/report.err; then
    say "reported"
    break
  fi
  say "error: report attempt $attempt to $url failed: $(tr '\n' ' ' </tmp/report.err)"
  if [ "$attempt" -ge 8 ]; then
    say "error: giving up reporting"
    break
  fi
  sleep $((attempt * 2))
  attempt=$((attempt + 1))
done
idle
EOF
chmod 755 "$tree/init" "$tree/etc/udhcpc.script"

# newc cpio, sorted and with fixed times so the same inputs give the same bytes.
find "$tree" -exec touch -h -d @0 {} +
(cd "$tree" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
  gzip -9 -n >"$work/initrd.img"

# 5. GRUB: one core image per firmware, each with an early config that finds the ESP by label
#    and reads grub.cfg from it.
cat >"$work/early.cfg" <<'EOF'
search --no-floppy --label RBXTESTOS --set=root
set prefix=($root)/boot/grub
EOF
cat >"$work/grub.cfg" <<EOF
# rackbox test OS (scripts/build-test-os.sh)
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
echo "RACKBOX-TESTOS grub: booting on \$grub_platform"
linux /boot/vmlinuz console=tty0 console=ttyS0,115200 panic=10
initrd /boot/initrd.img
boot
EOF
"$grub_mkimage" -d "$grub_pc_dir" -O i386-pc -o "$work/core.img" -c "$work/early.cfg" \
  -p /boot/grub "${grub_bios_modules[@]}"
"$grub_mkimage" -d "$grub_efi_dir" -O x86_64-efi -o "$work/BOOTX64.EFI" -c "$work/early.cfg" \
  -p /boot/grub "${grub_efi_modules[@]}"

# 6. The disk. Sector numbers: BIOS boot 2048..4095, ESP 4096..129023 (63 MiB), 64 MiB in all.
sector=512
bios_first=2048
bios_last=4095
esp_first=4096
esp_last=129023
disk_mib=64
core_sectors=$((($(stat -c %s "$work/core.img") + sector - 1) / sector))
[ "$core_sectors" -le $((bios_last - bios_first + 1)) ] ||
  die "GRUB's core.img ($core_sectors sectors) does not fit the BIOS boot partition"

raw="$work/testos.raw"
truncate -s "${disk_mib}M" "$raw"
# Fixed GUIDs: the same inputs give the same image.
sgdisk --clear \
  --disk-guid=5241434b-424f-5854-4553-544f53000000 \
  --new=1:$bios_first:$bios_last --typecode=1:EF02 --change-name=1:bios-boot \
  --partition-guid=1:5241434b-424f-5854-4553-544f53000001 \
  --new=2:$esp_first:$esp_last --typecode=2:EF00 --change-name=2:esp \
  --partition-guid=2:5241434b-424f-5854-4553-544f53000002 \
  "$raw" >/dev/null

# The ESP, made in its own file and copied into place.
esp="$work/esp.img"
esp_sectors=$((esp_last - esp_first + 1))
truncate -s $((esp_sectors * sector)) "$esp"
export MTOOLS_SKIP_CHECK=1 SOURCE_DATE_EPOCH=315619200
mformat -i "$esp" -v RBXTESTOS -N 52424254 -h 64 -s 32 -H "$esp_first" -T "$esp_sectors" ::
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/boot ::/boot/grub ::/boot/grub/i386-pc ::/boot/grub/x86_64-efi
mcopy -i "$esp" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$work/grub.cfg" ::/boot/grub/grub.cfg
mcopy -i "$esp" "$vmlinuz" ::/boot/vmlinuz
mcopy -i "$esp" "$work/initrd.img" ::/boot/initrd.img
mcopy -i "$esp" "$grub_pc_dir"/*.mod "$grub_pc_dir"/*.lst ::/boot/grub/i386-pc/
mcopy -i "$esp" "$grub_efi_dir"/*.mod "$grub_efi_dir"/*.lst ::/boot/grub/x86_64-efi/
dd if="$esp" of="$raw" bs=$sector seek=$esp_first conv=notrunc status=none

# BIOS: what grub-bios-setup does, on a file. The MBR gets boot.img's code (its first 440 bytes;
# the disk signature and the protective partition table stay), with the LBA of core.img at
# 0x5c and the drive check at 0x66 replaced by two NOPs (buggy BIOSes pass a wrong drive number
# for hard disks). core.img's first sector (diskboot.img) ends with a block list whose first
# entry (start LBA, 8 bytes at 0x1f4; length, 2 bytes at 0x1fc) must name the rest of core.img:
# grub-mkimage already wrote the length, the start is ours.
le64() { # value -> 8 little-endian bytes as printf escapes
  local v=$1 i s=""
  for i in 0 1 2 3 4 5 6 7; do
    s+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255)))
  done
  printf '%s' "$s"
}
poke() { # file offset printf-escaped-bytes
  # shellcheck disable=SC2059
  printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
cp "$grub_pc_dir/boot.img" "$work/boot.img"
poke "$work/boot.img" $((0x5c)) "$(le64 $bios_first)"
poke "$work/boot.img" $((0x66)) '\x90\x90'
poke "$work/core.img" $((0x1f4)) "$(le64 $((bios_first + 1)))"
rest=$(od -An -tu2 -j $((0x1fc)) -N2 "$work/core.img" | tr -d ' ')
[ "$rest" = $((core_sectors - 1)) ] ||
  die "core.img's block list says $rest sectors after the first, the file has $((core_sectors - 1))"
dd if="$work/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=$sector seek=$bios_first conv=notrunc status=none

# An independent check of the table before anything is published.
verify=$(sgdisk --verify "$raw")
[[ $verify == *"No problems found"* ]] || die "sgdisk --verify: $verify"

# 7. Publish: compressed copy and digests, then the inputs stamp last (an interrupted build is
#    redone).
gzip -9 -n -c "$raw" >"$work/testos.raw.gz"
(cd "$work" && sha256sum testos.raw >testos.raw.sha256 && sha256sum testos.raw.gz >testos.raw.gz.sha256)
rm -f "$out/.inputs"
for f in testos.raw testos.raw.gz testos.raw.sha256 testos.raw.gz.sha256; do
  mv "$work/$f" "$out/$f"
done
echo "$inputs" >"$out/.inputs"
log "kernel $kver, ${#order[@]} modules, initrd $(($(stat -c %s "$work/initrd.img") / 1024)) KiB, core.img $core_sectors sectors"
log "built $out/testos.raw ($(cut -d' ' -f1 "$out/testos.raw.sha256")) and $out/testos.raw.gz"
