"""A day of MAAS CLI commands (canonical/maas's own src/maascli, run from its source) against a
real `rackbox serve`, driven by tests/maas_cli.rs. Every command is the CLI's own parsing of
describe/: `key=value` arguments, positional ids, and its help.

Machines are commissioned, deployed and released for real: their firmware and agent are played
through rackbox's own endpoints (agent_player.py). Each step prints "ok: <what>"; a failed step
raises. Inputs: RACKBOX_MAASCLI_SRC (the directory holding maascli/ and apiclient/),
RACKBOX_MAAS_URL, RACKBOX_ADMIN_KEY, RACKBOX_USER_KEY, RACKBOX_CLI_HOME.
"""

import base64
import json
import os
import subprocess
import sys

import agent_player

SRC = os.environ["RACKBOX_MAASCLI_SRC"]
URL = os.environ["RACKBOX_MAAS_URL"]
BASE = URL.split("/MAAS")[0]
ADMIN_KEY = os.environ["RACKBOX_ADMIN_KEY"]
USER_KEY = os.environ["RACKBOX_USER_KEY"]
HOME = os.environ["RACKBOX_CLI_HOME"]


def ok(what):
    print("ok:", what, flush=True)


expect = agent_player.expect


def maas(*args, fails=False, binary=False):
    """Runs `maas ARGS...`; answers its standard output (JSON decoded when it is JSON; bytes
    when `binary`)."""
    env = dict(os.environ, HOME=HOME, PYTHONPATH=SRC)
    done = subprocess.run(
        [sys.executable, "-m", "maascli", *args], env=env, capture_output=True, timeout=60
    )
    if binary:
        expect(done.returncode == 0, "maas %s failed: %r" % (" ".join(args), done.stderr))
        return done.stdout
    done.stdout, done.stderr = done.stdout.decode(), done.stderr.decode()
    shown = " ".join("<key>" if a in (ADMIN_KEY, USER_KEY) else a for a in args)
    if fails:
        expect(done.returncode != 0, "maas %s should have failed: %s" % (shown, done.stdout))
        return done.stdout + done.stderr
    expect(done.returncode == 0, "maas %s failed (%d): %s%s" % (shown, done.returncode, done.stdout, done.stderr))
    try:
        return json.loads(done.stdout)
    except ValueError:
        return done.stdout


def main():
    os.makedirs(HOME, exist_ok=True)
    maas("login", "admin", URL, ADMIN_KEY)
    maas("login", "alice", URL, USER_KEY)
    ok("log in two profiles")

    help_text = maas("admin", "machines", "allocate", "--help")
    expect("key1=value1" in help_text and ":param cpu_count:" in help_text, help_text)
    ok("help shows the keyword arguments")

    mac = "52:54:00:cc:00:01"
    m = maas("admin", "machines", "create", "architecture=amd64/generic", "mac_addresses=" + mac,
             "power_type=manual", "hostname=cli1", "description=first")
    system_id = m["system_id"]
    expect(m["hostname"] == "cli1" and m["status_name"] == "New", m)
    ok("machines create %s" % system_id)

    found = maas("admin", "machines", "read", "hostname=cli1")
    expect([x["system_id"] for x in found] == [system_id], found)
    expect(maas("admin", "machines", "read", "hostname=nobody") == [], "an unknown hostname lists nothing")
    ok("machines read with a filter")

    m = maas("admin", "machine", "update", system_id, "description=rack 4, slot 2")
    expect(m["description"] == "rack 4, slot 2", m)
    ok("machine update")

    m = maas("admin", "machine", "commission", system_id)
    expect(m["status_name"] == "Commissioning", m)
    agent_player.commission(BASE, mac, cpus=8, memory_mib=16384)
    m = maas("admin", "machine", "read", system_id)
    expect(m["status_name"] == "Ready" and m["cpu_count"] == 8, m)
    ok("machine commission: Ready with its inventory")

    results = maas("admin", "node-results", "read", "system_id=" + system_id)
    expect([r["name"] for r in results] == ["rackbox-inventory"], results)
    inventory = json.loads(base64.b64decode(results[0]["data"]))
    expect(inventory["cpu_count"] == 8, inventory)
    ok("node-results read: the commissioning inventory")

    maas("admin", "tags", "create", "name=gpu", "comment=has a GPU")
    out = maas("admin", "tag", "update-nodes", "gpu", "add=" + system_id)
    expect(out == {"added": 1, "removed": 0}, out)
    tagged = maas("admin", "tag", "nodes", "gpu")
    expect([x["system_id"] for x in tagged] == [system_id], tagged)
    ok("tags create, tag update-nodes, tag nodes")

    maas("admin", "zones", "create", "name=rack4", "description=fourth rack")
    maas("admin", "machine", "update", system_id, "zone=rack4")
    none = maas("alice", "machines", "allocate", "cpu_count=64", fails=True)
    expect("no machine matches" in none, none)
    got = maas("alice", "machines", "allocate", "cpu_count=4", "mem=8192", "tags=gpu", "zone=rack4")
    expect(got["system_id"] == system_id and got["status_name"] == "Allocated", got)
    expect(got["owner"] == "alice", got)
    ok("machines allocate: no match says so; a match by cpu, memory, tag and zone")

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAImaasclikey00000000 alice@laptop"
    made = maas("alice", "sshkeys", "create", "key=" + key)
    expect([k["key"] for k in maas("alice", "sshkeys", "read")] == [key], "alice's keys")
    user_data = base64.b64encode(b"#cloud-config\nruncmd: [touch /root/cli-was-here]\n").decode()
    m = maas("alice", "machine", "deploy", system_id, "distro_series=bookworm", "user_data=" + user_data)
    expect(m["status_name"] == "Deploying" and m["osystem"] == "debian", m)
    task = agent_player.deploy(BASE, mac)
    expect(task["ssh_keys"] == [key], "the deploy carries alice's key: %r" % task["ssh_keys"])
    expect("cli-was-here" in task["user_data"], "the deploy carries the user data")
    m = maas("alice", "machine", "read", system_id)
    expect(m["status_name"] == "Deployed", m)
    ok("machine deploy with distro_series and user_data: Deployed, with the owner's key")

    m = maas("alice", "machine", "release", system_id, "quick_erase=true", "comment=done with it")
    expect(m["status_name"] == "Disk erasing", m)
    agent_player.boot_and_report(BASE, mac, "complete", {"message": "disks erased (quick)"})
    m = maas("alice", "machine", "read", system_id)
    expect(m["status_name"] == "Ready" and m["owner"] is None, m)
    maas("alice", "sshkey", "delete", str(made["id"]))
    expect(maas("alice", "sshkeys", "read") == [], "the key is deleted")
    ok("machine release with quick_erase: Ready again; sshkey delete")

    events = maas("admin", "events", "query", "hostname=cli1", "limit=100")
    kinds = [e["type"] for e in events["events"]]
    for kind in ("commission", "allocate", "deploy", "release"):
        expect(kind in kinds, "%s missing from cli1's events %r" % (kind, kinds))
    older = maas("admin", "events", "query", "hostname=cli1", "limit=2")
    expect(older["count"] == 2 and "before=" in older["prev_uri"], older)
    ok("events query by hostname, with paging links")

    expect(maas("admin", "maas", "get-config", "name=default_osystem") == "debian", "default OS")
    expect(maas("admin", "maas", "get-config", "name=default_distro_series") == "bookworm", "series")
    maas("admin", "maas", "set-config", "name=ntp_servers", "value=192.0.2.123")
    expect(maas("admin", "maas", "get-config", "name=ntp_servers") == "192.0.2.123", "ntp_servers")
    refused = maas("admin", "maas", "get-config", "name=no_such_thing", fails=True)
    expect("not a valid config setting" in refused, refused)
    refused = maas("alice", "maas", "set-config", "name=maas_name", "value=mine", fails=True)
    expect("admin" in refused, refused)
    ok("get-config and set-config; unknown names and users refused")

    nodes = maas("admin", "nodes", "read")
    expect({n["node_type"] for n in nodes} == {0, 4}, "a machine and the controller: %r" % nodes)
    racks = maas("admin", "rack-controllers", "read")
    regions = maas("admin", "region-controllers", "read")
    expect(len(racks) == 1 and racks[0]["system_id"] == regions[0]["system_id"], racks)
    rack = maas("admin", "rack-controller", "read", racks[0]["system_id"])
    expect({s["name"] for s in rack["service_set"]} >= {"regiond", "rackd", "dhcpd"}, rack)
    ok("nodes, rack-controllers, region-controllers")

    device = maas("admin", "devices", "create", "hostname=tor-switch", "mac_addresses=52:54:00:ee:00:01")
    expect(device["node_type"] == 1, device)
    expect([d["hostname"] for d in maas("admin", "devices", "read")] == ["tor-switch"], "devices")
    maas("admin", "device", "update", device["system_id"], "description=top of rack")
    refused = maas("admin", "devices", "create", "mac_addresses=" + mac, fails=True)
    expect("belongs to machine" in refused, refused)
    maas("admin", "device", "delete", device["system_id"])
    ok("devices create, read, update, delete; a machine's MAC refused")

    for empty in (("ipranges", "read"), ("static-routes", "read"), ("dnsresources", "read"),
                  ("boot-sources", "read"), ("spaces", "read")):
        expect(maas("admin", *empty) == [], "%s answers an empty list here" % " ".join(empty))
    details = maas("admin", "machine", "details", system_id, binary=True)
    expect(b"rackbox-inventory" in details and b"lshw" in details, "details name the inventory")
    users = maas("admin", "users", "read")
    expect({u["username"] for u in users} == {"admin", "alice"}, users)
    ok("ipranges, static-routes, dnsresources, boot-sources, spaces, details, users")

    maas("admin", "machine", "delete", system_id)
    expect(maas("admin", "machines", "read") == [], "the machine is gone")
    ok("machine delete")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the Rust test shows whatever failed
        import traceback

        traceback.print_exc()
        print("FAILED:", e, file=sys.stderr, flush=True)
        sys.exit(1)
    print("all MAAS CLI steps passed", flush=True)
