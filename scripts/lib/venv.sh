# shellcheck shell=bash
# venv_install DIR DISTRIBUTION VERSION: makes DIR a Python virtualenv with DISTRIBUTION==VERSION
# from PyPI, unless it already has that version (then it returns at once). Each test tool gets a
# venv of its own, so that its pins never meet another tool's. Needs root for apt_install
# (scripts/lib/apt.sh) when Debian's python3-venv is missing.
venv_install() {
    local dir="$1" dist="$2" version="$3"
    if "$dir/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$dist') != '$version')" 2>/dev/null; then
        return 0
    fi
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv || return 1
    fi
    echo "deps: creating $dir with $dist $version"
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir"
    python3 -m venv "$dir" || return 1
    "$dir/bin/pip" install --disable-pip-version-check --quiet "$dist==$version"
}
