#!/usr/bin/env bash
# The life cycle's speed on this machine: seconds from power-on to Ready (commissioning) and from
# the deploy action to Deployed, for a SeaBIOS and an OVMF machine of the virtual rack
# (scripts/lab.sh, QEMU under TCG unless LAB_ACCEL=kvm), one machine at a time, and how each
# splits (firmware and DHCP, boot loader and script, kernel and initrd download, Linux boot and
# agent, inventory or image write, reboot into the deployed OS).
#
#   sudo scripts/bench-lifecycle.sh            # builds what is missing, like `scripts/lab.sh up`
#
# The split comes from rackbox's own records: the machine's events (status changes, the network
# boot, the agent's progress, the inventory, the image written) and the log lines of the boot
# files it served. A private lab: its own namespace, state directory and API port, removed at
# the end. Addresses: 192.0.2.0/24 inside the namespace only.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
[ "$(id -u)" -eq 0 ] || { echo "run as root (the lab makes a network namespace)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is missing" >&2; exit 2; }

target="${CARGO_TARGET_DIR:-$repo/target}"
state=$(mktemp -d /tmp/rbx-bench-lifecycle.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export LAB_STATE="$state" LAB_NS="rbx-bench-$$" LAB_API_PORT="$port" LAB_START=0
# DHCP replies are logged at debug level: the first ACK to the machine marks the end of firmware.
export LAB_LOG_LEVEL="info,rackbox::dhcp=debug"
export LAB_EPHEMERAL="${LAB_EPHEMERAL:-$target/ephemeral}" LAB_TESTOS="${LAB_TESTOS:-$target/test-os}"
cleanup() {
    scripts/lab.sh down >/dev/null 2>&1 || true
    rm -rf "$state"
}
trap cleanup EXIT

scripts/lab.sh up 2 >"$state/up.log" 2>&1 || { cat "$state/up.log" >&2; exit 1; }

python3 - "$port" "$state" <<'PY'
import json, re, sys, time, urllib.request
from datetime import datetime

port, state = sys.argv[1], sys.argv[2]
api = f"http://127.0.0.1:{port}"
token = open(f"{state}/admin-token").read().strip()
LIMIT = 900  # seconds one step may take before the benchmark gives up

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")

def wait(mid, want):
    end = time.time() + LIMIT
    while time.time() < end:
        m = call("GET", f"/api/v1/machines/{mid}")
        if m["status_name"] == want:
            return m
        if m["status_name"].startswith("Failed"):
            sys.exit(f"{m['hostname']}: {m['status_name']}: {m['status_message']}")
        time.sleep(0.5)
    sys.exit(f"{mid} did not reach {want} in {LIMIT} s")

def log_lines():
    """(unix seconds, text) of rackbox's log, escape sequences removed."""
    out = []
    for line in open(f"{state}/rackbox.log", errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s+(.*)", line)
        if m:
            t = datetime.fromisoformat(m.group(1)[:26] + "+00:00").timestamp()
            out.append((t, m.group(2)))
    return out

def first(marks, t0, t1, pred):
    for t, text in marks:
        if t0 <= t <= t1 and pred(text):
            return t
    return None

def phase_table(title, t0, t1, points):
    """points: [(label, time or None)] in order; prints each phase's seconds."""
    print(f"\n{title}: {t1 - t0:.1f} s")
    prev, prev_label = t0, "start"
    for label, t in points + [("end", t1)]:
        if t is None:
            continue
        print(f"  {prev_label + ' -> ' + label:<62} {t - prev:6.1f} s")
        prev, prev_label = t, label

call("POST", "/api/v1/users/admin/sshkeys", {"key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench@rackbox"})
summary = []
for name, mac, fw in [("node1", "52:54:00:1a:00:01", "SeaBIOS"), ("node2", "52:54:00:1a:00:02", "OVMF")]:
    mid = call("GET", f"/api/v1/machines?mac={mac}")["items"][0]["system_id"]
    t0 = time.time()
    call("POST", f"/api/v1/machines/{mid}/actions/commission", {})
    wait(mid, "Ready")
    t1 = time.time()
    # The machine switches itself off at the end; let the BMC see it before deploying.
    time.sleep(2)
    call("POST", "/api/v1/machines/allocate", {"system_id": mid})
    t2 = time.time()
    call("POST", f"/api/v1/machines/{mid}/actions/deploy", {})
    wait(mid, "Deployed")
    t3 = time.time()
    call("POST", f"/api/v1/machines/{mid}/actions/release", {"erase": "quick"})
    wait(mid, "Ready")
    t4 = time.time()

    # Newest first from the API: sorted oldest first here.
    events = call("GET", f"/api/v1/machines/{mid}/events?limit=1000")
    ev = sorted((e["at_ms"] / 1000.0, e["action"], e.get("message", "")) for e in events)
    logs = log_lines()
    def ev_first(a, b, pred):
        return next((t for t, act, msg in ev if a <= t <= b and pred(act, msg)), None)
    def boot_marks(a, b):
        return [
            ("first DHCP ACK", first(logs, a, b, lambda s: "DHCP reply sent" in s and "Ack" in s and mac in s)),
            ("iPXE script served", ev_first(a, b, lambda act, m: act == "netboot")),
            ("kernel downloaded", first(logs, a, b, lambda s: "download served" in s and "vmlinuz" in s)),
            ("initrd downloaded", first(logs, a, b, lambda s: "download served" in s and "initrd" in s)),
        ]
    phase_table(f"{name} ({fw}) power on -> Ready (commissioning)", t0, t1, boot_marks(t0, t1) + [
        ("agent running (first progress)", ev_first(t0, t1, lambda act, m: act == "note")),
        ("inventory stored", ev_first(t0, t1, lambda act, m: act == "inventory")),
    ])
    phase_table(f"{name} ({fw}) deploy -> Deployed", t2, t3, boot_marks(t2, t3) + [
        ("image write started", ev_first(t2, t3, lambda act, m: act == "note" and "%" in m)),
        ("image written, rebooting", ev_first(t2, t3, lambda act, m: act == "image_written")),
    ])
    summary.append((name, fw, t1 - t0, t3 - t2, t4 - t3))

print("\n| machine | firmware | power-on -> Ready | deploy -> Deployed | release (quick erase) -> Ready |")
print("|---|---|---|---|---|")
for name, fw, a, b, c in summary:
    print(f"| {name} | {fw} | {a:.1f} s | {b:.1f} s | {c:.1f} s |")
PY
