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

# The MAAS CLI's PyPI dependencies (maascli itself is not on any package registry: it lives in
# canonical/maas's source, src/maascli and src/apiclient; tests/maas_cli.rs runs it from a copy
# of that source named by RACKBOX_MAASCLI_SRC). httplib2 is the venv's marker; the rest pinned.
maascli_venv="${RACKBOX_TOOLS:-/opt/rackbox-tools}/venv-maascli"
venv_install "$maascli_venv" httplib2 0.32.1 || { return 1 2>/dev/null || exit 1; }
if ! "$maascli_venv/bin/python" -c 'import yaml, oauthlib, macaroonbakery, OpenSSL, netaddr' 2>/dev/null; then
    "$maascli_venv/bin/pip" install --disable-pip-version-check --quiet \
        PyYAML==6.0.4 oauthlib==4.0.1 macaroonbakery==1.3.4 pyOpenSSL==26.4.0 netaddr==1.3.0 \
        || { echo "deps.d/maas.sh: the MAAS CLI's dependencies did not install" >&2; return 1 2>/dev/null || exit 1; }
fi
unset maascli_venv
