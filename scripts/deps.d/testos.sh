# shellcheck shell=bash
# What the test OS (scripts/build-test-os.sh) and its boot tests (tests/testos.rs) need besides
# QEMU and SeaBIOS (qemu.sh): OVMF for UEFI, sgdisk for the GPT, mtools
# for the ESP, cpio/gzip/xz/zstd for the initramfs and kernel modules, socat to forward the VM's
# connections to the fake appliance on 127.0.0.1, and the host libraries of grub-common's
# grub-mkimage (run from the unpacked package: liblzma, libdevmapper). The kernel, busybox and
# GRUB are not installed: the build script fetches them with `apt-get download`.
#
# Sourced as root on Debian 12 with scripts/lib/apt.sh. Idempotent: installs only what is
# missing, so a second run takes a moment.

testos_deps_missing=()
for testos_dep in sgdisk:gdisk \
    mformat:mtools mcopy:mtools mmd:mtools cpio:cpio gzip:gzip xz:xz-utils zstd:zstd \
    dpkg-deb:dpkg socat:socat ldd:libc-bin od:coreutils; do
    command -v "${testos_dep%%:*}" >/dev/null 2>&1 || testos_deps_missing+=("${testos_dep#*:}")
done
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] && [ -f /usr/share/OVMF/OVMF_VARS_4M.fd ] ||
    testos_deps_missing+=(ovmf)
for testos_lib in liblzma.so.5:liblzma5 libdevmapper.so.1.02.1:libdevmapper1.02.1; do
    ldconfig -p 2>/dev/null | grep -q "${testos_lib%%:*}" || testos_deps_missing+=("${testos_lib#*:}")
done
# shellcheck disable=SC2046
apt_install $(printf '%s\n' "${testos_deps_missing[@]}" | sort -u)
unset testos_dep testos_lib testos_deps_missing
