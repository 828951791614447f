# shellcheck shell=bash
# Test dependency of the API contract test (tests/schemathesis.rs): schemathesis 4.32.5, which
# generates requests from /api/v1/openapi.json and checks every answer against the document,
# in a virtualenv of its own so its pins never meet another tool's.
# Sourced as root on a fresh Debian 12 machine with scripts/lib/apt.sh and venv.sh. Idempotent:
# a venv whose schemathesis is already the pinned version is left alone.

venv_install "${RACKBOX_TOOLS:-/opt/rackbox-tools}/venv-schemathesis" schemathesis 4.32.5 \
    && "${RACKBOX_TOOLS:-/opt/rackbox-tools}/venv-schemathesis/bin/st" --version >/dev/null \
    || { echo "deps.d/schemathesis.sh: schemathesis does not run" >&2; return 1 2>/dev/null || exit 1; }
