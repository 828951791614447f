#!/usr/bin/env bash
# Builds a small test kernel + initramfs for network-boot tests and the lab, until the real
# ephemeral environment (scripts/build-ephemeral.sh) exists. From Debian packages only:
#   OUTDIR/vmlinuz     the kernel of linux-image-cloud-amd64 (apt-get download, dpkg -x)
#   OUTDIR/initrd.img  busybox-static and an /init that mounts proc, sys and dev, prints
#                      RACKBOX-TEST-RAMDISK-BOOTED and the kernel command line on the console
#                      (the serial port, with rackbox's console=ttyS0) and powers off.
# Cached: when both files are there, nothing is done (delete them to rebuild).
#
# Usage: scripts/build-test-ramdisk.sh OUTDIR
# Needs: apt-get (with package lists: run `apt-get update` once), dpkg, cpio, gzip,
# busybox-static (scripts/deps.d/netboot.sh installs them).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out="$1"
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
    echo "build-test-ramdisk: $out/vmlinuz and $out/initrd.img are there (cached)"
    exit 0
fi
for tool in apt-get apt-cache dpkg cpio gzip; do
    command -v "$tool" >/dev/null || {
        echo "build-test-ramdisk: $tool is missing (scripts/deps.d/netboot.sh installs it)" >&2
        exit 1
    }
done
busybox=/bin/busybox
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
    echo "build-test-ramdisk: busybox-static is missing: install the Debian package busybox-static" >&2
    exit 1
fi

mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/rackbox-ramdisk.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The metapackage names the current kernel package; download that one.
kpkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }')"
if [ -z "$kpkg" ]; then
    echo "build-test-ramdisk: apt knows no linux-image-cloud-amd64: run 'apt-get update' first" >&2
    exit 1
fi
echo "build-test-ramdisk: downloading $kpkg"
# As root, apt-get would drop to _apt for the download and warn that it cannot write here.
apt_opts=()
[ "$(id -u)" -eq 0 ] && apt_opts=(-o APT::Sandbox::User=root)
(cd "$work" && apt-get download -q "${apt_opts[@]}" "$kpkg" >/dev/null)
dpkg -x "$work"/linux-image-*.deb "$work/kernel"
vmlinuz="$(find "$work/kernel/boot" -name 'vmlinuz-*' | head -n1)"
[ -n "$vmlinuz" ] || {
    echo "build-test-ramdisk: no vmlinuz in $kpkg" >&2
    exit 1
}

root="$work/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp}
cp "$busybox" "$root/bin/busybox"
for applet in sh mount cat echo sleep poweroff; do
    ln -s busybox "$root/bin/$applet"
done
cat >"$root/init" <<'EOF'
#!/bin/sh
# rackbox test ramdisk: proves the kernel and this initramfs came from rackbox over the network
# boot chain, shows the command line rackbox gave, and powers the machine off.
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo
echo "RACKBOX-TEST-RAMDISK-BOOTED"
echo "cmdline: $(cat /proc/cmdline)"
echo
sleep 1
poweroff -f
# poweroff -f does not return; should it fail, keep PID 1 alive rather than panic.
while true; do sleep 60; done
EOF
chmod 755 "$root/init"
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -9 >"$work/initrd.img"

# Into place: each file whole or not at all.
cp "$vmlinuz" "$out/.vmlinuz.new"
cp "$work/initrd.img" "$out/.initrd.img.new"
mv "$out/.vmlinuz.new" "$out/vmlinuz"
mv "$out/.initrd.img.new" "$out/initrd.img"
echo "build-test-ramdisk: $out/vmlinuz ($kpkg) and $out/initrd.img"
