# shellcheck shell=bash
# Test dependencies of the control page's browser test (tests/page_browser.rs): Debian's
# Chromium and one font (screenshots look the same on every machine), and from npm
# playwright-core 1.64.1 (drives Debian's Chromium 156 over CDP; it downloads no browser) and
# axe-core 4.14.1 (the accessibility check), in a directory of their own with a lock file.
# Needs node >= 18 and npm; installs Debian's nodejs and npm when the machine has none.
# Sourced as root on a fresh Debian 12 machine with scripts/lib/apt.sh. Idempotent.

page_dir="${RACKBOX_TOOLS:-/opt/rackbox-tools}/page-node"
page_pkgs=()
command -v chromium >/dev/null || page_pkgs+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || page_pkgs+=(fonts-dejavu-core)
command -v node >/dev/null || page_pkgs+=(nodejs)
command -v npm >/dev/null || page_pkgs+=(npm)
apt_install "${page_pkgs[@]}" || { return 1 2>/dev/null || exit 1; }
if [ "$(cat "$page_dir/.installed" 2>/dev/null)" != "playwright-core@1.64.1 axe-core@4.14.1" ]; then
    mkdir -p "$page_dir"
    (cd "$page_dir" \
        && { [ -e package.json ] || echo '{"name":"rackbox-page-tools","private":true}' >package.json; } \
        && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent \
            playwright-core@1.64.1 axe-core@4.14.1) \
        || { echo "deps.d/page.sh: npm install of playwright-core and axe-core failed" >&2; return 1 2>/dev/null || exit 1; }
    echo "playwright-core@1.64.1 axe-core@4.14.1" >"$page_dir/.installed"
fi
unset page_dir page_pkgs
