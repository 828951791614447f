# shellcheck shell=bash
# Test dependency of the Juju replay (tests/maas_juju.rs): Go and gomaasapi, the MAAS client
# library Juju's MAAS provider is built on, both from Debian (golang-github-juju-gomaasapi-dev
# puts its source and its dependencies' under /usr/share/gocode, which a GOPATH build uses).
# Sourced as root on a fresh Debian 12 machine with scripts/lib/apt.sh. Idempotent.

if ! [ -f /usr/share/gocode/src/github.com/juju/gomaasapi/controller.go ] || ! command -v go >/dev/null; then
    apt_install golang-go golang-github-juju-gomaasapi-dev \
        || { echo "deps.d/juju.sh: Go or gomaasapi did not install" >&2; return 1 2>/dev/null || exit 1; }
fi
