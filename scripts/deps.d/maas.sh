# shellcheck shell=bash
# Test dependency of the MAAS 2.0 face: python-libmaas 0.6.8 (the client Juju-era tooling and
# many scripts use), in a virtualenv of its own so its pins never meet another tool's.
# Sourced as root on a fresh Debian 12 machine with scripts/lib/apt.sh and venv.sh. Idempotent: a venv that
# already imports maas.client at the pinned version is left alone.

maas_venv="${RACKBOX_TOOLS:-/opt/rackbox-tools}/venv-libmaas"
venv_install "$maas_venv" python-libmaas 0.6.8 || { return 1 2>/dev/null || exit 1; }
# Python 3.12+ has no distutils, which python-libmaas imports; setuptools brings a shim.
if ! "$maas_venv/bin/python" -c 'import maas.client' 2>/dev/null; then
    "$maas_venv/bin/pip" install --disable-pip-version-check --quiet setuptools
fi
"$maas_venv/bin/python" -c 'import maas.client' \
    || { echo "deps.d/maas.sh: python-libmaas does not import in $maas_venv" >&2; return 1 2>/dev/null || exit 1; }
unset maas_venv
