# shellcheck shell=bash
# Test dependency of the API contract test (tests/schemathesis.rs): schemathesis 4.32.5, which
# generates requests from /api/v1/openapi.json and checks every answer against the document,
# in a virtualenv of its own so its pins never meet another tool's.
# Sourced as root on a fresh Debian 12 machine with scripts/lib/apt.sh. Idempotent: a venv
# whose schemathesis is already the pinned version is left alone.

st_tools="${RACKBOX_TOOLS:-/opt/rackbox-tools}"
st_venv="$st_tools/venv-schemathesis"
st_version=4.32.5

if ! "$st_venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$st_version')" 2>/dev/null; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv || return 1 2>/dev/null || exit 1
    fi
    mkdir -p "$st_tools"
    rm -rf "$st_venv"
    python3 -m venv "$st_venv"
    "$st_venv/bin/pip" install --disable-pip-version-check --quiet "schemathesis==$st_version"
    "$st_venv/bin/st" --version >/dev/null \
        || { echo "deps.d/schemathesis.sh: schemathesis does not run in $st_venv" >&2; return 1 2>/dev/null || exit 1; }
fi
unset st_tools st_venv st_version
