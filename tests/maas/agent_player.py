"""Plays a machine's firmware and agent against rackbox's real endpoints, for the MAAS client
tests: network-boot (fetch the machine's iPXE script, which carries its per-boot token), then ask
for the task and report to /api/agent/v1 as the agent does."""

import json
import urllib.request


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def boot_token(base, mac):
    """The per-boot token of the machine's iPXE script (None when it boots its disk)."""
    script = urllib.request.urlopen("%s/boot/%s.ipxe" % (base, mac)).read().decode()
    tokens = [w.split("=", 1)[1] for w in script.split() if w.startswith("rackbox.token=")]
    return tokens[0] if tokens else None


def call(base, token, method, path, body=None):
    """One agent call; answers the decoded JSON (None when the answer is empty)."""
    expect(token, "the boot script carries a token")
    request = urllib.request.Request(
        "%s/api/agent/v1/%s" % (base, path),
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        method=method,
    )
    text = urllib.request.urlopen(request).read()
    return json.loads(text) if text else None


def report(base, token, path, body):
    call(base, token, "POST", path, body)
    return token


def boot_and_report(base, mac, path, body):
    """Boots the machine's ephemeral environment and sends one report; answers the token."""
    return report(base, boot_token(base, mac), path, body)


def commission(base, mac, cpus=4, memory_mib=8192):
    """Boots, takes the commission task, sends an inventory of one disk and one NIC, completes."""
    token = boot_token(base, mac)
    task = call(base, token, "GET", "task")
    expect(task["task"] == "commission", "the agent's task is %r" % task)
    inventory = {
        "cpu_count": cpus,
        "memory_mib": memory_mib,
        "architecture": "amd64/generic",
        "firmware": "bios",
        "disks": [{"name": "sda", "size_bytes": 500_107_862_016, "model": "SSD 860", "serial": "S1",
                   "block_size": 512, "rotational": False, "tags": ["ssd"]}],
        "interfaces": [{"name": "eno1", "mac": mac}],
    }
    call(base, token, "POST", "inventory", inventory)
    call(base, token, "POST", "complete", {"message": "commissioned"})


def deploy(base, mac):
    """Boots, takes the deploy task, says the image is written, then reports as the deployed OS
    does: the machine is Deployed after this. Answers the task."""
    token = boot_token(base, mac)
    task = call(base, token, "GET", "task")
    expect(task["task"] == "deploy", "the agent's task is %r" % task)
    call(base, token, "POST", "complete", {"message": "image written"})
    call(base, task["report_token"], "POST", "deployed", {"message": "deployed OS booted"})
    return task
