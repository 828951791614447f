"""python-libmaas 0.6.8 against a real `rackbox serve`, driven by tests/maas_libmaas.rs.

Each step prints "ok: <what>" and the script exits 0 only when every step passed; a failed step
raises, so the traceback names it. Inputs come from the environment (see the Rust test):
RACKBOX_MAAS_URL, RACKBOX_ADMIN_KEY, RACKBOX_USER_KEY, RACKBOX_USER, RACKBOX_USER_PASSWORD.
"""

import os
import subprocess
import sys

import agent_player

from maas.client import connect, login
from maas.client.bones import CallError
from maas.client.enum import NodeStatus, NodeType, PowerState
from maas.client.viscera.machines import MachineNotFound

URL = os.environ["RACKBOX_MAAS_URL"]
ADMIN_KEY = os.environ["RACKBOX_ADMIN_KEY"]
USER_KEY = os.environ["RACKBOX_USER_KEY"]
USER = os.environ["RACKBOX_USER"]
PASSWORD = os.environ["RACKBOX_USER_PASSWORD"]
MAAS_CLI = os.environ["RACKBOX_LIBMAAS_CLI"]


def ok(what):
    print("ok:", what, flush=True)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def play_agent(machine, path, body):
    """Boots the machine's ephemeral environment and sends its agent's report."""
    return agent_player.boot_and_report(URL.split("/MAAS")[0], machine.boot_interface.mac_address, path, body)


def report(base, token, path, body):
    return agent_player.report(base, token, path, body)


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

    # The client has no nodes facade; its CLI's `maas nodes` reads them through the origin.
    nodes = {n.system_id: n for n in user._origin.Nodes.read()}
    expect("mid001" in nodes and nodes["mid001"].node_type == NodeType.MACHINE, "nodes list machines")
    controllers = [n for n in nodes.values() if n.node_type == NodeType.REGION_AND_RACK_CONTROLLER]
    expect(len(controllers) == 1, "nodes list the appliance as the one controller: %r" % nodes)
    racks = user.rack_controllers.list()
    regions = user.region_controllers.list()
    expect(
        [r.system_id for r in racks] == [controllers[0].system_id] == [r.system_id for r in regions],
        "the appliance is the rack and the region controller",
    )
    rack = user.rack_controllers.get(racks[0].system_id)
    expect(rack.cpus >= 1 and rack.memory > 0, "the controller says its size")
    ok("nodes, rack and region controllers: the appliance (%s)" % rack.hostname)

    device = user.devices.create(mac_addresses=["52:54:00:dd:00:01"], hostname="bmc-sw1")
    expect(device.hostname == "bmc-sw1", "device hostname %r" % device.hostname)
    expect([d.system_id for d in user.devices.list()] == [device.system_id], "the user's devices")
    expect(user.devices.get(device.system_id).fqdn == "bmc-sw1.maas", "device fqdn")
    expect(
        device.system_id in {n.system_id for n in user._origin.Nodes.read()},
        "nodes list the device too",
    )
    taken = call_status(user.devices.create, mac_addresses=[created.boot_interface.mac_address])
    expect(taken == 409, "a machine's MAC cannot be a device's: %r" % taken)
    device.delete()
    expect(list(user.devices.list()) == [], "the device is deleted")
    ok("devices: create, list, read, refuse a machine's MAC, delete")

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlibmaaskey0000000 alice@laptop"
    made = user.ssh_keys.create(key)
    expect(made.key == key, "the key as given")
    expect([k.key for k in user.ssh_keys.list()] == [key], "the user's keys")
    expect(user.ssh_keys.get(made.id).key == key, "one key by id")
    # SSHKey has no delete method in python-libmaas; its handler has MAAS's delete action.
    made._handler.delete(id=made.id)
    expect(list(user.ssh_keys.list()) == [], "the key is deleted")
    ok("SSH keys: create, list, read, delete")

    events = user.events.query(hostnames=["host-mid001"], limit=50)
    kinds = [e.event_type for e in events]
    expect("deploy" in kinds and "release" in kinds, "mid001's events name its deploy and release: %r" % kinds)
    expect(all(e.hostname == "host-mid001" for e in events), "only mid001's events")
    expect(list(admin.events.query(level=admin.events.ERROR)) == [], "nothing failed: no ERROR events")
    ok("events query by hostname and level (%d events)" % len(events))

    gpu = admin.tags.get("gpu")
    small = admin.machines.get("small1")
    small.tags.add(gpu)
    small.refresh()
    expect("gpu" in {t.name for t in small.tags}, "small1 carries gpu after tags.add")
    small.tags.remove(gpu)
    small.refresh()
    expect("gpu" not in {t.name for t in small.tags}, "small1 lost gpu after tags.remove")
    ok("tag a machine and untag it (update_nodes)")

    expect(admin.maas.get_default_os() == "debian", "the default OS is the image cache's: %r" % admin.maas.get_default_os())
    expect(admin.maas.get_default_distro_series() == "bookworm", "the default series is the default image's")
    admin.maas.set_name("site-a")
    expect(user.maas.get_name() == "site-a", "maas_name after set_name")
    expect(call_status(admin.maas.get_config, "no_such_setting") == 400, "an unknown setting is refused")
    expect(call_status(user.maas.set_name, "mine") == 403, "a user may not change settings")
    ok("settings: default OS and series from the image cache, maas_name, unknown names refused")

    details = user.machines.get("mid001").get_details()
    expect(set(details) >= {"lshw", "lldp", "rackbox-inventory"}, "details keys %r" % sorted(details))
    ok("machine details decode as BSON")

    expect(list(user.ip_ranges.list()) == [], "no boot network: no IP ranges")
    expect(list(user.static_routes.list()) == [], "no static routes")
    expect(list(user.boot_sources.list()) == [], "no mirror synced yet")
    fabric = user.fabrics.list()[0]
    vlan = fabric.vlans[0]
    expect(vlan.dhcp_on is False, "no boot network: the VLAN has no DHCP")
    expect({u.username for u in admin.users.list()} == {"admin", USER}, "admins list every user")
    ok("IP ranges, static routes, boot sources, VLAN DHCP and users as this rackbox has them")

    home = os.environ["RACKBOX_LIBMAAS_HOME"]
    os.makedirs(home, exist_ok=True)
    cli_env = dict(os.environ, HOME=home)

    def cli(*args):
        done = subprocess.run([MAAS_CLI, *args], env=cli_env, capture_output=True, text=True, timeout=60)
        shown = " ".join("<key>" if a == USER_KEY else a for a in args)
        expect(done.returncode == 0, "maas %s failed: %s%s" % (shown, done.stdout, done.stderr))
        return done.stdout

    cli("login", "-p", "alice", "--apikey", USER_KEY, URL)
    listing = cli("nodes")
    expect("host-mid001" in listing and "Regiond+rackd" in listing, listing)
    expect(rack.hostname in cli("controllers"), "maas controllers lists the appliance")
    cli("devices")
    expect("gpu" in cli("tags"), "maas tags")
    ok("the maas CLI of python-libmaas: nodes, controllers, devices, tags")

    zones = {z.name for z in user.zones.list()}
    expect({"default", "rack2"} <= zones, "zones %r" % zones)
    pools = {p.name for p in user.resource_pools.list()}
    expect("default" in pools, "pools %r" % pools)
    tags = {t.name for t in user.tags.list()}
    expect("gpu" in tags, "tags %r" % tags)
    resources = [r.name for r in user.boot_resources.list()]
    expect(resources == ["debian/bookworm"], "the one uploaded image: %r" % resources)
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
