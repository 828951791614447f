# shellcheck shell=bash
# Real network-boot clients and the lab (tests/netboot_firmware.rs, scripts/lab.sh):
#   ipxe            undionly.kpxe, snponly.efi, ipxe.efi that rackbox serves over TFTP
#   ovmf            UEFI firmware with its own PXE stack (OVMF_CODE_4M.fd, OVMF_VARS_4M.fd)
#   qemu-system-x86 the machines (SeaBIOS + ipxe-qemu option ROMs); with Debian's own
#                   qemu-utils, since installing it may remove a backported one
#   busybox-static, cpio   the test ramdisk (scripts/build-test-ramdisk.sh)
#   openipmi, ipmitool     a BMC per lab machine (ipmi_sim)
#   socat           the lab's API forward from the host's loopback into the namespace
#   curl, iproute2  the tests' and the lab's HTTP and namespace plumbing
# Sourced as root on Debian 12 after `apt-get update`. Idempotent: installs only what is
# missing, so a second run takes a second.

netboot_deps_missing=()
for netboot_dep in \
    /usr/lib/ipxe/undionly.kpxe:ipxe \
    /usr/lib/ipxe/snponly.efi:ipxe \
    /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf \
    /usr/bin/qemu-system-x86_64:qemu-system-x86 \
    /usr/bin/qemu-img:qemu-utils \
    /bin/busybox:busybox-static \
    /usr/bin/cpio:cpio \
    /usr/bin/ipmi_sim:openipmi \
    /usr/bin/ipmitool:ipmitool \
    /usr/bin/socat:socat \
    /usr/bin/curl:curl \
    /usr/bin/dpkg-deb:dpkg \
    /sbin/ip:iproute2; do
    [ -e "${netboot_dep%%:*}" ] || netboot_deps_missing+=("${netboot_dep#*:}")
done
# busybox (dynamic) is not enough for an initramfs: the static one is needed.
if [ -e /bin/busybox ] && ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
    netboot_deps_missing+=(busybox-static)
fi
# Installing qemu-system-x86 can remove a backported qemu-utils: ask for Debian's with it.
case " ${netboot_deps_missing[*]} " in
*" qemu-system-x86 "*) netboot_deps_missing+=(qemu-utils) ;;
esac
if [ "${#netboot_deps_missing[@]}" -gt 0 ]; then
    mapfile -t netboot_deps_unique < <(printf '%s\n' "${netboot_deps_missing[@]}" | sort -u)
    echo "netboot deps: installing ${netboot_deps_unique[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${netboot_deps_unique[@]}"
fi
unset netboot_dep netboot_deps_missing netboot_deps_unique
