# shellcheck shell=bash
# Test dependency of the MAAS 2.0 face: python-libmaas 0.6.8 (the client Juju-era tooling and
# many scripts use), in a virtualenv of its own so its pins never meet another tool's.
# Sourced as root on a fresh Debian 12 machine with scripts/lib/apt.sh. Idempotent: a venv that
# already imports maas.client at the pinned version is left alone.

maas_tools="${RACKBOX_TOOLS:-/opt/rackbox-tools}"
maas_venv="$maas_tools/venv-libmaas"

if ! "$maas_venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("python-libmaas") != "0.6.8")' 2>/dev/null; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv || return 1 2>/dev/null || exit 1
    fi
    mkdir -p "$maas_tools"
    rm -rf "$maas_venv"
    python3 -m venv "$maas_venv"
    "$maas_venv/bin/pip" install --disable-pip-version-check --quiet 'python-libmaas==0.6.8'
    # Python 3.12+ has no distutils, which python-libmaas imports; setuptools brings a shim.
    if ! "$maas_venv/bin/python" -c 'import maas.client' 2>/dev/null; then
        "$maas_venv/bin/pip" install --disable-pip-version-check --quiet setuptools
    fi
    "$maas_venv/bin/python" -c 'import maas.client' \
        || { echo "deps.d/maas.sh: python-libmaas does not import in $maas_venv" >&2; return 1 2>/dev/null || exit 1; }
fi
unset maas_tools maas_venv
