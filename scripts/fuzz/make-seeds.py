#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/<target>/ (run from the repository root).

Each seed is a real input of its kind, built here byte by byte so that what it is stays
readable: PXE and iPXE DHCP requests as SeaBIOS/iPXE and OVMF send them, the frames around
them, TFTP read requests with RFC 2347 options, MAAS multipart and urlencoded bodies as
python-libmaas and gomaasapi send them, OAuth headers, agent JSON, SMBIOS records, compressed
images and partition tables, manifests and the documented configuration.
"""
import gzip
import json
import lzma
import os
import struct
import zlib

ROOT = "fuzz/corpus"


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def dhcp(kind, mac, opts, ciaddr=b"\0" * 4, giaddr=b"\0" * 4, broadcast=True):
    hdr = struct.pack("!BBBBIHH", 1, 1, 6, 1 if giaddr != b"\0" * 4 else 0, 0x1234ABCD, 4,
                      0x8000 if broadcast else 0)
    hdr += ciaddr + b"\0" * 4 + b"\0" * 4 + giaddr
    hdr += mac + b"\0" * 10 + b"\0" * 64 + b"\0" * 128
    body = b"\x63\x82\x53\x63" + bytes([53, 1, kind])
    for code, val in opts:
        body += bytes([code, len(val)]) + val
    body += b"\xff"
    msg = hdr + body
    return msg + b"\0" * max(0, 300 - len(msg))


MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
UUID = bytes([0]) + bytes(range(16))
PXE_BIOS = [(57, struct.pack("!H", 1472)), (93, b"\0\0"), (94, b"\x01\x02\x01"), (97, UUID),
            (60, b"PXEClient:Arch:00000:UNDI:002001"),
            (55, bytes([1, 2, 3, 5, 6, 11, 12, 13, 15, 16, 17, 18, 43, 54, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135]))]
PXE_UEFI = [(57, struct.pack("!H", 1472)), (93, b"\0\x07"), (94, b"\x01\x03\x00"), (97, UUID),
            (60, b"PXEClient:Arch:00007:UNDI:003000"), (55, bytes([1, 3, 6, 15, 66, 67, 13, 43]))]
IPXE = [(57, struct.pack("!H", 1472)), (93, b"\0\0"), (60, b"PXEClient:Arch:00000:UNDI:002001"),
        (77, b"iPXE"), (175, bytes([0xb1, 5, 1, 0x10, 0xec, 0x81, 0x39, 19, 1, 1, 17, 1, 1])),
        (61, b"\x01" + MAC), (12, b"node1")]
RELAY = [(82, bytes([1, 4]) + b"eth0" + bytes([2, 6]) + MAC)]

discover_bios = dhcp(1, MAC, PXE_BIOS)
request_uefi = dhcp(3, MAC, PXE_UEFI + [(50, bytes([192, 0, 2, 10])), (54, bytes([192, 0, 2, 1]))])
discover_ipxe = dhcp(1, MAC, IPXE)
request_relayed = dhcp(3, MAC, IPXE + RELAY + [(50, bytes([198, 51, 100, 100]))],
                       giaddr=bytes([198, 51, 100, 1]), broadcast=False)
renew = dhcp(3, MAC, [(61, b"\x01" + MAC)], ciaddr=bytes([192, 0, 2, 10]), broadcast=False)
release = dhcp(7, MAC, [(54, bytes([192, 0, 2, 1]))], ciaddr=bytes([192, 0, 2, 10]))
decline = dhcp(4, MAC, [(50, bytes([192, 0, 2, 11])), (54, bytes([192, 0, 2, 1]))])
inform = dhcp(8, MAC, PXE_UEFI, ciaddr=bytes([192, 0, 2, 10]))
for name, m in [("discover-bios", discover_bios), ("request-uefi", request_uefi),
                ("discover-ipxe", discover_ipxe), ("request-relayed", request_relayed),
                ("renew", renew), ("decline", decline), ("inform", inform)]:
    put("dhcp_decode", name, m)


def rec(port_sel, src_sel, dt, fails, payload):
    return bytes([port_sel, src_sel]) + struct.pack("!HBH", dt, fails, len(payload)) + payload


put("dhcp_engine", "managed-dora", bytes([0]) + rec(0, 0, 0, 0, discover_bios)
    + rec(0, 0, 1, 0, request_uefi) + rec(0, 2, 300, 0, renew) + rec(0, 2, 1, 0, release))
put("dhcp_engine", "managed-ipxe-pxe-port", bytes([0]) + rec(0, 0, 0, 0, discover_ipxe)
    + rec(1, 2, 0, 0, inform) + rec(0, 0, 2, 1, decline))
put("dhcp_engine", "relayed", bytes([0]) + rec(0, 1, 0, 0, request_relayed)
    + rec(0, 1, 0, 1, request_relayed))
put("dhcp_engine", "proxy", bytes([1]) + rec(0, 0, 0, 0, discover_bios) + rec(1, 2, 0, 0, inform))


def ip_checksum(b):
    s = 0
    for i in range(0, len(b), 2):
        s += (b[i] << 8) + (b[i + 1] if i + 1 < len(b) else 0)
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def frame(src_mac, dst_mac, src_ip, dst_ip, sport, dport, payload, udp_csum=False):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src_ip, dst_ip)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


BCAST = b"\xff" * 6
put("frame", "dhcp-discover", frame(MAC, BCAST, b"\0" * 4, b"\xff" * 4, 68, 67, discover_bios))
put("frame", "dhcp-relayed", frame(MAC, b"\x02" * 6, bytes([198, 51, 100, 1]), bytes([192, 0, 2, 1]),
                                   67, 67, request_relayed))
put("frame", "pxe-4011", frame(MAC, b"\x02" * 6, bytes([192, 0, 2, 10]), bytes([192, 0, 2, 1]),
                               4011, 4011, inform))
put("frame", "arp", BCAST + MAC + b"\x08\x06" + bytes(28))

rrq = lambda name, opts: (b"\x00\x01" + name + b"\0octet\0"
                          + b"".join(k + b"\0" + v + b"\0" for k, v in opts))
put("tftp_packet", "rrq-ipxe", rrq(b"undionly.kpxe", [(b"tsize", b"0"), (b"blksize", b"1432")]))
put("tftp_packet", "rrq-ovmf", rrq(b"/snponly.efi", [(b"blksize", b"1468"), (b"windowsize", b"4"),
                                                    (b"timeout", b"3"), (b"tsize", b"0")]))
put("tftp_packet", "rrq-escape", b"\x00\x01..\\..\\etc/passwd\0netascii\0")
put("tftp_packet", "ack", b"\x00\x04\x00\x01")
put("tftp_packet", "error", b"\x00\x05\x00\x08user aborted\0")
put("tftp_packet", "oack", b"\x00\x06blksize\x001432\x00tsize\x0012345\x00")
put("tftp_packet", "data", b"\x00\x03\x00\x02" + b"x" * 40)
limits = struct.pack("!HHB", 1468, 64, 5) + struct.pack("!HB", 4000, 8)
put("tftp_options", "ovmf", limits + rrq(b"snponly.efi", [(b"blksize", b"1468"), (b"windowsize", b"4"),
                                                          (b"timeout", b"3"), (b"tsize", b"0")]))
put("tftp_options", "odd", limits + rrq(b"a", [(b"BLKSIZE", b" 9000 "), (b"blksize", b"512"),
                                               (b"timeout", b"200"), (b"utimeout", b"1000"),
                                               (b"windowsize", b"0")]))

B = "d1b2a4f6e0c8"
import base64
libmaas = (f"--{B}\r\nContent-Disposition: form-data; name=\"hostname\"\r\n"
           f"Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           f"{base64.b64encode(b'node1').decode()}\r\n"
           f"--{B}\r\nContent-Disposition: form-data; name=\"mac_addresses\"\r\n"
           f"Content-Transfer-Encoding: base64\r\n\r\n{base64.b64encode(b'52:54:00:12:34:56').decode()}\r\n"
           f"--{B}\r\nContent-Disposition: form-data; name=\"user_data\"; filename=\"user_data\"\r\n"
           f"Content-Type: application/octet-stream\r\n\r\n#cloud-config\r\n"
           f"--{B}--\r\n")
put("maas_params", "libmaas-multipart", f"op=allocate\n\n\nmultipart/form-data; boundary={B}\n\n\n{libmaas}")
put("maas_params", "libmaas-empty", f"op=release\n\n\nmultipart/form-data; boundary=\"{B}\"\n\n\n--{B}\r\n\r\n\r\n--{B}--\r\n")
put("maas_params", "gomaasapi-form", "op=\n\n\napplication/x-www-form-urlencoded\n\n\n"
    "architecture=amd64%2Fgeneric&mac_addresses=52%3A54%3A00%3A12%3A34%3A56&mac_addresses=52%3A54%3A00%3A12%3A34%3A57&power_type=ipmi&commission=true")
put("maas_params", "get-query", "op=list_allocated&hostname=node1&zone=default\n\n\n\n\n\n")

put("maas_oauth", "libmaas", 'OAuth realm="OAuth", oauth_nonce="35167409", oauth_timestamp="1700000000", '
    'oauth_consumer_key="Aq4ZjMxRx7sSbKBpUN", oauth_signature_method="PLAINTEXT", oauth_version="1.0", '
    'oauth_token="uRhzVFEeJ7LN6Mu5kD", oauth_signature="%26Hb6CZq5Yb5Xth3Q5cWuFs3WaU6nj4WCM"')
put("maas_oauth", "gomaasapi", "OAuth oauth_consumer_key=ck,oauth_token=tk,oauth_signature=%2526s%2520s,"
    "oauth_signature_method=PLAINTEXT,oauth_nonce=1,oauth_timestamp=2")

put("agent_task", "commission", json.dumps({"task": "commission", "create_bmc_user": True}))
put("agent_task", "deploy", json.dumps({"task": "deploy", "image_url": "http://192.0.2.1:5240/api/agent/v1/image",
    "image_sha256": "A" * 64, "image_format": "raw.zst", "image_size": 67108864, "hostname": "node1",
    "ssh_keys": ["ssh-ed25519 AAAA x@y"], "user_data": "#cloud-config\n", "instance_id": "abc123",
    "report_url": "http://192.0.2.1:5240/api/agent/v1/deployed", "report_token": "t0k"}))
put("agent_task", "others", json.dumps({"task": "erase", "mode": "secure"}))
put("agent_task", "wait", json.dumps({"task": "wait", "seconds": 10}))
put("agent_task", "enlisted", json.dumps({"system_id": "x7k3pq", "token": "abc"}))

inventory = {"architecture": "amd64/generic", "cpu_count": 4, "memory_mib": 2048,
             "cpu": {"model": "QEMU Virtual CPU", "threads": 4, "cores": 4, "sockets": 1, "flags": ["fpu"]},
             "disks": [{"name": "sda", "size_bytes": 10737418240, "model": "QEMU HARDDISK", "serial": "QM1", "rotational": True}],
             "interfaces": [{"name": "ens3", "mac": "52:54:00:12:34:56", "boot": True}, {"name": "ens4", "mac": "52-54-00-12-34-57"}],
             "bmc": {"lan": {"channel": 1, "ip_address": "192.0.2.200", "mac_address": "52:54:00:aa:bb:cc"},
                     "credentials": {"username": "rackbox", "password": "s3cret"},
                     "redfish": {"address": "10.0.0.5", "manager_id": "1", "system_id": "1", "certificate_sha256": "ab" * 32}}}
put("agent_reports", "inventory", json.dumps(inventory))
put("agent_reports", "complete-testing", json.dumps({"message": "tests done", "results": {"tests": [
    {"name": "memory", "status": "passed", "started_ms": 1, "finished_ms": 2, "summary": "ok"},
    {"name": "disk-read", "status": "failed", "started_ms": 1, "finished_ms": 9, "summary": "read error at byte 4096",
     "disk": "sda", "bytes": 4096, "mib_per_s": 12.5}]}}))
put("agent_reports", "fail", json.dumps({"reason": "disk write failed", "results": {"erase": {"method": "zero"}}}))

type38 = bytes([38, 18, 0x26, 0, 1, 0x20, 0x20, 0xff, 0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
redfish = bytearray(91)
redfish[:16] = b"\x11" * 16
redfish[16] = 1; redfish[17] = 1; redfish[18:22] = bytes([169, 254, 0, 2]); redfish[34:38] = bytes([255, 255, 0, 0])
redfish[50] = 1; redfish[51] = 1; redfish[52:56] = bytes([169, 254, 0, 1]); redfish[68:72] = bytes([255, 255, 0, 0])
redfish[84:86] = struct.pack("<H", 443); redfish[90] = 9
redfish = bytes(redfish) + b"bmc.local"
specific = bytes([0x04, 0x10, 0x6b, 0x04, 0xb0, 0xff, 0x00, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x00, 0x00, 0xff, 0xff])
t42 = bytearray([42, 0, 0x2a, 0x00, 0x40, len(specific)]) + specific + bytes([2, 0xf0, 3, 1, 2, 3, 4, len(redfish)]) + redfish
t42[1] = len(t42)
t42 = bytes(t42) + b"\0\0"
put("inventory", "smbios-type38", bytes([0]) + type38)
put("inventory", "smbios-type42", bytes([1]) + t42)
put("inventory", "host-interface-pci", bytes([2, 0x05, 0x11, 0x86, 0x80, 0x3a, 0x15, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 1]))
put("inventory", "ipmi-device-id", bytes([3, 0x20, 0x81, 0x02, 0x51, 0x02, 0xbf, 0x57, 0x01, 0x00, 0x00, 0x01]))
put("inventory", "cpuinfo", bytes([4]) + b"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU E5-2620 v4 @ 2.10GHz\n"
    b"physical id\t: 0\ncore id\t: 0\ncpu cores\t: 4\nflags\t\t: fpu vme sse sse2 ht vmx\n\nMemTotal:        8056004 kB\n")
put("inventory", "route", bytes([5]) + b"Iface\tDestination\tGateway\tFlags\nens3\t00000000\t010200C0\t0003\n")
put("inventory", "cmdline", bytes([6]) + b"BOOT_IMAGE=/vmlinuz console=ttyS0 rackbox.url=http://192.0.2.1:5240 "
    b"rackbox.token=abc rackbox.system_id=x7k3pq \"quoted arg=1 2\" rackbox.enlist=1")

disk = bytes(range(256)) * 64
put("image_formats", "gzip", bytes([0]) + gzip.compress(disk))
put("image_formats", "xz", bytes([1]) + lzma.compress(disk, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64))
# zstd: a raw-block frame (magic, header with single-segment and a 1-byte size, one last raw block).
payload = b"rackbox" * 9
zst = b"\x28\xb5\x2f\xfd" + bytes([0x20, len(payload)]) + struct.pack("<I", (len(payload) << 3) | 1)[:3] + payload
put("image_formats", "zstd", bytes([2]) + zst)
mbr = bytearray(512)
mbr[446:462] = bytes([0x80, 0, 0, 0, 0x83, 0, 0, 0]) + struct.pack("<II", 2048, 131072)
mbr[510:512] = b"\x55\xaa"
put("image_formats", "mbr", bytes([3]) + bytes(mbr[:1]) + bytes(mbr[1:]))
hdr = bytearray(92)
hdr[:8] = b"EFI PART"; hdr[8:12] = struct.pack("<I", 0x10000); hdr[12:16] = struct.pack("<I", 92)
hdr[24:32] = struct.pack("<Q", 1); hdr[32:40] = struct.pack("<Q", 131071)
hdr[40:48] = struct.pack("<Q", 34); hdr[48:56] = struct.pack("<Q", 131038)
hdr[72:80] = struct.pack("<Q", 2); hdr[80:84] = struct.pack("<I", 128); hdr[84:88] = struct.pack("<I", 128)
esp = bytes.fromhex("28732ac11ff8d211ba4b00a0c93ec93b") + b"\x01" * 16 + struct.pack("<QQ", 2048, 4095) + bytes(80)
root = bytes.fromhex("af3dc60f838472478e793d69d8477de4") + b"\x02" * 16 + struct.pack("<QQ", 4096, 100000) + bytes(80)
put("image_formats", "gpt", bytes([4]) + struct.pack("!H", 8) + bytes([len(hdr)]) + bytes(hdr) + esp + root)

put("image_manifest", "mirror", json.dumps({"format": "rackbox-images/1", "images": [
    {"name": "debian-12", "url": "debian-12.raw.zst", "sha256": "ab" * 32, "size": 67108864, "os": "debian",
     "release": "bookworm", "arch": "amd64", "format": "raw.zst", "title": "Debian 12", "default": True}],
    "boot_resources": [{"arch": "amd64", "name": "undionly.kpxe", "kind": "bootloader",
                        "url": "https://mirror.example/undionly.kpxe", "sha256": "CD" * 32, "size": 70000}]}))
put("image_manifest", "sync-inline", json.dumps({"manifest": {"images": [
    {"name": "testos", "url": "http://192.0.2.9/testos.raw.gz", "sha256": "00" * 32, "size": 1}]}}))
put("image_manifest", "sync-url", json.dumps({"url": "https://mirror.example/manifest.json"}))


def toml_blocks(path):
    blocks, cur = [], None
    for line in open(path):
        if line.startswith("```toml"):
            cur = []
        elif line.startswith("```") and cur is not None:
            blocks.append("".join(cur))
            cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


boot, tftp = toml_blocks("docs/config-boot.md")[:2]
put("config", "config-boot", boot)
put("config", "config-tftp", tftp)
put("config", "appliance", open("image/rootfs/etc/rackbox/rackbox.toml").read())
