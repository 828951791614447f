# shellcheck shell=bash
# What the agent tests (tests/agent*.rs) and scripts/build-ephemeral.sh need: QEMU to boot the
# ephemeral ramdisk (Debian's qemu-utils with it: qemu-system-x86 from Debian can remove a
# backported qemu-utils), cpio/gzip/xz to pack the initramfs and unpack kernel modules, mtools
# (mdir, mcopy) as an independent reader of the cloud-init seed, fdisk (sfdisk) and gdisk
# (sgdisk) as independent readers of partition tables, zstd and xz to make test images,
# util-linux's losetup for loop-device disks, socat to forward the VM's connections to the fake
# appliance on 127.0.0.1, binutils' readelf to find the shared libraries dropbear needs in the
# ramdisk, openssh-client (ssh, ssh-keygen) to log into rescue mode. The kernel, busybox-static
# and dropbear are not installed: the build script fetches them with `apt-get download`.
#
# Sourced as root on Debian 12 after `apt-get update`. Idempotent: installs only what is missing.

agent_deps_missing=()
for agent_dep in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils cpio:cpio gzip:gzip \
    xz:xz-utils zstd:zstd mdir:mtools mcopy:mtools sfdisk:fdisk sgdisk:gdisk losetup:mount \
    blkid:util-linux dpkg-deb:dpkg socat:socat readelf:binutils ssh:openssh-client \
    ssh-keygen:openssh-client; do
    command -v "${agent_dep%%:*}" >/dev/null 2>&1 || agent_deps_missing+=("${agent_dep#*:}")
done
case " ${agent_deps_missing[*]} " in
*" qemu-system-x86 "*) agent_deps_missing+=(qemu-utils) ;;
esac
if [ "${#agent_deps_missing[@]}" -gt 0 ]; then
    # shellcheck disable=SC2046
    echo "agent deps: installing $(printf '%s\n' "${agent_deps_missing[@]}" | sort -u | tr '\n' ' ')"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 \
        $(printf '%s\n' "${agent_deps_missing[@]}" | sort -u)
fi
unset agent_dep agent_deps_missing
