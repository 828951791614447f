# shellcheck shell=bash
# QEMU for every QEMU test and the lab: qemu-system-x86 (SeaBIOS, iPXE's option ROMs) and
# qemu-utils (qemu-img), all from bookworm-backports: QEMU 10.0.
#
# Why backports and not bookworm's 7.2: machines of this kind ship qemu-utils 10.0 from
# bookworm-backports, and bookworm's qemu-system-x86 cannot be installed beside it (qemu-utils
# Breaks qemu-system-common < 8.0). Taking the matching QEMU leaves the machine's qemu-img as it
# came instead of downgrading a tool the image provides, and every machine ends with the same QEMU
# whatever it had: bookworm's 7.2 (a machine without the backport, or an earlier run of this
# script) is upgraded, a matching 10.0 is kept. Only the QEMU packages and the SeaBIOS that QEMU 10
# needs come from backports (pkg/suite), nothing else. The suite is on the same Debian archive
# as bookworm; this adds it to APT's sources when it is missing (at the default priority 100, so
# nothing else is ever upgraded from it).
#
# Sourced as root on Debian 12 with scripts/lib/apt.sh. Idempotent: a machine that has the
# backported QEMU asks no registry.

qemu_suite=bookworm-backports
qemu_packages=(qemu-system-x86 qemu-utils qemu-system-common qemu-system-data seabios)
qemu_installed() { dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | sed -n 's/^install ok installed //p'; }
qemu_ok=1
for qemu_pkg in qemu-system-x86 qemu-utils qemu-system-common qemu-system-data; do
    case "$(qemu_installed "$qemu_pkg")" in
    *~bpo12*) ;;
    *) qemu_ok=0 ;;
    esac
done
[ "$(qemu_installed qemu-system-x86)" = "$(qemu_installed qemu-utils)" ] || qemu_ok=0
[ -f /usr/share/seabios/bios-256k.bin ] || qemu_ok=0
if [ "$qemu_ok" = 0 ]; then
    if ! grep -rqs "$qemu_suite" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        # The archive that serves the machine's bookworm serves its backports too.
        apt_update || return 1 2>/dev/null || exit 1
        qemu_archive="$(apt-cache policy | awk '$3 ~ /^bookworm\/main/ { print $2; exit }')"
        [ -n "$qemu_archive" ] ||
            { echo "deps.d/qemu.sh: no bookworm source in APT's sources to add $qemu_suite beside" >&2; return 1 2>/dev/null || exit 1; }
        cat >/etc/apt/sources.list.d/rackbox-backports.sources <<SOURCES
# Added by rackbox's scripts/deps.d/qemu.sh: QEMU 10 to match the machine's qemu-utils.
Types: deb
URIs: $qemu_archive
Suites: $qemu_suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
        apt_refresh
    fi
    apt_install "${qemu_packages[@]/%//$qemu_suite}" ||
        { echo "deps.d/qemu.sh: QEMU from $qemu_suite did not install" >&2; return 1 2>/dev/null || exit 1; }
fi
unset qemu_suite qemu_packages qemu_pkg qemu_ok qemu_archive
unset -f qemu_installed
