# shellcheck shell=bash
# Real network-boot clients and the lab (tests/netboot_firmware.rs, scripts/lab.sh):
#   ipxe            undionly.kpxe, snponly.efi, ipxe.efi that rackbox serves over TFTP
#   ovmf            UEFI firmware with its own PXE stack (OVMF_CODE_4M.fd, OVMF_VARS_4M.fd)
#   (QEMU itself, the machines, comes from qemu.sh)
#   busybox-static, cpio   the test ramdisk (scripts/build-test-ramdisk.sh)
#   openipmi, ipmitool     a BMC per lab machine (ipmi_sim)
#   socat           the lab's API forward from the host's loopback into the namespace
#   curl, iproute2  the tests' and the lab's HTTP and namespace plumbing
# Sourced as root on Debian 12 with scripts/lib/apt.sh. Idempotent: installs only what is
# missing, so a second run takes a second.

netboot_deps_missing=()
for netboot_dep in \
    /usr/lib/ipxe/undionly.kpxe:ipxe \
    /usr/lib/ipxe/snponly.efi:ipxe \
    /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf \
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
# shellcheck disable=SC2046
apt_install $(printf '%s\n' "${netboot_deps_missing[@]}" | sort -u)
unset netboot_dep netboot_deps_missing
