# shellcheck shell=bash
# What the agent tests (tests/agent*.rs) and scripts/build-ephemeral.sh need besides QEMU (qemu.sh):
# cpio/gzip/xz to pack the initramfs and unpack kernel modules, mtools
# (mdir, mcopy) as an independent reader of the cloud-init seed, fdisk (sfdisk) and gdisk
# (sgdisk) as independent readers of partition tables, zstd and xz to make test images,
# util-linux's losetup for loop-device disks, socat to forward the VM's connections to the fake
# appliance on 127.0.0.1, binutils' readelf to find the shared libraries dropbear needs in the
# ramdisk, openssh-client (ssh, ssh-keygen) to log into rescue mode. The kernel, busybox-static
# and dropbear are not installed: the build script fetches them with `apt-get download`.
#
# Sourced as root on Debian 12 with scripts/lib/apt.sh. Idempotent: installs only what is missing.

agent_deps_missing=()
for agent_dep in cpio:cpio gzip:gzip \
    xz:xz-utils zstd:zstd mdir:mtools mcopy:mtools sfdisk:fdisk sgdisk:gdisk losetup:mount \
    blkid:util-linux dpkg-deb:dpkg socat:socat readelf:binutils ssh:openssh-client \
    ssh-keygen:openssh-client; do
    command -v "${agent_dep%%:*}" >/dev/null 2>&1 || agent_deps_missing+=("${agent_dep#*:}")
done
# shellcheck disable=SC2046
apt_install $(printf '%s\n' "${agent_deps_missing[@]}" | sort -u)
unset agent_dep agent_deps_missing
