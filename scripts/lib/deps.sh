# shellcheck shell=bash
# deps_install SNIPPET...: sources scripts/deps.d/SNIPPET.sh for each name (all of them when none
# is named), as root, so that each installs what is missing of its tools. scripts/test.sh installs
# everything the tests need this way, scripts/lab.sh what the rack needs.
# Needs the repository root as the working directory.

# shellcheck source=scripts/lib/apt.sh
source scripts/lib/apt.sh
# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh

deps_install() {
    local names=("$@") f
    if [ "${#names[@]}" -eq 0 ]; then
        # QEMU first: other snippets' packages (ovmf, ipxe) must meet the QEMU it chose.
        names=(qemu)
        for f in scripts/deps.d/*.sh; do
            f="$(basename "$f" .sh)"
            [ "$f" = qemu ] || names+=("$f")
        done
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: installing the tools of ${names[*]} needs root (apt-get); run as root or with sudo" >&2
        return 1
    fi
    for f in "${names[@]}"; do
        echo "== deps: $f"
        # shellcheck source=/dev/null
        source "scripts/deps.d/$f.sh" || { echo "deps: scripts/deps.d/$f.sh failed" >&2; return 1; }
    done
}
