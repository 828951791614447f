"""python-libmaas 0.6.8 against a real `rackbox serve`, driven by tests/maas_libmaas.rs.

Each step prints "ok: <what>" and the script exits 0 only when every step passed; a failed step
raises, so the traceback names it. Inputs come from the environment (see the Rust test):
RACKBOX_MAAS_URL, RACKBOX_ADMIN_KEY, RACKBOX_USER_KEY, RACKBOX_USER, RACKBOX_USER_PASSWORD.
"""

import json
import os
import sys
import urllib.request

from maas.client import connect, login
from maas.client.bones import CallError
from maas.client.enum import NodeStatus, PowerState
from maas.client.viscera.machines import MachineNotFound

URL = os.environ["RACKBOX_MAAS_URL"]
ADMIN_KEY = os.environ["RACKBOX_ADMIN_KEY"]
USER_KEY = os.environ["RACKBOX_USER_KEY"]
USER = os.environ["RACKBOX_USER"]
PASSWORD = os.environ["RACKBOX_USER_PASSWORD"]


def ok(what):
    print("ok:", what, flush=True)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def play_agent(machine, path, body):
    """Does what the machine's agent does, through rackbox's real endpoints: network-boot (fetch
    the machine's iPXE script, which carries its per-boot token) and report to /api/agent/v1."""
    base = URL.split("/MAAS")[0]
    mac = machine.boot_interface.mac_address
    script = urllib.request.urlopen("%s/boot/%s.ipxe" % (base, mac)).read().decode()
    tokens = [w.split("=", 1)[1] for w in script.split() if w.startswith("rackbox.token=")]
    return report(base, tokens[0] if tokens else None, path, body)


def report(base, token, path, body):
    expect(token, "the boot script carries a token")
    request = urllib.request.Request(
        "%s/api/agent/v1/%s" % (base, path),
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).read()
    return token


def call_status(fn, *args, **kwargs):
    """The HTTP status of a CallError the call raises (None when it does not raise)."""
    try:
        fn(*args, **kwargs)
    except CallError as e:
        return e.status
    return None


def main():
    user = connect(URL, apikey=USER_KEY)
    me = user.users.whoami()
    expect(me.username == USER, "whoami with the API key is %r" % me.username)
    expect(me.is_admin is False, "the user must not be an admin")
    ok("connect with an API key; whoami")

    by_password = login(URL, username=USER, password=PASSWORD)
    expect(by_password.users.whoami().username == USER, "whoami after login")
    ok("login with username and password")

    machines = user.machines.list()
    ids = {m.system_id for m in machines}
    for seeded in ("small1", "mid001", "big001"):
        expect(seeded in ids, "seeded machine %s not listed: %s" % (seeded, sorted(ids)))
    mid = user.machines.get("mid001")
    expect(mid.cpus == 4 and mid.memory == 8192, "mid001 is 4 CPUs / 8192 MiB")
    expect(mid.status == NodeStatus.READY, "mid001 is Ready, not %r" % mid.status)
    ok("list machines (%d) and read one" % len(machines))

    admin = connect(URL, apikey=ADMIN_KEY)
    created = admin.machines.create(
        architecture="amd64",
        mac_addresses=["52:54:00:aa:bb:01", "52:54:00:aa:bb:02"],
        power_type="manual",
        hostname="added-by-libmaas",
    )
    expect(created.hostname == "added-by-libmaas", "created hostname")
    expect(created.architecture == "amd64/generic", "architecture %r" % created.architecture)
    expect(len(created.interfaces) == 2, "two interfaces")
    expect(created.status == NodeStatus.NEW, "a manual machine waits in New: %r" % created.status)
    ok("create a machine (%s)" % created.system_id)

    expect(
        call_status(user.machines.create, architecture="amd64", mac_addresses=["52:54:00:aa:bb:09"], power_type="manual")
        == 403,
        "a user may not create machines",
    )
    ok("a user creating a machine gets 403")

    got = user.machines.allocate(cpus=4, memory=8192, tags=["gpu"], zone="default")
    expect(got.system_id == "mid001", "allocate chose %s, not the smallest fit mid001" % got.system_id)
    expect(got.status == NodeStatus.ALLOCATED, "allocated status %r" % got.status)
    expect(got.owner.username == USER, "owner %r" % got.owner)
    ok("allocate with cpu/memory/tags/zone constraints")

    try:
        user.machines.allocate(cpus=999)
    except MachineNotFound:
        ok("an impossible allocate raises MachineNotFound")
    else:
        raise AssertionError("allocate(cpus=999) found a machine")

    in_rack2 = user.machines.allocate(zone="rack2")
    expect(in_rack2.system_id == "big001", "zone rack2 holds big001")
    ok("allocate by zone")

    got.deploy(user_data=b"#cloud-config\npackages: [htop]\n", distro_series="jammy")
    expect(got.status == NodeStatus.DEPLOYING, "deploy status %r" % got.status)
    got.refresh()
    expect(got.status == NodeStatus.DEPLOYING, "re-read status %r" % got.status)
    expect(got.distro_series == "jammy", "distro_series %r" % got.distro_series)
    ok("deploy with user_data reaches Deploying")

    state = got.query_power_state()
    expect(state == PowerState.UNKNOWN, "power state %r" % state)
    ok("query power state (%s)" % state.value)

    status = call_status(got.power_on)
    expect(status == 409, "power_on of a machine with no power driver must answer 409, not %r" % status)
    ok("power_on answers 409: no power driver configured")

    # The machine boots its ephemeral environment, writes the image, reboots into the deployed OS,
    # which reports in: only then is it Deployed.
    token = play_agent(got, "complete", {"message": "image written"})
    got.refresh()
    expect(got.status == NodeStatus.DEPLOYING, "image written is not Deployed yet: %r" % got.status)
    report(URL.split("/MAAS")[0], token, "deployed", {"message": "deployed OS booted"})
    got.refresh()
    expect(got.status == NodeStatus.DEPLOYED, "deployed status %r" % got.status)
    ok("deploy reaches Deployed once the deployed OS reports in")

    got.release(quick_erase=True)
    expect(got.status == NodeStatus.DISK_ERASING, "release status %r" % got.status)
    play_agent(got, "complete", {"message": "disks erased (quick)"})
    got.refresh()
    expect(got.status == NodeStatus.READY, "after the erase the machine is Ready: %r" % got.status)
    ok("release with quick_erase erases and returns the machine to Ready")

    zones = {z.name for z in user.zones.list()}
    expect({"default", "rack2"} <= zones, "zones %r" % zones)
    pools = {p.name for p in user.resource_pools.list()}
    expect("default" in pools, "pools %r" % pools)
    tags = {t.name for t in user.tags.list()}
    expect("gpu" in tags, "tags %r" % tags)
    expect(list(user.boot_resources.list()) == [], "no boot resources imported in this test")
    ok("zones, resource pools, tags, boot resources")

    bad_key = "AAAAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBB:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
    wrong = connect(URL, apikey=bad_key)
    expect(call_status(wrong.users.whoami) == 401, "a wrong key must give 401")
    ok("a wrong key gives 401")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the Rust test shows whatever failed
        import traceback

        traceback.print_exc()
        print("FAILED:", e, file=sys.stderr, flush=True)
        sys.exit(1)
    print("all python-libmaas steps passed", flush=True)
